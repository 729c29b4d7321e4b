/**
 * Synthetic clusters for the benchmarks: N pods in workloads of 10 replicas spread over 20
 * namespaces, one default-deny NetworkPolicy per namespace and one allow policy per five
 * workloads. Everything comes from a seeded PRNG, so a given size always yields the same
 * objects (and the same figures, machine noise aside).
 *
 * Pods are real Pod objects owned (controller: true) by a ReplicaSet `<deploy>-<hash>` that
 * is not in the input, so each workload peer is `ns/<deploy>-<hash>[ReplicaSet]`.
 */

/** mulberry32: a tiny, fast, well-distributed 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rng = () => number;

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)] as T;
}

export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

export const TIERS = ["web", "api", "db", "cache", "worker"] as const;
export type Tier = (typeof TIERS)[number];

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
];
const ENVS = ["prod", "staging"];
const NOUNS = [
  "orders",
  "cart",
  "users",
  "billing",
  "ledger",
  "profile",
  "inventory",
  "pricing",
  "reviews",
  "notify",
  "session",
  "auth",
  "gateway",
  "images",
  "reports",
  "feeds",
];
/** The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes). */
const SAFE = "bcdfghjklmnpqrstvwxz2456789";

/** A random generated-name suffix of `length` characters (Kubernetes' alphabet). */
export function suffix(rng: Rng, length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) s += SAFE[randInt(rng, SAFE.length)];
  return s;
}

interface PortSpec {
  name: string;
  containerPort: number;
  protocol: "TCP" | "UDP";
}

