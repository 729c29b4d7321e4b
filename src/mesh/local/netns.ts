/**
 * A pod on one host: its own network namespace, joined to the mesh's bridge by a veth pair, with
 * the files `ip netns exec` mounts over /etc (resolv.conf pointing at the mesh's DNS Service,
 * hosts). This is the isolation a container runtime and a CNI plugin give a Kubernetes pod,
 * built from `ip` alone so that the local mesh needs no images and no cluster.
 *
 * Everything created carries the mesh's prefix (namespaces by name, links by their alias), so
 * that cleanup.ts can find leftovers after a crash and nothing else.
 */
import { createHash } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatIPv4, parseIPv4 } from "../../kube/ip.js";
import { LOCAL_MESH } from "./addresses.js";
import { type CommandResult, runCommand } from "./exec.js";

/** The host side of a mesh's network: which names and which subnet its pods live in. */
export interface MeshNetwork {
  /** Prefix of every namespace, alias and file (see LOCAL_MESH.prefix). */
  readonly prefix: string;
  readonly bridge: string;
  readonly bridgeIp: string;
  readonly podPrefixLength: number;
}

/** The local mesh's own network, from the address plan. */
export const LOCAL_MESH_NETWORK: MeshNetwork = {
  prefix: LOCAL_MESH.prefix,
  bridge: LOCAL_MESH.bridge,
  bridgeIp: LOCAL_MESH.bridgeIp,
  podPrefixLength: LOCAL_MESH.podPrefixLength,
};

/** Kubernetes' default cluster domain: Service names resolve as <svc>.<ns>.svc.cluster.local. */
export const CLUSTER_DOMAIN = "cluster.local";

/** Where `ip netns exec` finds the files it bind-mounts over /etc for a namespace (ip-netns(8)). */
export const NETNS_ETC_DIR = "/etc/netns";

export interface PodSpec {
  /** Unique within the mesh, short, [a-z0-9-]: the namespace is `<prefix>-<id>`. */
  readonly id: string;
  /** The Kubernetes namespace of the pod ("default"): first search domain. */
  readonly namespaceName: string;
  readonly ip: string;
  /** Defaults to the cluster DNS Service (LOCAL_MESH.dnsServiceIp). */
  readonly dnsServer?: string;
  /** Replaces the Kubernetes search list `<ns>.svc.cluster.local svc.cluster.local cluster.local`. */
  readonly searchDomains?: readonly string[];
}

export interface PodNetwork {
  readonly netns: string;
  readonly ip: string;
  readonly hostVeth: string;
}

export class PodNetworkError extends Error {
  readonly code = "pod-network-invalid";

  constructor(message: string) {
    super(message);
    this.name = "PodNetworkError";
  }
}

const POD_ID = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;
/** Network namespace names the mesh accepts: also used as paths under /etc/netns, so no `/` or `..`. */
const NETNS_NAME = /^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$/;
const PREFIX = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DNS_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** Linux interface names: at most IFNAMSIZ - 1 = 15 bytes, no `/`, `:` or whitespace. */
const INTERFACE_NAME = /^[a-zA-Z0-9_.-]{1,15}$/;

export function checkPrefix(prefix: string): string {
  if (!PREFIX.test(prefix)) {
    throw new PodNetworkError(
      `mesh prefix "${prefix}" is not valid: expected 1-32 characters [a-z0-9-] starting with a letter (e.g. "${LOCAL_MESH.prefix}")`,
    );
  }
  return prefix;
}

export function isValidNetnsName(netns: string): boolean {
  return NETNS_NAME.test(netns);
}

export function checkNetnsName(netns: string): string {
  if (!isValidNetnsName(netns)) {
    throw new PodNetworkError(
      `network namespace name "${netns}" is not valid: expected [a-z0-9-], at most 80 characters`,
    );
  }
  return netns;
}

/** The canonical dotted-quad form, or undefined (no leading zeros: `ip`, nft and resolv.conf would disagree on them). */
export function canonicalIPv4(text: string): number | undefined {
  const n = parseIPv4(text);
  return n !== undefined && formatIPv4(n) === text ? n : undefined;
}

