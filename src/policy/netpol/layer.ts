import { parseCidr } from "../../kube/ip.js";
import type { Labels } from "../../kube/labels.js";
import type { Cluster, Pod } from "../../kube/objects.js";
import { Bitset } from "../bitset.js";
import { ConnectionSet } from "../connset.js";
import * as iv from "../intervals.js";
import type { Contribution, Endpoint, Flow, Layer, SideExplanation, TraceStep } from "../model.js";
import type { Direction, NetpolRule, NetworkPolicy, PolicyRef } from "./model.js";
import { hasNamedPort, type NamedPorts, namedPortsKey, namedPortsOf, resolvePorts } from "./ports.js";

export const NETPOL_LAYER = "NetworkPolicy";

/** A group of pods that every NetworkPolicy treats alike. */
interface PodClass {
  readonly namespace: string;
  readonly named: NamedPorts;
  /** Cached resolution of rules with named ports, keyed by rule id. */
  readonly portsCache: Map<number, ConnectionSet>;
}

interface CompiledRule {
  readonly id: number;
  readonly policy: PolicyRef;
  readonly index: number;
  /** No `from`/`to`: every peer. */
  readonly anyPeer: boolean;
  /** Pod classes matched by the rule's peers. */
  readonly peerClasses: Bitset;
  /** External IPv4 addresses matched by the rule's ipBlocks. */
  readonly peerIps: iv.Intervals;
  readonly source: NetpolRule;
  /** Ports when none is named; undefined when they must be resolved per destination. */
  readonly fixedPorts: ConnectionSet | undefined;
}

interface Side {
  /** Policies that select the class for this direction, in input order. */
  readonly policies: PolicyRef[];
  readonly rules: CompiledRule[];
  /** Union of peerClasses of the rules (a quick "maybe" before looking at rules). */
  peers: Bitset | undefined;
  anyPeer: boolean;
}

const NOT_ISOLATED: Record<Direction, string> = {
  ingress: "not isolated for ingress: no NetworkPolicy selects the destination with policyTypes Ingress",
  egress: "not isolated for egress: no NetworkPolicy selects the source with policyTypes Egress",
};

/**
 * The NetworkPolicy layer, compiled. Pods are grouped into classes by what the policies can
 * see of them (namespace labels, pod labels, named ports, which ipBlocks hold the pod IP), so
 * selectors run once per class, not once per pod or per pair; each rule becomes a bitset of
 * peer classes plus an interval set of external IPs.
 */
export class NetpolLayer implements Layer {
  readonly name = NETPOL_LAYER;
  private readonly classIndex = new Map<Pod, number>();
  private readonly classes: PodClass[] = [];
  private readonly ingress: Side[] = [];
  private readonly egress: Side[] = [];
  private readonly boundaries: number[];

