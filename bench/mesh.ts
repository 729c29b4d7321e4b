/**
 * Istio benchmark: AuthorizationPolicy at scale on a synthetic mesh.
 *
 *   npm run bench                            (with the other benchmarks)
 *   node --expose-gc dist/bench/mesh.js      10k pods, 1,000 AuthorizationPolicies, 200k requests
 *   node --expose-gc dist/bench/mesh.js --quick            1k pods, 100 policies, 50k requests
 *   node --expose-gc dist/bench/mesh.js --pods 10000 --policies 1000 --flows 200000
 *
 * The cluster (seeded, so always the same): pods in workloads of 10 replicas, 10 workloads per
 * namespace, every namespace labelled `istio-injection: enabled`, one ServiceAccount and one
 * Service per workload (ports named `http`, `grpc`, `http-*`, `tcp`, `tcp-*`, some container ports
 * left undeclared so the request's protocol decides), a mesh-wide STRICT PeerAuthentication plus
 * a few namespace and workload ones, and AuthorizationPolicies (about 10 per namespace, a few in
 * the root namespace) mixing ALLOW, DENY, AUDIT and a rare CUSTOM. No NetworkPolicy: every flow
 * passes L3/L4 and reaches the mesh.
 *
 * Measured: load (clusterFromObjects), the full compile, the AuthorizationPolicy part alone
 * (parse, CompiledAuthz, the per-workload plans built on first use), `engine.decide` on random
 * L7 requests (per call with hrtime, timer cost subtracted, and batch means), CompiledAuthz.evaluate
 * alone on the same requests, and the reference evaluator (ReferenceAuthz) on the same requests,
 * with a full comparison of both evaluators' decisions.
 */

import { Diagnostics } from "../src/kube/errors.js";
import { clusterFromObjects } from "../src/kube/index.js";
import type { Pod } from "../src/kube/objects.js";
import { compile } from "../src/policy/engine.js";
import { CompiledAuthz } from "../src/policy/istio/authz/compiled.js";
import type { AuthorizationPolicy } from "../src/policy/istio/authz/model.js";
import { parseAuthorizationPolicy } from "../src/policy/istio/authz/parse.js";
import { type AuthzDecision, ReferenceAuthz } from "../src/policy/istio/authz/reference.js";
import type { MeshRequest, MeshTarget } from "../src/policy/istio/mesh.js";
import type { Flow, HttpRequest } from "../src/policy/model.js";
import {
  formatCount,
  formatMs,
  formatNs,
  formatRatio,
  formatShare,
  formatSize,
  gc,
  type LatencyFigures,
  median,
  medianOfRounds,
  quantileSorted,
  type RoundLatency,
  table,
  timed,
  timeRound,
  timerOverheadNs,
} from "./stats.js";
import { mulberry32, pick, type Rng, randInt, suffix, TIERS, type Tier } from "./synthetic.js";

const TARGET_DECIDE_P50_NS = 10_000;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  pods: number;
  policies: number;
  flows: number;
  /** load + compile rounds (median). */
  compileRounds: number;
  /** At most this many rounds of decide / evaluate after a warm-up (median). */
  rounds: number;
  /** Time allowed for the reference evaluator (ms); fewer requests when it is slower. */
  referenceBudgetMs: number;
  /** Time allowed for the timed rounds of decide, of evaluate, of each part (ms): fewer rounds when slower. */
  decideBudgetMs: number;
  evaluateBudgetMs: number;
  partBudgetMs: number;
}

function parseArgs(argv: readonly string[]): Options {
  const quick = argv.includes("--quick");
  const num = (flag: string, fallback: number): number => {
    const at = argv.indexOf(flag);
    if (at < 0) return fallback;
    const m = /^(\d+)(k?)$/i.exec((argv[at + 1] ?? "").trim());
    if (!m) throw new Error(`${flag}: "${argv[at + 1] ?? ""}" is not a count (e.g. 10000 or 10k)`);
    return Number(m[1]) * (m[2] ? 1000 : 1);
  };
  return {
    quick,
    pods: num("--pods", quick ? 1000 : 10_000),
    policies: num("--policies", quick ? 100 : 1000),
    flows: num("--flows", quick ? 50_000 : 200_000),
    compileRounds: quick ? 3 : 5,
    rounds: quick ? 3 : 5,
    referenceBudgetMs: quick ? 2000 : 30_000,
    decideBudgetMs: quick ? 7000 : 70_000,
    evaluateBudgetMs: quick ? 2000 : 20_000,
    partBudgetMs: quick ? 1200 : 6000,
  };
}

