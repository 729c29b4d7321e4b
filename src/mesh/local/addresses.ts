/**
 * The addresses a local mesh creates and removes: one bridge with the pods on it, a virtual
 * range for Service ClusterIPs (never routed: every pod's own rules translate them), and the
 * cluster DNS Service at a kube-dns-like address. Ports are Istio's, so sidecar semantics and
 * documentation carry over.
 */
export const LOCAL_MESH = {
  /** Prefix of every network namespace, interface and file the mesh creates (cleanup finds leftovers by it). */
  prefix: "tessera",
  bridge: "tsr0",
  /** The host's address on the bridge: traffic from the host is from "outside the cluster". */
  bridgeIp: "10.213.0.1",
  podCidr: "10.213.0.0/16",
  podPrefixLength: 16,
  serviceCidr: "10.214.0.0/16",
  /** The `kube-dns` Service's ClusterIP (Kubernetes' 10.96.0.10, in the mesh's own range). */
  dnsServiceIp: "10.214.0.10",
  /** Where the sidecar takes redirected inbound traffic (Istio's 15006). */
  inboundCapturePort: 15006,
  /** Where the sidecar takes redirected outbound traffic (Istio's 15001). */
  outboundCapturePort: 15001,
  /** The sidecar's status port (Istio's 15020: app-health probes, metrics; 15021: readiness). */
  statusPort: 15020,
  /** Ports on a pod's address that are never redirected to the sidecar. */
  excludedInboundPorts: [15020, 15021, 15090],
} as const;

/** The n-th pod address (n from 0): 10.213.0.2, 10.213.0.3, ... skipping the bridge's .1. */
export function podIpAt(n: number): string {
  const host = n + 2;
  if (host > 65534) throw new Error("the local mesh has room for 65,533 pods");
  return `10.213.${host >> 8}.${host & 255}`;
}

/** The n-th Service ClusterIP (n from 0), after the addresses Kubernetes reserves (.1 and .10). */
export function serviceIpAt(n: number): string {
  const host = n + 11;
  if (host > 65534) throw new Error("the local mesh has room for 65,524 Services");
  return `10.214.${host >> 8}.${host & 255}`;
}
