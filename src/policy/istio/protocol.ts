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
  if (!sel) return false;
  let any = false;
  for (const k in sel) {
    any = true;
    if (pod.labels[k] !== sel[k]) return false;
  }
  return any;
}

/** Services by namespace, built once per cluster: a request must not scan every Service. */
const servicesIndex = new WeakMap<Cluster, Map<string, Service[]>>();
/** The answer per pod and container port (undefined stored as null). */
const answers = new WeakMap<Pod, Map<number, "http" | "grpc" | "tcp" | null>>();

function servicesIn(cluster: Cluster, namespace: string): readonly Service[] {
  let index = servicesIndex.get(cluster);
  if (!index) {
    index = new Map();
    for (const s of cluster.services) {
      const list = index.get(s.namespace);
      if (list) list.push(s);
      else index.set(s.namespace, [s]);
    }
    servicesIndex.set(cluster, index);
  }
  return index.get(namespace) ?? [];
}

function declaredFor(cluster: Cluster, pod: Pod, containerPort: number): "http" | "grpc" | "tcp" | null {
  for (const service of servicesIn(cluster, pod.namespace)) {
    if (!selects(service, pod)) continue;
    for (const port of service.ports) {
      if (targetPortOn(port, pod) !== containerPort) continue;
      const declared = declaredProtocol(port);
      if (declared === undefined) continue;
      if (declared.startsWith("grpc")) return "grpc";
      return HTTP_PROTOCOLS.has(declared) ? "http" : "tcp";
    }
  }
  return null;
}

/**
 * How the destination's sidecar treats a container port: "http" or "tcp" when a Service that
 * selects the pod declares it, undefined when nothing declares it (Istio then sniffs the
 * protocol: the request decides). With `keepGrpc`, gRPC ports answer "grpc".
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
  let perPod = answers.get(pod);
  if (!perPod) {
    perPod = new Map();
    answers.set(pod, perPod);
  }
  let answer = perPod.get(containerPort);
  if (answer === undefined) {
    answer = declaredFor(cluster, pod, containerPort);
    perPod.set(containerPort, answer);
  }
  if (answer === null) return undefined;
  return answer === "grpc" && !keepGrpc ? "http" : answer;
}
