/**
 * NetworkPolicy enforced the way a CNI enforces it: the policy engine's L3/L4 answers compiled
 * into nftables rules in each pod's network namespace, so a denied flow's packets are dropped
 * and the caller times out, exactly as on a cluster.
 *
 * Each pod gets its own table `inet tessera_netpol`, replaced atomically on every apply
 * (declare, delete, redefine in one `nft -f` transaction), with two base chains:
 *
 * - `ingress`: hook prerouting, priority -150 (mangle). After conntrack (-200), so `ct state`
 *   is known for the packet, and before the sidecar's inbound redirect at dstnat (-100), so the
 *   original destination port is what is judged. (At -200 exactly the chain would race
 *   conntrack's own hook, registered at the same priority.)
 * - `egress`: hook output, priority 0 (filter). After Service DNAT at -100, so the real pod
 *   address and port are judged, never a ClusterIP.
 *
 * Both chains pass established and related packets (replies, ICMP errors about allowed
 * connections) and loopback (a pod reaching itself, and the sidecar's redirects). Then the
 * peer address is looked up in a verdict map from address ranges to what that peer may
 * exchange with this pod, exactly `engine.allowed(src, dst)` (NetworkPolicy ingress of the
 * destination AND egress of the source): the whole IPv4 space is cut at the engine's ipBlock
 * boundaries and at every pod address; a pod's address gets that pod's answer, every other
 * range (the host included) the answer for an address outside the cluster. Ranges with equal
 * answers share one chain listing the allowed `protocol . port` pairs. Everything else is
 * dropped: new connections, invalid packets, and IPv6 (the mesh is IPv4 only; dropping fails
 * closed).
 *
 * ICMP and protocols other than TCP, UDP and SCTP: NetworkPolicy does not speak of them.
 * Tessera follows Calico and Cilium, where a rule without `ports` allows every protocol and a
 * rule with ports allows only those: a peer allowed every TCP, UDP and SCTP port may also send
 * ICMP (ping) and any other protocol; a peer allowed only some ports may not. Pods no policy
 * isolates are allowed everything, so ping works between them.
 *
 * Connections established before an apply keep flowing (conntrack remembers them), as with
 * most CNIs; the new rules judge new connections.
 */
import { formatIPv4, IPV4_MAX, parseIPv4 } from "../../kube/ip.js";
import type { Pod, Protocol } from "../../kube/objects.js";
import { ConnectionSet } from "../../policy/connset.js";
import type { Engine } from "../../policy/engine.js";
import type { Endpoint } from "../../policy/model.js";
import { runCommand } from "./exec.js";

export interface MeshPod {
  /** The cluster's pod (the engine knows pods by object), with `.ip` set. */
  readonly pod: Pod;
  readonly netns: string;
  readonly ip: string;
}

export interface NetpolOptions {
  /** The host's address on the mesh bridge (LOCAL_MESH.bridgeIp): traffic from the host is "outside the cluster". */
  readonly hostIp: string;
}

export const NETPOL_TABLE = "tessera_netpol";
export const INGRESS_PRIORITY = -150;
export const EGRESS_PRIORITY = 0;
const NFT_PROTOCOL: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
/** Printed in the order nft lists them, so a listed ruleset reads like the generated one. */
const PROTOCOL_ORDER: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export class NetpolConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetpolConfigError";
  }
}

type Direction = "ingress" | "egress";

/** An inclusive IPv4 range and what it may exchange with the pod. */
interface PeerRange {
  readonly start: number;
  readonly end: number;
  readonly allowed: ConnectionSet;
}

