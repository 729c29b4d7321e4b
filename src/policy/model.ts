import type { Pod, Protocol } from "../kube/objects.js";
import type { ConnectionSet } from "./connset.js";
import type { Direction, PolicyRef } from "./netpol/model.js";

export type { Direction, PolicyRef };

/** One end of a flow: a pod of the cluster, or an IPv4 address outside it. */
export type Endpoint =
  | { readonly kind: "pod"; readonly pod: Pod }
  | { readonly kind: "ip"; readonly ip: number };

/**
 * What the engine decides on. Later layers read more of it (the caller's SPIFFE identity,
 * the HTTP request); the L3/L4 layers read only the endpoints, protocol and port.
 */
export interface Flow {
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly protocol: Protocol;
  readonly port: number;
  /** The caller's authenticated identity (a SPIFFE ID), when the connection carried one (mTLS). */
  readonly identity?: string;
  /** The request, for layers that authorize at L7. */
  readonly http?: HttpRequest;
}

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly host: string;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * What the caller observes. `dropped`: an L3/L4 NetworkPolicy discarded the packets and the
 * caller times out; `connection-reset`: the sidecar refused plaintext under STRICT mTLS;
 * `handshake-failed`: the peer's trust domain is not trusted; `http-403` (`RBAC: access
 * denied`), `grpc-permission-denied` and `tcp-closed`: authorization refused; `dns-blocked`:
 * the Service name could not be resolved; `forwarded`: the request reached the server.
 */
export type Outcome =
  | "forwarded"
  | "dropped"
  | "dns-blocked"
  | "connection-reset"
  | "handshake-failed"
  | "http-403"
  | "grpc-permission-denied"
  | "tcp-closed";

/** Why a layer let a flow pass or stopped it: the policy and rule that decided, or the default. */
export interface TraceStep {
  readonly layer: string;
  readonly direction: Direction;
  readonly allowed: boolean;
  /** The deciding policy; absent when a default decided. */
  readonly policy?: PolicyRef;
  /** Index of the deciding rule in the policy's ingress/egress list. */
  readonly rule?: number;
  /** The default that applied, when no rule decided, e.g. "not isolated", "isolated, no rule matches". */
  readonly default?: string;
  /** Policies that isolate this side and had a say, for "deny" explanations. */
  readonly isolatedBy?: readonly PolicyRef[];
  /** What the caller sees when this step denies (default: `dropped`). */
  readonly outcome?: Outcome;
  /** A sentence for people: the action, mode or rule that applied. */
  readonly detail?: string;
}

export interface Verdict {
  readonly allowed: boolean;
  /** What the caller observes: the first denying step's outcome, or `forwarded`. */
  readonly outcome: Outcome;
  /** One step per layer and direction, in the order a packet meets them; stops at the first deny. */
  readonly trace: readonly TraceStep[];
}

/** A rule's contribution to what a pair of endpoints may exchange. */
export interface Contribution {
  readonly policy: PolicyRef;
  readonly rule: number;
  readonly allowed: ConnectionSet;
}

/** What one side (a layer and direction) allows between two endpoints, and why. */
export interface SideExplanation {
  readonly layer: string;
  readonly direction: Direction;
  readonly isolatedBy: readonly PolicyRef[];
  readonly contributions: readonly Contribution[];
  readonly allowed: ConnectionSet;
}

/**
 * A policy layer of the engine. A layer is compiled once from the cluster and its policies
 * and then answers without I/O. Pods with the same class index are indistinguishable to the
 * layer; the engine refines classes across layers.
 */
export interface Layer {
  readonly name: string;
  /** Pods with equal class numbers get equal answers from this layer. */
  classOf(pod: Pod): number;
  /** IPv4 range starts (and ends + 1) that this layer's rules distinguish. */
  ipBoundaries(): readonly number[];
  decide(flow: Flow): readonly TraceStep[];
  /** Everything this layer allows from src to dst. */
  allowed(src: Endpoint, dst: Endpoint): ConnectionSet;
  /** `allowed` with the endpoints' classes already known (-1 for an IP), for bulk analysis. */
  allowedByClass(src: Endpoint, srcClass: number, dst: Endpoint, dstClass: number): ConnectionSet;
  /** A cheap necessary condition for any connection between two pod classes. */
  mayConnect(srcClass: number, dstClass: number): boolean;
  explain(src: Endpoint, dst: Endpoint): readonly SideExplanation[];
}

export function describeEndpoint(e: Endpoint): string {
  return e.kind === "pod" ? `${e.pod.namespace}/${e.pod.name}` : ipText(e.ip);
}

function ipText(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function policyName(p: PolicyRef): string {
  return `${p.namespace}/${p.name}`;
}
