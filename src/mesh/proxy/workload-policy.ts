import { Diagnostics } from "../../kube/errors.js";
import { formatIPv4, parseIPv4 } from "../../kube/ip.js";
import type { Cluster, Pod, Service } from "../../kube/objects.js";
import { findService, serviceBackends, targetPortOn } from "../../kube/services.js";
import { type CompiledPolicies, compile } from "../../policy/engine.js";
import type { MeshConfig } from "../../policy/istio/mesh.js";
import type { EffectiveMtlsMode } from "../../policy/istio/peerauthn.js";
import type { HttpRequest, PolicyRef, TraceStep } from "../../policy/model.js";

/** What the sidecar needs to know about one decision, for the caller and the access log. */
export interface ProxyDecision {
  readonly allowed: boolean;
  /** `ns/name` of the deciding policy, or undefined when a default decided. */
  readonly policy: string | undefined;
  readonly rule: number | undefined;
  readonly detail: string;
}

/** A destination the sidecar can originate a connection to. */
export interface OutboundDestination {
  /** `svc.ns:port` or the address asked for, for logs. */
  readonly name: string;
  readonly service: Service | undefined;
  readonly pod: Pod;
  /** Where to dial: the pod's address and container port, unless a route says otherwise. */
  readonly dial: { readonly host: string; readonly port: number } | undefined;
  /** The SPIFFE ID the server must present; undefined when the destination is outside the mesh. */
  readonly expectedId: string | undefined;
  /** True when the destination has no sidecar, or its port's mTLS mode is DISABLE. */
  readonly plaintext: boolean;
}

const policyName = (p: PolicyRef | undefined) => (p ? `${p.namespace}/${p.name}` : undefined);

function decisionOf(step: TraceStep | undefined): ProxyDecision {
  if (!step) return { allowed: true, policy: undefined, rule: undefined, detail: "no mesh policy applies" };
  return {
    allowed: step.allowed,
    policy: policyName(step.policy),
    rule: step.rule,
    detail: step.detail ?? step.default ?? "",
  };
}

/**
 * The engine's answers for one workload, as its sidecar asks them: the mTLS mode of a port, the
 * authorization of a connection or request, and where its outbound traffic goes. Built from the
 * same manifests and the same compiled policies as `tessera can`, so a live answer and an
 * offline prediction cannot disagree. Immutable: a policy change builds a new one.
 */
export class WorkloadPolicy {
  private constructor(
    readonly cluster: Cluster,
    readonly compiled: CompiledPolicies,
    /** The pod this sidecar stands in front of (a workload's template pod stands for every replica). */
    readonly pod: Pod,
    readonly diagnostics: Diagnostics,
  ) {}

  /** Compiles the cluster and finds the workload `ns/name` (a workload, or a pod by name). */
  static build(
    cluster: Cluster,
    workload: string,
    diagnostics = new Diagnostics(),
    meshOptions: Partial<MeshConfig> = {},
  ): WorkloadPolicy {
    const pod = findWorkloadPod(cluster, workload);
    const compiled = compile(cluster, diagnostics, meshOptions);
    if (!compiled.mesh.inMesh(pod)) {
      diagnostics.warn(
        "sidecar-not-injected",
        `${pod.namespace}/${pod.name} is not labelled for sidecar injection; the sidecar enforces the mesh for it anyway`,
      );
      compiled.mesh.markInMesh(pod);
    }
    return new WorkloadPolicy(cluster, compiled, pod, diagnostics);
  }

  get mesh(): MeshConfig {
    return this.compiled.mesh.mesh;
  }

  /** The SPIFFE ID this workload should hold. */
  get spiffeId(): string {
    return `spiffe://${this.mesh.trustDomain}/ns/${this.pod.namespace}/sa/${this.pod.serviceAccount}`;
  }

  /** The effective PeerAuthentication mode of a container port, and the policy that set it. */
  mtlsMode(port: number): { mode: EffectiveMtlsMode; policy: string | undefined } {
    const mesh = this.compiled.mesh;
    const effective = mesh.peerAuthn.effectiveMtls(mesh.targetOf(this.pod), port);
    return { mode: effective.mode, policy: policyName(effective.policy) };
  }

  /** How the port is handled: HTTP (authorized per request) or opaque TCP; undefined: sniffed. */
  portProtocol(port: number): "http" | "tcp" | undefined {
    return this.compiled.mesh.portProtocolOf(this.pod, port);
  }

