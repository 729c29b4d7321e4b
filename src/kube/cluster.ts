import { readContainers } from "./containers.js";
import { type Diagnostics, displayValue, InputError, type SourceRef } from "./errors.js";
import { parseIPv4 } from "./ip.js";
import { type Labels, readLabels } from "./labels.js";
import type { RawObject } from "./load.js";
import {
  type Cluster,
  type ContainerPort,
  type Namespace,
  objectName,
  type Pod,
  type PolicyObject,
  parseProtocol,
  type Service,
  type ServicePort,
  type Workload,
} from "./objects.js";
import { resolveWorkloads, WORKLOAD_KINDS, type WorkloadObject } from "./workloads.js";

/** Kinds that a policy layer reads; the layer validates their specs. */
export const POLICY_KINDS = new Set(["NetworkPolicy", "PeerAuthentication", "AuthorizationPolicy"]);

type Obj = Record<string, unknown>;

function asObject(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** A policy object as the policy layers read it (they validate the spec). */
export function policyObjectOf(raw: RawObject): PolicyObject {
  const { kind, name, namespace, meta } = metadataOf(raw);
  const created = meta.creationTimestamp;
  return {
    kind,
    apiVersion: displayValue(raw.value.apiVersion ?? ""),
    namespace: namespace ?? "default",
    name,
    spec: raw.value.spec,
    source: raw.source,
    creationTimestamp: typeof created === "string" ? created : undefined,
    annotations: readAnnotations(meta.annotations),
  };
}

export function metadataOf(raw: RawObject): {
  kind: string;
  name: string;
  namespace: string | undefined;
  meta: Obj;
} {
  if (typeof raw.value !== "object" || raw.value === null) {
    throw new InputError(
      "not-an-object",
      "a document must be a Kubernetes object (a map with kind)",
      raw.source,
    );
  }
  const kind = raw.value.kind;
  if (typeof kind !== "string" || kind === "") {
    throw new InputError(
      "missing-kind",
      "field kind is missing in the object (every Kubernetes object needs apiVersion and kind)",
      raw.source,
    );
  }
  const meta = asObject(raw.value.metadata);
  const name = meta?.name;
  if (!meta || typeof name !== "string" || name === "") {
    throw new InputError("missing-name", `metadata.name is missing in a ${kind}`, raw.source, kind);
  }
  const ns = meta.namespace;
  if (ns !== undefined && ns !== null && typeof ns !== "string") {
    throw new InputError("invalid-namespace", "metadata.namespace must be a string", raw.source, kind);
  }
  return { kind, name, namespace: typeof ns === "string" && ns !== "" ? ns : undefined, meta };
}

function readPort(value: unknown, field: string, source: SourceRef, object: string): number {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new InputError(
      "invalid-port",
      `${field}: port ${displayValue(value)} is out of range 1-65535`,
      source,
      object,
    );
  }
  return n;
}

export function readContainerPorts(
  podSpec: Obj | undefined,
  source: SourceRef,
  object: string,
  diag?: Diagnostics,
): ContainerPort[] {
  const ports: ContainerPort[] = [];
  for (const listName of ["containers", "initContainers"]) {
    const containers = podSpec?.[listName];
    if (!Array.isArray(containers)) continue;
    containers.forEach((c, ci) => {
      const rawPorts = asObject(c)?.ports;
      if (!Array.isArray(rawPorts)) return;
      rawPorts.forEach((p, pi) => {
        const po = asObject(p);
        const field = `spec.${listName}[${ci}].ports[${pi}]`;
        if (!po) throw new InputError("invalid-port", `${field} must be a map`, source, object);
        const protocol = parseProtocol(po.protocol);
        if (!protocol) {
          throw new InputError(
            "invalid-protocol",
            `${field}.protocol: ${displayValue(po.protocol)} is not TCP, UDP or SCTP`,
            source,
            object,
          );
        }
        const name = typeof po.name === "string" && po.name !== "" ? po.name : undefined;
        if (po.containerPort === undefined || po.containerPort === null) {
          // The API server would refuse this pod; as written it serves nothing on that entry.
          const others = Object.keys(po).filter(
            (k) => !["name", "protocol", "hostPort", "hostIP"].includes(k),
          );
          diag?.warn(
            "missing-container-port",
            `${field}: containerPort is missing${others.length ? ` (unknown field ${others.map((k) => `"${k}"`).join(", ")})` : ""}; the entry is ignored, so named port "${name ?? ""}" resolves to nothing`,
            source,
            object,
          );
          return;
        }
        ports.push({
          name,
          port: readPort(po.containerPort, `${field}.containerPort`, source, object),
          protocol,
        });
      });
    });
  }
  return ports;
}