function log(message: string): void {
  process.stderr.write(`  [mesh] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// The synthetic mesh

const ROOT = "istio-system";
const TRUST_DOMAIN = "cluster.local";
const GATEWAY_SA = "istio-ingressgateway-service-account";
const GATEWAY_PRINCIPAL = `${TRUST_DOMAIN}/ns/${ROOT}/sa/${GATEWAY_SA}`;
const GATEWAY_IDENTITY = `spiffe://${GATEWAY_PRINCIPAL}`;
const CUSTOM_PROVIDER = "ext-authz-grpc";

const TEAMS = [
  "payments",
  "checkout",
  "search",
  "identity",
  "catalog",
  "shipping",
  "analytics",
  "ml",
  "growth",
  "media",
  "billing",
  "support",
  "ads",
  "risk",
  "fleet",
  "pricing",
  "loyalty",
  "social",
  "maps",
  "platform",
];
const ENVS = ["prod", "staging", "dev", "qa", "canary"];
const NOUNS = [
  "orders",
  "cart",
  "users",
  "invoices",
  "ledger",
  "profile",
  "inventory",
  "quotes",
  "reviews",
  "notify",
  "session",
  "tokens",
  "gateway",
  "images",
  "reports",
  "feeds",
];

interface PortDef {
  /** Container port name. */
  readonly name: string;
  readonly containerPort: number;
  /** The Service port that declares it (its name gives the protocol); absent: undeclared. */
  readonly service?: { readonly name: string; readonly port: number };
  /** How the sidecar treats it (for the policies' choices; the engine works it out itself). */
  readonly l7: boolean;
}

const TIER_PORTS: Record<Tier, readonly PortDef[]> = {
  web: [
    { name: "http", containerPort: 8080, service: { name: "http", port: 80 }, l7: true },
    { name: "metrics", containerPort: 9090, service: { name: "http-metrics", port: 9090 }, l7: true },
  ],
  api: [
    { name: "http", containerPort: 8080, service: { name: "http", port: 80 }, l7: true },
    { name: "grpc", containerPort: 50051, service: { name: "grpc", port: 50051 }, l7: true },
    { name: "metrics", containerPort: 9090, l7: true },
  ],
  db: [
    { name: "postgres", containerPort: 5432, service: { name: "tcp-postgres", port: 5432 }, l7: false },
    { name: "metrics", containerPort: 9187, l7: true },
  ],
  cache: [
    { name: "redis", containerPort: 6379, service: { name: "tcp", port: 6379 }, l7: false },
    { name: "metrics", containerPort: 9121, service: { name: "http-metrics", port: 9121 }, l7: true },
  ],
  worker: [
    { name: "health", containerPort: 8081, service: { name: "http-health", port: 8081 }, l7: true },
    { name: "metrics", containerPort: 9090, l7: true },
  ],
};

interface MeshNamespace {
  readonly name: string;
  readonly index: number;
  readonly team: string;
  readonly env: string;
  readonly workloads: MeshWorkload[];
}

interface MeshWorkload {
  readonly ns: MeshNamespace;
  readonly app: string;
  readonly noun: string;
  readonly tier: Tier;
  readonly serviceAccount: string;
  readonly version: string;
  readonly ports: readonly PortDef[];
}

export interface SyntheticMesh {
  readonly objects: object[];
  readonly namespaces: readonly MeshNamespace[];
  readonly workloads: readonly MeshWorkload[];
  readonly pods: number;
  readonly authorizationPolicies: number;
  readonly peerAuthentications: number;
  readonly byAction: Record<string, number>;
}

const principalOf = (w: MeshWorkload) => `${TRUST_DOMAIN}/ns/${w.ns.name}/sa/${w.serviceAccount}`;

function sample<T>(rng: Rng, items: readonly T[], k: number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < k && pool.length > 0) out.push(pool.splice(randInt(rng, pool.length), 1)[0] as T);
  return out;
}

/** Builds the mesh cluster; the same options always give the same objects. */
export function syntheticMesh(options: { pods: number; policies: number; seed?: number }): SyntheticMesh {
  const rng = mulberry32(options.seed ?? 0x15710);
  const perWorkload = 10;
  // The ingress gateway (in the root namespace, no sidecar) takes one workload's share of pods.
  const gatewayPods = Math.min(perWorkload, Math.max(0, options.pods - perWorkload));
  const appPods = options.pods - gatewayPods;
  const workloadCount = Math.ceil(appPods / perWorkload);
  const nsCount = Math.max(1, Math.ceil((workloadCount + (gatewayPods > 0 ? 1 : 0)) / 10));
  const objects: object[] = [];

  objects.push({
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: ROOT, labels: { "kubernetes.io/metadata.name": ROOT } },
  });
  const namespaces: MeshNamespace[] = [];
  for (let i = 0; i < nsCount; i++) {
    const team = TEAMS[i % TEAMS.length] as string;
    const env = ENVS[Math.floor(i / TEAMS.length) % ENVS.length] as string;
    const round = Math.floor(i / (TEAMS.length * ENVS.length));
    const name = round === 0 ? `${team}-${env}` : `${team}-${env}-${round}`;
    namespaces.push({ name, index: i, team, env, workloads: [] });
    objects.push({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name, labels: { team, env, "istio-injection": "enabled" } },
    });
  }

  // Workloads, round-robin over namespaces; one ServiceAccount each (a few run as `default`).
  const workloads: MeshWorkload[] = [];
  for (let w = 0; w < workloadCount; w++) {
    const ns = namespaces[w % nsCount] as MeshNamespace;
    const tier = pick(rng, TIERS);
    const noun = pick(rng, NOUNS);
    let app = `${noun}-${tier}`;
    if (ns.workloads.some((x) => x.app === app)) app = `${app}-${w.toString(36)}`;
    const wl: MeshWorkload = {
      ns,
      app,
      noun,
      tier,
      serviceAccount: rng() < 0.08 ? "default" : app,
      version: `v${1 + randInt(rng, 3)}`,
      ports: TIER_PORTS[tier],
    };
    ns.workloads.push(wl);
    workloads.push(wl);
  }

  // Pods (IPs 10.<ns+1>.x.y), Services.
  let pods = 0;
  for (let r = 0; r < gatewayPods; r++) {
    const ip = `10.0.0.${r + 1}`;
    objects.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `istio-ingressgateway-7d4f8b9c6-${suffix(rng, 5)}`,
        namespace: ROOT,
        labels: {
          app: "istio-ingressgateway",
          istio: "ingressgateway",
          "sidecar.istio.io/inject": "false",
          "pod-template-hash": "7d4f8b9c6",
        },
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "ReplicaSet",
            name: "istio-ingressgateway-7d4f8b9c6",
            uid: "istio-ingressgateway-7d4f8b9c6-uid",
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        serviceAccountName: GATEWAY_SA,
        containers: [
          {
            name: "istio-proxy",
            image: "docker.io/istio/proxyv2:1.24.0",
            ports: [
              { name: "http2", containerPort: 8080, protocol: "TCP" },
              { name: "https", containerPort: 8443, protocol: "TCP" },
            ],
          },
        ],
      },
      status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
    });
    pods++;
  }
  const podsInNs = new Int32Array(nsCount);
  for (const [w, wl] of workloads.entries()) {
    const replicaSet = `${wl.app}-${suffix(rng, 10)}`;
    const hash = replicaSet.slice(wl.app.length + 1);
    const replicas = Math.min(perWorkload, appPods - w * perWorkload);
    for (let r = 0; r < replicas; r++) {
      const k = podsInNs[wl.ns.index] as number;
      podsInNs[wl.ns.index] = k + 1;
      const ip = `10.${(wl.ns.index % 250) + 1}.${Math.floor(k / 250) + 16 * Math.floor(wl.ns.index / 250)}.${(k % 250) + 1}`;
      objects.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: `${replicaSet}-${suffix(rng, 5)}`,
          namespace: wl.ns.name,
          labels: { app: wl.app, tier: wl.tier, version: wl.version, "pod-template-hash": hash },
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: replicaSet,
              uid: `${replicaSet}-uid`,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: {
          serviceAccountName: wl.serviceAccount,
          containers: [
            {
              name: wl.app,
              image: `registry.example.com/${wl.ns.team}/${wl.app}:${wl.version}.0`,
              ports: wl.ports.map((p) => ({ name: p.name, containerPort: p.containerPort, protocol: "TCP" })),
            },
          ],
        },
        status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
      });
      pods++;
    }
    objects.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: wl.app, namespace: wl.ns.name },
      spec: {
        selector: { app: wl.app },
        ports: wl.ports.flatMap((p) =>
          p.service
            ? [{ name: p.service.name, port: p.service.port, targetPort: p.name, protocol: "TCP" }]
            : [],
        ),
      },
    });
  }

  // PeerAuthentication: STRICT mesh-wide; some namespaces PERMISSIVE; some workloads with
  // port-level exceptions for their metrics port.
  let peerAuthentications = 0;
  const peerAuthn = (namespace: string, name: string, spec: object) => {
    objects.push({
      apiVersion: "security.istio.io/v1",
      kind: "PeerAuthentication",
      metadata: { name, namespace },
      spec,
    });
    peerAuthentications++;
  };
  peerAuthn(ROOT, "default", { mtls: { mode: "STRICT" } });
  for (const ns of namespaces) {
    const r = rng();
    if (r < 0.08) peerAuthn(ns.name, "default", { mtls: { mode: "PERMISSIVE" } });
    else if (r < 0.12) peerAuthn(ns.name, "default", { mtls: { mode: "STRICT" } });
    if (rng() < 0.15 && ns.workloads.length > 0) {
      const wl = pick(rng, ns.workloads);
      const metrics = wl.ports.find((p) => p.name === "metrics") as PortDef;
      peerAuthn(ns.name, `${wl.app}-metrics`, {
        selector: { matchLabels: { app: wl.app } },
        mtls: { mode: "STRICT" },
        portLevelMtls: { [String(metrics.containerPort)]: { mode: rng() < 0.5 ? "PERMISSIVE" : "DISABLE" } },
      });
    }
  }

  // AuthorizationPolicies: a few in the root namespace, the rest spread over the namespaces.
  const byAction: Record<string, number> = {};
  let authorizationPolicies = 0;
  const authz = (namespace: string, name: string, spec: Record<string, unknown>, dryRun = false) => {
    objects.push({
      apiVersion: "security.istio.io/v1",
      kind: "AuthorizationPolicy",
      metadata: {
        name,
        namespace,
        ...(dryRun ? { annotations: { "istio.io/dry-run": "true" } } : {}),
      },
      spec,
    });
    const action = (spec.action as string | undefined) ?? "ALLOW";
    byAction[action] = (byAction[action] ?? 0) + 1;
    authorizationPolicies++;
  };
  const rootPolicies = Math.min(options.policies, 4);
  const rootSpecs: [string, Record<string, unknown>][] = [
    [
      "deny-debug-endpoints",
      {
        action: "DENY",
        rules: [
          {
            from: [{ source: { notNamespaces: [ROOT] } }],
            to: [{ operation: { paths: ["/debug/*", "/internal/{**}"], ports: ["8080", "8081"] } }],
          },
        ],
      },
    ],
    ["audit-deletes", { action: "AUDIT", rules: [{ to: [{ operation: { methods: ["DELETE"] } }] }] }],
    [
      "deny-blocked-clients",
      {
        action: "DENY",
        rules: [
          {
            to: [{ operation: { notPorts: ["5432", "6379"] } }],
            when: [{ key: "request.headers[x-blocked]", values: ["*"] }],
          },
        ],
      },
    ],
    [
      "databases-require-identity",
      {
        action: "ALLOW",
        selector: { matchLabels: { tier: "db" } },
        rules: [
          {
            from: [{ source: { principals: [`${TRUST_DOMAIN}/*`] } }],
            to: [{ operation: { ports: ["5432"] } }],
          },
          { from: [{ source: { principals: [GATEWAY_PRINCIPAL] } }] },
        ],
      },
    ],
  ];
  for (const [name, spec] of rootSpecs.slice(0, rootPolicies)) authz(ROOT, name, spec);

  const rest = options.policies - rootPolicies;
  const counts = new Int32Array(nsCount);
  for (let i = 0; i < rest; i++) counts[i % nsCount] = (counts[i % nsCount] as number) + 1;
  // Uneven namespaces: move policies around, keeping at least 2 everywhere.
  for (let i = 0; i < nsCount * 3; i++) {
    const from = randInt(rng, nsCount);
    const to = randInt(rng, nsCount);
    if ((counts[from] as number) > 2) {
      counts[from] = (counts[from] as number) - 1;
      counts[to] = (counts[to] as number) + 1;
    }
  }
  let customLeft = Math.max(1, Math.round(options.policies / 100));
  for (const ns of namespaces) {
    const n = counts[ns.index] as number;
    const names = new Set<string>();
    const uniqueName = (base: string) => {
      let name = base;
      for (let k = 2; names.has(name); k++) name = `${base}-${k}`;
      names.add(name);
      return name;
    };
    for (let i = 0; i < n; i++) {
      const p = policySpec(rng, ns, namespaces, i, customLeft > 0 && rng() < 0.015 * 1.5);
      if (p.spec.action === "CUSTOM") customLeft--;
      authz(ns.name, uniqueName(p.name), p.spec, p.dryRun);
    }
  }
  return {
    objects,
    namespaces,
    workloads,
    pods,
    authorizationPolicies,
    peerAuthentications,
    byAction,
  };
}

