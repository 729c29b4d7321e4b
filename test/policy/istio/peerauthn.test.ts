import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Diagnostics, InputError } from "../../../src/kube/errors.js";
import type { PolicyObject } from "../../../src/kube/objects.js";
import { selectorFromRequirements } from "../../../src/kube/selector.js";
import { DEFAULT_MESH, type MeshConfig, type MeshTarget } from "../../../src/policy/istio/mesh.js";
import {
  admitConnection,
  CompiledPeerAuthn,
  type EffectiveMtls,
  effectiveMtls,
  type MtlsMode,
  type PeerAuthentication,
  parsePeerAuthentication,
} from "../../../src/policy/istio/peerauthn.js";

const MESH: MeshConfig = { ...DEFAULT_MESH, rootNamespace: "istio-system" };
const FILE = "policies.yaml";

interface PaOptions {
  ns?: string;
  name?: string;
  created?: string;
  apiVersion?: string;
  line?: number;
}

function obj(spec: unknown, o: PaOptions = {}): PolicyObject {
  return {
    kind: "PeerAuthentication",
    apiVersion: o.apiVersion ?? "security.istio.io/v1",
    namespace: o.ns ?? "my-ns",
    name: o.name ?? "default",
    spec,
    source: { file: FILE, line: o.line ?? 7 },
    creationTimestamp: o.created,
    annotations: {},
  };
}

function pa(spec: unknown, o: PaOptions = {}, diag = new Diagnostics()): PeerAuthentication {
  return parsePeerAuthentication(obj(spec, o), diag, MESH);
}

const mode = (m: MtlsMode) => ({ mtls: { mode: m } });
const sel = (labels: Record<string, string>) => ({ matchLabels: labels });
const FOO: MeshTarget = { namespace: "my-ns", labels: { app: "foo", version: "v1" } };

/** Reference and compiled agree on every call made through this helper. */
function eff(
  policies: PeerAuthentication[],
  target: MeshTarget = FOO,
  port = 8080,
  mesh = MESH,
): EffectiveMtls {
  const e = effectiveMtls(policies, target, port, mesh);
  assert.deepEqual(new CompiledPeerAuthn(policies, mesh).effectiveMtls(target, port), e);
  return e;
}

const who = (e: EffectiveMtls) => (e.policy ? `${e.policy.namespace}/${e.policy.name}` : undefined);

