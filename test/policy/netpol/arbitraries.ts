/**
 * fast-check arbitraries for small random clusters with NetworkPolicies, built from plain
 * Kubernetes objects (what `clusterFromObjects` reads). Everything is drawn from small pools
 * (namespaces, label keys and values, IPs, CIDRs, ports, port names) so that selectors,
 * ipBlocks and named ports often hit something. Every generated object is valid input: the
 * loader and the NetworkPolicy parser never throw on it.
 *
 * Generated object lists print as multi-document YAML in fast-check counterexamples.
 */
import fc from "fast-check";
import { stringify } from "yaml";
import { parseCidr, parseIPv4 } from "../../../src/kube/ip.js";
import type { Protocol } from "../../../src/kube/objects.js";

type Obj = Record<string, unknown>;

export const NAMESPACES = ["default", "ns-a", "ns-b"] as const;
export const POD_LABEL_KEYS = ["app", "tier"] as const;
export const POD_LABEL_VALUES = ["web", "db", ""] as const;
export const NS_LABEL_KEYS = ["team", "env"] as const;
export const NS_LABEL_VALUES = ["a", "b", "prod"] as const;
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];
export const PORTS = [53, 80, 81, 443, 8080] as const;
/** Container port names; "nope" is used only by policies (a name that never resolves). */
export const PORT_NAMES = ["http", "dns", "metrics"] as const;
const POLICY_PORT_NAMES = [...PORT_NAMES, "nope"] as const;
/** What a named port becomes in an egress rule to an ipBlock (named ports are refused there). */
const NUMBER_FOR_NAME: Record<string, number> = { http: 80, dns: 53, metrics: 8080, nope: 81 };

/** 10.0.0.0/29 and 192.168.1.0/29. */
export const POD_IPS: readonly string[] = [
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `10.0.0.${i}`),
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `192.168.1.${i}`),
];
export const POD_IP_NUMBERS: readonly number[] = POD_IPS.map((t) => parseIPv4(t) as number);
/** Addresses just outside the pool, and the ends of the IPv4 space. */
export const OUTSIDE_IPS: readonly number[] = [
  "10.0.0.8",
  "9.255.255.255",
  "10.0.0.16",
  "192.168.1.8",
  "192.168.0.255",
  "192.168.2.0",
  "1.2.3.4",
  "0.0.0.0",
  "255.255.255.255",
  "10.255.255.255",
].map((t) => parseIPv4(t) as number);

export const CIDRS: readonly string[] = [
  "10.0.0.0/29",
  "10.0.0.0/30",
  "10.0.0.4/30",
  "10.0.0.4/31",
  "10.0.0.6/32",
  "10.0.0.3/30", // host bits set: the API server accepts it as 10.0.0.0/30
  "10.0.0.0/28",
  "10.0.0.0/8",
  "192.168.1.0/29",
  "192.168.1.0/30",
  "192.168.1.4/31",
  "192.168.1.7/32",
  "192.168.0.0/16",
  "0.0.0.0/0",
  "fd00::/64", // IPv6: allows nothing in an IPv4 analysis (with a warning)
];

