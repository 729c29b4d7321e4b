import type { Diagnostics } from "../kube/errors.js";
import type { Cluster, Pod } from "../kube/objects.js";
import { ConnectionSet } from "./connset.js";
import { CompiledAuthz } from "./istio/authz/compiled.js";
import type { AuthorizationPolicy } from "./istio/authz/model.js";
import { parseAuthorizationPolicy } from "./istio/authz/parse.js";
import { IstioMesh } from "./istio/layer.js";
import { DEFAULT_MESH, type MeshConfig } from "./istio/mesh.js";
import { CompiledPeerAuthn, type PeerAuthentication, parsePeerAuthentication } from "./istio/peerauthn.js";
import { warnDanglingReferences } from "./istio/references.js";
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

  constructor(
    readonly layers: readonly Layer[],
    /** The service mesh's proxies (peer authentication, then authorization), after L3/L4. */
    readonly mesh?: IstioMesh,
  ) {
    this.deciders = mesh ? [...layers, mesh] : layers;
  }

  /** Everything that decides a flow, in the order a packet meets it (built once: decide is hot). */
  private readonly deciders: ReadonlyArray<{ decide(flow: Flow): readonly TraceStep[] }>;

  decide(flow: Flow): Verdict {
    const trace: TraceStep[] = [];
    let allowed = true;
    for (const layer of this.deciders) {
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
  readonly peerAuthentications: readonly PeerAuthentication[];
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  readonly mesh: IstioMesh;
}

/** Parses every policy object of the cluster and compiles the layers. */
export function compile(
  cluster: Cluster,
  diag: Diagnostics,
  meshOptions: Partial<MeshConfig> = {},
): CompiledPolicies {
  const mesh: MeshConfig = { ...DEFAULT_MESH, ...meshOptions };
  const ofKind = (kind: string) => cluster.policies.filter((p) => p.kind === kind);
  const networkPolicies = ofKind("NetworkPolicy").map((p) => parseNetworkPolicy(p, diag));
  const peerAuthentications = ofKind("PeerAuthentication").map((p) => parsePeerAuthentication(p, diag, mesh));
  const authorizationPolicies = ofKind("AuthorizationPolicy").map((p) => parseAuthorizationPolicy(p, diag));
  if (networkPolicies.length === 0 && cluster.pods.length > 0) {
    diag.warn("no-network-policies", "no NetworkPolicy in the input: every connection is allowed at L3/L4");
  }
  warnDanglingReferences(authorizationPolicies, cluster, mesh, diag);
  const netpol = new NetpolLayer(cluster, networkPolicies);
  const istio = new IstioMesh(
    cluster,
    mesh,
    new CompiledPeerAuthn(peerAuthentications, mesh, diag),
    new CompiledAuthz(authorizationPolicies, mesh),
  );
  return {
    engine: new Engine([netpol], istio),
    netpol,
    networkPolicies,
    peerAuthentications,
    authorizationPolicies,
    mesh: istio,
  };
}
