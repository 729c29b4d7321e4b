/**
 * The DNS message wire format (RFC 1035 section 4, EDNS per RFC 6891): a decoder that accepts
 * compressed names and refuses anything malformed with a DnsWireError, and an encoder that
 * writes names uncompressed (the mesh's answers are small, and an encoder without compression
 * cannot emit a pointer that points wrong).
 *
 * Names are in presentation form without the trailing dot ("" is the root): labels joined by
 * ".", with "." and "\" inside a label written "\." and "\\", and bytes outside printable
 * ASCII written "\DDD" (decimal), as dig prints them. Case is kept; comparing names is the
 * caller's business (DNS names compare case-insensitively in ASCII).
 */

export const DNS_TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  TXT: 16,
  AAAA: 28,
  OPT: 41,
  ANY: 255,
} as const;

export const DNS_CLASS = { IN: 1, CH: 3, ANY: 255 } as const;

export const DNS_OPCODE = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 } as const;

/** Response codes; values above 15 travel partly in the OPT record (BADVERS is 16). */
export const DNS_RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

export const DNS_HEADER_LENGTH = 12;
/** A name is at most 255 bytes on the wire, a label at most 63 (RFC 1035 2.3.4). */
export const MAX_NAME_WIRE_LENGTH = 255;
export const MAX_LABEL_LENGTH = 63;

export interface DnsFlags {
  /** QR: this message is a response. */
  readonly response: boolean;
  readonly opcode: number;
  readonly authoritative: boolean;
  readonly truncated: boolean;
  readonly recursionDesired: boolean;
  readonly recursionAvailable: boolean;
  readonly authenticData: boolean;
  readonly checkingDisabled: boolean;
  /** The low 4 bits of the response code (the OPT record holds the upper 8). */
  readonly rcode: number;
}

