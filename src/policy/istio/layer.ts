import { formatIPv4 } from "../../kube/ip.js";
import type { Cluster, Pod } from "../../kube/objects.js";
import { targetPortOn } from "../../kube/services.js";
import type { Endpoint, Flow, HttpRequest, TraceStep } from "../model.js";
import type { CompiledAuthz } from "./authz/compiled.js";
import { normalizePath, parsePrefix, type RequestFacts, requestFacts } from "./authz/match.js";
import type { AuthzDecision } from "./authz/reference.js";
import { sidecarInjected } from "./membership.js";
import { type MeshConfig, type MeshRequest, type MeshTarget, principalOf, workloadSpiffeId } from "./mesh.js";
import type { CompiledPeerAuthn } from "./peerauthn.js";
import { portProtocol } from "./protocol.js";
import {
  applyingPolicies,
  type CallerPlan,
  callerPlan,
  callerSignature,
  type MeshSummary,
  summarizeMesh,
} from "./summary.js";

export const PEER_AUTHN_LAYER = "PeerAuthentication";
export const AUTHZ_LAYER = "AuthorizationPolicy";

/**
 * The mesh as the destination's sidecar (or ztunnel) enforces it: peer authentication (mTLS
 * mode), then authorization. Pods outside the mesh have no proxy: nothing here applies to them
 * as destinations, and as sources they connect in plaintext with no identity.
 */
export class IstioMesh {
  private readonly membership = new Map<Pod, boolean>();

  constructor(
    private readonly cluster: Cluster,
    readonly mesh: MeshConfig,
    readonly peerAuthn: CompiledPeerAuthn,
    readonly authz: CompiledAuthz,
  ) {}

  /**
   * Declares that the pod has a proxy whatever its labels say: a sidecar started by hand in
   * front of it (`tessera proxy run`) enforces the mesh for it. Call before any decision.
   */
  markInMesh(pod: Pod): void {
    this.membership.set(pod, true);
    this.#active = true;
  }

  /** Whether the pod has a proxy: a sidecar, or (ztunnel profile) an ambient namespace. */
  inMesh(pod: Pod): boolean {
    let inside = this.membership.get(pod);
    if (inside === undefined) {
      const ns = this.cluster.namespaces.get(pod.namespace);
      inside =
        this.mesh.profile === "ztunnel"
          ? (pod.labels["istio.io/dataplane-mode"] ?? ns?.labels["istio.io/dataplane-mode"]) === "ambient"
          : sidecarInjected(pod, ns);
      this.membership.set(pod, inside);
    }
    return inside;
  }

  /** The pod's SPIFFE ID when it is in the mesh. */
  identityOf(pod: Pod): string | undefined {
    return this.inMesh(pod) ? workloadSpiffeId(this.mesh, pod.namespace, pod.serviceAccount) : undefined;
  }

  /** One target object per pod, so the evaluators' per-target caches hit on every request. */
  targetOf(pod: Pod): MeshTarget {
    let target = this.targets.get(pod);
    if (!target) {
      target = {
        namespace: pod.namespace,
        labels: pod.labels,
        serviceAccount: pod.serviceAccount,
        ...(pod.ip === undefined ? {} : { ip: formatIPv4(pod.ip) }),
      };
      this.targets.set(pod, target);
    }
    return target;
  }
  private readonly targets = new Map<Pod, MeshTarget>();

  /**
   * The request the destination's proxy sees. The caller's identity is the one it presents:
   * `flow.identity` when given (a caller outside the input), else a mesh source's own SPIFFE ID
   * (auto mTLS), else none (plaintext). The port's protocol is what a Service declares; an
   * undeclared port follows the request, as Istio's protocol sniffing does. ztunnel sees L4 only.
   */
  requestOf(flow: Flow, dst: Pod): MeshRequest {
    const srcPod = flow.src.kind === "pod" ? flow.src.pod : undefined;
    const identity = flow.identity ?? (srcPod ? this.identityOf(srcPod) : undefined);
    const declared = portProtocol(this.cluster, dst, flow.port);
    const protocol =
      this.mesh.profile === "ztunnel"
        ? "tcp"
        : declared === undefined
          ? flow.http
            ? "http"
            : "tcp"
          : declared === "tcp"
            ? "tcp"
            : "http";
    const sourceIp = flow.src.kind === "ip" ? flow.src.ip : srcPod?.ip;
    const http =
      protocol === "http" ? (flow.http ?? { method: "GET", path: "/", host: "", headers: {} }) : undefined;
    return {
      principal: identity === undefined ? undefined : principalOf(identity),
      ...(srcPod ? { sourceNamespace: srcPod.namespace } : {}),
      ...(sourceIp === undefined ? {} : { sourceIp: formatIPv4(sourceIp) }),
      port: flow.port,
      protocol,
      ...(http ? { method: http.method, path: http.path, host: http.host, headers: http.headers } : {}),
      ...(dst.ip === undefined ? {} : { destinationIp: formatIPv4(dst.ip) }),
      ...(this.mesh.extAuthz ? { extAuthz: this.mesh.extAuthz } : {}),
    };
  }

