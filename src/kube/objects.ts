import type { Container } from "./containers.js";
import type { SourceRef } from "./errors.js";
import type { Labels } from "./labels.js";

export type Protocol = "TCP" | "UDP" | "SCTP";
/** Alphabetical, the order in which connection sets are printed. */
export const PROTOCOLS: readonly Protocol[] = ["SCTP", "TCP", "UDP"];

export function parseProtocol(value: unknown): Protocol | undefined {
  if (value === undefined || value === null) return "TCP";
  if (value === "TCP" || value === "UDP" || value === "SCTP") return value;
  return undefined;
}

export interface ContainerPort {
  readonly name: string | undefined;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface Namespace {
  readonly name: string;
  /** Always holds `kubernetes.io/metadata.name`. */
  readonly labels: Labels;
  readonly source: SourceRef | undefined;
}

/** The top-level owner that names a group of pods: `ns/name[Kind]`. */
export interface Workload {
  readonly namespace: string;
  readonly name: string;
  readonly kind: string;
  readonly id: string;
  readonly source: SourceRef;
  readonly pods: Pod[];
}

export interface Pod {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  /** IPv4 from status.podIP(s), when known. */
  readonly ip: number | undefined;
  readonly ports: readonly ContainerPort[];
  /** The app containers: what they run and how they are probed. */
  readonly containers: readonly Container[];
  readonly serviceAccount: string;
  readonly annotations: Labels;
  readonly source: SourceRef;
  /** True when this pod stands for the pods of a workload's template. */
  readonly fromTemplate: boolean;
  workload: Workload;
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  readonly protocol: Protocol;
  /** A number, or a container port name resolved per pod. */
  readonly targetPort: number | string;
  /** The application protocol (`http`, `grpc`, `tcp`, ...), when declared. */
  readonly appProtocol: string | undefined;
}

export interface Service {
  readonly namespace: string;
  readonly name: string;
  /** Absent selector: a Service without selector (endpoints managed elsewhere). */
  readonly selector: Labels | undefined;
  readonly ports: readonly ServicePort[];
  /** spec.clusterIP, when the manifest gives one (IPv4; "None" for headless is not kept). */
  readonly clusterIp: number | undefined;
  readonly source: SourceRef;
}

/** An object of a kind that a policy layer parses (NetworkPolicy, ...), kept as written. */
export interface PolicyObject {
  readonly kind: string;
  readonly apiVersion: string;
  readonly namespace: string;
  readonly name: string;
  readonly spec: unknown;
  readonly source: SourceRef;
  /** metadata.creationTimestamp as written (RFC 3339), for "oldest policy wins" rules. */
  readonly creationTimestamp: string | undefined;
  /** metadata.annotations (string values), e.g. Istio's `istio.io/dry-run`. */
  readonly annotations: Readonly<Record<string, string>>;
}

export interface Cluster {
  readonly namespaces: ReadonlyMap<string, Namespace>;
  readonly workloads: readonly Workload[];
  readonly pods: readonly Pod[];
  readonly services: readonly Service[];
  readonly policies: readonly PolicyObject[];
}

export function objectName(kind: string, namespace: string | undefined, name: string): string {
  return namespace ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;
}
