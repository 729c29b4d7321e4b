import type { RawObject } from "./load.js";
import { objectName, type Pod, type Workload } from "./objects.js";

export const WORKLOAD_KINDS = new Set([
  "Deployment",
  "ReplicaSet",
  "StatefulSet",
  "DaemonSet",
  "Job",
  "CronJob",
  "ReplicationController",
]);

type Obj = Record<string, unknown>;

export interface WorkloadObject {
  raw: RawObject;
  kind: string;
  namespace: string;
  name: string;
  meta: Obj;
}

interface OwnerRef {
  kind: string | undefined;
  name: string;
}

/** The controller owner reference (the one with `controller: true`). */
function controllerOf(meta: Obj): OwnerRef | undefined {
  const refs = meta.ownerReferences;
  if (!Array.isArray(refs)) return undefined;
  for (const r of refs) {
    if (typeof r !== "object" || r === null) continue;
    const ref = r as Obj;
    if (ref.controller === true && typeof ref.name === "string" && ref.name !== "") {
      return { kind: typeof ref.kind === "string" && ref.kind !== "" ? ref.kind : undefined, name: ref.name };
    }
  }
  return undefined;
}

function templateOf(w: WorkloadObject): Obj | undefined {
  const spec = w.raw.value.spec as Obj | undefined;
  if (w.kind === "CronJob") {
    const jobSpec = ((spec?.jobTemplate as Obj | undefined)?.spec ?? undefined) as Obj | undefined;
    return jobSpec?.template as Obj | undefined;
  }
  return spec?.template as Obj | undefined;
}

/**
 * Groups pods by their top-level owner present in the input: a pod's controller is followed
 * up through owners that are in the input. A controller absent from the input still names
 * the group (a ReplicaSet whose Deployment is not given); a Node owner (static pod) or no
 * owner makes the pod its own `[Pod]` workload; an owner reference without kind groups pods
 * under that name as `[Pod]`. A workload object with no pods in the input gets one pod made
 * from its template, which stands for all its replicas.
 */
export function resolveWorkloads(
  pods: readonly Pod[],
  podMeta: ReadonlyMap<Pod, Obj>,
  objects: readonly WorkloadObject[],
  templatePod: (w: Workload, template: Obj | undefined, object: string) => Pod,
): Workload[] {
  const byKey = new Map<string, WorkloadObject>();
  for (const o of objects) byKey.set(`${o.kind}/${o.namespace}/${o.name}`, o);

  const groups = new Map<string, Workload>();
  const group = (namespace: string, name: string, kind: string, source: Workload["source"]): Workload => {
    const id = `${namespace}/${name}[${kind}]`;
    let w = groups.get(id);
    if (!w) {
      w = { namespace, name, kind, id, source, pods: [] };
      groups.set(id, w);
    }
    return w;
  };

  const topOf = (start: WorkloadObject): WorkloadObject => {
    let current = start;
    const visited = new Set<WorkloadObject>([current]);
    for (;;) {
      const ref = controllerOf(current.meta);
      const parent = ref?.kind ? byKey.get(`${ref.kind}/${current.namespace}/${ref.name}`) : undefined;
      if (!parent || visited.has(parent)) return current;
      visited.add(parent);
      current = parent;
    }
  };

  for (const pod of pods) {
    const ref = controllerOf(podMeta.get(pod) ?? {});
    let w: Workload;
    if (!ref || ref.kind === "Node") {
      w = group(pod.namespace, pod.name, "Pod", pod.source);
    } else if (!ref.kind) {
      w = group(pod.namespace, ref.name, "Pod", pod.source);
    } else {
      const owner = byKey.get(`${ref.kind}/${pod.namespace}/${ref.name}`);
      if (owner) {
        const top = topOf(owner);
        w = group(top.namespace, top.name, top.kind, top.raw.source);
      } else {
        w = group(pod.namespace, ref.name, ref.kind, pod.source);
      }
    }
    pod.workload = w;
    w.pods.push(pod);
  }

  for (const o of objects) {
    const top = topOf(o);
    const w = group(top.namespace, top.name, top.kind, top.raw.source);
    if (w.pods.length > 0) continue;
    const pod = templatePod(
      w,
      templateOf(top) ?? templateOf(o),
      objectName(top.kind, top.namespace, top.name),
    );
    pod.workload = w;
    w.pods.push(pod);
  }
  return [...groups.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