function checkNetwork(network: MeshNetwork): { bridgeIp: number; first: number; last: number } {
  checkPrefix(network.prefix);
  if (!INTERFACE_NAME.test(network.bridge)) {
    throw new PodNetworkError(
      `bridge name "${network.bridge}" is not a valid interface name (at most 15 characters)`,
    );
  }
  const bridgeIp = canonicalIPv4(network.bridgeIp);
  if (bridgeIp === undefined)
    throw new PodNetworkError(`bridge address "${network.bridgeIp}" is not an IPv4 address`);
  const bits = network.podPrefixLength;
  if (!Number.isInteger(bits) || bits < 8 || bits > 30) {
    throw new PodNetworkError(`pod prefix length ${bits} is not valid: expected 8 to 30`);
  }
  const size = 2 ** (32 - bits);
  const first = bridgeIp - (bridgeIp % size);
  return { bridgeIp, first, last: first + size - 1 };
}

/** The namespace of a pod: `<prefix>-<id>`. */
export function podNetnsName(id: string, network: MeshNetwork = LOCAL_MESH_NETWORK): string {
  if (!POD_ID.test(id)) {
    throw new PodNetworkError(
      `pod id "${id}" is not valid: expected 1-40 characters [a-z0-9-], not starting or ending with "-"`,
    );
  }
  return `${checkPrefix(network.prefix)}-${id}`;
}

/**
 * The host end of a pod's veth pair: `tsv` and 10 hex digits of the namespace name's SHA-256.
 * A hash, not an index, so that deletePod and cleanup can name it from the namespace alone, and
 * it fits IFNAMSIZ whatever the pod id's length.
 */
export function hostVethName(netns: string): string {
  return `tsv${createHash("sha256").update(checkNetnsName(netns)).digest("hex").slice(0, 10)}`;
}

/** The resolv.conf a pod's processes see: the mesh's DNS and Kubernetes' search path and ndots. */
export function podResolvConf(spec: Pick<PodSpec, "namespaceName" | "dnsServer" | "searchDomains">): string {
  if (!DNS_LABEL.test(spec.namespaceName)) {
    throw new PodNetworkError(`namespace name "${spec.namespaceName}" is not a valid DNS label`);
  }
  const dns = spec.dnsServer ?? LOCAL_MESH.dnsServiceIp;
  if (canonicalIPv4(dns) === undefined)
    throw new PodNetworkError(`DNS server "${dns}" is not an IPv4 address`);
  const search = spec.searchDomains ?? [
    `${spec.namespaceName}.svc.${CLUSTER_DOMAIN}`,
    `svc.${CLUSTER_DOMAIN}`,
    CLUSTER_DOMAIN,
  ];
  for (const domain of search) {
    // resolv.conf is line-oriented: a name with a space or newline would add directives.
    if (!DNS_NAME.test(domain))
      throw new PodNetworkError(`search domain "${domain}" is not a valid DNS name`);
  }
  const lines = [`nameserver ${dns}`];
  if (search.length > 0) lines.push(`search ${search.join(" ")}`);
  lines.push("options ndots:5");
  return `${lines.join("\n")}\n`;
}

/** The hosts file a pod's processes see. IPv4 only: pods have no IPv6 (see createPod). */
export function podHosts(id: string, ip: string): string {
  return `127.0.0.1\tlocalhost\n${ip}\t${id}\n`;
}

/**
 * Runs `ip` commands, one per line, in one process: `ip [-n NS] -batch -`. Besides sparing a
 * process per command, batch mode reads its stdin before it acts; runCommand always writes stdin,
 * and a command that exits before reading it makes that write fail (EPIPE).
 */
export async function ipBatch(
  commands: readonly string[],
  options: { netns?: string; json?: boolean; allowFailure?: boolean } = {},
): Promise<CommandResult> {
  const argv = ["ip"];
  if (options.netns !== undefined) argv.push("-n", checkNetnsName(options.netns));
  if (options.json) argv.push("-j", "-d");
  argv.push("-batch", "-");
  return runCommand(argv, {
    input: `${commands.join("\n")}\n`,
    ...(options.allowFailure ? { allowFailure: true } : {}),
  });
}

/** What `ip -j -d link show` says of a link (the fields the mesh reads). */
export interface LinkDescription {
  readonly ifname?: string;
  readonly ifalias?: string;
  readonly master?: string;
  readonly flags?: readonly string[];
  readonly linkinfo?: { readonly info_kind?: string };
  readonly addr_info?: readonly {
    readonly family?: string;
    readonly local?: string;
    readonly prefixlen?: number;
  }[];
}

