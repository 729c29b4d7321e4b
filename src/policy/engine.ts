import type { Diagnostics } from "../kube/errors.js";
import type { Cluster, Pod } from "../kube/objects.js";
import { ConnectionSet } from "./connset.js";
import type { Endpoint, Flow, Layer, SideExplanation, TraceStep, Verdict } from "./model.js";
import { NetpolLayer } from "./netpol/layer.js";
import type { NetworkPolicy } from "./netpol/model.js";
import { parseNetworkPolicy } from "./netpol/parse.js";

/**
 * The Policy Engine: layers in the order a packet meets them. A flow is allowed when every
 * layer allows it; the verdict's trace says which policy and rule (or default) decided at
 * each layer and direction.
 */
export class Engine {
  private readonly combined = new Map<Pod, number>();
  private combinedCount = 0;

  constructor(readonly layers: readonly Layer[]) {}

  decide(flow: Flow): Verdict {
    const trace: TraceStep[] = [];
    let allowed = true;
    for (const layer of this.layers) {
      for (const step of layer.decide(flow)) {
        trace.push(step);
        if (!step.allowed) allowed = false;
      }
      // A packet stopped at one layer never reaches the next.
      if (!allowed) break;
    }
    const denial = trace.find((s) => !s.allowed);
    return { allowed, outcome: denial ? (denial.outcome ?? "dropped") : "forwarded", trace };
  }

  allowed(src: Endpoint, dst: Endpoint): ConnectionSet {
    let out = ConnectionSet.ALL;
    for (const layer of this.layers) {
      out = out.intersect(layer.allowed(src, dst));
      if (out.isEmpty()) break;
    }
    return out;
  }

  explain(src: Endpoint, dst: Endpoint): SideExplanation[] {
    return this.layers.flatMap((l) => l.explain(src, dst));
  }

  /** Pods with the same class number get the same answers from every layer. */
  classOf(pod: Pod): number {
    let c = this.combined.get(pod);
    if (c === undefined) {
      c = this.internClass(this.layers.map((l) => l.classOf(pod)).join(","));
      this.combined.set(pod, c);
    }
    return c;
  }

  private readonly classKeys = new Map<string, number>();
  private internClass(key: string): number {
    let c = this.classKeys.get(key);
    if (c === undefined) {
      c = this.combinedCount++;
      this.classKeys.set(key, c);
    }
    return c;
  }

  ipBoundaries(): number[] {
    const set = new Set<number>();
    for (const l of this.layers) for (const b of l.ipBoundaries()) set.add(b);
    return [...set].sort((a, b) => a - b);
  }
}

export interface CompiledPolicies {
  readonly engine: Engine;
  readonly netpol: NetpolLayer;
  readonly networkPolicies: readonly NetworkPolicy[];
}

/** Parses every policy object of the cluster and compiles the layers. */
export function compile(cluster: Cluster, diag: Diagnostics): CompiledPolicies {
  const networkPolicies = cluster.policies
    .filter((p) => p.kind === "NetworkPolicy")
    .map((p) => parseNetworkPolicy(p, diag));
  if (networkPolicies.length === 0 && cluster.pods.length > 0) {
    diag.warn("no-network-policies", "no NetworkPolicy in the input: every connection is allowed");
  }
  const netpol = new NetpolLayer(cluster, networkPolicies);
  return { engine: new Engine([netpol]), netpol, networkPolicies };
}
