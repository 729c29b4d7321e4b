import type { Cluster, Pod, Service, ServicePort } from "../../kube/objects.js";
import { targetPortOn } from "../../kube/services.js";

/** Istio's HTTP protocols: authorization reads the request on these; everything else is opaque TCP. */
const HTTP_PROTOCOLS = new Set(["http", "http2", "grpc", "grpc-web", "h2c"]);

/** The protocol a Service port declares: `appProtocol`, else the name's prefix (`http-web` → http). */
export function declaredProtocol(port: ServicePort): string | undefined {
  const declared = port.appProtocol ?? port.name?.split("-")[0];
  return declared ? declared.toLowerCase() : undefined;
}

function selects(service: Service, pod: Pod): boolean {
  const sel = service.selector;
  if (!sel || Object.keys(sel).length === 0 || service.namespace !== pod.namespace) return false;
  return Object.entries(sel).every(([k, v]) => pod.labels[k] === v);
}

/**
 * How the destination's sidecar treats a container port: "http" or "tcp" when a Service that
 * selects the pod declares it, undefined when nothing declares it (Istio then sniffs the
 * protocol: the request decides).
 */
export function portProtocol(cluster: Cluster, pod: Pod, containerPort: number): "http" | "tcp" | undefined;
export function portProtocol(
  cluster: Cluster,
  pod: Pod,
  containerPort: number,
  keepGrpc: true,
): "http" | "grpc" | "tcp" | undefined;
export function portProtocol(
  cluster: Cluster,
  pod: Pod,
  containerPort: number,
  keepGrpc = false,
): "http" | "grpc" | "tcp" | undefined {
  for (const service of cluster.services) {
    if (!selects(service, pod)) continue;
    for (const port of service.ports) {
      if (targetPortOn(port, pod) !== containerPort) continue;
      const declared = declaredProtocol(port);
      if (declared === undefined) continue;
      if (keepGrpc && declared.startsWith("grpc")) return "grpc";
      return HTTP_PROTOCOLS.has(declared) ? "http" : "tcp";
    }
  }
  return undefined;
}
