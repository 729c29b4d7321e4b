/**
 * CompiledAuthz against ReferenceAuthz on random policies and requests. Every value is drawn from
 * small pools (namespaces, principals, CIDRs, ports, paths, hosts, header values) so that rules
 * match often; every generated policy is valid input. Also: AUDIT and dry-run policies never
 * change a verdict.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CompiledAuthz } from "../../../src/policy/istio/authz/compiled.js";
import { type AuthzDecision, ReferenceAuthz } from "../../../src/policy/istio/authz/reference.js";
import {
  DEFAULT_MESH,
  type MeshConfig,
  type MeshRequest,
  type MeshTarget,
} from "../../../src/policy/istio/mesh.js";
import {
  authzPolicyObject,
  extAuthzArb,
  istioSource,
  maybe,
  type Obj,
  operationArbOf,
  parsePolicies,
  pathNormalizationArb,
  ruleArbOf,
  sub,
  uniqueByName,
} from "./arbitraries.js";

const ROOT = "istio-system";
const NAMESPACES = ["ns1", "ns2", ROOT] as const;
const POLICY_NAMES = ["a", "b", "c", "d"] as const;

const POOLS = {
  principals: [
    "cluster.local/ns/ns1/sa/a",
    "*",
    "cluster.local/ns/ns1/*",
    "*/sa/a",
    "td2/ns/ns1/sa/a",
    "*/ns/ns2/sa/b",
  ],
  requestPrincipals: ["*", "iss/sub"],
  namespaces: ["ns1", "ns2", "ns*", "*", "*2"],
  serviceAccounts: ["ns1/a", "a", "ns2/b", "b"],
  ipBlocks: ["10.0.0.0/8", "10.1.0.1", "10.2.0.0/16", "192.168.0.0/16", "::1/128"],
  trustDomains: ["cluster.local", "td2", "td*", "*"],
  hosts: ["example.com", "*.example.com", "EXAMPLE.com:*", "*"],
  ports: ["80", "8080", "9090"],
  methods: ["GET", "POST", "*"],
  paths: ["/admin*", "/api/{*}/x", "/public/{**}", "*.txt", "/", "*", "/admin/x"],
} as const;

const CONDITIONS: readonly { key: string; values: readonly string[] }[] = [
  { key: "request.headers[x-foo]", values: ["foo", "*", "ba*"] },
  { key: "source.ip", values: ["10.0.0.0/8", "10.2.0.1"] },
  { key: "remote.ip", values: ["10.0.0.0/8"] },
  { key: "source.namespace", values: ["ns1", "ns*"] },
  { key: "source.principal", values: ["cluster.local/ns/ns1/sa/a", "*"] },
  { key: "source.serviceAccount", values: ["ns1/a", "b"] },
  { key: "destination.ip", values: ["10.1.0.2", "10.0.0.0/8"] },
  { key: "destination.port", values: ["80", "8080"] },
  { key: "connection.sni", values: ["*.example.com", "*"] },
  { key: "request.auth.principal", values: ["*"] },
  { key: "request.auth.claims[iss]", values: ["x"] },
  { key: "experimental.envoy.filters.a.b[c]", values: ["d"] },
];

const sourceArb: fc.Arbitrary<Obj> = fc
  .record({
    principals: maybe(sub(POOLS.principals)),
    notPrincipals: maybe(sub(POOLS.principals)),
    requestPrincipals: maybe(sub(POOLS.requestPrincipals)),
    notRequestPrincipals: maybe(sub(POOLS.requestPrincipals)),
    namespaces: maybe(sub(POOLS.namespaces)),
    notNamespaces: maybe(sub(POOLS.namespaces)),
    serviceAccounts: maybe(sub(POOLS.serviceAccounts)),
    notServiceAccounts: maybe(sub(POOLS.serviceAccounts)),
    ipBlocks: maybe(sub(POOLS.ipBlocks)),
    notIpBlocks: maybe(sub(POOLS.ipBlocks)),
    remoteIpBlocks: maybe(sub(POOLS.ipBlocks)),
    notRemoteIpBlocks: maybe(sub(POOLS.ipBlocks)),
    trustDomains: maybe(sub(POOLS.trustDomains)),
    notTrustDomains: maybe(sub(POOLS.trustDomains)),
  })
  .map((s) => istioSource(s, () => ({ ipBlocks: ["10.0.0.0/8"] })));

