import { POLICY_KINDS } from "../../kube/cluster.js";
import { Diagnostics } from "../../kube/errors.js";
import { clusterOf } from "../../kube/index.js";
import { formatIPv4 } from "../../kube/ip.js";
import type { RawObject } from "../../kube/load.js";
import type { Cluster, Pod } from "../../kube/objects.js";
import { WORKLOAD_KINDS } from "../../kube/workloads.js";
import { LOCAL_MESH, podIpAt, serviceIpAt } from "./addresses.js";

type Obj = Record<string, unknown>;

/** Marks the DNS pod the mesh adds: its app is Tessera's own DNS server. */
export const DNS_RUN = "tessera:dns";

/** The objects `up` runs: every input object, with addresses the mesh gave, and its cluster DNS. */
export interface ResolvedManifests {
  /** Namespaces, ServiceAccounts, workloads, Pods (with status.podIP), Services (with spec.clusterIP). */
  readonly workloads: Obj[];
  /** NetworkPolicy, PeerAuthentication, AuthorizationPolicy objects, as written. */
  readonly policies: Obj[];
  readonly cluster: Cluster;
}

const meta = (o: Obj) => (o.metadata ?? {}) as Obj;
const nsOf = (o: Obj) => (typeof meta(o).namespace === "string" ? (meta(o).namespace as string) : "default");
const nameOf = (o: Obj) => String(meta(o).name ?? "");
const clone = <T>(v: T): T => structuredClone(v);

/** The cluster DNS of the mesh: kube-system/kube-dns serving UDP and TCP 53 at LOCAL_MESH.dnsServiceIp. */
function dnsObjects(objects: readonly Obj[]): Obj[] {
  const out: Obj[] = [];
  if (!objects.some((o) => o.kind === "Namespace" && nameOf(o) === "kube-system")) {
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: "kube-system" } });
  }
  out.push(
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "kube-dns", namespace: "kube-system" },
      spec: {
        selector: { matchLabels: { "k8s-app": "kube-dns" } },
        template: {
          metadata: { labels: { "k8s-app": "kube-dns" }, annotations: { "tessera.io/run": DNS_RUN } },
          spec: {
            containers: [
              {
                name: "dns",
                image: "tessera/dns",
                ports: [
                  { name: "dns", containerPort: 53, protocol: "UDP" },
                  { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                ],
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kube-dns", namespace: "kube-system", labels: { "k8s-app": "kube-dns" } },
      spec: {
        selector: { "k8s-app": "kube-dns" },
        clusterIP: LOCAL_MESH.dnsServiceIp,
        ports: [
          { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
        ],
      },
    },
  );
  return out;
}

function templateOf(o: Obj): Obj | undefined {
  const spec = o.spec as Obj | undefined;
  if (o.kind === "CronJob")
    return ((spec?.jobTemplate as Obj | undefined)?.spec as Obj | undefined)?.template as Obj;
  return spec?.template as Obj | undefined;
}

/**
 * Gives every pod an address and every Service a ClusterIP, and turns each workload's template
 * into one Pod object owned by the workload, so the same manifests (read by the sidecars, the
 * packet filter and `tessera can`) know where everything is. A workload runs one replica here.
 */
export function resolveManifests(raws: readonly RawObject[]): ResolvedManifests {
  const inputs = raws.map((r) => r.value as Obj);
  const hasDns = inputs.some(
    (o) =>
      (o.kind === "Service" && nsOf(o) === "kube-system" && nameOf(o) === "kube-dns") ||
      (o.kind === "Deployment" && nsOf(o) === "kube-system" && nameOf(o) === "kube-dns"),
  );
  const objects = [...inputs.map(clone), ...(hasDns ? [] : dnsObjects(inputs))];
  const policies = objects.filter((o) => POLICY_KINDS.has(String(o.kind)));
  const rest = objects.filter((o) => !POLICY_KINDS.has(String(o.kind)));
  const asRaw = (list: Obj[]) => list.map((value, i) => ({ value, source: { file: "<mesh>", line: i + 1 } }));
  // First pass: which pods exist (one per workload), in a stable order.
  const first = clusterOf(asRaw(rest), new Diagnostics()).cluster;
  const ipOf = new Map<string, string>();
  first.pods.forEach((p, i) => {
    ipOf.set(`${p.namespace}/${p.workload.name}/${p.name}`, podIpAt(i));
  });
  const workloads: Obj[] = [];
  let serviceIndex = 0;
  for (const o of rest) {
    if (o.kind === "Service") {
      const spec = (o.spec ?? {}) as Obj;
      if (nsOf(o) === "kube-system" && nameOf(o) === "kube-dns") spec.clusterIP = LOCAL_MESH.dnsServiceIp;
      else spec.clusterIP = serviceIpAt(serviceIndex++);
      o.spec = spec;
      workloads.push(o);
    } else if (o.kind === "Pod") {
      const pod = first.pods.find((p) => p.namespace === nsOf(o) && p.name === nameOf(o) && !p.fromTemplate);
      const ip = pod ? ipOf.get(`${pod.namespace}/${pod.workload.name}/${pod.name}`) : undefined;
      o.status = { ...((o.status as Obj | undefined) ?? {}), ...(ip ? { podIP: ip } : {}) };
      workloads.push(o);
    } else if (WORKLOAD_KINDS.has(String(o.kind))) {
      workloads.push(o);
      const w = first.workloads.find(
        (x) => x.namespace === nsOf(o) && x.name === nameOf(o) && x.kind === o.kind,
      );
      const pod = w?.pods[0];
      if (!w || !pod?.fromTemplate) continue;
      const template = templateOf(o) ?? {};
      const tmeta = (template.metadata ?? {}) as Obj;
      workloads.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          ...clone(tmeta),
          name: `${w.name}-0`,
          namespace: w.namespace,
          ownerReferences: [{ apiVersion: o.apiVersion, kind: o.kind, name: w.name, controller: true }],
        },
        spec: clone((template.spec ?? {}) as Obj),
        status: { podIP: ipOf.get(`${pod.namespace}/${pod.workload.name}/${pod.name}`) },
      });
    } else {
      workloads.push(o);
    }
  }
  const cluster = clusterOf(asRaw([...workloads, ...policies]), new Diagnostics()).cluster;
  return { workloads, policies, cluster };
}

export const podIp = (pod: Pod): string => {
  if (pod.ip === undefined) throw new Error(`${pod.namespace}/${pod.name} has no address`);
  return formatIPv4(pod.ip);
};
