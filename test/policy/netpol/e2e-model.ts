/**
 * The model of the Kubernetes upstream NetworkPolicy e2e suite
 * (kubernetes/kubernetes test/e2e/network/netpol: model.go, policies.go, reachability.go,
 * truthtable.go, kubemanager.go), rewritten for Tessera: instead of a live cluster, a
 * `KubeManager` holds the objects (namespaces, pods, policies) that a test creates, updates and
 * deletes, and hands them to the engine as plain objects at each probe.
 *
 * Model: namespaces x, y, z (labels `ns: <name>` and `kubernetes.io/metadata.name: <name>`),
 * pods a, b, c in each (label `pod: <name>`), every pod with one container per port (80, 81)
 * and protocol (TCP, UDP, SCTP), named `cont-<port>-<proto>`, serving a container port named
 * `serve-<port>-<proto>`. Each pod has a distinct status.podIP, 10.0.<ns index>.<pod index + 1>,
 * so that ipBlock cases can compute CIDRs from pod IPs as upstream does.
 */

export type Protocol = "TCP" | "UDP" | "SCTP";
export type Labels = Record<string, string>;

export const NAMESPACES = ["x", "y", "z"] as const;
export const POD_NAMES = ["a", "b", "c"] as const;
export const PORTS = [80, 81] as const;
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

/** The label the API server puts on every namespace (v1.LabelMetadataName). */
export const NAMESPACE_LABEL_KEY = "kubernetes.io/metadata.name";

// ---------------------------------------------------------------------------------------------
// NetworkPolicy objects (networking.k8s.io/v1), as plain JSON-shaped objects

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface IPBlock {
  cidr: string;
  except?: string[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

export interface NetworkPolicyPort {
  protocol?: Protocol;
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export type PolicyType = "Ingress" | "Egress";

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: PolicyType[];
  ingress?: NetworkPolicyIngressRule[];
  egress?: NetworkPolicyEgressRule[];
}

export interface NetworkPolicy {
  apiVersion: "networking.k8s.io/v1";
  kind: "NetworkPolicy";
  metadata: { name: string; namespace?: string };
  spec: NetworkPolicySpec;
}

/** A mutation of a policy under construction (upstream SetFunc). */
export type SetFunc = (policy: NetworkPolicy) => void;

/** An empty policy with the mutations applied in order (upstream GenNetworkPolicy). */
export function genNetworkPolicy(...fns: SetFunc[]): NetworkPolicy {
  const policy: NetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "" },
    spec: { podSelector: {} },
  };
  for (const f of fns) f(policy);
  return policy;
}

export function genNetworkPolicyWithNameAndPodMatchLabel(
  name: string,
  targetLabels: Labels,
  ...otherFuncs: SetFunc[]
): NetworkPolicy {
  return genNetworkPolicy(
    ...otherFuncs,
    setObjectMetaName(name),
    setSpecPodSelectorMatchLabels(targetLabels),
  );
}

export function genNetworkPolicyWithNameAndPodSelector(
  name: string,
  targetSelector: LabelSelector,
  ...otherFuncs: SetFunc[]
): NetworkPolicy {
  return genNetworkPolicy(...otherFuncs, setObjectMetaName(name), setSpecPodSelector(targetSelector));
}

export function setObjectMetaName(name: string): SetFunc {
  return (policy) => {
    policy.metadata.name = name;
  };
}

export function setSpecPodSelector(targetSelector: LabelSelector): SetFunc {
  return (policy) => {
    policy.spec.podSelector = clone(targetSelector);
  };
}

export function setSpecPodSelectorMatchLabels(targetLabels: Labels): SetFunc {
  return (policy) => {
    policy.spec.podSelector = { matchLabels: { ...targetLabels } };
  };
}

/**
 * Appends ingress rules; the first call also adds "Ingress" to policyTypes, so that
 * `setSpecIngressRules()` with no rule is a deny-all-ingress (upstream SetSpecIngressRules).
 */
export function setSpecIngressRules(...rules: NetworkPolicyIngressRule[]): SetFunc {
  return (policy) => {
    if (policy.spec.ingress === undefined) {
      policy.spec.ingress = [];
      policy.spec.policyTypes = [...(policy.spec.policyTypes ?? []), "Ingress"];
    }
    policy.spec.ingress.push(...clone(rules));
  };
}

/** Appends egress rules; the first call also adds "Egress" to policyTypes (upstream SetSpecEgressRules). */
export function setSpecEgressRules(...rules: NetworkPolicyEgressRule[]): SetFunc {
  return (policy) => {
    if (policy.spec.egress === undefined) {
      policy.spec.egress = [];
      policy.spec.policyTypes = [...(policy.spec.policyTypes ?? []), "Egress"];
    }
    policy.spec.egress.push(...clone(rules));
  };
}

