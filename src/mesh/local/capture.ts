/**
 * Traffic capture for one pod, as istio-init sets it up with iptables, here in nftables: the
 * pod's TCP goes through its sidecar in both directions without the app knowing, and Service
 * ClusterIPs are translated to endpoints inside the pod itself (kube-proxy's role), so that no
 * host-wide state decides where a pod's traffic goes.
 *
 * The whole ruleset is one table, `inet tessera_capture`, in the pod's own network namespace,
 * replaced atomically: one `nft -f -` transaction deletes and recreates it, so a re-apply never
 * leaves a moment without rules and connections already established keep their translation
 * (conntrack holds it).
 */
import { formatIPv4, parseCidr } from "../../kube/ip.js";
import { LOCAL_MESH } from "./addresses.js";
import { runCommand } from "./exec.js";
import { canonicalIPv4 } from "./netns.js";

export const CAPTURE_TABLE = `${LOCAL_MESH.prefix}_capture`;

export interface ServiceRoute {
  clusterIp: string;
  port: number;
  protocol: "tcp" | "udp";
  endpoints: { ip: string; port: number }[];
}

export interface CaptureSpec {
  /** false: no sidecar, only the Service translation applies. */
  inMesh: boolean;
  /** Packets of this uid are never redirected (the sidecar's own connections); required when inMesh. */
  sidecarUid?: number;
  /** Default LOCAL_MESH.inboundCapturePort. */
  inboundPort?: number;
  /** Default LOCAL_MESH.outboundCapturePort. */
  outboundPort?: number;
  /** Default LOCAL_MESH.excludedInboundPorts. */
  excludeInboundPorts?: number[];
  /** Every Service of the mesh, the DNS Service included. */
  services: ServiceRoute[];
}

export class CaptureSpecError extends Error {
  readonly code = "capture-spec-invalid";

  constructor(message: string) {
    super(message);
    this.name = "CaptureSpecError";
  }
}

const SERVICE_RANGE = (() => {
  const cidr = parseCidr(LOCAL_MESH.serviceCidr);
  if (cidr?.family !== 4)
    throw new Error(`LOCAL_MESH.serviceCidr ${LOCAL_MESH.serviceCidr} is not an IPv4 CIDR`);
  return cidr;
})();
/** The range in canonical form (network address, no host bits), as nft requires. */
const SERVICE_NETWORK = `${formatIPv4(SERVICE_RANGE.start)}/${32 - Math.log2(SERVICE_RANGE.end - SERVICE_RANGE.start + 1)}`;

/** A value for an error message; never throws, whatever the input (String() can: { toString: 0 }). */
function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CaptureSpecError(`${what}: port ${show(port)} is not an integer from 1 to 65535`);
  }
  return port;
}

function checkAddress(ip: unknown, what: string): number {
  const n = typeof ip === "string" ? canonicalIPv4(ip) : undefined;
  if (n === undefined) throw new CaptureSpecError(`${what}: ${show(ip)} is not an IPv4 address (a.b.c.d)`);
  return n;
}

interface CheckedSpec {
  inMesh: boolean;
  sidecarUid: number;
  inboundPort: number;
  outboundPort: number;
  excludeInboundPorts: number[];
  services: ServiceRoute[];
}

function checkSpec(spec: CaptureSpec): CheckedSpec {
  if (typeof spec !== "object" || spec === null)
    throw new CaptureSpecError("the capture spec is not an object");
  if (typeof spec.inMesh !== "boolean") throw new CaptureSpecError("inMesh must be true or false");
  const inboundPort = checkPort(spec.inboundPort ?? LOCAL_MESH.inboundCapturePort, "inboundPort");
  const outboundPort = checkPort(spec.outboundPort ?? LOCAL_MESH.outboundCapturePort, "outboundPort");
  let sidecarUid = -1;
  if (spec.inMesh) {
    const uid = spec.sidecarUid;
    // uid 0 would exempt every root process from capture, and 2^32-1 is (uid_t)-1, "no uid".
    if (uid === undefined || !Number.isInteger(uid) || uid < 1 || uid > 0xfffffffe) {
      throw new CaptureSpecError(
        `sidecarUid ${show(uid)} is not valid: a pod in the mesh needs its sidecar's own non-root uid (1 to 4294967294)`,
      );
    }
    sidecarUid = uid;
    if (inboundPort === outboundPort) {
      throw new CaptureSpecError(
        `inboundPort and outboundPort are both ${inboundPort}: the sidecar could not tell directions apart`,
      );
    }
  }
  const excluded = spec.excludeInboundPorts ?? [...LOCAL_MESH.excludedInboundPorts];
  if (!Array.isArray(excluded)) throw new CaptureSpecError("excludeInboundPorts must be a list of ports");
  const excludeInboundPorts = [...new Set(excluded.map((p) => checkPort(p, "excludeInboundPorts")))].sort(
    (a, b) => a - b,
  );
  if (!Array.isArray(spec.services)) throw new CaptureSpecError("services must be a list");
  const seen = new Set<string>();
  spec.services.forEach((service, index) => {
    const what = `services[${index}]`;
    if (typeof service !== "object" || service === null)
      throw new CaptureSpecError(`${what} is not an object`);
    const ip = checkAddress(service.clusterIp, `${what}.clusterIp`);
    if (ip < SERVICE_RANGE.start || ip > SERVICE_RANGE.end) {
      throw new CaptureSpecError(
        `${what}.clusterIp ${service.clusterIp} is outside the Service range ${LOCAL_MESH.serviceCidr}`,
      );
    }
    checkPort(service.port, `${what} (${service.clusterIp})`);
    if (service.protocol !== "tcp" && service.protocol !== "udp") {
      throw new CaptureSpecError(`${what}.protocol ${show(service.protocol)} is not "tcp" or "udp"`);
    }
    const key = `${service.clusterIp} ${service.protocol} ${service.port}`;
    if (seen.has(key))
      throw new CaptureSpecError(`${what}: ${key} appears twice: each ClusterIP port has one route`);
    seen.add(key);
    if (!Array.isArray(service.endpoints)) throw new CaptureSpecError(`${what}.endpoints must be a list`);
    service.endpoints.forEach((endpoint, e) => {
      if (typeof endpoint !== "object" || endpoint === null) {
        throw new CaptureSpecError(`${what}.endpoints[${e}] is not an object`);
      }
      checkAddress(endpoint.ip, `${what}.endpoints[${e}].ip`);
      checkPort(endpoint.port, `${what}.endpoints[${e}]`);
    });
  });
  return {
    inMesh: spec.inMesh,
    sidecarUid,
    inboundPort,
    outboundPort,
    excludeInboundPorts,
    services: spec.services,
  };
}

