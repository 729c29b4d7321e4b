/**
 * The `peerauthn/*` cases of the Istio verdict table (../shared/oracles/istio-authz/cases.json,
 * read in place): the effective mTLS mode (`expectMtlsMode`), the connection verdict (`expect`:
 * deny = reset of a plaintext client under STRICT) and `decidedBy` (the mode and what it does to
 * the client, or "no PeerAuthentication"), through the reference (effectiveMtls) and the
 * compiled form (CompiledPeerAuthn).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { policyObjectOf } from "../../../src/kube/cluster.js";
import { Diagnostics } from "../../../src/kube/errors.js";
import {
  DEFAULT_MESH,
  type MeshConfig,
  type MeshRequest,
  type MeshTarget,
} from "../../../src/policy/istio/mesh.js";
import {
  admitConnection,
  CompiledPeerAuthn,
  effectiveMtls,
  parsePeerAuthentication,
} from "../../../src/policy/istio/peerauthn.js";
import { oracle } from "../../helpers/paths.js";

interface OracleCase {
  name: string;
  profile?: string;
  mesh?: { rootNamespace?: string; trustDomain?: string; trustDomainAliases?: string[] };
  policies: Record<string, unknown>[];
  workload: { namespace: string; labels?: Record<string, string>; serviceAccount?: string };
  request: { principal: string; port: number; namespace?: string; ip?: string };
  protocol?: "http" | "tcp";
  expect: "allow" | "deny";
  expectMtlsMode?: string;
  decidedBy?: string;
}

interface OracleFile {
  defaults: {
    profile: string;
    mesh: { rootNamespace: string; trustDomain: string; trustDomainAliases: string[] };
  };
  cases: OracleCase[];
}

const file = oracle("istio-authz", "cases.json");
const text = readFileSync(file, "utf8");
const data = JSON.parse(text) as OracleFile;
const cases = data.cases.filter((c) => c.name.startsWith("peerauthn/"));

/** The line of a case's name in cases.json, for messages that point at the case. */
function lineOf(name: string): number {
  const at = text.indexOf(`"name": "${name}"`);
  return at < 0 ? 0 : text.slice(0, at).split("\n").length;
}

function meshOf(c: OracleCase): MeshConfig {
  const m = { ...data.defaults.mesh, ...c.mesh };
  return {
    ...DEFAULT_MESH,
    rootNamespace: m.rootNamespace,
    trustDomain: m.trustDomain,
    trustDomainAliases: m.trustDomainAliases,
  };
}

describe("Istio oracle: peerauthn/* cases", () => {
  it("has the 12 peerauthn cases of the table", () => {
    assert.equal(cases.length, 12);
  });

  for (const c of cases) {
    it(c.name, () => {
      assert.notEqual(c.profile, "ztunnel", "peerauthn cases are sidecar cases");
      const mesh = meshOf(c);
      const diag = new Diagnostics();
      const line = lineOf(c.name);
      const policies = c.policies.map((value) =>
        parsePeerAuthentication(policyObjectOf({ value, source: { file, line } }), diag, mesh),
      );
      const target: MeshTarget = { namespace: c.workload.namespace, labels: c.workload.labels ?? {} };
      const request: MeshRequest = {
        principal: c.request.principal === "plaintext" ? undefined : c.request.principal,
        port: c.request.port,
        protocol: c.protocol ?? "http",
      };

      const effective = effectiveMtls(policies, target, request.port, mesh);
      const compiled = new CompiledPeerAuthn(policies, mesh);
      assert.deepEqual(compiled.effectiveMtls(target, request.port), effective, "compiled = reference");

      assert.ok(c.expectMtlsMode, "every peerauthn case gives expectMtlsMode");
      assert.equal(effective.mode, c.expectMtlsMode, effective.detail);

      const admission = admitConnection(effective, request, mesh);
      assert.equal(admission.admitted ? "allow" : "deny", c.expect, admission.detail);
      if (!admission.admitted) {
        // The table's deny for a peerauthn case is the reset of a plaintext client.
        assert.equal(request.principal, undefined);
        assert.equal(admission.outcome, "connection-reset");
      }
      const viaCompiled = compiled.admit(target, request);
      assert.deepEqual(viaCompiled.admission, admission);

      const decided = c.decidedBy ?? "";
      if (decided.startsWith("no PeerAuthentication")) {
        assert.equal(effective.level, "default");
        assert.equal(effective.policy, undefined);
        assert.equal(c.policies.length, 0);
      } else {
        const m = /^mTLS mode (\w+) -> (.*)$/.exec(decided);
        assert.ok(m, `unexpected decidedBy: ${decided}`);
        assert.equal(m[1], effective.mode);
        // Our connection detail uses the table's wording.
        assert.equal(admission.detail, decided);
      }
    });
  }

  it("names the deciding policy and level where the table's sources do", () => {
    const byName = new Map(cases.map((c) => [c.name, c]));
    const expected: Record<string, { level: string; policy?: string; portLevel: boolean }> = {
      "peerauthn/no-config": { level: "default", portLevel: false },
      "peerauthn/mesh-only": { level: "mesh", policy: "root-namespace/default", portLevel: false },
      "peerauthn/mesh-vs-namespace": { level: "namespace", policy: "my-ns/default", portLevel: false },
      "peerauthn/root-ns-selector-ignored": { level: "default", portLevel: false },
      "peerauthn/namespace-over-mesh": { level: "namespace", policy: "my-ns/default", portLevel: false },
      "peerauthn/multiple-mesh-oldest-wins": {
        level: "mesh",
        policy: "root-namespace/second ago",
        portLevel: false,
      },
      "peerauthn/multiple-workload-oldest-wins": {
        level: "workload",
        policy: "my-ns/second ago",
        portLevel: false,
      },
      "peerauthn/mesh-to-workload": { level: "mesh", policy: "root-namespace/default", portLevel: false },
      "peerauthn/mesh-namespace-workload": {
        level: "mesh",
        policy: "root-namespace/default",
        portLevel: false,
      },
      "peerauthn/port-level-disable": { level: "workload", policy: "my-ns/foo", portLevel: true },
      "peerauthn/port-level-unset-inherits": {
        level: "mesh",
        policy: "root-namespace/default",
        portLevel: false,
      },
      "peerauthn/port-level-unlisted-port": {
        level: "mesh",
        policy: "root-namespace/default",
        portLevel: false,
      },
    };
    assert.deepEqual([...byName.keys()].sort(), Object.keys(expected).sort());
    for (const [name, want] of Object.entries(expected)) {
      const c = byName.get(name) as OracleCase;
      const mesh = meshOf(c);
      const policies = c.policies.map((value) =>
        parsePeerAuthentication(
          policyObjectOf({ value, source: { file, line: 1 } }),
          new Diagnostics(),
          mesh,
        ),
      );
      const e = effectiveMtls(
        policies,
        { namespace: c.workload.namespace, labels: c.workload.labels ?? {} },
        c.request.port,
        mesh,
      );
      const got = {
        level: e.level,
        ...(e.policy ? { policy: `${e.policy.namespace}/${e.policy.name}` } : {}),
        portLevel: e.portLevel,
      };
      assert.deepEqual(got, want, `${name}: ${e.detail}`);
    }
  });
});