const conditionArb: fc.Arbitrary<Obj> = fc
  .record({
    c: fc.constantFrom(...CONDITIONS),
    positive: fc.boolean(),
    negative: fc.boolean(),
    seed: fc.nat(),
  })
  .map(({ c, positive, negative, seed }) => {
    const pick = (n: number) => [c.values[n % c.values.length] as string];
    const out: Obj = { key: c.key };
    if (positive || !negative) out.values = pick(seed);
    if (negative) out.notValues = pick(seed + 1);
    return out;
  });

const ruleArb = ruleArbOf(
  sourceArb,
  operationArbOf(POOLS, () => ({ ports: ["8080"] })),
  conditionArb,
);

const policyArb: fc.Arbitrary<Obj> = fc
  .record({
    namespace: fc.constantFrom(...NAMESPACES),
    name: fc.constantFrom(...POLICY_NAMES),
    action: fc.constantFrom("ALLOW", "ALLOW", "DENY", "DENY", "CUSTOM", "AUDIT"),
    provider: fc.constantFrom("ext-authz", "ext-authz", "other"),
    selector: fc.constantFrom(
      undefined,
      undefined,
      { matchLabels: { app: "a" } },
      { matchLabels: { version: "v1" } },
      {},
    ),
    targetRef: fc.constantFrom(undefined, undefined, undefined, undefined, undefined, "gw", "other-gw"),
    rules: fc.option(fc.array(ruleArb, { minLength: 1, maxLength: 3 }), { freq: 6, nil: undefined }),
    dry: fc.nat(9),
  })
  .map(({ dry, ...p }) => authzPolicyObject({ ...p, dryRun: dry === 0 }));

const policiesArb = uniqueByName(policyArb, 6);

const targetArb: fc.Arbitrary<MeshTarget> = fc
  .record({
    namespace: fc.constantFrom("ns1", "ns2", ROOT),
    app: fc.constantFrom("a", "b", undefined),
    version: fc.constantFrom("v1", "v2", undefined),
    gateway: fc.constantFrom(undefined, undefined, undefined, "gw"),
    ip: fc.constantFrom("10.1.0.2", undefined),
  })
  .map((t) => {
    const labels: Record<string, string> = {};
    if (t.app) labels.app = t.app;
    if (t.version) labels.version = t.version;
    if (t.gateway) labels["gateway.networking.k8s.io/gateway-name"] = t.gateway;
    return { namespace: t.namespace, labels, ...(t.ip ? { ip: t.ip } : {}) };
  });

const requestArb: fc.Arbitrary<MeshRequest> = fc
  .record({
    principal: fc.constantFrom(
      "cluster.local/ns/ns1/sa/a",
      "cluster.local/ns/ns2/sa/b",
      "td2/ns/ns1/sa/a",
      "cluster.local/ns/ns1/sa/a/k/v",
      "other/ns/ns2/sa/b",
      "cluster.local/ns/ns12/sa/b",
      undefined,
    ),
    sourceIp: fc.constantFrom("10.1.0.1", "10.2.0.1", "192.168.1.1", "::1", undefined),
    port: fc.constantFrom(80, 8080, 9090),
    protocol: fc.constantFrom("http", "tcp") as fc.Arbitrary<"http" | "tcp">,
    method: fc.constantFrom("GET", "POST"),
    path: fc.constantFrom(
      "/admin/x",
      "/api/v1/x",
      "/public/../admin/x",
      "/public/a/b",
      "/a.txt?x=1",
      "/",
      "/%61dmin/x",
      "/API//x",
    ),
    host: fc.constantFrom("example.com", "a.example.com:80", "EXAMPLE.com:8000", undefined),
    header: fc.constantFrom("foo", "bar", undefined),
    destinationIp: fc.constantFrom("10.1.0.2", undefined),
    sni: fc.constantFrom(undefined, "a.example.com"),
    extAuthz: extAuthzArb,
  })
  .map((r) => {
    const req: Record<string, unknown> = { principal: r.principal, port: r.port, protocol: r.protocol };
    if (r.sourceIp) req.sourceIp = r.sourceIp;
    if (r.protocol === "http") {
      req.method = r.method;
      req.path = r.path;
      if (r.host) req.host = r.host;
      if (r.header) req.headers = { "x-foo": r.header };
    }
    if (r.destinationIp) req.destinationIp = r.destinationIp;
    if (r.sni) req.sni = r.sni;
    if (r.extAuthz) req.extAuthz = r.extAuthz;
    return req as unknown as MeshRequest;
  });

