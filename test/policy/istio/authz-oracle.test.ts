/**
 * The Istio authz verdict table (../shared/oracles/istio-authz/cases.json, read in place): every
 * case except the `peerauthn/*` group, through both ReferenceAuthz and CompiledAuthz, for each
 * data plane the case names (sidecar, ztunnel, or both). PeerAuthentication objects among a
 * case's policies are ignored here (those clients are mTLS). `decidedBy` is compared where it
 * names a policy, a rule or an evaluation step.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { policyObjectOf } from "../../../src/kube/cluster.js";
import { Diagnostics } from "../../../src/kube/errors.js";
import { CompiledAuthz } from "../../../src/policy/istio/authz/compiled.js";
import type { AuthorizationPolicy } from "../../../src/policy/istio/authz/model.js";
import { parseAuthorizationPolicy } from "../../../src/policy/istio/authz/parse.js";
import { type AuthzDecision, ReferenceAuthz } from "../../../src/policy/istio/authz/reference.js";
import {
  DEFAULT_MESH,
  type MeshConfig,
  type MeshRequest,
  type MeshTarget,
} from "../../../src/policy/istio/mesh.js";
import { oracle } from "../../helpers/paths.js";

type Obj = Record<string, unknown>;

interface Case {
  name: string;
  profile?: "sidecar" | "ztunnel" | "both";
  mesh?: Obj;
  policies: Obj[];
  workload: { namespace: string; labels?: Record<string, string>; serviceAccount?: string; ip?: string };
  request: Obj;
  protocol: "http" | "tcp";
  expect: "allow" | "deny";
  decidedBy?: string;
}

const file = oracle("istio-authz", "cases.json");
const data = JSON.parse(readFileSync(file, "utf8")) as { defaults: { mesh: Obj }; cases: Case[] };

/** Cases not run, with the reason. Aim: none. */
const KNOWN_DIFFERENCES: readonly { name: string; profile: "sidecar" | "ztunnel"; reason: string }[] = [];

/** What a `decidedBy` string says: the step, and the policy / rule when it names them. */
export interface DecidedBy {
  step: AuthzDecision["step"];
  policy?: string;
  rule?: number;
  /** The CUSTOM provider was consulted and allowed. */
  providerAllowed?: boolean;
}

export function parseDecidedBy(text: string): DecidedBy {
  const m = /^(ALLOW|DENY|CUSTOM) ([^\s/]+\/[^\s/]+)(?: rule\[(\d+)\])?(.*)$/.exec(text);
  if (m) {
    const [, action, policy, rule, rest = ""] = m;
    const withRule = (d: DecidedBy): DecidedBy => (rule === undefined ? d : { ...d, rule: Number(rule) });
    if (action === "ALLOW" && /has no TCP-enforceable rule/.test(rest)) return { step: "no-allow-match" };
    if (action === "ALLOW") return withRule({ step: "allow", policy });
    if (action === "DENY") return withRule({ step: "deny", policy });
    if (/\(provider denied\)/.test(rest)) return withRule({ step: "custom", policy });
    if (/\(provider allowed\)/.test(rest)) {
      if (/no ALLOW policy/.test(rest)) return { step: "no-allow-policy", providerAllowed: true };
      return { step: "allow", providerAllowed: true };
    }
  }
  if (/^ALLOW policies apply but none matched/.test(text)) return { step: "no-allow-match" };
  if (/^no ALLOW policy applies/.test(text)) return { step: "no-allow-policy" };
  throw new Error(`unrecognized decidedBy: ${text}`);
}

function meshOf(c: Case, profile: "sidecar" | "ztunnel"): MeshConfig {
  const m = { ...data.defaults.mesh, ...(c.mesh ?? {}) } as Obj;
  const pn =
    m.pathNormalization === "DEFAULT" || m.pathNormalization === undefined ? "BASE" : m.pathNormalization;
  return {
    ...DEFAULT_MESH,
    rootNamespace: (m.rootNamespace as string) ?? DEFAULT_MESH.rootNamespace,
    trustDomain: (m.trustDomain as string) ?? DEFAULT_MESH.trustDomain,
    trustDomainAliases: (m.trustDomainAliases as string[]) ?? [],
    pathNormalization: pn as MeshConfig["pathNormalization"],
    profile,
  };
}