/** Every link of the host, or of a namespace. */
export async function listLinks(netns?: string): Promise<LinkDescription[]> {
  const { stdout } = await ipBatch(["link show"], { json: true, ...(netns !== undefined ? { netns } : {}) });
  return stdout.trim() === "" ? [] : (JSON.parse(stdout) as LinkDescription[]);
}

/** One link with its addresses, or undefined when there is none of that name. */
export async function describeLink(name: string, netns?: string): Promise<LinkDescription | undefined> {
  if (!INTERFACE_NAME.test(name)) throw new PodNetworkError(`"${name}" is not a valid interface name`);
  const result = await ipBatch([`addr show dev ${name}`], {
    json: true,
    allowFailure: true,
    ...(netns !== undefined ? { netns } : {}),
  });
  if (result.code !== 0 || result.stdout.trim() === "") return undefined;
  return (JSON.parse(result.stdout) as LinkDescription[])[0];
}

/** Every network namespace name on the host (`ip netns list`, which reads /run/netns). */
export async function listNetns(): Promise<string[]> {
  const { stdout } = await ipBatch(["netns list"], { json: true });
  if (stdout.trim() === "") return [];
  const parsed = JSON.parse(stdout) as { name?: unknown }[];
  return parsed.map((entry) => entry.name).filter((name): name is string => typeof name === "string");
}

/**
 * The mesh's bridge, up, with the host's address on it. Idempotent: an existing bridge keeps
 * its links and gets what it lacks. Its alias records the prefix (cleanup's mark of ownership).
 */
export async function ensureBridge(network: MeshNetwork = LOCAL_MESH_NETWORK): Promise<void> {
  checkNetwork(network);
  const { bridge } = network;
  const existing = await describeLink(bridge);
  if (existing !== undefined && existing.linkinfo?.info_kind !== "bridge") {
    throw new PodNetworkError(
      `interface ${bridge} exists and is not a bridge: remove it or choose another bridge name`,
    );
  }
  await ipBatch([
    ...(existing === undefined ? [`link add name ${bridge} type bridge`] : []),
    `link set dev ${bridge} alias ${network.prefix}`,
    // `replace` makes the address idempotent where `add` would fail with "File exists".
    `addr replace ${network.bridgeIp}/${network.podPrefixLength} dev ${bridge}`,
    `link set dev ${bridge} up`,
  ]);
}

/**
 * Creates a pod's network: namespace, veth pair (host side on the bridge, pod side `eth0` with
 * the pod's address), loopback, default route via the bridge, and the /etc/netns files. On any
 * failure what this call created is removed: there are no partial pods.
 */