function l7Ports(w: MeshWorkload): string[] {
  return w.ports.filter((p) => p.l7 && p.name !== "metrics").map((p) => String(p.containerPort));
}

function mainPort(w: MeshWorkload): string {
  return String((w.ports[0] as PortDef).containerPort);
}

function callers(rng: Rng, ns: MeshNamespace, all: readonly MeshNamespace[], k: number): MeshWorkload[] {
  const out: MeshWorkload[] = [];
  for (let i = 0; i < k; i++) {
    const from = rng() < 0.7 ? ns : pick(rng, all);
    if (from.workloads.length > 0) out.push(pick(rng, from.workloads));
  }
  return out;
}

function pathsFor(rng: Rng, w: MeshWorkload): string[] {
  const choices = [
    `/api/v1/${w.noun}/*`,
    `/api/v1/${w.noun}/{*}`,
    `/api/v{*}/${w.noun}/{*}/items/{**}`,
    `/api/v2/${w.noun}`,
    "/api/*",
    "/healthz",
    "*.json",
    `/${w.noun}/{**}`,
  ];
  return sample(rng, choices, 1 + randInt(rng, 3));
}

const METHOD_SETS = [["GET"], ["GET", "HEAD"], ["GET", "POST"], ["GET", "POST", "PUT", "PATCH"], ["POST"]];