function policiesOf(c: Case): AuthorizationPolicy[] {
  const diag = new Diagnostics();
  return c.policies
    .filter((p) => p.kind === "AuthorizationPolicy")
    .map((value, i) =>
      parseAuthorizationPolicy(
        policyObjectOf({ value, source: { file: `${file}#${c.name}`, line: i + 1 } }),
        diag,
      ),
    );
}

function targetOf(c: Case): MeshTarget {
  const w = c.workload;
  return {
    namespace: w.namespace,
    labels: w.labels ?? {},
    ...(w.serviceAccount !== undefined ? { serviceAccount: w.serviceAccount } : {}),
    ...(w.ip !== undefined ? { ip: w.ip } : {}),
  };
}

function requestOf(c: Case): MeshRequest {
  const r = c.request;
  const opt = <K extends string>(k: K, v: unknown) => (v === undefined ? {} : { [k]: v });
  return {
    principal: r.principal === "plaintext" ? undefined : (r.principal as string),
    port: r.port as number,
    protocol: c.protocol,
    ...opt("sourceNamespace", r.namespace),
    ...opt("sourceIp", r.ip),
    ...opt("method", r.method),
    ...opt("path", r.path),
    ...opt("host", r.host),
    ...opt("headers", r.headers),
    ...opt("destinationIp", r.destinationIp),
    ...opt("sni", r.sni),
    ...opt("extAuthz", r.extAuthz),
  } as MeshRequest;
}

function check(c: Case, d: AuthzDecision, who: string): void {
  const where = `${c.name} (${who}): ${d.detail}`;
  assert.equal(d.allowed ? "allow" : "deny", c.expect, where);
  if (c.decidedBy === undefined) return;
  const want = parseDecidedBy(c.decidedBy);
  assert.equal(d.step, want.step, `${where}\n  decidedBy: ${c.decidedBy}`);
  if (want.policy !== undefined) {
    assert.equal(
      d.policy && `${d.policy.namespace}/${d.policy.name}`,
      want.policy,
      `${where}\n  decidedBy: ${c.decidedBy}`,
    );
  }
  if (want.rule !== undefined) assert.equal(d.rule, want.rule, `${where}\n  decidedBy: ${c.decidedBy}`);
  if (want.providerAllowed)
    assert.ok(d.provider !== undefined, `${where}: the provider should have been asked`);
}

const cases = data.cases.filter((c) => !c.name.startsWith("peerauthn/"));

describe("Istio authz oracle (cases.json)", () => {
  it("has the expected number of cases", () => {
    assert.ok(cases.length >= 100, `only ${cases.length} cases`);
  });

  it("parses every decidedBy", () => {
    for (const c of cases) if (c.decidedBy !== undefined) parseDecidedBy(c.decidedBy);
  });

  for (const c of cases) {
    const profile = c.profile ?? "sidecar";
    const profiles: ("sidecar" | "ztunnel")[] = profile === "both" ? ["sidecar", "ztunnel"] : [profile];
    for (const p of profiles) {
      const known = KNOWN_DIFFERENCES.find((k) => k.name === c.name && k.profile === p);
      it(`${c.name} [${p}]`, { skip: known ? known.reason : false }, () => {
        const mesh = meshOf(c, p);
        const policies = policiesOf(c);
        const target = targetOf(c);
        const request = requestOf(c);
        check(c, new ReferenceAuthz(policies, mesh).evaluate(target, request), "reference");
        const compiled = new CompiledAuthz(policies, mesh);
        check(c, compiled.evaluate(target, request), "compiled");
        // Twice: the second call uses the cached plan.
        check(c, compiled.evaluate(target, request), "compiled, cached");
      });
    }
  }
});
