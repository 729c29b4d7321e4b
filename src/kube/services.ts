import type { Cluster, Pod, Service, ServicePort } from "./objects.js";

/** Finds a Service by `name` (namespace default), `name.ns`, `name.ns.svc` or `name.ns.svc.<domain>`. */
export function findService(
  cluster: Cluster,
  text: string,
  clusterDomain = "cluster.local",
): Service | undefined {
  let host = text;
  if (host.endsWith(`.svc.${clusterDomain}`)) host = host.slice(0, -`.svc.${clusterDomain}`.length);
  else if (host.endsWith(".svc")) host = host.slice(0, -".svc".length);
  const [name, namespace, ...rest] = host.split(".");
  if (rest.length > 0 || !name) return undefined;
  const ns = namespace ?? "default";
  return cluster.services.find((s) => s.name === name && s.namespace === ns);
}

/** Pods that a Service's selector picks (none for a Service without selector). */
export function serviceBackends(cluster: Cluster, service: Service): Pod[] {
  const sel = service.selector;
  if (!sel || Object.keys(sel).length === 0) return [];
  return cluster.pods.filter(
    (p) => p.namespace === service.namespace && Object.entries(sel).every(([k, v]) => p.labels[k] === v),
  );
}

/** The container port a Service port reaches on one pod; undefined when a named targetPort is absent there. */
export function targetPortOn(port: ServicePort, pod: Pod): number | undefined {
  if (typeof port.targetPort === "number") return port.targetPort;
  return pod.ports.find((c) => c.name === port.targetPort && c.protocol === port.protocol)?.port;
}