  /**
   * Authorizes a connection (TCP port) or one request (HTTP port) from a peer (its IPv4 as a
   * number). `identity` is the SPIFFE ID from the peer's verified certificate, undefined for plaintext.
   */
  authorize(ip: number, port: number, identity: string | undefined, http?: HttpRequest): ProxyDecision {
    return this.connectionAuthorizer(ip, port, identity)(http);
  }

  /**
   * authorize() for every request of one connection: what the connection fixes (peer, port,
   * admission) is worked out once, so a request costs only its own matching.
   */
  connectionAuthorizer(
    ip: number,
    port: number,
    identity: string | undefined,
  ): (http?: HttpRequest) => ProxyDecision {
    const decide = this.compiled.mesh.connectionDecider({
      src: { kind: "ip", ip },
      dst: { kind: "pod", pod: this.pod },
      protocol: "TCP",
      port,
      ...(identity === undefined ? {} : { identity }),
    });
    // Steps that do not depend on the request come back as the same array: decided once.
    let lastSteps: TraceStep[] | undefined;
    let lastDecision: ProxyDecision | undefined;
    return (http) => {
      const steps = decide(http);
      if (steps === lastSteps && lastDecision) return lastDecision;
      // The sidecar admitted the connection itself (it saw the handshake); authorization decides now.
      const decision = decisionOf(steps.find((s) => !s.allowed) ?? steps.at(-1));
      lastSteps = steps;
      lastDecision = decision;
      return decision;
    };
  }

  /**
   * Where an outbound connection to `host:port` goes: a Service name (`svc`, `svc.ns`,
   * `svc.ns.svc[.domain]`, short names in this workload's namespace), a Service ClusterIP or a
   * pod address. Undefined when nothing in the manifests answers to it.
   */
  resolve(host: string, port: number): OutboundDestination | undefined {
    const ip = parseIPv4(host);
    const service =
      ip === undefined
        ? (findService(this.cluster, qualify(host, this.pod.namespace), this.mesh.clusterDomain) ??
          findService(this.cluster, host, this.mesh.clusterDomain))
        : this.cluster.services.find((s) => s.clusterIp === ip);
    if (service) {
      const servicePort = service.ports.find((p) => p.port === port && p.protocol === "TCP");
      if (!servicePort) return undefined;
      for (const pod of serviceBackends(this.cluster, service)) {
        const target = targetPortOn(servicePort, pod);
        if (target === undefined) continue;
        return this.destination(`${service.name}.${service.namespace}:${port}`, service, pod, target);
      }
      return undefined;
    }
    const pod = ip === undefined ? undefined : this.cluster.pods.find((p) => p.ip === ip);
    return pod ? this.destination(`${host}:${port}`, undefined, pod, port) : undefined;
  }

  private destination(
    name: string,
    service: Service | undefined,
    pod: Pod,
    port: number,
  ): OutboundDestination {
    const mesh = this.compiled.mesh;
    const inMesh = mesh.inMesh(pod);
    const disabled = inMesh && mesh.peerAuthn.effectiveMtls(mesh.targetOf(pod), port).mode === "DISABLE";
    return {
      name,
      service,
      pod,
      dial: pod.ip === undefined ? undefined : { host: formatIPv4(pod.ip), port },
      expectedId: inMesh ? mesh.identityOf(pod) : undefined,
      plaintext: !inMesh || disabled,
    };
  }
}

/** A short name asked from inside a namespace means a Service of that namespace. */
function qualify(host: string, namespace: string): string {
  return host.includes(".") ? host : `${host}.${namespace}`;
}

export class UnknownWorkloadError extends Error {}

export function findWorkloadPod(cluster: Cluster, workload: string): Pod {
  const [namespace, name, ...rest] = workload.includes("/") ? workload.split("/") : ["default", workload];
  if (!namespace || !name || rest.length > 0) {
    throw new UnknownWorkloadError(`--workload ${workload}: expected NAMESPACE/NAME`);
  }
  const w = cluster.workloads.find((x) => x.namespace === namespace && x.name === name);
  const pod = w?.pods[0] ?? cluster.pods.find((p) => p.namespace === namespace && p.name === name);
  if (!pod) {
    const known = cluster.workloads.map((x) => `${x.namespace}/${x.name}`).join(", ");
    throw new UnknownWorkloadError(
      `workload ${namespace}/${name} is not in the manifests${known ? ` (workloads: ${known})` : ""}`,
    );
  }
  return pod;
}