  constructor(
    cluster: Cluster,
    readonly policies: readonly NetworkPolicy[],
  ) {
    this.boundaries = ipBoundariesOf(policies);
    const raw = groupRawClasses(cluster, this.boundaries);
    const nsLabels = (ns: string): Labels =>
      cluster.namespaces.get(ns)?.labels ?? { "kubernetes.io/metadata.name": ns };

    // Every selector gets an id; a raw class's signature is the ids that match it.
    const signatures: number[][] = raw.list.map(() => []);
    const selectedBy: number[][] = []; // policy index -> raw classes
    const ruleMatches: number[][] = []; // rule id -> raw classes
    const ruleList: { policy: number; direction: Direction; rule: NetpolRule }[] = [];
    let nextId = 0;
    const mark = (list: number[], id: number) => {
      for (const rc of list) signatures[rc]?.push(id);
    };
    const namespacesOf = (sel: NetpolPeerPods["namespaceSelector"], own: string): string[] =>
      sel === undefined ? [own] : [...raw.byNamespace.keys()].filter((ns) => sel.matches(nsLabels(ns)));

    policies.forEach((p, pi) => {
      const matched = (raw.byNamespace.get(p.ref.namespace) ?? []).filter((rc) =>
        p.podSelector.matches((raw.list[rc] as RawClass).labels),
      );
      selectedBy[pi] = matched;
      mark(matched, nextId++);
      for (const direction of ["ingress", "egress"] as const) {
        for (const rule of p[direction]) {
          const hit = new Set<number>();
          // A policy that selects no pod never applies: its peers must not split classes.
          for (const peer of matched.length > 0 ? (rule.peers ?? []) : []) {
            if (peer.kind === "pods") {
              for (const ns of namespacesOf(peer.namespaceSelector, p.ref.namespace)) {
                for (const rc of raw.byNamespace.get(ns) ?? []) {
                  if (!peer.podSelector || peer.podSelector.matches((raw.list[rc] as RawClass).labels))
                    hit.add(rc);
                }
              }
            } else {
              raw.list.forEach((c, rc) => {
                if (c.ip !== undefined && iv.contains(peer.ipv4, c.ip)) hit.add(rc);
              });
            }
          }
          const list = [...hit];
          ruleMatches.push(list);
          ruleList.push({ policy: pi, direction, rule });
          mark(list, nextId++);
        }
      }
    });

    // Raw classes with equal signatures and equal values for the named ports that rules use
    // are one class; other container port names cannot change an answer.
    const referenced = new Set<string>();
    for (const p of policies) {
      for (const rule of [...p.ingress, ...p.egress]) {
        for (const port of rule.ports)
          if (typeof port.port === "string") referenced.add(`${port.port}/${port.protocol}`);
      }
    }
    const usedNamedKey = (named: NamedPorts) => {
      let key = "";
      for (const k of referenced) key += `${named.get(k) ?? "-"},`;
      return key;
    };
    const finalOf = new Int32Array(raw.list.length);
    const byKey = new Map<string, number>();
    raw.list.forEach((rc, i) => {
      const key = `${rc.namespace}\0${(signatures[i] as number[]).join(",")}\0${usedNamedKey(rc.named)}`;
      let idx = byKey.get(key);
      if (idx === undefined) {
        idx = this.classes.length;
        byKey.set(key, idx);
        this.classes.push({ namespace: rc.namespace, named: rc.named, portsCache: new Map() });
      }
      finalOf[i] = idx;
      for (const pod of rc.pods) this.classIndex.set(pod, idx);
    });
    const n = this.classes.length;
    for (let c = 0; c < n; c++) {
      this.ingress.push({ policies: [], rules: [], peers: undefined, anyPeer: false });
      this.egress.push({ policies: [], rules: [], peers: undefined, anyPeer: false });
    }
    const compiled: CompiledRule[] = ruleList.map(({ policy, rule }, id) => {
      const peerClasses = new Bitset(n);
      for (const rc of ruleMatches[id] as number[]) peerClasses.add(finalOf[rc] as number);
      let peerIps: iv.Intervals = iv.EMPTY;
      for (const peer of rule.peers ?? [])
        if (peer.kind === "ipBlock") peerIps = iv.union(peerIps, peer.ipv4);
      return {
        id,
        policy: (policies[policy] as NetworkPolicy).ref,
        index: rule.index,
        anyPeer: rule.peers === undefined,
        peerClasses,
        peerIps: rule.peers === undefined ? [0, 0xffffffff] : peerIps,
        source: rule,
        fixedPorts: hasNamedPort(rule.ports) ? undefined : resolvePorts(rule.ports, undefined),
      };
    });
    let ruleId = 0;
    policies.forEach((p, pi) => {
      const classes = new Set((selectedBy[pi] as number[]).map((rc) => finalOf[rc] as number));
      for (const direction of ["ingress", "egress"] as const) {
        const isolates = direction === "ingress" ? p.ingressIsolation : p.egressIsolation;
        const rules = compiled.slice(ruleId, ruleId + p[direction].length);
        ruleId += p[direction].length;
        if (!isolates) continue;
        for (const c of classes) {
          const side = (direction === "ingress" ? this.ingress : this.egress)[c] as Side;
          side.policies.push(p.ref);
          for (const r of rules) {
            side.rules.push(r);
            if (r.anyPeer) side.anyPeer = true;
            if (!side.peers) side.peers = new Bitset(n);
            side.peers.orWith(r.peerClasses);
          }
        }
      }
    });
  }

  get classCount(): number {
    return this.classes.length;
  }