const PORTS: Record<Tier | "dns" | "prometheus", PortSpec[]> = {
  web: [
    { name: "http", containerPort: 8080, protocol: "TCP" },
    { name: "https", containerPort: 8443, protocol: "TCP" },
    { name: "metrics", containerPort: 9090, protocol: "TCP" },
  ],
  api: [
    { name: "http", containerPort: 8080, protocol: "TCP" },
    { name: "grpc", containerPort: 50051, protocol: "TCP" },
    { name: "metrics", containerPort: 9090, protocol: "TCP" },
  ],
  db: [
    { name: "postgres", containerPort: 5432, protocol: "TCP" },
    { name: "metrics", containerPort: 9187, protocol: "TCP" },
  ],
  cache: [
    { name: "redis", containerPort: 6379, protocol: "TCP" },
    { name: "gossip", containerPort: 7946, protocol: "UDP" },
    { name: "metrics", containerPort: 9121, protocol: "TCP" },
  ],
  worker: [
    { name: "health", containerPort: 8081, protocol: "TCP" },
    { name: "metrics", containerPort: 9090, protocol: "TCP" },
  ],
  dns: [
    { name: "dns", containerPort: 53, protocol: "UDP" },
    { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
    { name: "metrics", containerPort: 9153, protocol: "TCP" },
  ],
  prometheus: [{ name: "web", containerPort: 9090, protocol: "TCP" }],
};

export interface SyntheticNamespace {
  readonly name: string;
  readonly index: number;
  readonly team: string;
  readonly env: string;
}

export interface SyntheticWorkload {
  readonly namespace: SyntheticNamespace;
  /** The Deployment name, also the `app` label. */
  readonly app: string;
  readonly tier: Tier | "dns" | "prometheus";
  /** The ReplicaSet that owns the pods (not in the input): `<app>-<hash>`. */
  readonly replicaSet: string;
  readonly replicas: number;
}

export interface SyntheticCluster {
  /** Namespaces, then pods, then NetworkPolicies, as plain Kubernetes objects. */
  readonly objects: object[];
  readonly namespaces: readonly SyntheticNamespace[];
  readonly workloads: readonly SyntheticWorkload[];
  readonly pods: number;
  readonly policies: number;
}

export interface SyntheticOptions {
  readonly pods: number;
  readonly podsPerWorkload?: number;
  readonly namespaces?: number;
  readonly seed?: number;
}

/** Builds a synthetic cluster of `pods` pods; the same options always give the same objects. */
export function syntheticCluster(options: SyntheticOptions): SyntheticCluster {
  const perWorkload = options.podsPerWorkload ?? 10;
  const nsCount = options.namespaces ?? 20;
  const rng = mulberry32(options.seed ?? 0x7e55e7a);
  const objects: object[] = [];

  // Namespaces: kube-system (platform) first, then <team>-<env>.
  const namespaces: SyntheticNamespace[] = [];
  for (let i = 0; i < nsCount; i++) {
    const team = i === 0 ? "platform" : (TEAMS[(i - 1) % TEAMS.length] as string);
    const env = i === 0 ? "prod" : (ENVS[Math.floor((i - 1) / TEAMS.length) % ENVS.length] as string);
    const name = i === 0 ? "kube-system" : `${team}-${env}`;
    namespaces.push({ name, index: i, team, env });
    objects.push({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name,
        labels: {
          team,
          env,
          "kubernetes.io/metadata.name": name,
          ...(i === 0 ? {} : { "istio-injection": "enabled" }),
        },
      },
    });
  }

  // Workloads, round-robin over namespaces; kube-system starts with CoreDNS and Prometheus.
  const workloadCount = Math.ceil(options.pods / perWorkload);
  const workloads: SyntheticWorkload[] = [];
  const byNamespace: SyntheticWorkload[][] = namespaces.map(() => []);
  const appNames = new Set<string>();
  for (let w = 0; w < workloadCount; w++) {
    const ns = namespaces[w % nsCount] as SyntheticNamespace;
    const nsList = byNamespace[ns.index] as SyntheticWorkload[];
    let tier: SyntheticWorkload["tier"];
    let app: string;
    if (ns.index === 0 && nsList.length === 0) {
      tier = "dns";
      app = "coredns";
    } else if (ns.index === 0 && nsList.length === 1) {
      tier = "prometheus";
      app = "prometheus";
    } else {
      tier = pick(rng, TIERS);
      do {
        app = `${pick(rng, NOUNS)}-${tier}-${w.toString(36)}`;
      } while (appNames.has(`${ns.name}/${app}`));
    }
    appNames.add(`${ns.name}/${app}`);
    const replicas = Math.min(perWorkload, options.pods - w * perWorkload);
    const wl: SyntheticWorkload = {
      namespace: ns,
      app,
      tier,
      replicaSet: `${app}-${suffix(rng, 10)}`,
      replicas,
    };
    workloads.push(wl);
    nsList.push(wl);
  }

  // Pods, with one distinct IP each: 10.<ns+1>.<x>.<y>.
  const podsInNs = new Int32Array(nsCount);
  let podCount = 0;
  for (const wl of workloads) {
    const ns = wl.namespace;
    const hash = wl.replicaSet.slice(wl.app.length + 1);
    const version = `v${1 + randInt(rng, 3)}.${randInt(rng, 10)}.${randInt(rng, 20)}`;
    const labels: Record<string, string> =
      wl.tier === "dns"
        ? { "k8s-app": "kube-dns", app: wl.app, tier: "dns", "pod-template-hash": hash }
        : wl.tier === "prometheus"
          ? {
              "app.kubernetes.io/name": "prometheus",
              app: wl.app,
              tier: "monitoring",
              "pod-template-hash": hash,
            }
          : { app: wl.app, tier: wl.tier, version, "pod-template-hash": hash };
    for (let r = 0; r < wl.replicas; r++) {
      const k = podsInNs[ns.index] as number;
      podsInNs[ns.index] = k + 1;
      const ip = `10.${ns.index + 1}.${Math.floor(k / 254)}.${(k % 254) + 1}`;
      objects.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: `${wl.replicaSet}-${suffix(rng, 5)}`,
          namespace: ns.name,
          labels: { ...labels },
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: wl.replicaSet,
              uid: `${wl.replicaSet}-uid`,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: {
          serviceAccountName: wl.app,
          containers: [
            {
              name: wl.app,
              image: `registry.example.com/${ns.team}/${wl.app}:${labels.version ?? "1.11.1"}`,
              ports: PORTS[wl.tier].map((p) => ({ ...p })),
            },
          ],
        },
        status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
      });
      podCount++;
    }
  }

  // Policies: default deny per namespace, then one allow policy per five workloads.
  let policyCount = 0;
  const policy = (namespace: string, name: string, spec: object) => {
    objects.push({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name, namespace },
      spec,
    });
    policyCount++;
  };
  const dnsEgress = {
    to: [
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
        podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
      },
    ],
    ports: [
      { protocol: "UDP", port: 53 },
      { protocol: "TCP", port: 53 },
    ],
  };
  const internet = (except: string[]) => ({ ipBlock: { cidr: "0.0.0.0/0", except } });
  for (const ns of namespaces) {
    policy(ns.name, "default-deny", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  }
  for (const ns of namespaces) {
    const list = byNamespace[ns.index] as SyntheticWorkload[];
    for (let start = 0; start < list.length; start += 5) {
      const chunk = list.slice(start, start + 5);
      const apps = chunk.map((w) => w.app);
      const first = chunk[0] as SyntheticWorkload;
      const otherTeam = pick(rng, TEAMS);
      const name = `allow-${first.app}`;
      if (first.tier === "dns") {
        // CoreDNS: from every namespace on the DNS ports; to upstream resolvers.
        policy(ns.name, name, {
          podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
          policyTypes: ["Ingress", "Egress"],
          ingress: [
            {
              from: [{ namespaceSelector: {} }],
              ports: [
                { protocol: "UDP", port: "dns" },
                { protocol: "TCP", port: "dns-tcp" },
              ],
            },
            {
              from: [{ namespaceSelector: { matchLabels: { team: "platform" } } }],
              ports: [{ port: "metrics" }],
            },
          ],
          egress: [
            { to: [internet(["10.0.0.0/8", "192.168.0.0/16"])], ports: [{ protocol: "UDP", port: 53 }] },
            { to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } } }] },
          ],
        });
        continue;
      }
      const style = randInt(rng, 10);
      const podSelector =
        style < 5
          ? { matchExpressions: [{ key: "app", operator: "In", values: apps }] }
          : style < 8
            ? { matchLabels: { app: first.app } }
            : {
                matchLabels: { tier: first.tier },
                matchExpressions: [{ key: "app", operator: "In", values: apps }],
              };
      const ingress: object[] = [
        {
          from: [
            { podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["web", "api"] }] } },
          ],
          ports: [
            { port: "http" },
            { protocol: "TCP", port: 8080 },
            { port: "grpc" },
            { port: "postgres" },
            { port: "redis" },
          ],
        },
        {
          from: [
            {
              namespaceSelector: { matchLabels: { team: otherTeam } },
              podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["api", "worker"] }] },
            },
          ],
          ports: [{ protocol: "TCP", port: 50051 }, { port: "http" }],
        },
        {
          from: [
            {
              namespaceSelector: { matchLabels: { team: "platform" } },
              podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
            },
          ],
          ports: [{ port: "metrics" }],
        },
      ];
      if (first.tier === "web" || style === 9) {
        ingress.push({
          from: [internet(["10.0.0.0/8", "192.168.0.0/16", "203.0.113.0/24"])],
          ports: [{ protocol: "TCP", port: 8443 }, { port: "https" }],
        });
      }
      if (first.tier === "cache") {
        ingress.push({
          from: [{ podSelector: { matchLabels: { tier: "cache" } } }],
          ports: [
            { protocol: "UDP", port: 7946 },
            { protocol: "TCP", port: 7000, endPort: 7100 },
          ],
        });
      }
      const egress: object[] = [
        dnsEgress,
        {
          to: [
            { podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["db", "cache"] }] } },
          ],
          ports: [
            { protocol: "TCP", port: 5432 },
            { protocol: "TCP", port: "redis" },
            { protocol: "TCP", port: 7000, endPort: 7100 },
          ],
        },
        {
          to: [
            { podSelector: { matchLabels: { tier: "api" } } },
            {
              namespaceSelector: { matchLabels: { team: otherTeam, env: ns.env } },
              podSelector: { matchLabels: { tier: "api" } },
            },
          ],
          ports: [{ port: "grpc" }, { protocol: "TCP", port: 8080 }],
        },
        {
          to: [internet(["10.0.0.0/8", "192.168.0.0/16", "203.0.113.0/24"])],
          ports: [
            { protocol: "TCP", port: 443 },
            { protocol: "TCP", port: 30000, endPort: 32767 },
          ],
        },
      ];
      if (style === 7)
        egress.push({
          to: [{ ipBlock: { cidr: "192.168.10.0/24" } }],
          ports: [{ protocol: "TCP", port: 5432 }],
        });
      policy(ns.name, name, { podSelector, policyTypes: ["Ingress", "Egress"], ingress, egress });
    }
  }
  return { objects, namespaces, workloads, pods: podCount, policies: policyCount };
}
