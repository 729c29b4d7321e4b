/**
 * The local mesh's cluster DNS: answers for Services (`<svc>.<ns>.svc.<domain>`) and pods
 * (`<a-b-c-d>.<ns>.pod.<domain>`) over UDP and TCP on one port, as CoreDNS's kubernetes plugin
 * does for the names it knows.
 *
 * - A for a known name: its addresses, TTL 5 s, authoritative.
 * - Another type for a known name, the zone apex or a name with names below it (an "empty
 *   non-terminal" such as `default.svc.cluster.local`): NOERROR without answers (NODATA) and
 *   the zone's SOA in authority, so resolvers cache the negative answer for 5 s only.
 * - An unknown name inside the cluster domain: NXDOMAIN with the SOA.
 * - A name outside the cluster domain: NXDOMAIN as well, without SOA and without recursion
 *   (RA clear). The mesh has no upstream resolver on purpose: nothing a workload looks up
 *   makes the machine send a query anywhere.
 * - Short names (`httpbin`, `httpbin.default`) are not answered as such (NXDOMAIN, as CoreDNS
 *   does): clients expand them with their resolv.conf search list
 *   (`<ns>.svc.<domain> svc.<domain> <domain>`, ndots:5).
 * - Malformed queries get FORMERR (or are dropped when not even the header is readable, or
 *   when the packet is itself a response, so two servers can never ping-pong), QDCOUNT != 1
 *   gets FORMERR, an opcode other than QUERY gets NOTIMP, a class other than IN (or ANY)
 *   gets REFUSED, an EDNS version other than 0 gets BADVERS.
 * - A UDP answer larger than the client accepts (512 bytes, or its EDNS size up to 1232) is
 *   sent truncated (TC) so the client retries over TCP.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIPv6, type Server, type Socket } from "node:net";
import { parseIPv4 } from "../../kube/ip.js";
import {
  aRecord,
  DNS_CLASS,
  DNS_OPCODE,
  DNS_RCODE,
  DNS_TYPE,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  DnsWireError,
  decodeHeader,
  decodeMessage,
  encodeMessage,
  nameToWire,
  optRecord,
  readOpt,
  soaRecord,
} from "./dns-message.js";

/** What the server answers: every name (lower-case, no trailing dot) with its IPv4 addresses. */
export interface DnsZone {
  /** e.g. "cluster.local" */
  readonly clusterDomain: string;
  readonly records: ReadonlyMap<string, readonly string[]>;
}

export const DNS_TTL_SECONDS = 5;
/** The largest UDP answer sent to an EDNS client (the DNS Flag Day 2020 value). */
const MAX_EDNS_UDP_SIZE = 1232;
const CLASSIC_UDP_SIZE = 512;
/** A TCP client that sends nothing for this long is disconnected. */
const TCP_IDLE_MS = 30_000;

export interface ServiceAddress {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIp: string;
}

export interface PodAddress {
  readonly namespace: string;
  readonly ip: string;
  /** With `subdomain`: `<hostname>.<subdomain>.<ns>.svc.<domain>`, as Kubernetes names such pods. */
  readonly hostname?: string;
  readonly subdomain?: string;
}

/** The zone Kubernetes DNS would serve for these Services and pods. */
export function zoneFromServices(
  services: readonly ServiceAddress[],
  pods: readonly PodAddress[] = [],
  clusterDomain = "cluster.local",
): DnsZone {
  const domain = normalizeName(clusterDomain);
  const records = new Map<string, string[]>();
  const add = (name: string, ip: string, what: string) => {
    if (parseIPv4(ip) === undefined) throw new Error(`${what}: "${ip}" is not an IPv4 address`);
    const key = normalizeName(name);
    const list = records.get(key) ?? [];
    if (!list.includes(ip)) list.push(ip);
    records.set(key, list);
  };
  for (const s of services) {
    add(`${s.name}.${s.namespace}.svc.${domain}`, s.clusterIp, `Service ${s.namespace}/${s.name}`);
  }
  for (const p of pods) {
    add(`${p.ip.replaceAll(".", "-")}.${p.namespace}.pod.${domain}`, p.ip, `pod ${p.ip} in ${p.namespace}`);
    if (p.hostname && p.subdomain) {
      add(`${p.hostname}.${p.subdomain}.${p.namespace}.svc.${domain}`, p.ip, `pod ${p.hostname}`);
    }
  }
  return { clusterDomain: domain, records };
}

/** DNS names compare case-insensitively; the zone and the lookups use one spelling. */
function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

// ---------------------------------------------------------------------------------------------
// Answering

/** A zone checked and indexed once, so answering a query is a few map lookups. */
export class ZoneIndex {
  readonly domain: string;
  private readonly records = new Map<string, readonly DnsRecord[]>();
  /** Names that exist only because names below them do (RFC 8020: not NXDOMAIN). */
  private readonly interior = new Set<string>();
  readonly soa: DnsRecord;

