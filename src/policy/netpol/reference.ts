import type { Labels } from "../../kube/labels.js";
import type { Cluster, Pod, Protocol } from "../../kube/objects.js";
import { ConnectionSet } from "../connset.js";
import * as iv from "../intervals.js";
import type { Endpoint, Flow } from "../model.js";
import type { Direction, NetpolPeer, NetpolPort, NetpolRule, NetworkPolicy } from "./model.js";

/**
 * The NetworkPolicy semantics written as directly as the API documentation states them, pod
 * by pod and policy by policy, with no classes, bitsets or caches. Slow on purpose: it is the
 * yardstick that the compiled layer is tested against.
 */
export class ReferenceNetpol {
  constructor(
    private readonly cluster: Cluster,
    private readonly policies: readonly NetworkPolicy[],
  ) {}

  private namespaceLabels(ns: string): Labels {
    return this.cluster.namespaces.get(ns)?.labels ?? { "kubernetes.io/metadata.name": ns };
  }

  private selects(policy: NetworkPolicy, pod: Pod): boolean {
    return policy.ref.namespace === pod.namespace && policy.podSelector.matches(pod.labels);
  }

  private peerMatches(policy: NetworkPolicy, peer: NetpolPeer, e: Endpoint): boolean {
    if (peer.kind === "ipBlock") {
      const ip = e.kind === "ip" ? e.ip : e.pod.ip;
      return ip !== undefined && iv.contains(peer.ipv4, ip);
    }
    if (e.kind === "ip") return false;
    const pod = e.pod;
    const nsOk =
      peer.namespaceSelector === undefined
        ? pod.namespace === policy.ref.namespace
        : peer.namespaceSelector.matches(this.namespaceLabels(pod.namespace));
    const podOk = peer.podSelector === undefined || peer.podSelector.matches(pod.labels);
    return nsOk && podOk;
  }

  private ruleMatches(policy: NetworkPolicy, rule: NetpolRule, peer: Endpoint): boolean {
    if (rule.peers === undefined) return true;
    return rule.peers.some((p) => this.peerMatches(policy, p, peer));
  }

  private portMatches(p: NetpolPort, dst: Endpoint, protocol: Protocol, port: number): boolean {
    if (p.protocol !== protocol) return false;
    if (p.port === undefined) return true;
    if (typeof p.port === "number") return port >= p.port && port <= (p.endPort ?? p.port);
    if (dst.kind !== "pod") return false;
    const c = dst.pod.ports.find((cp) => cp.name === p.port && cp.protocol === protocol);
    return c !== undefined && c.port === port;
  }

  private ruleAllowsPort(rule: NetpolRule, dst: Endpoint, protocol: Protocol, port: number): boolean {
    return rule.ports.length === 0 || rule.ports.some((p) => this.portMatches(p, dst, protocol, port));
  }

  /** Does the side of `self` (egress at the source, ingress at the destination) let the flow pass? */
  private sideAllows(direction: Direction, self: Pod, peer: Endpoint, flow: Flow): boolean {
    const isolating = this.policies.filter(
      (p) => this.selects(p, self) && (direction === "ingress" ? p.ingressIsolation : p.egressIsolation),
    );
    if (isolating.length === 0) return true;
    return isolating.some((p) =>
      p[direction].some(
        (r) => this.ruleMatches(p, r, peer) && this.ruleAllowsPort(r, flow.dst, flow.protocol, flow.port),
      ),
    );
  }

  decide(flow: Flow): boolean {
    if (flow.src.kind === "pod" && !this.sideAllows("egress", flow.src.pod, flow.dst, flow)) return false;
    if (flow.dst.kind === "pod" && !this.sideAllows("ingress", flow.dst.pod, flow.src, flow)) return false;
    return true;
  }

  /**
   * Everything allowed from src to dst, computed by asking `decide` about every port that
   * could behave differently: rule port boundaries and named-port targets cut 1-65535 into
   * ranges where the answer is constant, so one probe per range is exact.
   */
  allowed(src: Endpoint, dst: Endpoint): ConnectionSet {
    const cuts: Record<Protocol, Set<number>> = { TCP: new Set([1]), UDP: new Set([1]), SCTP: new Set([1]) };
    for (const p of this.policies) {
      for (const r of [...p.ingress, ...p.egress]) {
        for (const port of r.ports) {
          if (typeof port.port === "number") {
            cuts[port.protocol].add(port.port);
            cuts[port.protocol].add((port.endPort ?? port.port) + 1);
          }
        }
      }
    }
    if (dst.kind === "pod") {
      for (const c of dst.pod.ports) {
        cuts[c.protocol].add(c.port);
        cuts[c.protocol].add(c.port + 1);
      }
    }
    let out = ConnectionSet.NONE;
    for (const protocol of ["SCTP", "TCP", "UDP"] as const) {
      const starts = [...cuts[protocol]].filter((x) => x <= 65535).sort((a, b) => a - b);
      starts.forEach((start, i) => {
        const end = (starts[i + 1] ?? 65536) - 1;
        if (this.decide({ src, dst, protocol, port: start }))
          out = out.union(ConnectionSet.of(protocol, [start, end]));
      });
    }
    return out;
  }
}