const meshArb: fc.Arbitrary<MeshConfig> = fc
  .record({
    profile: fc.constantFrom("sidecar", "sidecar", "ztunnel") as fc.Arbitrary<"sidecar" | "ztunnel">,
    aliases: fc.constantFrom([], ["td2"], ["td*"]),
    pathNormalization: pathNormalizationArb,
    extAuthz: extAuthzArb,
  })
  .map((m) => ({
    ...DEFAULT_MESH,
    rootNamespace: ROOT,
    profile: m.profile,
    trustDomainAliases: m.aliases,
    pathNormalization: m.pathNormalization,
    extAuthz: m.extAuthz,
  }));

const scenarioArb = fc.record({
  policies: policiesArb,
  mesh: meshArb,
  queries: fc.array(fc.tuple(targetArb, requestArb), { minLength: 1, maxLength: 8 }),
});

const essentials = (d: AuthzDecision) => ({
  allowed: d.allowed,
  step: d.step,
  policy: d.policy ? `${d.policy.namespace}/${d.policy.name}` : undefined,
  rule: d.rule,
});

const NUM_RUNS = Number(process.env.TESSERA_FC_RUNS ?? 400);

describe("Istio authz: CompiledAuthz = ReferenceAuthz", () => {
  it("every generated policy is valid input", () => {
    fc.assert(
      fc.property(policiesArb, (gen) => {
        parsePolicies(gen);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("the same decision for every request (allowed, step, policy, rule, audits, provider, detail)", () => {
    let allowed = 0;
    const steps = new Set<string>();
    fc.assert(
      fc.property(scenarioArb, ({ policies: gen, mesh, queries }) => {
        const policies = parsePolicies(gen);
        const reference = new ReferenceAuthz(policies, mesh);
        const compiled = new CompiledAuthz(policies, mesh);
        for (const [target, request] of queries) {
          const want = reference.evaluate(target, request);
          const got = compiled.evaluate(target, request);
          assert.deepEqual(essentials(got), essentials(want));
          assert.deepEqual(got, want);
          // A second call takes the cached plan.
          assert.deepEqual(compiled.evaluate(target, request), want);
          if (want.allowed) allowed++;
          steps.add(want.step);
        }
      }),
      { numRuns: NUM_RUNS },
    );
    // The pools are small enough that every outcome shows up.
    assert.ok(allowed > 0);
    assert.deepEqual([...steps].sort(), ["allow", "custom", "deny", "no-allow-match", "no-allow-policy"]);
  });

  it("AUDIT policies and dry-run policies never change the verdict", () => {
    fc.assert(
      fc.property(scenarioArb, ({ policies: gen, mesh, queries }) => {
        const policies = parsePolicies(gen);
        const enforced = policies.filter((p) => p.action !== "AUDIT" && !p.dryRun);
        const all = new ReferenceAuthz(policies, mesh);
        const without = new ReferenceAuthz(enforced, mesh);
        for (const [target, request] of queries) {
          const a = all.evaluate(target, request);
          const b = without.evaluate(target, request);
          assert.deepEqual(essentials(a), essentials(b));
          assert.deepEqual(b.audits, []);
        }
      }),
      { numRuns: Math.ceil(NUM_RUNS / 2) },
    );
  });
});