  classOf(pod: Pod): number {
    const c = this.classIndex.get(pod);
    if (c === undefined)
      throw new Error(`pod ${pod.namespace}/${pod.name} is not part of the compiled cluster`);
    return c;
  }

  ipBoundaries(): readonly number[] {
    return this.boundaries;
  }

  /** Which policies isolate a pod, per direction (for audits and explanations). */
  isolation(pod: Pod): { ingress: readonly PolicyRef[]; egress: readonly PolicyRef[] } {
    const c = this.classOf(pod);
    return { ingress: (this.ingress[c] as Side).policies, egress: (this.egress[c] as Side).policies };
  }

  private ruleMatchesPeer(r: CompiledRule, peer: Endpoint, peerClass: number): boolean {
    if (r.anyPeer) return true;
    return peer.kind === "pod" ? r.peerClasses.has(peerClass) : iv.contains(r.peerIps, peer.ip);
  }

  private rulePorts(r: CompiledRule, dstClass: number): ConnectionSet {
    if (r.fixedPorts) return r.fixedPorts;
    if (dstClass < 0) return resolvePorts(r.source.ports, undefined);
    const cls = this.classes[dstClass] as PodClass;
    let cached = cls.portsCache.get(r.id);
    if (!cached) {
      cached = resolvePorts(r.source.ports, cls.named);
      cls.portsCache.set(r.id, cached);
    }
    return cached;
  }

  /** Ports allowed by one side; `self` is the pod the side belongs to, `peer` the other end. */
  private sideAllowed(side: Side, peer: Endpoint, peerClass: number, dstClass: number): ConnectionSet {
    if (side.policies.length === 0) return ConnectionSet.ALL;
    if (!side.anyPeer && peer.kind === "pod" && !side.peers?.has(peerClass)) return ConnectionSet.NONE;
    let out = ConnectionSet.NONE;
    for (const r of side.rules) {
      if (this.ruleMatchesPeer(r, peer, peerClass)) {
        out = out.union(this.rulePorts(r, dstClass));
        if (out === ConnectionSet.ALL) break;
      }
    }
    return out;
  }

  allowed(src: Endpoint, dst: Endpoint): ConnectionSet {
    const sc = src.kind === "pod" ? this.classOf(src.pod) : -1;
    const dc = dst.kind === "pod" ? this.classOf(dst.pod) : -1;
    return this.allowedByClass(src, sc, dst, dc);
  }

  /** `allowed` for callers that already know the classes (connectivity over many pairs). */
  allowedByClass(src: Endpoint, sc: number, dst: Endpoint, dc: number): ConnectionSet {
    let out = ConnectionSet.ALL;
    if (sc >= 0) {
      out = this.sideAllowed(this.egress[sc] as Side, dst, dc, dc);
      if (out.isEmpty()) return out;
    }
    if (dc >= 0) out = out.intersect(this.sideAllowed(this.ingress[dc] as Side, src, sc, dc));
    return out;
  }

  /** Cheap pre-check: can anything at all pass from class sc to class dc? */
  mayConnect(sc: number, dc: number): boolean {
    const e = this.egress[sc] as Side;
    if (e.policies.length > 0 && !e.anyPeer && !e.peers?.has(dc)) return false;
    const i = this.ingress[dc] as Side;
    return i.policies.length === 0 || i.anyPeer || (i.peers?.has(sc) ?? false);
  }

  decide(flow: Flow): readonly TraceStep[] {
    const sc = flow.src.kind === "pod" ? this.classOf(flow.src.pod) : -1;
    const dc = flow.dst.kind === "pod" ? this.classOf(flow.dst.pod) : -1;
    const steps: TraceStep[] = [];
    if (sc >= 0) steps.push(this.decideSide("egress", this.egress[sc] as Side, flow.dst, dc, dc, flow));
    if (dc >= 0) steps.push(this.decideSide("ingress", this.ingress[dc] as Side, flow.src, sc, dc, flow));
    return steps;
  }