describe("PeerAuthentication precedence", () => {
  const meshStrict = () => pa(mode("STRICT"), { ns: "istio-system" });
  const nsPermissive = () => pa(mode("PERMISSIVE"));
  const wlDisable = () => pa({ selector: sel({ app: "foo" }), ...mode("DISABLE") }, { name: "foo" });

  it("no policy: PERMISSIVE, Istio's default", () => {
    const e = eff([]);
    assert.equal(e.mode, "PERMISSIVE");
    assert.equal(e.level, "default");
    assert.equal(e.policy, undefined);
    assert.equal(e.portLevel, false);
    assert.match(e.detail, /no PeerAuthentication applies/);
  });

  it("workload > namespace > mesh", () => {
    const e1 = eff([meshStrict()]);
    assert.deepEqual([e1.mode, e1.level, who(e1)], ["STRICT", "mesh", "istio-system/default"]);
    const e2 = eff([meshStrict(), nsPermissive()]);
    assert.deepEqual([e2.mode, e2.level, who(e2)], ["PERMISSIVE", "namespace", "my-ns/default"]);
    const e3 = eff([wlDisable(), meshStrict(), nsPermissive()]);
    assert.deepEqual([e3.mode, e3.level, who(e3)], ["DISABLE", "workload", "my-ns/foo"]);
    // Workload over mesh without a namespace policy.
    const e4 = eff([meshStrict(), wlDisable()]);
    assert.deepEqual([e4.mode, e4.level], ["DISABLE", "workload"]);
  });

  it("policies of other namespaces and unmatched selectors do not apply", () => {
    const other = pa(mode("DISABLE"), { ns: "other" });
    const otherWl = pa({ selector: sel({ app: "foo" }), ...mode("DISABLE") }, { ns: "other", name: "foo" });
    const unmatched = pa({ selector: sel({ app: "bar" }), ...mode("DISABLE") }, { name: "bar" });
    const partial = pa({ selector: sel({ app: "foo", version: "v2" }), ...mode("DISABLE") }, { name: "v2" });
    const e = eff([meshStrict(), other, otherWl, unmatched, partial]);
    assert.deepEqual([e.mode, e.level], ["STRICT", "mesh"]);
    // A subset of the workload's labels selects it.
    const subset = pa({ selector: sel({ version: "v1" }), ...mode("PERMISSIVE") }, { name: "v1" });
    assert.equal(eff([meshStrict(), subset]).mode, "PERMISSIVE");
  });

  it("UNSET inherits at each level (and a missing mtls is UNSET)", () => {
    const wlUnset = pa({ selector: sel({ app: "foo" }) }, { name: "foo" });
    const nsUnset = pa({ mtls: { mode: "UNSET" } });
    const meshUnset = pa({}, { ns: "istio-system" });
    // workload UNSET -> namespace
    let e = eff([meshStrict(), nsPermissive(), wlUnset]);
    assert.deepEqual([e.mode, e.level, who(e)], ["PERMISSIVE", "namespace", "my-ns/default"]);
    assert.match(e.detail, /workload-level PeerAuthentication my-ns\/foo is UNSET and inherits it/);
    // workload UNSET, namespace UNSET -> mesh
    e = eff([meshStrict(), nsUnset, wlUnset]);
    assert.deepEqual([e.mode, e.level, who(e)], ["STRICT", "mesh", "istio-system/default"]);
    // namespace UNSET -> mesh
    e = eff([meshStrict(), nsUnset]);
    assert.deepEqual([e.mode, e.level], ["STRICT", "mesh"]);
    // mesh UNSET -> Istio's default PERMISSIVE, even under a STRICT-looking name
    e = eff([meshUnset, nsUnset, wlUnset]);
    assert.deepEqual([e.mode, e.level, e.policy], ["PERMISSIVE", "default", undefined]);
    assert.match(e.detail, /Istio's default/);
    // mtls: {} and mtls: {mode: null} are UNSET too
    assert.equal(pa({ mtls: {} }).mode, "UNSET");
    assert.equal(pa({ mtls: { mode: null } }).mode, "UNSET");
    assert.equal(pa(null).mode, "UNSET");
  });

  it("the oldest policy wins within a level: creationTimestamp, then name; no timestamp is oldest", () => {
    const t = (s: number) => `2024-01-01T00:00:${String(s).padStart(2, "0")}Z`;
    const mesh = [
      pa(mode("DISABLE"), { ns: "istio-system", name: "now", created: t(10) }),
      pa(mode("STRICT"), { ns: "istio-system", name: "b-second-ago", created: t(9) }),
      pa(mode("PERMISSIVE"), { ns: "istio-system", name: "a-second-ago", created: t(9) }),
    ];
    const e = eff(mesh);
    assert.deepEqual([e.mode, who(e)], ["PERMISSIVE", "istio-system/a-second-ago"]);
    // Input order does not matter.
    assert.deepEqual(eff([...mesh].reverse()), e);
    // No creationTimestamp: Go's zero time, older than any.
    const undated = pa(mode("STRICT"), { ns: "istio-system", name: "z-undated" });
    assert.equal(who(eff([...mesh, undated])), "istio-system/z-undated");

    const ns = [
      pa(mode("STRICT"), { name: "young", created: "2024-03-01T00:00:00Z" }),
      pa(mode("DISABLE"), { name: "old", created: "2023-03-01T00:00:00+02:00" }),
    ];
    assert.equal(who(eff(ns)), "my-ns/old");

    const wl = [
      pa({ selector: sel({ app: "foo" }), ...mode("STRICT") }, { name: "a", created: t(5) }),
      pa({ selector: sel({ version: "v1" }), ...mode("DISABLE") }, { name: "b", created: t(4) }),
    ];
    assert.deepEqual([eff(wl).mode, who(eff(wl))], ["DISABLE", "my-ns/b"]);
  });

  it("the older workload policy wins even when it is UNSET (and then inherits)", () => {
    const older = pa({ selector: sel({ app: "foo" }) }, { name: "older", created: "2024-01-01T00:00:00Z" });
    const younger = pa(
      { selector: sel({ app: "foo" }), ...mode("DISABLE") },
      { name: "younger", created: "2024-01-02T00:00:00Z" },
    );
    const e = eff([meshStrict(), older, younger]);
    assert.deepEqual([e.mode, e.level], ["STRICT", "mesh"]);
  });

  it("a root-namespace policy with a selector is ignored, warned about, for every workload", () => {
    const diag = new Diagnostics();
    const rootSel = pa({ selector: sel({ app: "foo" }), ...mode("STRICT") }, { ns: "istio-system" }, diag);
    assert.deepEqual(
      diag.warnings.map((w) => w.code),
      ["root-namespace-selector-ignored"],
    );
    assert.equal(eff([rootSel]).level, "default");
    // Also for a workload in the root namespace itself.
    const inRoot: MeshTarget = { namespace: "istio-system", labels: { app: "foo" } };
    assert.equal(eff([rootSel], inRoot).mode, "PERMISSIVE");
    // A custom root namespace moves the mesh level.
    const custom: MeshConfig = { ...MESH, rootNamespace: "istio-config" };
    const meshPa = parsePeerAuthentication(
      obj(mode("STRICT"), { ns: "istio-config" }),
      new Diagnostics(),
      custom,
    );
    assert.equal(eff([meshPa], FOO, 8080, custom).level, "mesh");
    assert.equal(eff([meshPa], FOO, 8080, MESH).level, "default");
  });

  it("a root-namespace policy without selector is mesh-level, also for root-namespace workloads", () => {
    const inRoot: MeshTarget = { namespace: "istio-system", labels: { app: "gw" } };
    const e = eff([meshStrict()], inRoot);
    assert.deepEqual([e.mode, e.level], ["STRICT", "mesh"]);
  });

  it("empty matchLabels counts as no selector: namespace-level (mesh-level in the root namespace)", () => {
    const diag = new Diagnostics();
    const nsEmpty = pa({ selector: { matchLabels: {} }, ...mode("DISABLE") }, { name: "empty" }, diag);
    assert.equal(nsEmpty.selector, undefined);
    assert.deepEqual(
      diag.warnings.map((w) => w.code),
      ["empty-selector", "mtls-not-strict"],
    );
    const e = eff([meshStrict(), nsEmpty]);
    assert.deepEqual([e.mode, e.level], ["DISABLE", "namespace"]);
    const meshEmpty = pa({ selector: {}, ...mode("STRICT") }, { ns: "istio-system", name: "m" });
    assert.equal(eff([meshEmpty]).level, "mesh");
  });
});

describe("portLevelMtls", () => {
  const meshStrict = () => pa(mode("STRICT"), { ns: "istio-system" });
  const withPorts = (extra: object = {}, o: PaOptions = { name: "foo" }) =>
    pa(
      {
        selector: sel({ app: "foo" }),
        portLevelMtls: { 80: { mode: "DISABLE" }, 90: { mode: "UNSET" }, 100: {} },
        ...extra,
      },
      o,
    );

  it("a listed port takes the entry; UNSET inherits the workload's mode; unlisted ports get the workload's mode", () => {
    const policies = [meshStrict(), withPorts()];
    const p80 = eff(policies, FOO, 80);
    assert.deepEqual(
      [p80.mode, p80.level, p80.portLevel, who(p80)],
      ["DISABLE", "workload", true, "my-ns/foo"],
    );
    assert.match(p80.detail, /portLevelMtls\[80\]/);
    const p90 = eff(policies, FOO, 90);
    assert.deepEqual([p90.mode, p90.level, p90.portLevel], ["STRICT", "mesh", false]);
    assert.match(p90.detail, /and its portLevelMtls\[90\] are UNSET and inherit it/);
    assert.equal(eff(policies, FOO, 100).mode, "STRICT");
    assert.equal(eff(policies, FOO, 8080).mode, "STRICT");
    // UNSET port entries inherit the workload policy's own mode when it has one.
    const own = [meshStrict(), withPorts(mode("PERMISSIVE"))];
    assert.deepEqual([eff(own, FOO, 90).mode, eff(own, FOO, 90).level], ["PERMISSIVE", "workload"]);
  });

  it("keyed by the container port: the number in the map is the one the sidecar listens on", () => {
    // The keys are container ports; nothing maps a Service port to them, and no Service is
    // needed for the entry to apply (current Istio builds a per-port passthrough chain).
    const p = withPorts();
    assert.deepEqual(
      [...p.portLevel.keys()].sort((a, b) => a - b),
      [80, 90, 100],
    );
    assert.equal(eff([meshStrict(), p], FOO, 80).mode, "DISABLE");
    assert.equal(eff([meshStrict(), p], FOO, 8080).mode, "STRICT");
  });

  it("only from the winning workload policy", () => {
    const older = pa(
      { selector: sel({ app: "foo" }), ...mode("STRICT") },
      { name: "older", created: "2024-01-01T00:00:00Z" },
    );
    const younger = withPorts({}, { name: "younger", created: "2024-02-01T00:00:00Z" });
    const e = eff([meshStrict(), younger, older], FOO, 80);
    assert.deepEqual([e.mode, e.portLevel, who(e)], ["STRICT", false, "my-ns/older"]);
    // When the port-carrying policy is the older one, its entry applies.
    const older2 = withPorts({}, { name: "older", created: "2024-01-01T00:00:00Z" });
    const younger2 = pa(
      { selector: sel({ app: "foo" }), ...mode("STRICT") },
      { name: "younger", created: "2024-02-01T00:00:00Z" },
    );
    assert.equal(eff([meshStrict(), younger2, older2], FOO, 80).mode, "DISABLE");
  });
});

describe("admitConnection", () => {
  const strict: EffectiveMtls = { mode: "STRICT", level: "mesh", portLevel: false, detail: "" };
  const permissive: EffectiveMtls = { mode: "PERMISSIVE", level: "default", portLevel: false, detail: "" };
  const disable: EffectiveMtls = { mode: "DISABLE", level: "namespace", portLevel: false, detail: "" };
  const mesh: MeshConfig = { ...MESH, trustDomain: "td", trustDomainAliases: ["td-alt"] };
  const req = (principal: string | undefined) => ({ principal, port: 8080, protocol: "tcp" as const });

  it("STRICT resets a plaintext client; PERMISSIVE and DISABLE accept it without identity", () => {
    assert.deepEqual(admitConnection(strict, req(undefined), mesh), {
      admitted: false,
      outcome: "connection-reset",
      peer: undefined,
      detail: "mTLS mode STRICT -> plaintext connection reset",
    });
    const p = admitConnection(permissive, req(undefined), mesh);
    assert.deepEqual([p.admitted, p.outcome, p.peer], [true, undefined, undefined]);
    const d = admitConnection(disable, req(undefined), mesh);
    assert.deepEqual([d.admitted, d.peer], [true, undefined]);
  });

  it("an mTLS peer of the mesh's trust domain or an alias is admitted with its identity", () => {
    for (const e of [strict, permissive]) {
      const own = admitConnection(e, req("td/ns/a/sa/b"), mesh);
      assert.deepEqual([own.admitted, own.peer], [true, "td/ns/a/sa/b"]);
      const alias = admitConnection(e, req("td-alt/ns/a/sa/b"), mesh);
      assert.deepEqual([alias.admitted, alias.peer], [true, "td-alt/ns/a/sa/b"]);
      assert.match(alias.detail, /alias td-alt/);
      // A SPIFFE ID works as well as the principal form.
      assert.equal(admitConnection(e, req("spiffe://td/ns/a/sa/b"), mesh).peer, "td/ns/a/sa/b");
    }
  });

  it("an mTLS peer of a foreign trust domain fails the handshake, under STRICT and PERMISSIVE", () => {
    for (const e of [strict, permissive]) {
      const r = admitConnection(e, req("evil.example/ns/a/sa/b"), mesh);
      assert.deepEqual([r.admitted, r.outcome, r.peer], [false, "handshake-failed", undefined]);
      assert.match(r.detail, /trust domain evil\.example/);
      // cluster.local is not special at the handshake: the mesh trusts td and td-alt only.
      assert.equal(admitConnection(e, req("cluster.local/ns/a/sa/b"), mesh).outcome, "handshake-failed");
      // A prefix of a trusted domain is not that domain.
      assert.equal(admitConnection(e, req("td-alt2/ns/a/sa/b"), mesh).outcome, "handshake-failed");
      assert.equal(admitConnection(e, req("nopath"), mesh).outcome, "handshake-failed");
    }
    // With the default mesh, cluster.local is the trust domain.
    assert.equal(admitConnection(strict, req("cluster.local/ns/a/sa/b"), DEFAULT_MESH).admitted, true);
  });

  it("DISABLE: the sidecar terminates no TLS; an auto-mTLS client sends plaintext, admitted without identity", () => {
    const r = admitConnection(disable, req("td/ns/a/sa/b"), mesh);
    assert.deepEqual([r.admitted, r.outcome, r.peer], [true, undefined, undefined]);
    // Not even a foreign trust domain is checked: there is no handshake.
    assert.equal(admitConnection(disable, req("evil/ns/a/sa/b"), mesh).admitted, true);
  });

  it("CompiledPeerAuthn.admit combines the port's mode and the admission", () => {
    const meshPa = parsePeerAuthentication(
      obj(mode("STRICT"), { ns: "istio-system" }),
      new Diagnostics(),
      mesh,
    );
    const c = new CompiledPeerAuthn([meshPa], mesh);
    const r = c.admit(FOO, req(undefined));
    assert.equal(r.effective.mode, "STRICT");
    assert.equal(r.admission.outcome, "connection-reset");
  });
});

describe("parsePeerAuthentication validation", () => {
  function refused(spec: unknown, code: string, pattern: RegExp, o: PaOptions = {}): void {
    assert.throws(
      () => pa(spec, o),
      (e: unknown) => {
        assert.ok(e instanceof InputError, String(e));
        assert.equal(e.code, code, e.message);
        assert.match(e.message, pattern);
        assert.deepEqual(e.source, { file: FILE, line: o.line ?? 7 });
        assert.equal(e.object, `PeerAuthentication ${o.ns ?? "my-ns"}/${o.name ?? "default"}`);
        assert.match(e.describe(), /^policies\.yaml:\d+: PeerAuthentication /);
        return true;
      },
    );
  }

  it("an unknown mode, with a hint for the wrong case", () => {
    refused(mode("MUTUAL" as MtlsMode), "invalid-mtls-mode", /"MUTUAL" is not a valid mTLS mode.*STRICT/);
    refused({ mtls: { mode: "strict" } }, "invalid-mtls-mode", /did you mean "STRICT"/);
    refused({ mtls: { mode: 3 } }, "invalid-mtls-mode", /"3" is not a valid/);
    refused(
      { portLevelMtls: { 80: { mode: "OFF" } }, selector: sel({ a: "b" }) },
      "invalid-mtls-mode",
      /portLevelMtls\[80\]/,
    );
    refused({ mtls: "STRICT" }, "invalid-mtls", /spec\.mtls must be a map/);
  });

  it("portLevelMtls without a selector (or with empty matchLabels) is refused, as the CRD does", () => {
    refused(
      { ...mode("STRICT"), portLevelMtls: { 80: mode("DISABLE").mtls } },
      "port-level-mtls-without-selector",
      /portLevelMtls requires selector/,
    );
    refused(
      { selector: { matchLabels: {} }, portLevelMtls: { 80: mode("DISABLE").mtls } },
      "port-level-mtls-without-selector",
      /requires selector/,
    );
    refused(
      { portLevelMtls: { 80: mode("DISABLE").mtls } },
      "port-level-mtls-without-selector",
      /mesh-level/,
      { ns: "istio-system" },
    );
  });

  it("ports out of range, not numbers, or an empty map", () => {
    const s = sel({ app: "foo" });
    refused(
      { selector: s, portLevelMtls: { 0: {} } },
      "invalid-port",
      /port "0" must be a number between 1 and 65535/,
    );
    refused({ selector: s, portLevelMtls: { 65536: {} } }, "invalid-port", /65536/);
    refused({ selector: s, portLevelMtls: { "-1": {} } }, "invalid-port", /"-1"/);
    refused({ selector: s, portLevelMtls: { http: {} } }, "invalid-port", /"http"/);
    refused({ selector: s, portLevelMtls: { "080": {}, 80: {} } }, "invalid-port", /listed twice/);
    refused({ selector: s, portLevelMtls: {} }, "invalid-port-level-mtls", /at least one port/);
    refused({ selector: s, portLevelMtls: [80] }, "invalid-port-level-mtls", /must be a map/);
    assert.deepEqual(
      [...pa({ selector: s, portLevelMtls: { 1: {}, 65535: {} } }).portLevel.keys()],
      [1, 65535],
    );
  });

  it("selectors: matchLabels only, no wildcards, no empty keys, string values", () => {
    refused({ selector: { matchLabels: { "": "x" } } }, "invalid-selector", /key must not be empty/);
    refused(
      { selector: { matchLabels: { "app*": "x" } } },
      "invalid-selector",
      /wildcard not allowed in label key/,
    );
    refused(
      { selector: { matchLabels: { app: "fo*" } } },
      "invalid-selector",
      /wildcard not allowed in label value/,
    );
    refused({ selector: { matchLabels: { app: 1 } } }, "invalid-selector", /is not a string/);
    refused({ selector: { matchLabels: { app: "x".repeat(64) } } }, "invalid-selector", /longer than 63/);
    refused(
      { selector: { matchExpressions: [{ key: "app", operator: "Exists" }] } },
      "invalid-selector",
      /matchLabels only/,
    );
    refused({ selector: "app=foo" }, "invalid-selector", /must be a map/);
    refused({ selector: { matchLabels: ["app"] } }, "invalid-selector", /must be a map of strings/);
  });

  it("unknown fields are refused (a typo must not silently drop the mode)", () => {
    refused({ mtsl: { mode: "STRICT" } }, "unknown-field", /spec\.mtsl: unknown field/);
    refused({ mTLS: { mode: "STRICT" } }, "unknown-field", /did you mean "mtls"/);
    refused({ targetRef: { kind: "Service", name: "x" } }, "unknown-field", /no targetRef/);
    refused({ mtls: { mode: "STRICT", strict: true } }, "unknown-field", /spec\.mtls\.strict/);
    refused([], "invalid-spec", /spec must be a map/);
  });

  it("apiVersion and creationTimestamp", () => {
    assert.equal(pa(mode("STRICT"), { apiVersion: "security.istio.io/v1beta1" }).mode, "STRICT");
    refused(mode("STRICT"), "invalid-api-version", /security\.istio\.io\/v1alpha1/, {
      apiVersion: "security.istio.io/v1alpha1",
    });
    refused(mode("STRICT"), "invalid-creation-timestamp", /not an RFC 3339 time/, { created: "yesterday" });
    refused(mode("STRICT"), "invalid-creation-timestamp", /RFC 3339/, { created: "2024-13-45T00:00:00Z" });
    assert.equal(
      pa(mode("STRICT"), { created: "2024-01-01T00:00:09Z" }).created,
      Date.UTC(2024, 0, 1, 0, 0, 9),
    );
    assert.equal(pa(mode("STRICT")).created, undefined);
  });

  it("the model: ref, selector, mode, ports", () => {
    const p = pa(
      { selector: sel({ app: "foo" }), ...mode("STRICT"), portLevelMtls: { 8080: { mode: "PERMISSIVE" } } },
      { name: "foo" },
    );
    assert.deepEqual(p.ref, {
      kind: "PeerAuthentication",
      namespace: "my-ns",
      name: "foo",
      source: { file: FILE, line: 7 },
    });
    assert.equal(p.mode, "STRICT");
    assert.ok(p.selector?.matches({ app: "foo", x: "y" }));
    assert.ok(!p.selector?.matches({ app: "bar" }));
    assert.deepEqual([...p.portLevel], [[8080, "PERMISSIVE"]]);
  });
});

describe("parsePeerAuthentication warnings", () => {
  function warnings(spec: unknown, o: PaOptions = {}): string[] {
    const diag = new Diagnostics();
    pa(spec, o, diag);
    for (const w of diag.warnings) {
      assert.deepEqual(w.source, { file: FILE, line: 7 });
      assert.match(w.object ?? "", /^PeerAuthentication /);
    }
    return diag.warnings.map((w) => `${w.code}: ${w.message}`);
  }

  it("mtls-not-strict for DISABLE and PERMISSIVE, at policy and port level; none for STRICT or UNSET", () => {
    assert.deepEqual(warnings(mode("STRICT")), []);
    assert.deepEqual(warnings({}), []);
    const [d] = warnings(mode("DISABLE"));
    assert.match(d ?? "", /^mtls-not-strict: mtls\.mode DISABLE: plaintext connections are accepted/);
    const [p] = warnings(mode("PERMISSIVE"));
    assert.match(p ?? "", /^mtls-not-strict: mtls\.mode PERMISSIVE/);
    const ports = warnings({
      selector: sel({ app: "foo" }),
      ...mode("STRICT"),
      portLevelMtls: { 9090: { mode: "PERMISSIVE" }, 80: { mode: "DISABLE" }, 443: { mode: "STRICT" } },
    });
    assert.deepEqual(ports.length, 1);
    assert.match(ports[0] ?? "", /portLevelMtls\[80\] DISABLE, portLevelMtls\[9090\] PERMISSIVE:/);
  });

  it("root-namespace selector: ignored, said once (not also mtls-not-strict)", () => {
    const w = warnings({ selector: sel({ app: "foo" }), ...mode("DISABLE") }, { ns: "istio-system" });
    assert.equal(w.length, 1);
    assert.match(w[0] ?? "", /^root-namespace-selector-ignored: .*istio-system is ignored by Istio/);
  });

  it("CompiledPeerAuthn warns about shadowed mesh- and namespace-level policies", () => {
    const diag = new Diagnostics();
    const policies = [
      pa(mode("STRICT"), { ns: "istio-system", name: "a", created: "2024-01-01T00:00:00Z" }),
      pa(mode("DISABLE"), { ns: "istio-system", name: "b", created: "2024-01-02T00:00:00Z" }),
      pa(mode("STRICT"), { name: "x" }),
      pa(mode("PERMISSIVE"), { name: "y" }),
      pa(mode("PERMISSIVE"), { ns: "other", name: "y" }),
    ];
    new CompiledPeerAuthn(policies, MESH, diag);
    assert.deepEqual(
      diag.warnings.map((w) => [w.code, w.object, /older and wins/.test(w.message)]),
      [
        ["peerauthn-shadowed", "PeerAuthentication istio-system/b", true],
        ["peerauthn-shadowed", "PeerAuthentication my-ns/y", true],
      ],
    );
  });
});

describe("CompiledPeerAuthn = effectiveMtls (property)", () => {
  const NUM_RUNS = Number(process.env.TESSERA_FC_RUNS ?? 300);
  const NAMESPACES = ["istio-system", "a", "b"] as const;
  const MODES: MtlsMode[] = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];
  const PORTS = [80, 90, 8080] as const;
  const labelsArb = fc.record(
    { app: fc.constantFrom("x", "y"), tier: fc.constantFrom("web", "db") },
    { requiredKeys: [] },
  );
  const policyArb = fc.record({
    ns: fc.constantFrom(...NAMESPACES),
    name: fc.constantFrom("p", "q", "r", "s", "default"),
    selector: fc.option(labelsArb, { nil: undefined }),
    mode: fc.constantFrom(...MODES),
    created: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
    ports: fc.dictionary(fc.constantFrom("80", "90", "100"), fc.constantFrom(...MODES), { maxKeys: 3 }),
  });
  const policiesArb = fc.uniqueArray(policyArb, { maxLength: 10, selector: (p) => `${p.ns}/${p.name}` });
  const targetArb = fc.record({ namespace: fc.constantFrom(...NAMESPACES, "c"), labels: labelsArb });

  type Spec = typeof policyArb extends fc.Arbitrary<infer T> ? T : never;

  function build(specs: readonly Spec[]): PeerAuthentication[] {
    return specs.map(
      (s): PeerAuthentication => ({
        ref: { kind: "PeerAuthentication", namespace: s.ns, name: s.name, source: { file: FILE, line: 1 } },
        // Built directly (not parsed): empty selectors and port maps without selector are
        // kept, so the property also covers models the parser would refuse.
        selector:
          s.selector === undefined || Object.keys(s.selector).length === 0
            ? undefined
            : selectorFromRequirements(
                Object.entries(s.selector).map(([key, v]) => ({
                  key,
                  operator: "In",
                  values: [v as string],
                })),
              ),
        mode: s.mode,
        portLevel: new Map(Object.entries(s.ports).map(([k, m]) => [Number(k), m])),
        created: s.created === undefined ? undefined : 1_700_000_000_000 + s.created * 1000,
      }),
    );
  }

  it("gives the same answer for random policy sets, targets and ports (and caches consistently)", () => {
    fc.assert(
      fc.property(
        policiesArb,
        fc.array(targetArb, { minLength: 1, maxLength: 5 }),
        fc.constantFrom(...PORTS, 100),
        fc.boolean(),
        (specs, targets, port, customRoot) => {
          const mesh: MeshConfig = customRoot ? { ...MESH, rootNamespace: "a" } : MESH;
          const policies = build(specs);
          const compiled = new CompiledPeerAuthn(policies, mesh);
          for (const target of [...targets, ...targets]) {
            const want = effectiveMtls(policies, target, port, mesh);
            assert.deepEqual(compiled.effectiveMtls(target, port), want);
            for (const p of PORTS)
              assert.deepEqual(compiled.effectiveMtls(target, p), effectiveMtls(policies, target, p, mesh));
            // The order of the input does not change the answer.
            assert.deepEqual(effectiveMtls([...policies].reverse(), target, port, mesh), want);
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