function readPodIP(status: Obj | undefined): number | undefined {
  const direct = typeof status?.podIP === "string" ? parseIPv4(status.podIP) : undefined;
  if (direct !== undefined) return direct;
  const ips = status?.podIPs;
  if (Array.isArray(ips)) {
    for (const entry of ips) {
      const ip = asObject(entry)?.ip;
      const parsed = typeof ip === "string" ? parseIPv4(ip) : undefined;
      if (parsed !== undefined) return parsed;
    }
  }
  return undefined;
}

function readService(raw: RawObject, namespace: string, name: string): Service {
  const object = objectName("Service", namespace, name);
  const spec = asObject(raw.value.spec);
  const selectorRaw = spec?.selector;
  const selector =
    selectorRaw === undefined || selectorRaw === null
      ? undefined
      : readLabels(selectorRaw, "spec.selector", raw.source, object);
  const ports: ServicePort[] = [];
  const rawPorts = spec?.ports;
  if (Array.isArray(rawPorts)) {
    rawPorts.forEach((p, i) => {
      const po = asObject(p) ?? {};
      const field = `spec.ports[${i}]`;
      const port = readPort(po.port, `${field}.port`, raw.source, object);
      const protocol = parseProtocol(po.protocol);
      if (!protocol) {
        throw new InputError(
          "invalid-protocol",
          `${field}.protocol: ${displayValue(po.protocol)} is not TCP, UDP or SCTP`,
          raw.source,
          object,
        );
      }
      const tp = po.targetPort;
      const targetPort =
        tp === undefined || tp === null
          ? port
          : typeof tp === "string" && !/^\d+$/.test(tp)
            ? tp
            : readPort(tp, `${field}.targetPort`, raw.source, object);
      ports.push({
        name: typeof po.name === "string" ? po.name : undefined,
        port,
        protocol,
        targetPort,
        appProtocol: typeof po.appProtocol === "string" && po.appProtocol !== "" ? po.appProtocol : undefined,
      });
    });
  }
  const clusterIp = typeof spec?.clusterIP === "string" ? parseIPv4(spec.clusterIP) : undefined;
  return { namespace, name, selector, ports, clusterIp, source: raw.source };
}

/**
 * Builds the object model from raw objects: namespaces, pods grouped by top-level owner,
 * services, and the policy objects that the policy layers parse. Unknown kinds are skipped
 * with one warning per kind.
 */