  private decideSide(
    direction: Direction,
    side: Side,
    peer: Endpoint,
    peerClass: number,
    dstClass: number,
    flow: Flow,
  ): TraceStep {
    if (side.policies.length === 0)
      return { layer: this.name, direction, allowed: true, default: NOT_ISOLATED[direction] };
    for (const r of side.rules) {
      if (
        this.ruleMatchesPeer(r, peer, peerClass) &&
        this.rulePorts(r, dstClass).has(flow.protocol, flow.port)
      ) {
        return { layer: this.name, direction, allowed: true, policy: r.policy, rule: r.index };
      }
    }
    return {
      layer: this.name,
      direction,
      allowed: false,
      default: `isolated for ${direction}; no rule of the selecting policies allows this`,
      isolatedBy: side.policies,
    };
  }

  explain(src: Endpoint, dst: Endpoint): readonly SideExplanation[] {
    const sc = src.kind === "pod" ? this.classOf(src.pod) : -1;
    const dc = dst.kind === "pod" ? this.classOf(dst.pod) : -1;
    const out: SideExplanation[] = [];
    const side = (direction: Direction, s: Side, peer: Endpoint, peerClass: number): SideExplanation => {
      const contributions: Contribution[] = [];
      for (const r of s.rules) {
        if (!this.ruleMatchesPeer(r, peer, peerClass)) continue;
        contributions.push({ policy: r.policy, rule: r.index, allowed: this.rulePorts(r, dc) });
      }
      return {
        layer: this.name,
        direction,
        isolatedBy: s.policies,
        contributions,
        allowed: this.sideAllowed(s, peer, peerClass, dc),
      };
    };
    if (sc >= 0) out.push(side("egress", this.egress[sc] as Side, dst, dc));
    if (dc >= 0) out.push(side("ingress", this.ingress[dc] as Side, src, sc));
    return out;
  }
}

type NetpolPeerPods = Extract<NonNullable<NetpolRule["peers"]>[number], { kind: "pods" }>;

interface RawClass {
  readonly namespace: string;
  readonly labels: Labels;
  readonly named: NamedPorts;
  readonly namedKey: string;
  readonly ip: number | undefined;
  readonly pods: Pod[];
}

/** Pods with the same namespace, labels, named ports and ipBlock region are one raw class. */
function groupRawClasses(cluster: Cluster, boundaries: readonly number[]) {
  const list: RawClass[] = [];
  const byKey = new Map<string, number>();
  const byNamespace = new Map<string, number[]>();
  for (const ns of cluster.namespaces.keys()) byNamespace.set(ns, []);
  for (const pod of cluster.pods) {
    const named = namedPortsOf(pod.ports);
    const namedKey = namedPortsKey(named);
    const region = pod.ip === undefined ? -1 : regionOf(boundaries, pod.ip);
    const labelKey = Object.keys(pod.labels)
      .sort()
      .map((k) => `${k}=${pod.labels[k]}`)
      .join("\u0001");
    const key = `${pod.namespace}\0${labelKey}\0${namedKey}\0${region}`;
    let idx = byKey.get(key);
    if (idx === undefined) {
      idx = list.length;
      byKey.set(key, idx);
      list.push({ namespace: pod.namespace, labels: pod.labels, named, namedKey, ip: pod.ip, pods: [] });
      let nsList = byNamespace.get(pod.namespace);
      if (!nsList) {
        nsList = [];
        byNamespace.set(pod.namespace, nsList);
      }
      nsList.push(idx);
    }
    (list[idx] as RawClass).pods.push(pod);
  }
  return { list, byNamespace };
}

/** Index of the region between boundaries that holds ip. */
function regionOf(boundaries: readonly number[], ip: number): number {
  let lo = 0;
  let hi = boundaries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((boundaries[mid] as number) <= ip) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Every start and end+1 of every ipBlock cidr and except, sorted, without 0 and 2^32. */
export function ipBoundariesOf(policies: readonly NetworkPolicy[]): number[] {
  const set = new Set<number>();
  for (const p of policies) {
    for (const rule of [...p.ingress, ...p.egress]) {
      for (const peer of rule.peers ?? []) {
        if (peer.kind !== "ipBlock") continue;
        for (const text of [peer.cidr, ...peer.except]) {
          const c = parseCidr(text);
          if (c?.family !== 4) continue;
          if (c.start > 0) set.add(c.start);
          if (c.end < 0xffffffff) set.add(c.end + 1);
        }
      }
    }
  }
  return [...set].sort((a, b) => a - b);
}