  /** How a Service that selects the pod declares the container port (undefined: undeclared, sniffed). */
  portProtocolOf(pod: Pod, containerPort: number): "http" | "tcp" | undefined {
    return portProtocol(this.cluster, pod, containerPort);
  }

  /** Container ports of the pod that a selecting Service declares a protocol for. */
  declaredPorts(pod: Pod): number[] {
    let ports = this.declared.get(pod);
    if (ports === undefined) {
      const found = new Set<number>();
      for (const service of this.cluster.services) {
        if (service.namespace !== pod.namespace) continue;
        for (const port of service.ports) {
          const n = targetPortOn(port, pod);
          if (n !== undefined && portProtocol(this.cluster, pod, n) !== undefined) found.add(n);
        }
      }
      ports = [...found].sort((a, b) => a - b);
      this.declared.set(pod, ports);
    }
    return ports;
  }
  private readonly declared = new Map<Pod, number[]>();

  /**
   * IPv4 range starts (and ends + 1) that AuthorizationPolicies tell apart (`ipBlocks`,
   * `remoteIpBlocks`, `source.ip`, `remote.ip`, `destination.ip`); none without a mesh.
   */
  ipBoundaries(): readonly number[] {
    if (this.#boundaries === undefined) {
      const out = new Set<number>();
      if (this.active) {
        const add = (cidr: string) => {
          const p = parsePrefix(cidr);
          if (p === undefined || p.v6) return;
          const start = Number(p.base);
          const end = start + 2 ** (32 - p.bits) - 1;
          out.add(start);
          if (end < 0xffffffff) out.add(end + 1);
        };
        for (const policy of this.authz.policies) {
          if (policy.rules === "none") continue;
          for (const r of policy.rules) {
            for (const s of r.from) {
              for (const v of [...s.ipBlocks, ...s.notIpBlocks, ...s.remoteIpBlocks, ...s.notRemoteIpBlocks])
                add(v);
            }
            for (const c of r.when) {
              if (c.key === "source.ip" || c.key === "remote.ip" || c.key === "destination.ip")
                for (const v of [...c.values, ...c.notValues]) add(v);
            }
          }
        }
      }
      this.#boundaries = [...out].sort((a, b) => a - b);
    }
    return this.#boundaries;
  }
  #boundaries: number[] | undefined;