/** One ALLOW rule for workload w (the policy's subject). */
function allowRule(rng: Rng, w: MeshWorkload, ns: MeshNamespace, all: readonly MeshNamespace[]): object {
  const other = pick(rng, all);
  const l7 = l7Ports(w);
  const r = rng();
  if (!w.ports[0]?.l7 && r < 0.5) {
    // Opaque TCP (databases, caches): identities and ports only.
    return rng() < 0.5
      ? { from: [{ source: { namespaces: [ns.name] } }], to: [{ operation: { ports: [mainPort(w)] } }] }
      : {
          from: [{ source: { principals: callers(rng, ns, all, 1 + randInt(rng, 3)).map(principalOf) } }],
          to: [{ operation: { ports: [mainPort(w)] } }],
        };
  }
  if (r < 0.3) {
    return {
      from: [{ source: { principals: callers(rng, ns, all, 1 + randInt(rng, 3)).map(principalOf) } }],
      to: [{ operation: { methods: pick(rng, METHOD_SETS), paths: pathsFor(rng, w) } }],
    };
  }
  if (r < 0.45) {
    return {
      from: [{ source: { namespaces: [ns.name, `${ns.team}-*`] } }],
      to: [{ operation: { methods: ["GET", "HEAD"], notPaths: ["/admin/*", "/internal/{**}"] } }],
    };
  }
  if (r < 0.55) {
    const rule: Record<string, unknown> = {
      from: [{ source: { principals: [GATEWAY_PRINCIPAL] } }],
      to: [
        {
          operation: {
            hosts: [`${w.app}.example.com`, `${w.app}.example.com:*`, "*.api.example.com"],
            ...(l7.length > 0 ? { ports: l7 } : {}),
          },
        },
      ],
    };
    if (rng() < 0.5) rule.when = [{ key: "request.headers[x-env]", values: [ns.env] }];
    return rule;
  }
  if (r < 0.65) {
    return {
      from: [
        {
          source: {
            principals: [`${TRUST_DOMAIN}/ns/${other.name}/*`],
            notPrincipals: [`${TRUST_DOMAIN}/ns/${other.name}/sa/default`],
          },
        },
      ],
      to: [{ operation: { notMethods: ["DELETE"], paths: ["/api/*"] } }],
    };
  }
  if (r < 0.72) {
    return {
      from: [{ source: { namespaces: [ns.name] } }],
      when: [
        { key: "request.headers[x-tenant]", values: ["acme-*", "globex"] },
        { key: "request.headers[x-env]", notValues: ["dev"] },
      ],
    };
  }
  if (r < 0.78) {
    return {
      from: [{ source: { ipBlocks: ["10.0.0.0/8"], notIpBlocks: [`10.${ns.index + 1}.0.0/16`] } }],
      to: [{ operation: { ports: l7.length > 0 ? l7 : [mainPort(w)], methods: ["GET"] } }],
    };
  }
  if (r < 0.84) {
    return {
      from: [
        {
          source: {
            serviceAccounts: callers(rng, ns, all, 2).map((c) =>
              c.ns === ns ? c.serviceAccount : `${c.ns.name}/${c.serviceAccount}`,
            ),
          },
        },
      ],
      to: [{ operation: { methods: ["GET", "POST"] } }],
    };
  }
  if (r < 0.9) {
    return {
      when: [
        { key: "source.namespace", values: [ns.name, `${other.team}-*`] },
        { key: "destination.port", values: ["8080", "50051", "5432"] },
      ],
    };
  }
  if (r < 0.95) {
    const metrics = w.ports.find((p) => p.name === "metrics") as PortDef;
    return {
      from: [{ source: { namespaces: [(all[0] as MeshNamespace).name] } }],
      to: [{ operation: { ports: [String(metrics.containerPort)], paths: ["/metrics"], methods: ["GET"] } }],
    };
  }
  return {
    when: [{ key: "source.principal", values: callers(rng, ns, all, 2).map(principalOf) }],
    to: [{ operation: { hosts: [`${w.app}`, `${w.app}.${ns.name}.svc.cluster.local`, `${w.app}:*`] } }],
  };
}

function denyRule(rng: Rng, w: MeshWorkload, ns: MeshNamespace, all: readonly MeshNamespace[]): object {
  const l7 = l7Ports(w);
  const ports = l7.length > 0 ? l7 : [mainPort(w)];
  const r = rng();
  if (r < 0.25) {
    return {
      from: [{ source: { notNamespaces: [ns.name, ROOT] } }],
      to: [{ operation: { paths: ["/admin/*", "/internal/{**}"], ports } }],
    };
  }
  if (r < 0.45) {
    return {
      from: [{ source: { notPrincipals: callers(rng, ns, all, 2).map(principalOf) } }],
      to: [{ operation: { methods: ["DELETE", "PATCH"], ports } }],
    };
  }
  if (r < 0.6) {
    return {
      to: [{ operation: { ports } }],
      when: [{ key: "request.headers[x-debug]", values: ["*"] }],
    };
  }
  if (r < 0.72) return { from: [{ source: { notIpBlocks: ["10.0.0.0/8"] } }] };
  if (r < 0.85) {
    return {
      to: [{ operation: { hosts: ["*.internal.example.com", "admin.*"], ports } }],
    };
  }
  const other = pick(rng, all);
  return {
    from: [{ source: { namespaces: [`${other.team}-dev`, "*-qa"] } }],
    to: [{ operation: { notPorts: ["9090", "9121", "9187"] } }],
  };
}

function policySpec(
  rng: Rng,
  ns: MeshNamespace,
  all: readonly MeshNamespace[],
  i: number,
  custom: boolean,
): { name: string; spec: Record<string, unknown>; dryRun: boolean } {
  const w = pick(rng, ns.workloads);
  // Selector: one workload mostly, sometimes a tier, sometimes the whole namespace.
  const s = rng();
  const [selector, subject] =
    s < 0.7
      ? [{ matchLabels: { app: w.app } }, w.app]
      : s < 0.85
        ? [{ matchLabels: { tier: w.tier } }, w.tier]
        : [undefined, "ns"];
  const withSelector = (spec: Record<string, unknown>) => (selector ? { selector, ...spec } : spec);
  const dryRun = rng() < 0.01;
  if (custom) {
    return {
      name: `ext-authz-${subject}`,
      spec: withSelector({
        action: "CUSTOM",
        provider: { name: CUSTOM_PROVIDER },
        rules: [{ to: [{ operation: { paths: ["/oauth2/*", "/login"], hosts: ["*.example.com"] } }] }],
      }),
      dryRun,
    };
  }
  if (i === 0 && rng() < 0.4) {
    return {
      name: "allow-same-namespace",
      spec: {
        action: "ALLOW",
        rules: [
          {
            from: [{ source: { namespaces: [ns.name] } }],
            to: [{ operation: { notPaths: ["/admin/*"] } }],
          },
        ],
      },
      dryRun: false,
    };
  }
  const r = rng();
  if (r < 0.6) {
    const rules = Array.from({ length: 1 + randInt(rng, 3) }, () => allowRule(rng, w, ns, all));
    return { name: `allow-${subject}`, spec: withSelector({ action: "ALLOW", rules }), dryRun };
  }
  if (r < 0.85) {
    const rules = Array.from({ length: 1 + randInt(rng, 2) }, () => denyRule(rng, w, ns, all));
    return { name: `deny-${subject}`, spec: withSelector({ action: "DENY", rules }), dryRun };
  }
  if (r < 0.97) {
    const rules =
      rng() < 0.6
        ? [{ to: [{ operation: { methods: ["POST", "PUT", "DELETE", "PATCH"], paths: ["/api/*"] } }] }]
        : [{ when: [{ key: "request.headers[x-tenant]", values: ["acme-*"] }] }];
    return { name: `audit-${subject}`, spec: withSelector({ action: "AUDIT", rules }), dryRun };
  }
  // Rare: allow everything, or allow nothing (an ALLOW without rules).
  return rng() < 0.6
    ? { name: `allow-all-${subject}`, spec: withSelector({ action: "ALLOW", rules: [{}] }), dryRun: false }
    : { name: `allow-nothing-${subject}`, spec: withSelector({ action: "ALLOW" }), dryRun: false };
}