export function buildCluster(raws: readonly RawObject[], diag: Diagnostics): Cluster {
  const seen = new Map<string, SourceRef>();
  const namespaces = new Map<string, Namespace>();
  const podObjects: { raw: RawObject; namespace: string; name: string; meta: Obj }[] = [];
  const workloadObjects: WorkloadObject[] = [];
  const services: Service[] = [];
  const policies: PolicyObject[] = [];
  const skipped = new Map<string, { count: number; source: SourceRef }>();

  for (const raw of raws) {
    const { kind, name, namespace, meta } = metadataOf(raw);
    const ns = kind === "Namespace" ? undefined : (namespace ?? "default");
    const key = `${kind}/${ns ?? ""}/${name}`;
    const earlier = seen.get(key);
    if (earlier) {
      throw new InputError(
        "duplicate-object",
        `${kind} "${ns ? `${ns}/` : ""}${name}" already exists (first at ${earlier.file}:${earlier.line}); only one object of a given kind can have a given name at a time`,
        raw.source,
        objectName(kind, ns, name),
      );
    }
    seen.set(key, raw.source);
    const object = objectName(kind, ns, name);
    if (kind === "Namespace") {
      // No prototype, as readLabels returns: selectors look labels up by key.
      const labels: Record<string, string> = Object.assign(
        Object.create(null),
        readLabels(meta.labels, "metadata.labels", raw.source, object),
      );
      labels["kubernetes.io/metadata.name"] = name;
      namespaces.set(name, { name, labels, source: raw.source });
    } else if (kind === "Pod") {
      podObjects.push({ raw, namespace: ns as string, name, meta });
    } else if (WORKLOAD_KINDS.has(kind)) {
      workloadObjects.push({ raw, kind, namespace: ns as string, name, meta });
    } else if (kind === "Service") {
      services.push(readService(raw, ns as string, name));
    } else if (POLICY_KINDS.has(kind)) {
      policies.push(policyObjectOf(raw));
    } else {
      const s = skipped.get(kind);
      if (s) s.count++;
      else skipped.set(kind, { count: 1, source: raw.source });
    }
  }
  for (const [kind, { count, source }] of skipped) {
    diag.warn(
      "unknown-kind",
      `skipped ${count} object(s) of kind ${kind}: not analyzed by this version`,
      source,
    );
  }

  const pods: Pod[] = [];
  for (const { raw, namespace, name, meta } of podObjects) {
    const object = objectName("Pod", namespace, name);
    const spec = asObject(raw.value.spec);
    pods.push(
      makePod({
        namespace,
        name,
        labels: readLabels(meta.labels, "metadata.labels", raw.source, object),
        annotations: readAnnotations(meta.annotations),
        spec,
        ip: readPodIP(asObject(raw.value.status)),
        source: raw.source,
        object,
        fromTemplate: false,
        diag,
      }),
    );
  }
  const podOwners = new Map<Pod, Obj>();
  podObjects.forEach((p, i) => {
    podOwners.set(pods[i] as Pod, p.meta);
  });
  const workloads = resolveWorkloads(pods, podOwners, workloadObjects, (w, template, object) => {
    const tmeta = asObject(template?.metadata) ?? {};
    return makePod({
      namespace: w.namespace,
      name: `${w.name}-pod`,
      labels: readLabels(tmeta.labels, "spec.template.metadata.labels", w.source, object),
      annotations: readAnnotations(tmeta.annotations),
      spec: asObject(template?.spec),
      ip: undefined,
      source: w.source,
      object,
      fromTemplate: true,
      diag,
    });
  });

  const allPods = workloads.flatMap((w) => w.pods);
  for (const p of allPods) {
    if (!namespaces.has(p.namespace)) {
      namespaces.set(p.namespace, {
        name: p.namespace,
        labels: Object.assign(Object.create(null), { "kubernetes.io/metadata.name": p.namespace }),
        source: undefined,
      });
    }
  }
  return { namespaces, workloads, pods: allPods, services, policies };
}

function readAnnotations(raw: unknown): Labels {
  const out: Record<string, string> = Object.create(null);
  const obj = asObject(raw);
  if (obj) for (const [k, v] of Object.entries(obj)) out[k] = displayValue(v);
  return out;
}

function makePod(p: {
  namespace: string;
  name: string;
  labels: Labels;
  annotations: Labels;
  spec: Obj | undefined;
  ip: number | undefined;
  source: SourceRef;
  object: string;
  fromTemplate: boolean;
  diag: Diagnostics;
}): Pod {
  const sa = p.spec?.serviceAccountName ?? p.spec?.serviceAccount;
  return {
    namespace: p.namespace,
    name: p.name,
    labels: p.labels,
    annotations: p.annotations,
    ip: p.ip,
    ports: readContainerPorts(p.spec, p.source, p.object, p.diag),
    containers: readContainers(p.spec, p.source, p.object),
    serviceAccount: typeof sa === "string" && sa !== "" ? sa : "default",
    source: p.source,
    fromTemplate: p.fromTemplate,
    // Set by resolveWorkloads before anyone reads it.
    workload: undefined as unknown as Workload,
  };
}