/** For one pod, the nft script that (re)defines its table: see the module comment. */
export function netpolRuleset(
  engine: Engine,
  self: MeshPod,
  all: readonly MeshPod[],
  options: NetpolOptions,
): string {
  const { selfIp, peers } = checkPods(self, all, options);
  const chains: string[] = [];
  const maps: string[] = [];
  const base: string[] = [];
  for (const direction of ["ingress", "egress"] as const) {
    const ranges = peerRanges(engine, direction, self.pod, selfIp, peers);
    const compiled = compileDirection(direction, ranges);
    chains.push(...compiled.chains);
    maps.push(compiled.map);
    base.push(baseChain(direction));
  }
  const describe = (p: MeshPod) => `${p.ip} ${p.pod.namespace}/${p.pod.name}`;
  return [
    `# Tessera NetworkPolicy for ${describe(self)} (netns ${self.netns}); host ${options.hostIp}.`,
    "# Generated as a whole; every apply replaces the table in one transaction.",
    ...all.filter((p) => p.ip !== self.ip).map((p) => `# peer ${describe(p)}`),
    `table inet ${NETPOL_TABLE}`,
    `delete table inet ${NETPOL_TABLE}`,
    `table inet ${NETPOL_TABLE} {`,
    ...chains,
    ...maps,
    ...base,
    "}",
    "",
  ].join("\n");
}

/** Loads each pod's ruleset into its network namespace; a pod whose load fails keeps its previous rules. */
export async function applyNetpol(
  engine: Engine,
  pods: readonly MeshPod[],
  options: NetpolOptions,
): Promise<void> {
  // Compile every ruleset before touching any namespace: a bad input changes nothing.
  const scripts = pods.map((p) => ({ pod: p, script: netpolRuleset(engine, p, pods, options) }));
  const results = await Promise.allSettled(
    scripts.map(({ pod, script }) => runCommand(["nft", "-f", "-"], { input: script, netns: pod.netns })),
  );
  const failures = results.flatMap((r, i) =>
    r.status === "rejected"
      ? [`${describePod(scripts[i]?.pod)}: ${(r.reason as Error).message}`]
      : ([] as string[]),
  );
  if (failures.length > 0)
    throw new Error(`NetworkPolicy rules not applied for ${failures.length} pod(s):\n${failures.join("\n")}`);
}

/** Removes the table from each pod's namespace (missing tables are fine). */
export async function removeNetpol(pods: readonly Pick<MeshPod, "netns">[]): Promise<void> {
  await Promise.all(
    pods.map((p) =>
      runCommand(["nft", "-f", "-"], {
        input: `table inet ${NETPOL_TABLE}\ndelete table inet ${NETPOL_TABLE}\n`,
        netns: p.netns,
      }),
    ),
  );
}

function describePod(p: MeshPod | undefined): string {
  return p ? `${p.pod.namespace}/${p.pod.name} (${p.ip}, netns ${p.netns})` : "?";
}

/** Addresses must be consistent: a rule built on a wrong address would allow the wrong peer. */
function checkPods(
  self: MeshPod,
  all: readonly MeshPod[],
  options: NetpolOptions,
): { selfIp: number; peers: Map<number, Pod> } {
  const peers = new Map<number, Pod>();
  const addressOf = (p: MeshPod): number => {
    const ip = parseIPv4(p.ip);
    if (ip === undefined) throw new NetpolConfigError(`${describePod(p)}: "${p.ip}" is not an IPv4 address`);
    if (p.pod.ip !== ip)
      throw new NetpolConfigError(
        `${describePod(p)}: the cluster's pod has address ${p.pod.ip === undefined ? "none" : formatIPv4(p.pod.ip)}, the engine would judge the wrong address`,
      );
    return ip;
  };
  for (const p of all) {
    const ip = addressOf(p);
    if (peers.has(ip)) throw new NetpolConfigError(`two pods have the address ${p.ip}`);
    peers.set(ip, p.pod);
  }
  const selfIp = addressOf(self);
  if (peers.get(selfIp) !== undefined && peers.get(selfIp) !== self.pod)
    throw new NetpolConfigError(`${describePod(self)}: another pod has the same address`);
  peers.delete(selfIp);
  const hostIp = parseIPv4(options.hostIp);
  if (hostIp === undefined) throw new NetpolConfigError(`host address "${options.hostIp}" is not IPv4`);
  if (hostIp === selfIp || peers.has(hostIp))
    throw new NetpolConfigError(`host address ${options.hostIp} is also a pod's address`);
  return { selfIp, peers };
}