  constructor(zone: DnsZone, serial: number) {
    this.domain = normalizeName(zone.clusterDomain);
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(this.domain))
      throw new Error(`DNS zone: cluster domain "${zone.clusterDomain}" is not a DNS name`);
    for (const [name, ips] of zone.records) {
      const key = normalizeName(name);
      try {
        nameToWire(key);
      } catch (e) {
        throw new Error(`DNS zone: "${name}" is not a DNS name: ${(e as Error).message}`);
      }
      if (!this.contains(key))
        throw new Error(`DNS zone: "${name}" is not inside the cluster domain "${this.domain}"`);
      const records = ips.map((ip) => {
        try {
          return aRecord(key, ip, DNS_TTL_SECONDS);
        } catch {
          throw new Error(`DNS zone: "${name}" has "${ip}", which is not an IPv4 address`);
        }
      });
      this.records.set(key, [...(this.records.get(key) ?? []), ...records]);
      for (
        let parent = parentOf(key);
        parent !== undefined && parent !== this.domain;
        parent = parentOf(parent)
      )
        this.interior.add(parent);
    }
    this.soa = soaRecord(this.domain, DNS_TTL_SECONDS, {
      primaryServer: `ns.dns.${this.domain}`,
      mailbox: `hostmaster.${this.domain}`,
      serial,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: DNS_TTL_SECONDS,
    });
  }

  /** Whether a presentation-form name is the domain or below it (`a\\.cluster.local` is not: its dot is escaped). */
  contains(name: string): boolean {
    if (name === this.domain) return true;
    if (!name.endsWith(`.${this.domain}`)) return false;
    let backslashes = 0;
    for (let i = name.length - this.domain.length - 2; i >= 0 && name[i] === "\\"; i--) backslashes++;
    return backslashes % 2 === 0;
  }

  lookup(name: string): { exists: boolean; addresses: readonly DnsRecord[] } {
    const addresses = this.records.get(name);
    if (addresses) return { exists: true, addresses };
    return { exists: name === this.domain || this.interior.has(name), addresses: [] };
  }
}

function parentOf(name: string): string | undefined {
  const dot = name.indexOf(".");
  return dot < 0 ? undefined : name.slice(dot + 1);
}

/**
 * The answer to one query (`undefined`: send nothing). Pure: any bytes give an answer or
 * nothing; only a bug could make it throw, and the server drops that query and lives on.
 */
export function answerQuery(
  zone: ZoneIndex,
  request: Uint8Array,
  transport: "udp" | "tcp",
): Uint8Array | undefined {
  let header: ReturnType<typeof decodeHeader>;
  try {
    header = decodeHeader(request);
  } catch {
    return undefined;
  }
  if (header.flags.response) return undefined;
  const reply = (
    rcode: number,
    extra: Partial<Omit<DnsMessage, "id" | "flags">> = {},
    { authoritative = false, truncated = false } = {},
  ) =>
    encodeMessage({
      id: header.id,
      flags: {
        response: true,
        opcode: header.flags.opcode,
        authoritative,
        truncated,
        recursionDesired: header.flags.recursionDesired,
        recursionAvailable: false,
        authenticData: false,
        checkingDisabled: header.flags.checkingDisabled,
        rcode: rcode & 0xf,
      },
      questions: extra.questions ?? [],
      answers: extra.answers ?? [],
      authority: extra.authority ?? [],
      additional: extra.additional ?? [],
    });
  if (header.flags.opcode !== DNS_OPCODE.QUERY) return reply(DNS_RCODE.NOTIMP);
  let query: DnsMessage;
  try {
    query = decodeMessage(request);
  } catch (e) {
    if (e instanceof DnsWireError) return reply(DNS_RCODE.FORMERR);
    throw e;
  }
  const opts = query.additional.filter((rr) => rr.type === DNS_TYPE.OPT);
  if (query.questions.length !== 1 || opts.length > 1 || opts.some((o) => o.name !== ""))
    return reply(DNS_RCODE.FORMERR);
  const question = query.questions[0] as DnsQuestion;
  const edns = opts[0] ? readOpt(opts[0]) : undefined;
  const optFor = (rcode: number) => (edns ? [optRecord(MAX_EDNS_UDP_SIZE, rcode)] : []);
  if (edns && edns.version !== 0) return reply(DNS_RCODE.BADVERS, { additional: optFor(DNS_RCODE.BADVERS) });
  if (question.class !== DNS_CLASS.IN && question.class !== DNS_CLASS.ANY)
    return reply(DNS_RCODE.REFUSED, { questions: [question], additional: optFor(DNS_RCODE.REFUSED) });

  const name = question.name.toLowerCase();
  if (!zone.contains(name))
    return reply(DNS_RCODE.NXDOMAIN, { questions: [question], additional: optFor(DNS_RCODE.NXDOMAIN) });
  const found = zone.lookup(name);
  if (!found.exists)
    return reply(
      DNS_RCODE.NXDOMAIN,
      { questions: [question], authority: [zone.soa], additional: optFor(DNS_RCODE.NXDOMAIN) },
      { authoritative: true },
    );
  let answers: readonly DnsRecord[] = [];
  if (question.type === DNS_TYPE.A || question.type === DNS_TYPE.ANY) answers = found.addresses;
  else if (question.type === DNS_TYPE.SOA && name === zone.domain) answers = [zone.soa];
  // Answers carry the name as asked: clients compare it with their question, case included.
  answers = answers.map((rr) => ({ ...rr, name: question.name }));
  const full = reply(
    DNS_RCODE.NOERROR,
    {
      questions: [question],
      answers,
      authority: answers.length === 0 ? [zone.soa] : [],
      additional: optFor(DNS_RCODE.NOERROR),
    },
    { authoritative: true },
  );
  const limit =
    transport === "tcp"
      ? 0xffff
      : edns
        ? Math.min(Math.max(edns.udpPayloadSize, CLASSIC_UDP_SIZE), MAX_EDNS_UDP_SIZE)
        : CLASSIC_UDP_SIZE;
  if (full.length <= limit) return full;
  // RFC 2181 9: a truncated answer says so and leaves the records out; the client asks over TCP.
  return reply(
    DNS_RCODE.NOERROR,
    { questions: [question], additional: optFor(DNS_RCODE.NOERROR) },
    { authoritative: true, truncated: true },
  );
}

