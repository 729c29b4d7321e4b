import { formatIPv4 } from "../../kube/ip.js";
import type { Cluster, Pod } from "../../kube/objects.js";
import type { Flow, TraceStep } from "../model.js";
import type { CompiledAuthz } from "./authz/compiled.js";
import { sidecarInjected } from "./membership.js";
import { type MeshConfig, type MeshRequest, type MeshTarget, principalOf, workloadSpiffeId } from "./mesh.js";
import type { CompiledPeerAuthn } from "./peerauthn.js";
import { portProtocol } from "./protocol.js";

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

  targetOf(pod: Pod): MeshTarget {
    return {
      namespace: pod.namespace,
      labels: pod.labels,
      serviceAccount: pod.serviceAccount,
      ...(pod.ip === undefined ? {} : { ip: formatIPv4(pod.ip) }),
    };
  }

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

  /** Whether the destination port speaks gRPC (its refusals are gRPC PermissionDenied). */
  private isGrpc(dst: Pod, port: number, request: MeshRequest): boolean {
    const contentType = request.headers?.["content-type"] ?? "";
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
    if (flow.dst.kind !== "pod" || !this.active) return [];
    const dst = flow.dst.pod;
    if (!this.inMesh(dst)) {
      return [
        {
          layer: PEER_AUTHN_LAYER,
          direction: "ingress",
          allowed: true,
          default: "the destination has no proxy: mesh policies do not apply to it",
        },
      ];
    }
    const target = this.targetOf(dst);
    const request = this.requestOf(flow, dst);
    const { effective, admission } = this.peerAuthn.admit(target, request);
    const steps: TraceStep[] = [
      {
        layer: PEER_AUTHN_LAYER,
        direction: "ingress",
        allowed: admission.admitted,
        ...(effective.policy ? { policy: effective.policy } : { default: effective.detail }),
        ...(admission.outcome ? { outcome: admission.outcome } : {}),
        detail: admission.detail,
      },
    ];
    if (!admission.admitted) return steps;
    // What authorization sees of the peer is what the handshake authenticated.
    const authzRequest: MeshRequest = { ...request, principal: admission.peer };
    const d = this.authz.evaluate(target, authzRequest);
    steps.push({
      layer: AUTHZ_LAYER,
      direction: "ingress",
      allowed: d.allowed,
      ...(d.policy ? { policy: d.policy } : { default: d.detail }),
      ...(d.rule === undefined ? {} : { rule: d.rule }),
      ...(d.allowed
        ? {}
        : {
            outcome:
              authzRequest.protocol === "tcp"
                ? "tcp-closed"
                : this.isGrpc(dst, flow.port, authzRequest)
                  ? "grpc-permission-denied"
                  : "http-403",
          }),
      detail: d.detail,
    });
    return steps;
  }
}