export interface DnsQuestion {
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

/** A resource record; `data` is the RDATA as sent (names inside it are not expanded). */
export interface DnsRecord {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  readonly data: Uint8Array;
}

export interface DnsMessage {
  readonly id: number;
  readonly flags: DnsFlags;
  readonly questions: readonly DnsQuestion[];
  readonly answers: readonly DnsRecord[];
  readonly authority: readonly DnsRecord[];
  readonly additional: readonly DnsRecord[];
}

export type DnsWireErrorCode =
  | "truncated"
  | "trailing-bytes"
  | "bad-label-type"
  | "bad-pointer"
  | "name-too-long"
  | "label-too-long"
  | "empty-label"
  | "bad-escape"
  | "too-many-records"
  | "bad-field";

/** A message or name that is not valid on the wire; `offset` is where decoding stopped. */
export class DnsWireError extends Error {
  constructor(
    readonly code: DnsWireErrorCode,
    message: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
    this.name = "DnsWireError";
  }
}

// ---------------------------------------------------------------------------------------------
// Header

/** The header fields a server needs before it trusts the rest of the message. */
export interface DnsHeader {
  readonly id: number;
  readonly flags: DnsFlags;
  readonly questionCount: number;
  readonly answerCount: number;
  readonly authorityCount: number;
  readonly additionalCount: number;
}

export function decodeHeader(bytes: Uint8Array): DnsHeader {
  if (bytes.length < DNS_HEADER_LENGTH)
    throw new DnsWireError("truncated", `a DNS header is 12 bytes, got ${bytes.length}`, 0);
  const u16 = (at: number) => ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
  const bits = u16(2);
  return {
    id: u16(0),
    flags: {
      response: (bits & 0x8000) !== 0,
      opcode: (bits >> 11) & 0xf,
      authoritative: (bits & 0x0400) !== 0,
      truncated: (bits & 0x0200) !== 0,
      recursionDesired: (bits & 0x0100) !== 0,
      recursionAvailable: (bits & 0x0080) !== 0,
      authenticData: (bits & 0x0020) !== 0,
      checkingDisabled: (bits & 0x0010) !== 0,
      rcode: bits & 0xf,
    },
    questionCount: u16(4),
    answerCount: u16(6),
    authorityCount: u16(8),
    additionalCount: u16(10),
  };
}

function flagBits(f: DnsFlags): number {
  if (!Number.isInteger(f.opcode) || f.opcode < 0 || f.opcode > 15)
    throw new DnsWireError("bad-field", `opcode ${f.opcode} is not 0-15`);
  if (!Number.isInteger(f.rcode) || f.rcode < 0 || f.rcode > 15)
    throw new DnsWireError("bad-field", `header rcode ${f.rcode} is not 0-15 (larger codes go in OPT)`);
  return (
    (f.response ? 0x8000 : 0) |
    (f.opcode << 11) |
    (f.authoritative ? 0x0400 : 0) |
    (f.truncated ? 0x0200 : 0) |
    (f.recursionDesired ? 0x0100 : 0) |
    (f.recursionAvailable ? 0x0080 : 0) |
    (f.authenticData ? 0x0020 : 0) |
    (f.checkingDisabled ? 0x0010 : 0) |
    f.rcode
  );
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  offset = DNS_HEADER_LENGTH;
  constructor(readonly bytes: Uint8Array) {}

  need(n: number, what: string): void {
    if (this.offset + n > this.bytes.length)
      throw new DnsWireError("truncated", `message ends inside ${what}`, this.offset);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = ((this.bytes[this.offset] as number) << 8) | (this.bytes[this.offset + 1] as number);
    this.offset += 2;
    return v;
  }
  u32(what: string): number {
    const hi = this.u16(what);
    return hi * 0x10000 + this.u16(what);
  }
  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.slice(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
  name(): string {
    const { name, next } = readName(this.bytes, this.offset);
    this.offset = next;
    return name;
  }
}

/**
 * Reads a possibly compressed name starting at `offset`; `next` is the offset just after it in
 * the message (after the first pointer, when there is one). Every pointer must point before
 * itself: positions then strictly decrease, so a loop of pointers cannot exist, whatever the
 * bytes say.
 */
export function readName(bytes: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let wireLength = 1; // the final zero-length root label
  let at = offset;
  let next: number | undefined;
  for (;;) {
    if (at >= bytes.length) throw new DnsWireError("truncated", "message ends inside a name", at);
    const len = bytes[at] as number;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (at + 1 >= bytes.length)
        throw new DnsWireError("truncated", "message ends inside a compression pointer", at);
      const target = ((len & 0x3f) << 8) | (bytes[at + 1] as number);
      if (target >= at)
        throw new DnsWireError(
          "bad-pointer",
          `compression pointer to ${target} does not point before itself`,
          at,
        );
      next ??= at + 2;
      at = target;
      continue;
    }
    if (kind !== 0)
      throw new DnsWireError("bad-label-type", `label type 0x${kind.toString(16)} is not supported`, at);
    if (len === 0) return { name: labels.join("."), next: next ?? at + 1 };
    wireLength += len + 1;
    if (wireLength > MAX_NAME_WIRE_LENGTH)
      throw new DnsWireError("name-too-long", `name is longer than ${MAX_NAME_WIRE_LENGTH} bytes`, at);
    if (at + 1 + len > bytes.length) throw new DnsWireError("truncated", "message ends inside a label", at);
    labels.push(labelText(bytes.subarray(at + 1, at + 1 + len)));
    at += 1 + len;
  }
}

function labelText(label: Uint8Array): string {
  let out = "";
  for (const b of label) {
    if (b === 0x2e || b === 0x5c) out += `\\${String.fromCharCode(b)}`;
    else if (b > 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b.toString().padStart(3, "0")}`;
  }
  return out;
}

function readQuestion(r: Reader): DnsQuestion {
  const name = r.name();
  return { name, type: r.u16("a question's type"), class: r.u16("a question's class") };
}

function readRecord(r: Reader): DnsRecord {
  const name = r.name();
  const type = r.u16("a record's type");
  const klass = r.u16("a record's class");
  const ttl = r.u32("a record's TTL");
  const length = r.u16("a record's data length");
  return { name, type, class: klass, ttl, data: r.take(length, "a record's data") };
}

/** Decodes a whole message; anything malformed, including bytes after the last record, throws. */
export function decodeMessage(bytes: Uint8Array): DnsMessage {
  const header = decodeHeader(bytes);
  const r = new Reader(bytes);
  // Each entry takes at least 5 bytes: a count larger than the message allows is a lie, and
  // refusing it early keeps a 12-byte packet from making the decoder loop 65535 times.
  const total = header.questionCount + header.answerCount + header.authorityCount + header.additionalCount;
  if (total * 5 > bytes.length - DNS_HEADER_LENGTH)
    throw new DnsWireError("truncated", `header announces ${total} entries, the message cannot hold them`, 4);
  const questions = Array.from({ length: header.questionCount }, () => readQuestion(r));
  const answers = Array.from({ length: header.answerCount }, () => readRecord(r));
  const authority = Array.from({ length: header.authorityCount }, () => readRecord(r));
  const additional = Array.from({ length: header.additionalCount }, () => readRecord(r));
  if (r.offset !== bytes.length)
    throw new DnsWireError(
      "trailing-bytes",
      `${bytes.length - r.offset} bytes after the last record`,
      r.offset,
    );
  return { id: header.id, flags: header.flags, questions, answers, authority, additional };
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** A presentation-form name as wire labels; throws DnsWireError on a bad escape or length. */
export function nameToWire(name: string): Uint8Array {
  const labels: number[][] = [];
  let current: number[] = [];
  let i = 0;
  const endLabel = () => {
    if (current.length === 0) throw new DnsWireError("empty-label", `name "${name}" has an empty label`);
    if (current.length > MAX_LABEL_LENGTH)
      throw new DnsWireError("label-too-long", `name "${name}" has a label longer than ${MAX_LABEL_LENGTH}`);
    labels.push(current);
    current = [];
  };
  while (i < name.length) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      endLabel();
      i++;
    } else if (c === 0x5c) {
      const digits = /^\d{3}/.exec(name.slice(i + 1, i + 4));
      if (digits) {
        const value = Number(digits[0]);
        if (value > 255) throw new DnsWireError("bad-escape", `name "${name}": \\${digits[0]} is not a byte`);
        current.push(value);
        i += 4;
      } else {
        const escaped = name.charCodeAt(i + 1);
        if (Number.isNaN(escaped) || escaped > 0x7e || escaped < 0x20)
          throw new DnsWireError("bad-escape", `name "${name}" has a bad escape at ${i}`);
        current.push(escaped);
        i += 2;
      }
    } else {
      if (c > 0x7e || c < 0x20)
        throw new DnsWireError("bad-escape", `name "${name}": character ${c} must be written \\DDD`);
      current.push(c);
      i++;
    }
  }
  if (current.length > 0 || labels.length > 0) endLabel();
  const wire = labels.flatMap((l) => [l.length, ...l]);
  wire.push(0);
  if (wire.length > MAX_NAME_WIRE_LENGTH)
    throw new DnsWireError("name-too-long", `name "${name}" is longer than ${MAX_NAME_WIRE_LENGTH} bytes`);
  return Uint8Array.from(wire);
}

class Writer {
  private readonly chunks: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u16(v: number, what: string): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff)
      throw new DnsWireError("bad-field", `${what} ${v} is not a 16-bit value`);
    this.bytes(Uint8Array.of(v >> 8, v & 0xff));
  }
  u32(v: number, what: string): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
      throw new DnsWireError("bad-field", `${what} ${v} is not a 32-bit value`);
    this.bytes(Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
  }
  result(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export function encodeMessage(m: DnsMessage): Uint8Array {
  const w = new Writer();
  w.u16(m.id, "message id");
  w.u16(flagBits(m.flags), "flags");
  const sections = [m.questions, m.answers, m.authority, m.additional];
  for (const s of sections) {
    if (s.length > 0xffff) throw new DnsWireError("too-many-records", `${s.length} entries in one section`);
    w.u16(s.length, "section count");
  }
  for (const q of m.questions) {
    w.bytes(nameToWire(q.name));
    w.u16(q.type, "question type");
    w.u16(q.class, "question class");
  }
  for (const rr of [...m.answers, ...m.authority, ...m.additional]) {
    w.bytes(nameToWire(rr.name));
    w.u16(rr.type, "record type");
    w.u16(rr.class, "record class");
    w.u32(rr.ttl, "record TTL");
    w.u16(rr.data.length, "record data length");
    w.bytes(rr.data);
  }
  return w.result();
}

// ---------------------------------------------------------------------------------------------
// Records the mesh's DNS server sends

/** An A record; `ip` is dotted-quad IPv4. */
export function aRecord(name: string, ip: string, ttl: number): DnsRecord {
  const parts = ip.split(".");
  const octets = parts.map(Number);
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p)) || octets.some((o) => o > 255))
    throw new DnsWireError("bad-field", `"${ip}" is not an IPv4 address`);
  return { name, type: DNS_TYPE.A, class: DNS_CLASS.IN, ttl, data: Uint8Array.from(octets) };
}

export interface SoaFields {
  readonly primaryServer: string;
  readonly mailbox: string;
  readonly serial: number;
  readonly refresh: number;
  readonly retry: number;
  readonly expire: number;
  /** The TTL of negative answers (RFC 2308). */
  readonly minimum: number;
}

export function soaRecord(zone: string, ttl: number, soa: SoaFields): DnsRecord {
  const w = new Writer();
  w.bytes(nameToWire(soa.primaryServer));
  w.bytes(nameToWire(soa.mailbox));
  w.u32(soa.serial, "SOA serial");
  w.u32(soa.refresh, "SOA refresh");
  w.u32(soa.retry, "SOA retry");
  w.u32(soa.expire, "SOA expire");
  w.u32(soa.minimum, "SOA minimum");
  return { name: zone, type: DNS_TYPE.SOA, class: DNS_CLASS.IN, ttl, data: w.result() };
}

/** What an OPT pseudo-record says (RFC 6891 6.1.3). */
export interface EdnsInfo {
  readonly udpPayloadSize: number;
  /** The upper 8 bits of the 12-bit response code. */
  readonly extendedRcode: number;
  readonly version: number;
  readonly dnssecOk: boolean;
}

export function readOpt(rr: DnsRecord): EdnsInfo {
  return {
    udpPayloadSize: rr.class,
    extendedRcode: rr.ttl >>> 24,
    version: (rr.ttl >>> 16) & 0xff,
    dnssecOk: (rr.ttl & 0x8000) !== 0,
  };
}

/** An OPT pseudo-record without options; `rcode` is the full response code (its upper bits go here). */
export function optRecord(udpPayloadSize: number, rcode: number): DnsRecord {
  const ttl = ((rcode >> 4) & 0xff) * 0x1000000;
  return { name: "", type: DNS_TYPE.OPT, class: udpPayloadSize, ttl, data: new Uint8Array(0) };
}