// ---------------------------------------------------------------------------------------------
// The server

export interface DnsServerOptions {
  readonly host: string;
  /** 0: any free port (the same one for TCP and UDP). */
  readonly port: number;
  readonly zone: DnsZone;
  /** Problems worth a line (bad zone on update, socket errors); queries themselves are not logged. */
  readonly log?: (line: string) => void;
}

export interface DnsServer {
  readonly address: { readonly host: string; readonly port: number };
  /** Replaces the zone; queries after the call see the new one. Throws (and keeps the old zone) on a bad zone. */
  setZone(zone: DnsZone): void;
  close(): Promise<void>;
}

export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  let serial = 1;
  let zone = new ZoneIndex(options.zone, serial);
  const log = options.log ?? (() => {});
  const answer = (request: Uint8Array, transport: "udp" | "tcp"): Uint8Array | undefined => {
    try {
      return answerQuery(zone, request, transport);
    } catch (e) {
      // answerQuery is total; should it ever throw, this query goes unanswered and the server lives on.
      log(`dns: internal error answering a ${transport} query: ${(e as Error).message}`);
      return undefined;
    }
  };

  const sockets = new Set<Socket>();
  const tcp = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    serveTcp(socket, (req) => answer(req, "tcp"), log);
  });
  const family = isIPv6(options.host) ? "udp6" : "udp4";
  let udp: UdpSocket | undefined;
  // With port 0, TCP picks a port and UDP must get the same one; another program may hold it
  // for UDP, so a few attempts.
  for (let attempt = 0; ; attempt++) {
    const port = await listenTcp(tcp, options.host, options.port);
    try {
      udp = await bindUdp(family, options.host, port);
      break;
    } catch (e) {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      if (options.port !== 0 || attempt >= 10) throw e;
    }
  }
  const udpSocket = udp;
  udpSocket.on("message", (msg, peer) => {
    const response = answer(msg, "udp");
    if (response) udpSocket.send(response, peer.port, peer.address);
  });
  udpSocket.on("error", (e) => log(`dns: udp socket error: ${e.message}`));
  tcp.on("error", (e) => log(`dns: tcp server error: ${e.message}`));

  const address = tcp.address();
  if (address === null || typeof address === "string") throw new Error("dns: TCP server has no address");
  return {
    address: { host: options.host, port: address.port },
    setZone(next: DnsZone) {
      zone = new ZoneIndex(next, ++serial);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => tcp.close(() => resolve())),
        new Promise<void>((resolve) => udpSocket.close(() => resolve())),
      ]);
    },
  };
}

function listenTcp(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once("error", onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off("error", onError);
      const a = server.address();
      if (a === null || typeof a === "string") reject(new Error("dns: TCP server has no port"));
      else resolve(a.port);
    });
  });
}

function bindUdp(type: "udp4" | "udp6", host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type });
    const onError = (e: Error) => {
      socket.close();
      reject(e);
    };
    socket.once("error", onError);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

/** DNS over TCP (RFC 7766): each message has a 2-byte length; several may arrive in one read, or one in many. */
function serveTcp(
  socket: Socket,
  answer: (request: Uint8Array) => Uint8Array | undefined,
  log: (line: string) => void,
): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
  socket.on("error", (e) => log(`dns: tcp client error: ${e.message}`));
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const length = pending.readUInt16BE(0);
      if (pending.length < 2 + length) break;
      const request = pending.subarray(2, 2 + length);
      pending = pending.subarray(2 + length);
      const response = answer(request);
      if (!response) continue;
      const frame = Buffer.alloc(2 + response.length);
      frame.writeUInt16BE(response.length, 0);
      frame.set(response, 2);
      socket.write(frame);
    }
  });
}