// ---------------------------------------------------------------------------------------------
// Random L7 requests

const METHODS: readonly [string, number][] = [
  ["GET", 55],
  ["POST", 18],
  ["PUT", 7],
  ["DELETE", 5],
  ["PATCH", 5],
  ["HEAD", 5],
  ["OPTIONS", 5],
];
const METHOD_TABLE = METHODS.flatMap(([m, w]) => Array.from({ length: w }, () => m));

function randomPath(rng: Rng, w: MeshWorkload): string {
  const id = () => String(1 + randInt(rng, 99_999));
  const noun = rng() < 0.6 ? w.noun : pick(rng, NOUNS);
  const r = rng();
  let path: string;
  if (r < 0.3) path = `/api/v1/${noun}/${id()}`;
  else if (r < 0.45) path = `/api/v${1 + randInt(rng, 3)}/${noun}/${id()}/items/${id()}/details`;
  else if (r < 0.52) path = `/api/v2/${noun}`;
  else if (r < 0.58) path = "/healthz";
  else if (r < 0.63) path = "/metrics";
  else if (r < 0.68) path = `/admin/${pick(rng, ["users", "config", "flags"])}`;
  else if (r < 0.72) path = `/debug/pprof/${pick(rng, ["heap", "profile"])}`;
  else if (r < 0.76) path = `/internal/${noun}/${id()}`;
  else if (r < 0.8) path = `/static/js/app.${suffix(rng, 6)}.js`;
  else if (r < 0.84) path = `/${noun}/${id()}/export.json`;
  else if (r < 0.87) path = pick(rng, ["/login", "/oauth2/callback", "/oauth2/start"]);
  else if (r < 0.9) path = `//api/v1//${noun}/./${id()}`;
  else if (r < 0.92) path = `/api/v1/${noun}/../../admin/users`;
  else path = `/${noun}`;
  if (rng() < 0.15) path += `?page=${randInt(rng, 10)}&q=${suffix(rng, 4)}`;
  return path;
}

function randomHost(rng: Rng, w: MeshWorkload, port: number): string {
  const r = rng();
  if (r < 0.35) return `${w.app}.${w.ns.name}.svc.cluster.local`;
  if (r < 0.5) return `${w.app}.${w.ns.name}.svc.cluster.local:${port}`;
  if (r < 0.65) return w.app;
  if (r < 0.72) return `${w.app}:${port}`;
  if (r < 0.82) return `${w.app}.example.com`;
  if (r < 0.88) return `${pick(rng, NOUNS)}.api.example.com`;
  if (r < 0.92) return "Admin.Internal.Example.com";
  if (r < 0.95) return "admin.example.com";
  return `${w.app}.EXAMPLE.com:443`;
}

function randomHeaders(rng: Rng, grpc: boolean): Record<string, string> {
  const h: Record<string, string> = { "x-request-id": suffix(rng, 16), "user-agent": "bench/1.0" };
  if (rng() < 0.5) h["x-env"] = pick(rng, ENVS);
  if (rng() < 0.3) h["x-tenant"] = pick(rng, ["acme-eu", "acme-us", "globex", "initech", ""]);
  if (rng() < 0.3) h.authorization = `Bearer ${suffix(rng, 24)}`;
  if (rng() < 0.04) h["x-debug"] = rng() < 0.5 ? "1" : "";
  if (rng() < 0.01) h["x-blocked"] = "yes";
  if (grpc) h["content-type"] = "application/grpc";
  else if (rng() < 0.4) h["content-type"] = "application/json";
  return h;
}