/** A deep copy of `policy` with `change` applied: an edited policy for an update step. */
export function modified(policy: NetworkPolicy, change: (p: NetworkPolicy) => void): NetworkPolicy {
  const copy = clone(policy);
  change(copy);
  return copy;
}

export function clone<T>(value: T): T {
  return structuredClone(value);
}

// ---------------------------------------------------------------------------------------------
// Namespaces and pods

/** "x/a" */
export type PodString = string;

export function podString(namespace: string, pod: string): PodString {
  return `${namespace}/${pod}`;
}

export function splitPodString(pod: PodString): { namespace: string; pod: string } {
  const parts = pod.split("/");
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`expected ns/pod, found ${pod}`);
  return { namespace: parts[0], pod: parts[1] };
}

/** Every pod of the model, namespace by namespace: x/a, x/b, x/c, y/a, ... (upstream AllPodStrings). */
export function allPodStrings(): PodString[] {
  return NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => podString(ns, p)));
}

/** The pod's status.podIP: 10.0.<namespace index>.<pod index + 1>. */
export function podIP(namespace: string, pod: string): string {
  const n = NAMESPACES.indexOf(namespace as (typeof NAMESPACES)[number]);
  const p = POD_NAMES.indexOf(pod as (typeof POD_NAMES)[number]);
  if (n < 0 || p < 0) throw new Error(`no pod ${namespace}/${pod} in the model`);
  return `10.0.${n}.${p + 1}`;
}

/** The /4 that holds `ip` (upstream makeLargeCIDRForIP, IPv4 only). */
export function makeLargeCIDRForIP(ip: string): string {
  const octets = ip.split(".").map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  const first = (octets[0] as number) & 0xf0;
  return `${first}.0.0.0/4`;
}

/** Container port name, e.g. `serve-80-tcp` (upstream Container.PortName). */
export function portName(port: number, protocol: Protocol): string {
  return `serve-${port}-${protocol.toLowerCase()}`;
}

/** Container name, e.g. `cont-80-tcp` (upstream Container.Name). */
export function containerName(port: number, protocol: Protocol): string {
  return `cont-${port}-${protocol.toLowerCase()}`;
}

export function namespaceObject(name: string, labels: Labels): object {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { ...labels } } };
}

export function podObject(namespace: string, name: string, labels: Labels): object {
  const containers = PORTS.flatMap((port) =>
    PROTOCOLS.map((protocol) => ({
      name: containerName(port, protocol),
      image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
      ports: [{ containerPort: port, name: portName(port, protocol), protocol }],
    })),
  );
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { ...labels } },
    spec: { terminationGracePeriodSeconds: 0, containers },
    status: { phase: "Running", podIP: podIP(namespace, name), podIPs: [{ ip: podIP(namespace, name) }] },
  };
}

/**
 * The cluster state of one test (upstream kubeManager): namespaces and pods of the model with
 * their current labels, and the NetworkPolicies created so far. Every change is a new state
 * for the next probe; `objects()` is what the engine is built from.
 */
export class KubeManager {
  private readonly namespaceLabels = new Map<string, Labels>();
  private readonly podLabels = new Map<PodString, Labels>();
  /** `ns/name` → policy, in creation order. */
  private readonly policies = new Map<string, NetworkPolicy>();

  constructor() {
    for (const ns of NAMESPACES) {
      this.namespaceLabels.set(ns, { ns, [NAMESPACE_LABEL_KEY]: ns });
      for (const pod of POD_NAMES) this.podLabels.set(podString(ns, pod), { pod });
    }
  }

  namespaceNames(): [string, string, string] {
    return [...NAMESPACES];
  }

  allPodStrings(): PodString[] {
    return allPodStrings();
  }

  /** Like the API server's create: a policy with the same namespace and name must not exist. */
  createPolicy(policy: NetworkPolicy, namespace: string): void {
    const key = `${namespace}/${policy.metadata.name}`;
    if (this.policies.has(key))
      throw new Error(`networkpolicies "${policy.metadata.name}" already exists in ${namespace}`);
    this.policies.set(key, { ...clone(policy), metadata: { ...policy.metadata, namespace } });
  }

  /** Like the API server's update: replaces the policy of that namespace and name, which must exist. */
  updatePolicy(policy: NetworkPolicy, namespace: string): void {
    const key = `${namespace}/${policy.metadata.name}`;
    if (!this.policies.has(key))
      throw new Error(`networkpolicies "${policy.metadata.name}" not found in ${namespace}`);
    this.policies.set(key, { ...clone(policy), metadata: { ...policy.metadata, namespace } });
  }