  /** Which side of every mesh IP boundary an address is on (-1: no address). */
  private ipBucket(ip: number | undefined): number {
    if (ip === undefined) return -1;
    const b = this.ipBoundaries();
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((b[mid] as number) <= ip) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** What tells a source apart for the mesh: its proxy, identity and address. */
  private sourceKey(src: Endpoint): string {
    if (src.kind === "ip") return `ip:${this.ipBucket(src.ip)}`;
    const pod = src.pod;
    return `pod:${this.inMesh(pod) ? 1 : 0}:${pod.namespace}:${pod.serviceAccount}:${this.ipBucket(pod.ip)}`;
  }

  /** What tells a destination apart for the mesh: its proxy, the policies that apply, its ports and address. */
  private targetKey(pod: Pod): string {
    let key = this.targetKeys.get(pod);
    if (key === undefined) {
      if (!this.inMesh(pod)) key = "outside";
      else {
        const target = this.targetOf(pod);
        const names = (refs: readonly { namespace: string; name: string }[]) =>
          refs.map((r) => `${r.namespace}/${r.name}`);
        const winners = this.peerAuthn.winners(target);
        key = JSON.stringify([
          pod.namespace,
          pod.serviceAccount,
          this.ipBucket(pod.ip),
          names(applyingPolicies(this.authz.policies, target, this.mesh).map((p) => p.ref)).sort(),
          [winners.mesh, winners.namespace, winners.workload].map((w) => (w ? names([w.ref])[0] : "")),
          this.declaredPorts(pod).map((n) => `${n}:${portProtocol(this.cluster, pod, n, true)}`),
        ]);
      }
      this.targetKeys.set(pod, key);
    }
    return key;
  }
  private readonly targetKeys = new Map<Pod, string>();

  /**
   * Pods with the same key get the same answers from the mesh, as sources and as destinations
   * ("" for every pod when the input has no mesh).
   */
  classKey(pod: Pod): string {
    if (!this.active) return "";
    return `${this.sourceKey({ kind: "pod", pod })}\u0000${this.targetKey(pod)}`;
  }

  /** What the mesh lets from `src` to the pod `dst`, over every TCP port (cached per class). */
  summarize(src: Endpoint, dst: Pod): MeshSummary {
    const key = `${this.sourceKey(src)}\u0001${this.targetKey(dst)}`;
    let s = this.summaries.get(key);
    if (s === undefined) {
      s = summarizeMesh(this, src, dst);
      if (this.summaries.size >= 100_000) this.summaries.clear();
      this.summaries.set(key, s);
    }
    return s;
  }
  private readonly summaries = new Map<string, MeshSummary>();

  /**
   * What connectivity needs of `summarize`: the TCP ports where something passes and the L7
   * constraints, shared by every caller that the destination's policies cannot tell apart
   * (same kind of identity, same matches of each rule's source part), so that a cluster where
   * every workload has its own identity and policy costs one rule match per pair, not one
   * summary.
   */
  meshConnection(src: Endpoint, dst: Pod): Pick<MeshSummary, "applies" | "tcpAllowed" | "constraints"> {
    if (!this.active || !this.inMesh(dst)) return this.summarize(src, dst);
    const target = this.targetKey(dst);
    let plan = this.plans.get(target);
    if (plan === undefined) {
      plan = callerPlan(this, dst);
      this.plans.set(target, plan);
    }
    const key = `${target}\u0002${callerSignature(this, plan, src, dst)}`;
    let s = this.connections.get(key);
    if (s === undefined) {
      s = summarizeMesh(this, src, dst);
      if (this.connections.size >= 100_000) this.connections.clear();
      this.connections.set(key, s);
    }
    return s;
  }
  private readonly plans = new Map<string, CallerPlan>();
  private readonly connections = new Map<string, MeshSummary>();

  /** Whether the destination port speaks gRPC (its refusals are gRPC PermissionDenied). */
  private isGrpc(dst: Pod, port: number, headers: MeshRequest["headers"]): boolean {
    const contentType = headers?.["content-type"] ?? "";
    return (
      portProtocol(this.cluster, dst, port, true) === "grpc" || contentType.startsWith("application/grpc")
    );
  }

  /** False when the input has no mesh at all (no pod with a proxy, no Istio policy): no steps then. */
  get active(): boolean {
    this.#active ??=
      this.peerAuthn.policies.length > 0 ||
      this.authz.policies.length > 0 ||
      this.cluster.pods.some((p) => this.inMesh(p));
    return this.#active;
  }
  #active: boolean | undefined;

  decide(flow: Flow): TraceStep[] {
    return this.connectionDecider(flow)(flow.http);
  }

  /**
   * decide() for the requests of one connection, as a sidecar asks it: what the connection fixes
   * (the peer, the port, the target, the mTLS admission, the request facts but the HTTP fields) is
   * worked out once, and each call adds only its request's. `decider(http)` returns what
   * `decide({ ...flow, http })` returns (shared between calls: not to be modified); `flow.http` is ignored.
   */
  connectionDecider(flow: Flow): (http: HttpRequest | undefined) => TraceStep[] {
    const fixed = this.fixedSteps(flow);
    if (fixed) return () => fixed;
    const dst = (flow.dst as { pod: Pod }).pod;
    const target = this.targetOf(dst);
    // An undeclared port's protocol follows the request: one connection part with an HTTP
    // request, one without, each built when first asked.
    let withHttp: ConnectionPart | undefined;
    let opaque: ConnectionPart | undefined;
    return (request) => {
      if (request === undefined) {
        opaque ??= this.connectionPart(flow, dst, target, undefined);
        return opaque.steps ?? [];
      }
      let facts: RequestFacts;
      if (withHttp === undefined) {
        // Built from this very request: its facts are this request's (decide() comes this way).
        withHttp = this.connectionPart(flow, dst, target, request);
        if (withHttp.steps) return withHttp.steps;
        facts = withHttp.facts;
      } else {
        if (withHttp.steps) return withHttp.steps;
        facts = {
          ...withHttp.facts,
          method: request.method,
          path: normalizePath(request.path, this.mesh.pathNormalization),
          host: request.host,
          headers: request.headers,
        };
      }
      const d = this.authz.evaluateFacts(target, facts, withHttp.extAuthz);
      return [
        withHttp.admission,
        this.authzStep(d, false, () => this.isGrpc(dst, flow.port, request.headers)),
      ];
    };
  }

  /** The steps of a flow the mesh decides without looking at it: no mesh, no proxy, not TCP. */
  private fixedSteps(flow: Flow): TraceStep[] | undefined {
    if (flow.dst.kind !== "pod" || !this.active) return [];
    if (!this.inMesh(flow.dst.pod)) {
      return [
        {
          layer: PEER_AUTHN_LAYER,
          direction: "ingress",
          allowed: true,
          default: "the destination has no proxy: mesh policies do not apply to it",
        },
      ];
    }
    if (flow.protocol !== "TCP") {
      return [
        {
          layer: PEER_AUTHN_LAYER,
          direction: "ingress",
          allowed: true,
          default: `the mesh's proxies capture TCP only: ${flow.protocol} passes around them`,
        },
      ];
    }
    return undefined;
  }

  /**
   * What one connection fixes, for requests with (`http` given, as a sample) or without HTTP:
   * the admission step, and either the whole answer (refused, or opaque TCP where requests do
   * not matter) or the facts each request completes.
   */
  private connectionPart(
    flow: Flow,
    dst: Pod,
    target: MeshTarget,
    http: HttpRequest | undefined,
  ): ConnectionPart {
    const request = this.requestOf(flow.http === http ? flow : { ...flow, http }, dst);
    const { effective, admission } = this.peerAuthn.admit(target, request);
    const admissionStep: TraceStep = {
      layer: PEER_AUTHN_LAYER,
      direction: "ingress",
      allowed: admission.admitted,
      ...(effective.policy ? { policy: effective.policy } : { default: effective.detail }),
      ...(admission.outcome ? { outcome: admission.outcome } : {}),
      detail: admission.detail,
    };
    if (!admission.admitted) return { admission: admissionStep, steps: [admissionStep] };
    // What authorization sees of the peer is what the handshake authenticated.
    const authzRequest: MeshRequest = { ...request, principal: admission.peer };
    const facts = requestFacts(target, authzRequest, this.mesh);
    if (facts.tcp || http === undefined) {
      const d = this.authz.evaluateFacts(target, facts, authzRequest.extAuthz);
      const tcp = authzRequest.protocol === "tcp";
      const grpc = () => this.isGrpc(dst, flow.port, authzRequest.headers);
      return { admission: admissionStep, steps: [admissionStep, this.authzStep(d, tcp, grpc)] };
    }
    return { admission: admissionStep, facts, extAuthz: authzRequest.extAuthz };
  }

  private authzStep(d: AuthzDecision, tcp: boolean, grpc: () => boolean): TraceStep {
    return {
      layer: AUTHZ_LAYER,
      direction: "ingress",
      allowed: d.allowed,
      ...(d.policy ? { policy: d.policy } : { default: d.detail }),
      ...(d.rule === undefined ? {} : { rule: d.rule }),
      ...(d.allowed ? {} : { outcome: tcp ? "tcp-closed" : grpc() ? "grpc-permission-denied" : "http-403" }),
      detail: d.detail,
    };
  }
}

/** See IstioMesh.connectionPart: the answer for every request, or the facts each request completes. */
type ConnectionPart =
  | { readonly admission: TraceStep; readonly steps: TraceStep[] }
  | {
      readonly admission: TraceStep;
      readonly steps?: undefined;
      /** The facts but the HTTP fields. */
      readonly facts: RequestFacts;
      readonly extAuthz: "allow" | "deny" | undefined;
    };