function ipNumber(text: string): number {
  return text.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

/**
 * Random requests to application pods: the caller is a pod of the destination's namespace
 * (55%), any application pod (35%), the ingress gateway (6%), or a plaintext client outside the
 * cluster (4%); the port is one of the destination's
 * container ports (95%) or a random one; every flow carries an HTTP request, which the
 * destination's sidecar reads on HTTP ports only.
 */
function randomFlows(allPods: readonly Pod[], synth: SyntheticMesh, count: number, seed: number): Flow[] {
  const rng = mulberry32(seed);
  const pods = allPods.filter((p) => p.namespace !== ROOT);
  const gateways = allPods.filter((p) => p.namespace === ROOT);
  const byNamespace = new Map<string, Pod[]>();
  for (const pod of pods) {
    const list = byNamespace.get(pod.namespace);
    if (list) list.push(pod);
    else byNamespace.set(pod.namespace, [pod]);
  }
  const workloadOf = new Map<string, MeshWorkload>();
  for (const w of synth.workloads) workloadOf.set(`${w.ns.name}/${w.app}`, w);
  const flows: Flow[] = [];
  for (let i = 0; i < count; i++) {
    const dst = pods[randInt(rng, pods.length)] as Pod;
    const w = workloadOf.get(`${dst.namespace}/${dst.labels.app}`) as MeshWorkload;
    const r = rng();
    let src: Flow["src"];
    let identity: string | undefined;
    if (r < 0.55) src = { kind: "pod", pod: pick(rng, byNamespace.get(dst.namespace) as Pod[]) };
    else if (r < 0.9) src = { kind: "pod", pod: pods[randInt(rng, pods.length)] as Pod };
    else if (r < 0.96) {
      // The gateway's Envoy presents its own identity (it has no sidecar of its own).
      src =
        gateways.length > 0
          ? { kind: "pod", pod: pick(rng, gateways) }
          : { kind: "ip", ip: ipNumber(`192.168.${randInt(rng, 4)}.${1 + randInt(rng, 250)}`) };
      identity = GATEWAY_IDENTITY;
    } else src = { kind: "ip", ip: ipNumber(`203.0.113.${1 + randInt(rng, 250)}`) };
    const port = rng() < 0.95 ? (pick(rng, w.ports) as PortDef).containerPort : 1024 + randInt(rng, 60_000);
    const http: HttpRequest = {
      method: pick(rng, METHOD_TABLE),
      path: randomPath(rng, w),
      host: randomHost(rng, w, port),
      headers: randomHeaders(rng, port === 50051),
    };
    flows.push({
      src,
      dst: { kind: "pod", pod: dst },
      protocol: "TCP",
      port,
      http,
      ...(identity ? { identity } : {}),
    });
  }
  return flows;
}

// ---------------------------------------------------------------------------------------------
// Timing

/** Figures: the median over rounds; perCall: the last round's. */
interface LatencyStats extends LatencyFigures {
  calls: number;
  rounds: number;
  trueShare: number;
  timerOverheadNs: number;
}

interface MeasureOptions {
  readonly overhead: number;
  /** At most this many rounds; fewer when they would not fit in budgetMs (at least 1). */
  readonly maxRounds: number;
  readonly budgetMs: number;
  /** Per-call timing on the first `calls` inputs only (default: all). */
  readonly calls?: number;
}

/** Calls in the untimed warm-up, and in each round's batch pass. */
const WARM_CALLS = 20_000;
const BATCH_CALLS = 20_000;

/**
 * Latency of call(0..n-1): a warm-up on the first 20k inputs, then rounds (as many as fit in
 * the budget, judged by the rounds so far; at least one) of per-call timing over all n inputs
 * (hrtime around each call, the empty timer's median cost subtracted), each followed by batches
 * of 1000 calls timed as a whole over the first 20k inputs. Each figure is the median over rounds.
 */
function measure(total: number, call: (i: number) => boolean, o: MeasureOptions): LatencyStats {
  const n = Math.min(total, o.calls ?? total);
  for (let i = 0; i < Math.min(n, WARM_CALLS); i++) call(i);
  const batchN = Math.min(n, BATCH_CALLS);
  const results: RoundLatency[] = [];
  let yes = -1;
  let spentMs = 0;
  let rounds = 0;
  while (rounds < o.maxRounds) {
    // Another round only when it fits in the budget (judged by the rounds so far).
    if (rounds > 0 && spentMs + spentMs / rounds > o.budgetMs) break;
    const roundStart = process.hrtime.bigint();
    rounds++;
    gc();
    const r = timeRound(n, batchN, call, o.overhead);
    if (yes < 0) yes = r.trueCount;
    else if (r.trueCount !== yes) throw new Error("the measured function is not deterministic");
    results.push(r);
    spentMs += Number(process.hrtime.bigint() - roundStart) / 1e6;
  }
  return {
    calls: n,
    rounds,
    trueShare: n > 0 ? yes / n : 0,
    timerOverheadNs: o.overhead,
    ...medianOfRounds(results),
  };
}

/** Everything two decisions say: verdict, step, deciding policy and rule, provider, audits, wording. */
function decisionKey(d: AuthzDecision): string {
  const ref = (r: { namespace: string; name: string } | undefined) => (r ? `${r.namespace}/${r.name}` : "");
  return [
    d.allowed,
    d.step,
    ref(d.policy),
    d.rule ?? "",
    d.action ?? "",
    d.provider ?? "",
    d.audits.map((a) => `${ref(a.policy)}#${a.rule}`).join(","),
    d.detail,
  ].join("|");
}

function countBy<T>(items: Iterable<T>, key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of items) {
    const k = key(t);
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

function shares(m: Map<string, number>, total: number): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${formatShare(v / total)}`)
    .join(", ");
}

// ---------------------------------------------------------------------------------------------

function main(): void {
  const opts = parseArgs(process.argv.slice(2));
  const started = process.hrtime.bigint();
  if (!(globalThis as { gc?: unknown }).gc) {
    process.stderr.write("note: run with node --expose-gc for steadier figures (npm run bench does)\n");
  }
  process.stderr.write(
    `Tessera mesh benchmark: ${formatCount(opts.pods)} pods, ${formatCount(opts.policies)} AuthorizationPolicies, ${formatCount(opts.flows)} requests, node ${process.version}\n`,
  );

  const gen = timed(() =>
    syntheticMesh({ pods: opts.pods, policies: opts.policies, seed: 0x15710 + opts.pods }),
  );
  const synth = gen.value;
  log(`generated ${formatCount(synth.objects.length)} objects in ${formatMs(gen.ms)} (not counted)`);

  // load + compile, median of rounds; the AuthorizationPolicy part alone on the same input.
  const loads: number[] = [];
  const compiles: number[] = [];
  const parses: number[] = [];
  const authzBuilds: number[] = [];
  let last:
    | { loaded: ReturnType<typeof clusterFromObjects>; compiled: ReturnType<typeof compile> }
    | undefined;
  for (let r = 0; r < opts.compileRounds; r++) {
    last = undefined;
    gc();
    const load = timed(() => clusterFromObjects(synth.objects));
    const { cluster, diagnostics } = load.value;
    const comp = timed(() => compile(cluster, diagnostics, { extAuthz: "allow" }));
    const apObjects = cluster.policies.filter((p) => p.kind === "AuthorizationPolicy");
    const parse = timed(() => apObjects.map((p) => parseAuthorizationPolicy(p, new Diagnostics())));
    const meshConfig = comp.value.mesh.mesh;
    const build = timed(() => new CompiledAuthz(parse.value, meshConfig));
    loads.push(load.ms);
    compiles.push(comp.ms);
    parses.push(parse.ms);
    authzBuilds.push(build.ms);
    log(
      `round ${r + 1}/${opts.compileRounds}: load ${formatMs(load.ms)}, compile ${formatMs(comp.ms)} (AuthorizationPolicy parse ${formatMs(parse.ms)}, CompiledAuthz ${formatMs(build.ms)})`,
    );
    last = { loaded: load.value, compiled: comp.value };
  }
  const { cluster, diagnostics } = (last as NonNullable<typeof last>).loaded;
  const compiled = (last as NonNullable<typeof last>).compiled;
  const engine = compiled.engine;
  const mesh = compiled.mesh;
  const authorizationPolicies: readonly AuthorizationPolicy[] = compiled.authorizationPolicies;
  const warnings = countBy(diagnostics.warnings, (w) => w.code);

  // Per-workload plans are built on first use: time one request per pod on a fresh CompiledAuthz.
  const planTargets = cluster.pods.map((p) => mesh.targetOf(p));
  const probe: MeshRequest = { principal: undefined, port: 8080, protocol: "http", method: "GET", path: "/" };
  const planRuns: number[] = [];
  for (let r = 0; r < opts.compileRounds; r++) {
    const fresh = new CompiledAuthz(authorizationPolicies, mesh.mesh);
    planRuns.push(
      timed(() => {
        for (const t of planTargets) fresh.evaluate(t, probe);
      }).ms,
    );
  }
  const planMs = median(planRuns);
  log(`authz plans: first request to each of ${formatCount(planTargets.length)} pods ${formatMs(planMs)}`);

  // Requests.
  const flows = randomFlows(cluster.pods, synth, opts.flows, 7 + opts.pods);
  const overhead = timerOverheadNs();

  // engine.decide: NetworkPolicy (none here), PeerAuthentication, AuthorizationPolicy.
  const decide = measure(flows.length, (i) => engine.decide(flows[i] as Flow).allowed, {
    overhead,
    maxRounds: opts.rounds,
    budgetMs: opts.decideBudgetMs,
  });
  const outcomeFlows = flows.slice(0, BATCH_CALLS);
  const outcomes = countBy(outcomeFlows, (f) => engine.decide(f).outcome);
  log(
    `decide: p50 ${formatNs(decide.p50Ns)}, p99 ${formatNs(decide.p99Ns)}, batch mean ${formatNs(decide.batchMeanNs)} (timer overhead ${overhead} ns subtracted)`,
  );

  // The authorization inputs exactly as the mesh layer builds them: the destination, and the
  // request with the peer identity that the mTLS handshake authenticated (plaintext: none).
  const meshFlows: Flow[] = [];
  const dstPods: Pod[] = [];
  const targets: MeshTarget[] = [];
  const wireRequests: MeshRequest[] = [];
  const requests: MeshRequest[] = [];
  let notAdmitted = 0;
  for (const f of flows) {
    if (f.dst.kind !== "pod" || !mesh.inMesh(f.dst.pod)) continue;
    const target = mesh.targetOf(f.dst.pod);
    const request = mesh.requestOf(f, f.dst.pod);
    const { admission } = mesh.peerAuthn.admit(target, request);
    if (!admission.admitted) notAdmitted++;
    meshFlows.push(f);
    dstPods.push(f.dst.pod);
    targets.push(target);
    wireRequests.push(request);
    requests.push(admission.admitted ? { ...request, principal: admission.peer } : request);
  }
  const tcpShare = requests.filter((r) => r.protocol === "tcp").length / Math.max(1, requests.length);
  const authz = mesh.authz;
  const evaluate = measure(
    requests.length,
    (i) => authz.evaluate(targets[i] as MeshTarget, requests[i] as MeshRequest).allowed,
    { overhead, maxRounds: opts.rounds, budgetMs: opts.evaluateBudgetMs },
  );
  const steps = countBy(
    requests.keys(),
    (i) => authz.evaluate(targets[i] as MeshTarget, requests[i] as MeshRequest).step,
  );
  log(`CompiledAuthz.evaluate: p50 ${formatNs(evaluate.p50Ns)}, p99 ${formatNs(evaluate.p99Ns)}`);

  // Where the rest of decide goes: the other steps of the same path, each alone.
  const netpolPart = measure(flows.length, (i) => compiled.netpol.decide(flows[i] as Flow).length > 0, {
    overhead,
    maxRounds: 3,
    budgetMs: opts.partBudgetMs,
    calls: BATCH_CALLS,
  });
  const requestPart = measure(
    meshFlows.length,
    (i) => mesh.requestOf(meshFlows[i] as Flow, dstPods[i] as Pod).protocol === "http",
    { overhead, maxRounds: 3, budgetMs: opts.partBudgetMs, calls: BATCH_CALLS },
  );
  const admitPart = measure(
    wireRequests.length,
    (i) => mesh.peerAuthn.admit(targets[i] as MeshTarget, wireRequests[i] as MeshRequest).admission.admitted,
    { overhead, maxRounds: 3, budgetMs: opts.partBudgetMs, calls: BATCH_CALLS },
  );
  log(
    `decide parts: NetworkPolicy layer p50 ${formatNs(netpolPart.p50Ns)}, requestOf p50 ${formatNs(requestPart.p50Ns)}, PeerAuthentication admit p50 ${formatNs(admitPart.p50Ns)}`,
  );

  // Reference evaluator on the same requests (as many as the time budget allows).
  const reference = new ReferenceAuthz(authorizationPolicies, mesh.mesh);
  const probeMs = timed(() => {
    for (let i = 0; i < 200; i++)
      reference.evaluate(
        targets[i % targets.length] as MeshTarget,
        requests[i % requests.length] as MeshRequest,
      );
  }).ms;
  const refCount = Math.min(
    requests.length,
    Math.max(1000, Math.floor(opts.referenceBudgetMs / Math.max(probeMs / 200, 1e-6))),
  );
  const refLat = new Float64Array(refCount);
  const refKeys: string[] = new Array(refCount);
  let refAllowed = 0;
  for (let i = 0; i < refCount; i++) {
    const t = targets[i] as MeshTarget;
    const q = requests[i] as MeshRequest;
    const t0 = process.hrtime.bigint();
    const d = reference.evaluate(t, q);
    const t1 = process.hrtime.bigint();
    refLat[i] = Math.max(Number(t1 - t0) - overhead, 0);
    if (d.allowed) refAllowed++;
    refKeys[i] = decisionKey(d);
  }
  let verdictMismatches = 0;
  let decisionMismatches = 0;
  const examples: string[] = [];
  for (let i = 0; i < refCount; i++) {
    const fast = authz.evaluate(targets[i] as MeshTarget, requests[i] as MeshRequest);
    const fastKey = decisionKey(fast);
    const refKey = refKeys[i] as string;
    if (fastKey === refKey) continue;
    decisionMismatches++;
    if (fast.allowed !== refKey.startsWith("true|")) verdictMismatches++;
    if (examples.length < 5)
      examples.push(
        `    ${JSON.stringify(targets[i])} ${JSON.stringify(requests[i])}\n      compiled:  ${fastKey}\n      reference: ${refKey}`,
      );
  }
  const refMeanNs = refLat.reduce((a, b) => a + b, 0) / Math.max(1, refCount);
  refLat.sort();
  const refP50 = quantileSorted(refLat, 0.5);
  const refP99 = quantileSorted(refLat, 0.99);
  const fastSame = evaluate.perCall.slice(0, refCount).sort();
  const fastSameP50 = quantileSorted(fastSame, 0.5);
  const fastSameP99 = quantileSorted(fastSame, 0.99);
  log(
    `reference evaluate on ${formatCount(refCount)} requests: p50 ${formatNs(refP50)}, p99 ${formatNs(refP99)}; ${decisionMismatches} disagreement(s)`,
  );
  for (const e of examples) process.stderr.write(`${e}\n`);

  // Report.
  const pct = formatShare;
  const size = formatSize(opts.pods);
  const rules = authorizationPolicies.reduce((n, p) => n + (p.rules === "none" ? 0 : p.rules.length), 0);
  const lat = (name: string, s: LatencyStats, target = ""): string[][] => [
    [`  ${name} p50`, formatNs(s.p50Ns), target],
    [`  ${name} p90`, formatNs(s.p90Ns), ""],
    [`  ${name} p99`, formatNs(s.p99Ns), ""],
    [`  ${name} mean, batches of 1000 (no timer)`, formatNs(s.batchMeanNs), ""],
  ];
  const rows: string[][] = [
    [
      "pods / workloads / namespaces",
      `${formatCount(cluster.pods.length)} / ${formatCount(cluster.workloads.length)} / ${cluster.namespaces.size}`,
      "",
    ],
    ["Services", formatCount(cluster.services.length), ""],
    [
      "AuthorizationPolicies / rules",
      `${formatCount(authorizationPolicies.length)} / ${formatCount(rules)}`,
      "",
    ],
    ["PeerAuthentications", formatCount(compiled.peerAuthentications.length), ""],
    ["compile rounds (median of)", String(opts.compileRounds), ""],
    ["generate objects (not counted)", formatMs(gen.ms), ""],
    ["load (clusterFromObjects)", formatMs(median(loads)), ""],
    ["compile (full)", formatMs(median(compiles)), ""],
    ["  AuthorizationPolicy parse alone", formatMs(median(parses)), ""],
    ["  new CompiledAuthz alone", formatMs(median(authzBuilds)), ""],
    ["authz plans: first request per pod (lazy)", formatMs(planMs), ""],
    ["load + compile", formatMs(median(loads) + median(compiles)), ""],
    ["engine.decide (random L7 requests)", "", ""],
    ["  requests × rounds (median of)", `${formatCount(decide.calls)} × ${decide.rounds}`, ""],
    ["  allowed share", pct(decide.trueShare), ""],
    ["  timer overhead (subtracted)", `${overhead} ns`, ""],
    ...lat("decide", decide, "≤ 10 µs"),
    [
      "  parts alone, requests × rounds",
      `${formatCount(requestPart.calls)} × ${netpolPart.rounds}/${requestPart.rounds}/${admitPart.rounds}`,
      "",
    ],
    ["  parts: NetworkPolicy layer p50", formatNs(netpolPart.p50Ns), ""],
    ["  parts: IstioMesh.requestOf p50", formatNs(requestPart.p50Ns), ""],
    ["  parts: PeerAuthentication admit p50", formatNs(admitPart.p50Ns), ""],
    ["CompiledAuthz.evaluate alone", "", ""],
    ["  requests (reaching the mesh) × rounds", `${formatCount(evaluate.calls)} × ${evaluate.rounds}`, ""],
    ["  TCP / refused by mTLS", `${pct(tcpShare)} / ${pct(notAdmitted / Math.max(1, requests.length))}`, ""],
    ["  allowed share", pct(evaluate.trueShare), ""],
    ...lat("evaluate", evaluate),
    ["ReferenceAuthz.evaluate (same requests)", "", ""],
    ["  requests", `${formatCount(refCount)} of ${formatCount(requests.length)}`, ""],
    ["  allowed share", pct(refAllowed / Math.max(1, refCount)), ""],
    ["  reference p50", formatNs(refP50), ""],
    ["  reference p99", formatNs(refP99), ""],
    ["  reference mean", formatNs(refMeanNs), ""],
    ["  compiled p50 / p99, same requests", `${formatNs(fastSameP50)} / ${formatNs(fastSameP99)}`, ""],
    [
      "  ratio reference/compiled p50 / p99",
      `${formatRatio(refP50 / Math.max(1, fastSameP50))} / ${formatRatio(refP99 / Math.max(1, fastSameP99))}`,
      "",
    ],
    ["  disagreements: verdict", `${verdictMismatches} / ${formatCount(refCount)}`, "0"],
    ["  disagreements: any field", `${decisionMismatches} / ${formatCount(refCount)}`, "0"],
  ];
  const actions = Object.entries(synth.byAction)
    .map(([a, n]) => `${a} ${n}`)
    .join(", ");
  const lines = [
    table(["", `${size} pods`, "target"], rows),
    "",
    `policies: ${actions}; ${authorizationPolicies.filter((p) => p.ref.namespace === ROOT).length} in ${ROOT}, ${authorizationPolicies.filter((p) => p.dryRun).length} dry-run`,
    `decide outcomes: ${shares(outcomes, outcomeFlows.length)}`,
    `evaluate deciding step: ${shares(steps, requests.length)}`,
    "",
    "notes: per-call figures time each call with hrtime (the median cost of an empty timer pair is",
    "subtracted); batch means time 1000 calls at once with no per-call timer. decide runs the",
    "NetworkPolicy layer (no NetworkPolicy in this input), then the mesh: request building (Service",
    "port protocol), PeerAuthentication, AuthorizationPolicy; the parts are those steps timed alone on",
    "the same requests. evaluate alone and the reference take the requests the mesh layer builds for",
    "the same flows (peer identity after mTLS). The CUSTOM provider answers allow (meshConfig extAuthz).",
    "Disagreements compare verdict, step, policy, rule, action, provider, AUDIT matches and wording.",
  ];
  const w = [...warnings.entries()].map(([k, v]) => `${k} ×${v}`).join(", ");
  if (w) lines.push(`warnings: ${w}`);
  lines.push(
    "",
    "targets:",
    `  ${size} pods, ${formatCount(authorizationPolicies.length)} AuthorizationPolicies: decide p50 ≤ 10 µs: ${formatNs(decide.p50Ns)}  ${decide.p50Ns <= TARGET_DECIDE_P50_NS ? "ok" : "MISSED"}`,
    `  compiled and reference agree on every sampled request (${formatCount(refCount)}): ${decisionMismatches === 0 ? "ok" : `MISSED (${decisionMismatches})`}`,
  );
  console.log(`\n${lines.join("\n")}`);
  console.log(`\ntotal mesh benchmark time ${formatMs(Number(process.hrtime.bigint() - started) / 1e6)}`);
  if (decisionMismatches > 0) process.exitCode = 1;
}

main();