  /** Deletes every policy of the test namespaces (upstream cleanNetworkPolicies). */
  cleanNetworkPolicies(): void {
    this.policies.clear();
  }

  addNamespaceLabel(namespace: string, key: string, value: string): void {
    const labels = this.namespaceLabels.get(namespace);
    if (!labels) throw new Error(`no namespace ${namespace}`);
    labels[key] = value;
  }

  /** Merges labels into the pod's labels (upstream AddPodLabels). */
  addPodLabels(namespace: string, pod: string, labels: Labels): void {
    const current = this.podLabels.get(podString(namespace, pod));
    if (!current) throw new Error(`no pod ${namespace}/${pod}`);
    Object.assign(current, labels);
  }

  policyCount(): number {
    return this.policies.size;
  }

  /** Namespaces, pods and policies as plain Kubernetes objects. */
  objects(): object[] {
    const out: object[] = [];
    for (const [ns, labels] of this.namespaceLabels) out.push(namespaceObject(ns, labels));
    for (const [pod, labels] of this.podLabels) {
      const { namespace, pod: name } = splitPodString(pod);
      out.push(podObject(namespace, name, labels));
    }
    for (const policy of this.policies.values()) out.push(clone(policy));
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Reachability (upstream reachability.go and truthtable.go)

/** Matches pods by namespace and/or name; an empty field matches everything. */
export interface Peer {
  namespace?: string;
  pod?: string;
}

export function peerMatches(peer: Peer, pod: PodString): boolean {
  const p = splitPodString(pod);
  return (
    (peer.namespace === undefined || peer.namespace === p.namespace) &&
    (peer.pod === undefined || peer.pod === p.pod)
  );
}

/** An n × n table of booleans over ordered pairs of items; unset cells print as "?". */
export class TruthTable {
  private readonly values = new Map<string, Map<string, boolean>>();
  private readonly toSet: ReadonlySet<string>;

  constructor(
    readonly froms: readonly string[],
    readonly tos: readonly string[],
    defaultValue?: boolean,
  ) {
    this.toSet = new Set(tos);
    for (const from of froms) {
      const row = new Map<string, boolean>();
      if (defaultValue !== undefined) for (const to of tos) row.set(to, defaultValue);
      this.values.set(from, row);
    }
  }

  private row(from: string): Map<string, boolean> {
    const row = this.values.get(from);
    if (!row) throw new Error(`from-key ${from} not found`);
    return row;
  }

  set(from: string, to: string, value: boolean): void {
    const row = this.row(from);
    if (!this.toSet.has(to)) throw new Error(`to-key ${to} not allowed`);
    row.set(to, value);
  }

  setAllFrom(from: string, value: boolean): void {
    const row = this.row(from);
    for (const to of this.tos) row.set(to, value);
  }

  setAllTo(to: string, value: boolean): void {
    if (!this.toSet.has(to)) throw new Error(`to-key ${to} not found`);
    for (const from of this.froms) this.row(from).set(to, value);
  }

  get(from: string, to: string): boolean | undefined {
    return this.row(from).get(to);
  }

  /**
   * The table printed as upstream does: a header of destinations, one line per source,
   * "." for true, "X" for false, "?" for unset, and `mark(from, to)` when it returns a string.
   */
  prettyPrint(indent = "", mark?: (from: string, to: string) => string | undefined): string {
    const lines = [indent + ["-", ...this.tos].join("\t")];
    for (const from of this.froms) {
      const cells = this.tos.map((to) => {
        const custom = mark?.(from, to);
        if (custom !== undefined) return custom;
        const v = this.get(from, to);
        return v === undefined ? "?" : v ? "." : "X";
      });
      lines.push(indent + [from, ...cells].join("\t"));
    }
    return lines.join("\n");
  }
}

/** Expected connectivity between all pods (upstream Reachability). */
export class Reachability {
  readonly expected: TruthTable;

  constructor(
    readonly pods: readonly PodString[],
    defaultExpectation: boolean,
  ) {
    this.expected = new TruthTable(pods, pods, defaultExpectation);
  }

  expect(from: PodString, to: PodString, connected: boolean): void {
    this.expected.set(from, to, connected);
  }

  /** Every connection into `pod`. */
  expectAllIngress(pod: PodString, connected: boolean): void {
    this.expected.setAllTo(pod, connected);
  }

  /** Every connection out of `pod`. */
  expectAllEgress(pod: PodString, connected: boolean): void {
    this.expected.setAllFrom(pod, connected);
  }

  expectPeer(from: Peer, to: Peer, connected: boolean): void {
    for (const f of this.pods) {
      if (!peerMatches(from, f)) continue;
      for (const t of this.pods) if (peerMatches(to, t)) this.expected.set(f, t, connected);
    }
  }
}