/** Pool CIDRs that are a strict subset of cidr (valid `except` entries). */
function exceptCandidates(cidr: string): string[] {
  const c = parseCidr(cidr);
  if (c?.family !== 4) return [];
  return CIDRS.filter((e) => {
    const x = parseCidr(e);
    return (
      x?.family === 4 && x.start >= c.start && x.end <= c.end && !(x.start === c.start && x.end === c.end)
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Small building blocks

/** A plain object from entries, keeping out keys whose value is undefined. */
function compact(entries: Array<[string, unknown]>): Obj {
  const out: Obj = {};
  for (const [k, v] of entries) if (v !== undefined) out[k] = v;
  return out;
}

function labelsArb(keys: readonly string[], values: readonly string[], maxKeys = 2): fc.Arbitrary<Obj> {
  return fc
    .uniqueArray(fc.tuple(fc.constantFrom(...keys), fc.constantFrom(...values)), {
      maxLength: maxKeys,
      selector: ([k]) => k,
    })
    .map((entries) => Object.fromEntries(entries));
}

const protocolField = fc.constantFrom<Protocol | undefined>(undefined, "TCP", "UDP", "SCTP");

/** A LabelSelector: `{}`, matchLabels, matchExpressions (every operator) or both. */
function selectorArb(keys: readonly string[], values: readonly string[]): fc.Arbitrary<Obj> {
  const requirement = fc.oneof(
    fc.record({
      key: fc.constantFrom(...keys),
      operator: fc.constantFrom("In", "NotIn"),
      values: fc.uniqueArray(fc.constantFrom(...values), { minLength: 1, maxLength: 2 }),
    }),
    fc.record({ key: fc.constantFrom(...keys), operator: fc.constantFrom("Exists", "DoesNotExist") }),
  );
  const matchLabels = fc
    .oneof(
      { weight: 3, arbitrary: labelsArb(keys, values, 1) },
      { weight: 1, arbitrary: labelsArb(keys, values, 2) },
    )
    .filter((l) => Object.keys(l).length > 0);
  const matchExpressions = fc.array(requirement, { minLength: 1, maxLength: 2 });
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant({}) },
    { weight: 3, arbitrary: matchLabels.map((m) => ({ matchLabels: m })) },
    { weight: 2, arbitrary: matchExpressions.map((e) => ({ matchExpressions: e })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(matchLabels, matchExpressions)
        .map(([m, e]) => ({ matchLabels: m, matchExpressions: e })),
    },
  );
}

const podSelectorArb = selectorArb(POD_LABEL_KEYS, POD_LABEL_VALUES);
const namespaceSelectorArb = selectorArb(
  [...NS_LABEL_KEYS, "kubernetes.io/metadata.name"],
  [...NS_LABEL_VALUES, ...NAMESPACES],
);

// ---------------------------------------------------------------------------------------------
// Pods and workloads

interface ContainerPortSpec {
  name: string | undefined;
  containerPort: number;
  protocol: Protocol | undefined;
}

/** Container ports of one pod; port names are unique within the pod, as the API server requires. */
const containerPortsArb: fc.Arbitrary<ContainerPortSpec[]> = fc
  .array(
    fc.record({
      name: fc.option(fc.constantFrom(...PORT_NAMES), { nil: undefined }),
      containerPort: fc.constantFrom(...PORTS),
      protocol: protocolField,
    }),
    { maxLength: 3 },
  )
  .map((ports) => {
    const names = new Set<string>();
    return ports.map((p) => {
      if (p.name === undefined || !names.has(p.name)) {
        if (p.name !== undefined) names.add(p.name);
        return p;
      }
      return { ...p, name: undefined };
    });
  });

/** A pod spec: the ports split over one or two containers. */
function podSpec(ports: readonly ContainerPortSpec[], split: number): Obj {
  const toYaml = (p: ContainerPortSpec) =>
    compact([
      ["name", p.name],
      ["containerPort", p.containerPort],
      ["protocol", p.protocol],
    ]);
  const first = ports.slice(0, split).map(toYaml);
  const second = ports.slice(split).map(toYaml);
  const containers: Obj[] = [
    compact([
      ["name", "main"],
      ["image", "app"],
      ["ports", first.length ? first : undefined],
    ]),
  ];
  if (second.length > 0) containers.push({ name: "side", image: "side", ports: second });
  return { containers };
}

interface PodShape {
  labels: Obj;
  ip: string | undefined;
  ports: ContainerPortSpec[];
  split: number;
}

const podShapeArb: fc.Arbitrary<PodShape> = fc.record({
  labels: labelsArb(POD_LABEL_KEYS, POD_LABEL_VALUES, 2),
  ip: fc.option(fc.constantFrom(...POD_IPS), { nil: undefined, freq: 3 }),
  ports: containerPortsArb,
  split: fc.nat(3),
});

type Unit =
  | { kind: "pod"; namespace: string; pod: PodShape }
  | {
      kind: "replicaset";
      namespace: string;
      /** Also give the ReplicaSet and its Deployment, so the pods group under the Deployment. */
      withOwners: boolean;
      pods: PodShape[];
    }
  | { kind: "deployment"; namespace: string; pod: PodShape };

const namespaceField = fc.constantFrom(...NAMESPACES);

const unitArb: fc.Arbitrary<Unit> = fc.oneof(
  fc.record({ kind: fc.constant("pod" as const), namespace: namespaceField, pod: podShapeArb }),
  fc.record({
    kind: fc.constant("replicaset" as const),
    namespace: namespaceField,
    withOwners: fc.boolean(),
    // Pods of one ReplicaSet share most labels and ports; sometimes one differs (a split
    // workload, or pods of two revisions).
    pods: fc
      .tuple(
        podShapeArb,
        fc.array(
          fc.record({
            labels: fc.option(labelsArb(POD_LABEL_KEYS, POD_LABEL_VALUES, 1), { nil: undefined }),
            ports: fc.option(containerPortsArb, { nil: undefined, freq: 4 }),
          }),
          { minLength: 1, maxLength: 3 },
        ),
      )
      .map(([base, extras]) =>
        extras.map((extra, j) => ({
          ...base,
          labels: extra.labels ? { ...base.labels, ...extra.labels } : base.labels,
          ports: extra.ports ?? base.ports,
          ip:
            j === 0
              ? base.ip
              : base.ip === undefined
                ? undefined
                : POD_IPS[(POD_IPS.indexOf(base.ip) + j) % POD_IPS.length],
        })),
      ),
  }),
  fc.record({
    kind: fc.constant("deployment" as const),
    namespace: namespaceField,
    pod: podShapeArb.map((p) => ({ ...p, ip: undefined })),
  }),
);

function unitObjects(u: Unit, i: number): Obj[] {
  const podObject = (name: string, p: PodShape, owner?: Obj): Obj =>
    compact([
      ["apiVersion", "v1"],
      ["kind", "Pod"],
      [
        "metadata",
        compact([
          ["name", name],
          ["namespace", u.namespace],
          ["labels", Object.keys(p.labels).length ? p.labels : undefined],
          ["ownerReferences", owner ? [owner] : undefined],
        ]),
      ],
      ["spec", podSpec(p.ports, p.split)],
      ["status", p.ip ? { podIP: p.ip } : undefined],
    ]);
  switch (u.kind) {
    case "pod":
      return [podObject(`pod${i}`, u.pod)];
    case "replicaset": {
      const rs = `rs${i}`;
      const ref = { apiVersion: "apps/v1", kind: "ReplicaSet", name: rs, controller: true };
      const out = u.pods.map((p, j) => podObject(`${rs}-${j}`, p, ref));
      if (u.withOwners) {
        const template = {
          metadata: { labels: u.pods[0]?.labels ?? {} },
          spec: { containers: [{ name: "main" }] },
        };
        out.push(
          {
            apiVersion: "apps/v1",
            kind: "ReplicaSet",
            metadata: {
              name: rs,
              namespace: u.namespace,
              ownerReferences: [
                { apiVersion: "apps/v1", kind: "Deployment", name: `deploy${i}`, controller: true },
              ],
            },
            spec: { template },
          },
          {
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: `deploy${i}`, namespace: u.namespace },
            spec: { template },
          },
        );
      }
      return out;
    }
    case "deployment":
      return [
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: `deploy${i}`, namespace: u.namespace },
          spec: {
            template: compact([
              ["metadata", Object.keys(u.pod.labels).length ? { labels: u.pod.labels } : undefined],
              ["spec", podSpec(u.pod.ports, u.pod.split)],
            ]),
          },
        },
      ];
  }
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicies

const ipBlockArb: fc.Arbitrary<Obj> = fc
  .tuple(fc.constantFrom(...CIDRS), fc.array(fc.nat(), { maxLength: 2 }))
  .map(([cidr, picks]) => {
    const candidates = exceptCandidates(cidr);
    const except =
      candidates.length === 0
        ? []
        : [...new Set(picks.map((n) => candidates[n % candidates.length] as string))];
    return { ipBlock: except.length > 0 ? { cidr, except } : { cidr } };
  });

const peerArb: fc.Arbitrary<Obj> = fc.oneof(
  podSelectorArb.map((podSelector) => ({ podSelector })),
  namespaceSelectorArb.map((namespaceSelector) => ({ namespaceSelector })),
  fc
    .tuple(namespaceSelectorArb, podSelectorArb)
    .map(([namespaceSelector, podSelector]) => ({ namespaceSelector, podSelector })),
  ipBlockArb,
);

const portEntryArb: fc.Arbitrary<Obj> = fc.oneof(
  // every port of a protocol
  protocolField.map((protocol) => compact([["protocol", protocol]])),
  // one port
  fc
    .tuple(protocolField, fc.oneof(fc.constantFrom(...PORTS), fc.integer({ min: 1, max: 65535 })))
    .map(([protocol, port]) =>
      compact([
        ["protocol", protocol],
        ["port", port],
      ]),
    ),
  // a range
  fc
    .tuple(protocolField, fc.constantFrom(...PORTS), fc.constantFrom(...PORTS, 82, 8081, 65535))
    .map(([protocol, a, b]) =>
      compact([
        ["protocol", protocol],
        ["port", Math.min(a, b)],
        ["endPort", Math.max(a, b)],
      ]),
    ),
  // a named port
  fc.tuple(protocolField, fc.constantFrom(...POLICY_PORT_NAMES)).map(([protocol, port]) =>
    compact([
      ["protocol", protocol],
      ["port", port],
    ]),
  ),
);

function ruleArb(direction: "ingress" | "egress"): fc.Arbitrary<Obj> {
  const peersField = direction === "ingress" ? "from" : "to";
  return fc
    .tuple(
      fc.option(fc.array(peerArb, { maxLength: 3 }), { nil: undefined }),
      fc.option(fc.array(portEntryArb, { maxLength: 3 }), { nil: undefined }),
    )
    .map(([peers, ports]) => {
      let fixedPorts = ports;
      if (direction === "egress" && ports && peers?.some((p) => "ipBlock" in p)) {
        // A named port in an egress rule to an ipBlock is refused: use its number instead.
        fixedPorts = ports.map((p) =>
          typeof p.port === "string" ? { ...p, port: NUMBER_FOR_NAME[p.port] as number } : p,
        );
      }
      return compact([
        [peersField, peers],
        ["ports", fixedPorts],
      ]);
    });
}

/** absent, `[]`, `[{}]` or a list of rules. */
function rulesArb(direction: "ingress" | "egress"): fc.Arbitrary<Obj[] | undefined> {
  return fc.oneof(
    fc.constant(undefined),
    fc.constant<Obj[]>([]),
    fc.constant<Obj[]>([{}]),
    fc.array(ruleArb(direction), { minLength: 1, maxLength: 3 }),
  );
}

const policyTypesArb = fc.constantFrom<string[] | undefined>(
  undefined,
  ["Ingress"],
  ["Egress"],
  ["Ingress", "Egress"],
);

const policySpecArb: fc.Arbitrary<{ namespace: string; spec: Obj }> = fc
  .tuple(namespaceField, podSelectorArb, policyTypesArb, rulesArb("ingress"), rulesArb("egress"))
  .map(([namespace, podSelector, policyTypes, ingress, egress]) => ({
    namespace,
    spec: compact([
      ["podSelector", podSelector],
      ["policyTypes", policyTypes],
      ["ingress", ingress],
      ["egress", egress],
    ]),
  }));

// ---------------------------------------------------------------------------------------------
// Clusters

/** A list of Kubernetes objects that prints as multi-document YAML. */
export type KubeObjects = readonly Obj[];

function printable(objects: Obj[]): KubeObjects {
  Object.defineProperty(objects, fc.toStringMethod, {
    value: () => `\n---\n${objects.map((o) => stringify(o).trimEnd()).join("\n---\n")}\n`,
    enumerable: false,
  });
  return objects;
}

export interface ClusterConstraints {
  /** Pods, ReplicaSets or Deployments (default 1-6). */
  minUnits?: number;
  maxUnits?: number;
  /** NetworkPolicies (default 0-6). */
  maxPolicies?: number;
}

/**
 * A small random cluster: Namespace objects (some namespaces are left implicit), standalone
 * Pods, Pods owned by a ReplicaSet (sometimes with the ReplicaSet and its Deployment in the
 * input), Deployments with only a template, and NetworkPolicies.
 */
export function clusterObjectsArb(c: ClusterConstraints = {}): fc.Arbitrary<KubeObjects> {
  const namespaces = fc.tuple(
    ...NAMESPACES.map((name) =>
      fc.option(labelsArb(NS_LABEL_KEYS, NS_LABEL_VALUES, 2), { nil: undefined }).map((labels) =>
        labels === undefined
          ? undefined
          : {
              apiVersion: "v1",
              kind: "Namespace",
              metadata: compact([
                ["name", name],
                ["labels", Object.keys(labels).length ? labels : undefined],
              ]),
            },
      ),
    ),
  );
  return fc
    .tuple(
      namespaces,
      fc.array(unitArb, { minLength: c.minUnits ?? 1, maxLength: c.maxUnits ?? 6 }),
      fc.array(policySpecArb, { maxLength: c.maxPolicies ?? 6 }),
    )
    .map(([nsObjects, units, policies]) => {
      const objects: Obj[] = [];
      for (const ns of nsObjects) if (ns) objects.push(ns);
      units.forEach((u, i) => {
        objects.push(...unitObjects(u, i));
      });
      policies.forEach((p, i) => {
        objects.push({
          apiVersion: "networking.k8s.io/v1",
          kind: "NetworkPolicy",
          metadata: { name: `np${i}`, namespace: p.namespace },
          spec: p.spec,
        });
      });
      return printable(objects);
    });
}

// ---------------------------------------------------------------------------------------------
// Flows

/** IPv4 addresses as numbers: the pod pool, just outside it, or anywhere. */
export const ipArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...POD_IP_NUMBERS) },
  { weight: 2, arbitrary: fc.constantFrom(...OUTSIDE_IPS) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);

/** Ports from the pool, next to it, at the ends of the range, or anywhere. */
export const portArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...PORTS) },
  { weight: 1, arbitrary: fc.constantFrom(1, 52, 54, 79, 82, 442, 444, 8079, 8081, 65535) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 65535 }) },
);

export const protocolArb: fc.Arbitrary<Protocol> = fc.constantFrom(...PROTOCOLS);

/**
 * A flow to resolve against a cluster: pods are named by index (taken modulo the number of
 * pods), so the same spec works for any cluster and shrinks independently of it.
 */
export interface FlowSpec {
  shape: "pod-pod" | "ip-pod" | "pod-ip";
  src: number;
  dst: number;
  ip: number;
  protocol: Protocol;
  port: number;
  /** When set and the destination pod has container ports: use one of them (protocol and port). */
  dstPort: number | undefined;
}

export const flowSpecArb: fc.Arbitrary<FlowSpec> = fc.record({
  shape: fc.constantFrom("pod-pod", "ip-pod", "pod-ip"),
  src: fc.nat(63),
  dst: fc.nat(63),
  ip: ipArb,
  protocol: protocolArb,
  port: portArb,
  dstPort: fc.option(fc.nat(7), { nil: undefined }),
});
