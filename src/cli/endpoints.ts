import { parseIPv4 } from "../kube/ip.js";
import type { Cluster, Pod, Protocol, Service, Workload } from "../kube/objects.js";
import { findService } from "../kube/services.js";
import { UsageError } from "./common.js";

/** A command-line endpoint: a workload, an IPv4 address, or (destinations only) a Service. */
export type Target =
  | { kind: "workload"; workload: Workload; pods: readonly Pod[] }
  | { kind: "ip"; ip: number; text: string }
  | { kind: "service"; service: Service };

export function findWorkload(cluster: Cluster, text: string): Workload | undefined {
  const [ns, name] = text.includes("/") ? (text.split("/", 2) as [string, string]) : ["default", text];
  return cluster.workloads.find((w) => w.id === text || (w.namespace === ns && w.name === name));
}

/**
 * An endpoint named on the command line. A bare name that is both a workload and a Service (the
 * usual `httpbin` Deployment behind the `httpbin` Service) means the Service when the port is
 * one of the Service's ports and not a container port of the workload, as a caller dialing
 * `httpbin:8000` means; `ns/name` always names a workload, `name.ns[.svc...]` a Service.
 */
export function parseTarget(cluster: Cluster, text: string, allowService: boolean, port?: number): Target {
  const ip = parseIPv4(text);
  if (ip !== undefined) return { kind: "ip", ip, text };
  const w = findWorkload(cluster, text);
  const s = allowService ? findService(cluster, text) : undefined;
  if (w && s && port !== undefined) {
    const servicePort = s.ports.some((p) => p.port === port);
    const containerPort = w.pods.some((pod) => pod.ports.some((c) => c.port === port));
    if (servicePort && !containerPort) return { kind: "service", service: s };
  }
  if (w) return { kind: "workload", workload: w, pods: w.pods };
  if (s) return { kind: "service", service: s };
  throw new UsageError(
    `"${text}" is not a workload${allowService ? ", Service" : ""} or IPv4 address of the input (workloads: ns/name, or name in namespace default)`,
  );
}

/** Splits `DST:PORT`; an IPv4 address or name may carry a port suffix. */
export function splitPort(text: string): { target: string; port: number | undefined } {
  const m = /^(.*):(\d+)$/.exec(text);
  if (!m) return { target: text, port: undefined };
  return { target: m[1] as string, port: parsePortNumber(m[2] as string) };
}

export function parsePortNumber(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new UsageError(`port ${text} is out of range 1-65535`);
  return n;
}

export function parseProtocolOption(text: string): Protocol {
  const p = text.toUpperCase();
  if (p !== "TCP" && p !== "UDP" && p !== "SCTP")
    throw new UsageError(`--protocol ${text}: expected tcp, udp or sctp`);
  return p;
}