/** The DNAT statement of one Service port: one endpoint, or a random one per connection. */
function serviceDnat(service: ServiceRoute): string {
  const match = `meta l4proto ${service.protocol}`;
  const [only] = service.endpoints;
  if (service.endpoints.length === 1 && only !== undefined)
    return `${match} dnat ip to ${only.ip}:${only.port}`;
  const elements = service.endpoints.map((endpoint, i) => `${i} : ${endpoint.ip} . ${endpoint.port}`);
  return `${match} dnat ip to numgen random mod ${service.endpoints.length} map { ${elements.join(", ")} }`;
}

/**
 * The nft script for one pod. Pure: the same spec always gives the same text. It starts by
 * deleting the table (after declaring it, so that the delete cannot fail), which makes applying
 * it a replacement in one transaction.
 */
export function captureRuleset(spec: CaptureSpec): string {
  const s = checkSpec(spec);
  const routed = s.services.filter((service) => service.endpoints.length > 0);
  const lines: string[] = [
    `table inet ${CAPTURE_TABLE}`,
    `delete table inet ${CAPTURE_TABLE}`,
    `table inet ${CAPTURE_TABLE} {`,
  ];

  if (s.inMesh) {
    lines.push("\tchain inbound {", "\t\ttype nat hook prerouting priority dstnat; policy accept;");
    if (s.excludeInboundPorts.length > 0) {
      // The sidecar's own ports (health, readiness, metrics) answer the kubelet-like prober
      // and the scraper directly, as Istio's do.
      lines.push(`\t\tiifname "eth0" tcp dport { ${s.excludeInboundPorts.join(", ")} } return`);
    }
    // Every other TCP connection to the pod's address goes to the sidecar, so the app is
    // reachable only through mTLS and policy. Prerouting REDIRECT rewrites to eth0's own address.
    lines.push(
      `\t\tiifname "eth0" meta l4proto tcp fib daddr type local redirect to :${s.inboundPort}`,
      "\t}",
    );
  }

  lines.push(
    "\tchain outbound {",
    // -100 (dstnat): the output hook has no named priority in this nft version.
    "\t\ttype nat hook output priority -100; policy accept;",
  );
  if (s.inMesh) lines.push("\t\tmeta l4proto tcp jump outbound_capture");
  if (routed.length > 0) {
    // kube-proxy's job, for what was not redirected: UDP (DNS above all), every protocol of a
    // pod without sidecar, and the sidecar's own connections if it dials a ClusterIP.
    const elements = routed.map(
      (service, i) => `${service.clusterIp} . ${service.protocol} . ${service.port} : goto service_${i}`,
    );
    lines.push(`\t\tip daddr . meta l4proto . th dport vmap { ${elements.join(", ")} }`);
  }
  lines.push("\t}");

  if (s.inMesh) {
    lines.push(
      "\tchain outbound_capture {",
      // The sidecar's own connections (to peers, and to the app on 127.0.0.1) must leave as they
      // are, or they would come back to it forever.
      `\t\tmeta skuid ${s.sidecarUid} return`,
      // Loopback stays local: the app calling itself, or a local helper; nothing leaves the pod.
      '\t\toifname "lo" return',
      // Everything else, whatever its destination (pod, ClusterIP, outside): to the sidecar, which
      // reads where it was going with SO_ORIGINAL_DST and resolves Services itself.
      `\t\tmeta l4proto tcp redirect to :${s.outboundPort}`,
      "\t}",
    );
  }

  routed.forEach((service, i) => {
    lines.push(`\tchain service_${i} {`, `\t\t${serviceDnat(service)}`, "\t}");
  });

  lines.push(
    "\tchain service_check {",
    // After NAT (priority 0 > -100): a destination still in the Service range is a Service port
    // with no endpoint, or no such Service. Refused at once, as kube-proxy does, rather than sent
    // to the default route where it would wait for a timeout or leak off the host.
    "\t\ttype filter hook output priority filter; policy accept;",
    `\t\tip daddr ${SERVICE_NETWORK} meta l4proto tcp reject with tcp reset`,
    `\t\tip daddr ${SERVICE_NETWORK} reject`,
    "\t}",
    "}",
    "",
  );
  return lines.join("\n");
}

/** Applies (or replaces) a pod's capture rules, atomically. */
export async function applyCapture(netns: string, spec: CaptureSpec): Promise<void> {
  await runCommand(["nft", "-f", "-"], { netns, input: captureRuleset(spec) });
}

/** Removes a pod's capture rules (idempotent): its traffic is then neither captured nor translated. */
export async function removeCapture(netns: string): Promise<void> {
  await runCommand(["nft", "-f", "-"], {
    netns,
    input: `table inet ${CAPTURE_TABLE}\ndelete table inet ${CAPTURE_TABLE}\n`,
  });
}