export async function createPod(
  spec: PodSpec,
  network: MeshNetwork = LOCAL_MESH_NETWORK,
): Promise<PodNetwork> {
  const netns = podNetnsName(spec.id, network);
  const range = checkNetwork(network);
  const ip = canonicalIPv4(spec.ip);
  if (ip === undefined)
    throw new PodNetworkError(`pod ${spec.id}: address "${spec.ip}" is not an IPv4 address`);
  if (ip <= range.first || ip >= range.last || ip === range.bridgeIp) {
    throw new PodNetworkError(
      `pod ${spec.id}: address ${spec.ip} is not a usable host address of ${formatIPv4(range.first)}/${network.podPrefixLength} other than the bridge's ${network.bridgeIp}`,
    );
  }
  const resolvConf = podResolvConf(spec);
  const hostVeth = hostVethName(netns);
  const links = await listLinks();
  if (!links.some((link) => link.ifname === network.bridge)) {
    throw new PodNetworkError(`bridge ${network.bridge} does not exist: call ensureBridge first`);
  }
  if ((await listNetns()).includes(netns)) {
    throw new PodNetworkError(`pod ${spec.id} already exists (network namespace ${netns})`);
  }
  if (links.some((link) => link.ifname === hostVeth)) {
    throw new PodNetworkError(
      `pod ${spec.id}: interface ${hostVeth} (its veth name) already exists and is not this pod's`,
    );
  }

  await ipBatch([`netns add ${netns}`]);
  let vethCreated = false;
  try {
    await runCommand(["sysctl", "-q", "-p", "-"], {
      netns,
      input: [
        // Apps run as non-root and bind :80, as in a pod where the runtime sets the same sysctl.
        "net.ipv4.ip_unprivileged_port_start = 0",
        // No route_localnet: inbound REDIRECT rewrites to the address of eth0, outbound to
        // 127.0.0.1 from a local socket; neither is a martian, so the default (0) suffices.
        // No IPv6: capture and policy are IPv4, and link-local IPv6 between pods on the bridge
        // would be a path around both. Set before eth0 exists so it never gets an address.
        "net.ipv6.conf.all.disable_ipv6 = 1",
        "net.ipv6.conf.default.disable_ipv6 = 1",
        "",
      ].join("\n"),
    });
    // The peer is created directly inside the namespace: deleting the namespace destroys the
    // pair, so a veth is never left behind without its pod.
    await ipBatch([`link add name ${hostVeth} type veth peer name eth0 netns ${netns}`]);
    vethCreated = true;
    await ipBatch([
      `link set dev ${hostVeth} alias ${netns}`,
      `link set dev ${hostVeth} master ${network.bridge}`,
      `link set dev ${hostVeth} up`,
    ]);
    await ipBatch(
      [
        "link set dev lo up",
        `addr add ${spec.ip}/${network.podPrefixLength} dev eth0`,
        "link set dev eth0 up",
        `route add default via ${network.bridgeIp} dev eth0`,
      ],
      { netns },
    );
    const etc = join(NETNS_ETC_DIR, netns);
    await mkdir(etc, { recursive: true, mode: 0o755 });
    // World-readable: the pod's processes run under their own uids and must read them.
    await writeFile(join(etc, "resolv.conf"), resolvConf, { mode: 0o644 });
    await writeFile(join(etc, "hosts"), podHosts(spec.id, spec.ip), { mode: 0o644 });
  } catch (err) {
    // Only what this call created: a link of that name that existed before is someone else's.
    if (vethCreated) {
      await deletePod(netns).catch(() => undefined);
    } else {
      await ipBatch([`netns del ${netns}`], { allowFailure: true });
    }
    throw err;
  }
  return { netns, ip: spec.ip, hostVeth };
}

/** The pids of processes inside a network namespace (`ip netns pids`). */
export async function podPids(netns: string): Promise<number[]> {
  const result = await ipBatch([`netns pids ${checkNetnsName(netns)}`], { allowFailure: true });
  if (result.code !== 0) return [];
  return result.stdout
    .split(/\s+/)
    .filter((text) => /^\d+$/.test(text))
    .map(Number);
}

/**
 * Removes a pod's network: kills what still runs inside (a process keeps the namespace and its
 * veth alive after `ip netns del`, and the pod could not be recreated), deletes the veth pair,
 * the namespace and its /etc/netns directory. Idempotent; returns what it removed.
 */
export async function deletePod(netns: string): Promise<string[]> {
  checkNetnsName(netns);
  const removed: string[] = [];
  const exists = (await listNetns()).includes(netns);
  if (exists) {
    for (const pid of await podPids(netns)) {
      try {
        process.kill(pid, "SIGKILL");
        removed.push(`process ${pid} (in ${netns})`);
      } catch {
        // Already gone between listing and killing.
      }
    }
  }
  const veth = hostVethName(netns);
  // Deleting the host end destroys the pair at once, even while a dying process still holds
  // the namespace; the name is free for the pod to be created again.
  if ((await describeLink(veth)) !== undefined) {
    await ipBatch([`link del dev ${veth}`]);
    removed.push(`veth ${veth}`);
  }
  if (exists) {
    await ipBatch([`netns del ${netns}`]);
    removed.push(`netns ${netns}`);
  }
  const etc = join(NETNS_ETC_DIR, netns);
  try {
    await rm(etc, { recursive: true });
    removed.push(etc);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return removed;
}

/** The pods of a mesh: every namespace named `<prefix>-*`, with eth0's address ("" if it has none). */
export async function listPods(
  network: Pick<MeshNetwork, "prefix"> = LOCAL_MESH_NETWORK,
): Promise<PodNetwork[]> {
  const start = `${checkPrefix(network.prefix)}-`;
  const names = (await listNetns()).filter((name) => name.startsWith(start) && isValidNetnsName(name)).sort();
  const pods: PodNetwork[] = [];
  for (const netns of names) {
    const eth0 = await describeLink("eth0", netns);
    const ip = eth0?.addr_info?.find((a) => a.family === "inet")?.local ?? "";
    pods.push({ netns, ip, hostVeth: hostVethName(netns) });
  }
  return pods;
}