/** The IPv4 space cut into ranges that the engine answers alike, adjacent equal ranges merged. */
function peerRanges(
  engine: Engine,
  direction: Direction,
  selfPod: Pod,
  selfIp: number,
  peers: ReadonlyMap<number, Pod>,
): PeerRange[] {
  const cuts = new Set<number>([0]);
  for (const b of engine.ipBoundaries()) if (b > 0 && b <= IPV4_MAX) cuts.add(b);
  for (const ip of [selfIp, ...peers.keys()]) {
    cuts.add(ip);
    if (ip < IPV4_MAX) cuts.add(ip + 1);
  }
  const starts = [...cuts].sort((a, b) => a - b);
  const self: Endpoint = { kind: "pod", pod: selfPod };
  const out: PeerRange[] = [];
  starts.forEach((start, i) => {
    const end = i + 1 < starts.length ? (starts[i + 1] as number) - 1 : IPV4_MAX;
    const peerPod = peers.get(start);
    let allowed: ConnectionSet;
    if (start === selfIp) allowed = ConnectionSet.ALL;
    else {
      const peer: Endpoint = peerPod ? { kind: "pod", pod: peerPod } : { kind: "ip", ip: start };
      allowed = direction === "ingress" ? engine.allowed(peer, self) : engine.allowed(self, peer);
    }
    const last = out[out.length - 1];
    if (last?.allowed.equals(allowed)) out[out.length - 1] = { ...last, end };
    else out.push({ start, end, allowed });
  });
  return out;
}

function compileDirection(
  direction: Direction,
  ranges: readonly PeerRange[],
): { chains: string[]; map: string } {
  const groups = new Map<string, { chain: string; allowed: ConnectionSet }>();
  const chains: string[] = [];
  const elements: string[] = [];
  for (const r of ranges) {
    if (r.allowed.isEmpty()) continue;
    let verdict = "accept";
    if (!r.allowed.isAll()) {
      const key = r.allowed.toString();
      let group = groups.get(key);
      if (!group) {
        group = { chain: `${direction}_allow_${groups.size}`, allowed: r.allowed };
        groups.set(key, group);
        chains.push(
          `  chain ${group.chain} {`,
          `    # ${key}`,
          `    meta l4proto . th dport { ${portElements(r.allowed).join(", ")} } accept`,
          "  }",
        );
      }
      verdict = `jump ${group.chain}`;
    }
    elements.push(`${rangeText(r.start, r.end)} : ${verdict}`);
  }
  const map = [
    `  map ${direction}_peers {`,
    "    type ipv4_addr : verdict",
    "    flags interval",
    ...(elements.length > 0 ? [`    elements = { ${elements.join(", ")} }`] : []),
    "  }",
  ];
  return { chains, map: map.join("\n") };
}

function portElements(allowed: ConnectionSet): string[] {
  const out: string[] = [];
  for (const protocol of PROTOCOL_ORDER) {
    const ports = allowed.portsOf(protocol);
    for (let i = 0; i < ports.length; i += 2) {
      const [lo, hi] = [ports[i] as number, ports[i + 1] as number];
      out.push(`${NFT_PROTOCOL[protocol]} . ${lo === hi ? lo : `${lo}-${hi}`}`);
    }
  }
  return out;
}

function rangeText(start: number, end: number): string {
  return start === end ? formatIPv4(start) : `${formatIPv4(start)}-${formatIPv4(end)}`;
}

function baseChain(direction: Direction): string {
  const [hook, priority, iface, peer] =
    direction === "ingress"
      ? ["prerouting", INGRESS_PRIORITY, "iifname", "saddr"]
      : ["output", EGRESS_PRIORITY, "oifname", "daddr"];
  return [
    `  chain ${direction} {`,
    `    type filter hook ${hook} priority ${priority}; policy accept;`,
    "    ct state established,related accept",
    `    ${iface} "lo" accept`,
    // A connection the sidecar's capture redirected to 127.0.0.1 still carries its first
    // route (eth0) at this hook: it is the app talking to its own sidecar, never policy's business.
    ...(direction === "egress" ? ["    ip daddr 127.0.0.0/8 accept"] : []),
    `    ip ${peer} vmap @${direction}_peers`,
    "    drop",
    "  }",
  ].join("\n");
}
