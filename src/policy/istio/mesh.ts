import type { Labels } from "../../kube/labels.js";

/**
 * The mesh-wide settings that change what Istio policies mean. Defaults are Istio's:
 * root namespace `istio-system`, trust domain `cluster.local` (which is not the DNS suffix
 * `cluster.local`, though both default to the same text), no aliases, sidecar data plane.
 */
export interface MeshConfig {
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly trustDomainAliases: readonly string[];
  /** The DNS suffix of Service names (`name.ns.svc.<clusterDomain>`). */
  readonly clusterDomain: string;
  /** Which data plane enforces: Envoy sidecars, or ztunnel (ambient) at L4. */
  readonly profile: "sidecar" | "ztunnel";
  /** Path normalization before matching `paths` (Istio's meshConfig.pathNormalization). */
  readonly pathNormalization: "NONE" | "BASE" | "MERGE_SLASHES" | "DECODE_AND_MERGE_SLASHES";
  /** What the CUSTOM (ext_authz) provider answers, when a question needs it. */
  readonly extAuthz: "allow" | "deny" | undefined;
}

export const DEFAULT_MESH: MeshConfig = {
  rootNamespace: "istio-system",
  trustDomain: "cluster.local",
  trustDomainAliases: [],
  clusterDomain: "cluster.local",
  profile: "sidecar",
  pathNormalization: "BASE",
  extAuthz: undefined,
};

/** The destination of a request, as the mesh policies select it. */
export interface MeshTarget {
  readonly namespace: string;
  readonly labels: Labels;
  readonly serviceAccount?: string;
  /** The destination's IPv4, for `destination.ip` conditions. */
  readonly ip?: string;
}

/**
 * One connection or request as the destination's sidecar sees it. `principal` is the peer's
 * identity in AuthorizationPolicy form (`<trust domain>/ns/<ns>/sa/<sa>`), undefined for a
 * plaintext peer (no mTLS, no identity).
 */
export interface MeshRequest {
  readonly principal: string | undefined;
  /** The source namespace; for mTLS peers the `/ns/` segment of the principal decides. */
  readonly sourceNamespace?: string;
  readonly sourceIp?: string;
  /** The destination (container) port, after Service targetPort mapping. */
  readonly port: number;
  /** How the destination port is handled: HTTP (L7 fields apply) or opaque TCP. */
  readonly protocol: "http" | "tcp";
  readonly method?: string;
  /** As the client sent it, query string included. */
  readonly path?: string;
  readonly host?: string;
  /** Lower-case names. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly destinationIp?: string;
  readonly sni?: string;
  /** The ext_authz provider's answer, for CUSTOM policies (overrides MeshConfig.extAuthz). */
  readonly extAuthz?: "allow" | "deny";
}

/** `spiffe://td/ns/x/sa/y` → `td/ns/x/sa/y`, the form AuthorizationPolicy principals use. */
export function principalOf(spiffeId: string): string {
  return spiffeId.startsWith("spiffe://") ? spiffeId.slice("spiffe://".length) : spiffeId;
}

/** The SPIFFE ID Istio gives a pod: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`. */
export function workloadSpiffeId(mesh: MeshConfig, namespace: string, serviceAccount: string): string {
  return `spiffe://${mesh.trustDomain}/ns/${namespace}/sa/${serviceAccount || "default"}`;
}
