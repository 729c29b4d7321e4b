/**
 * A minimal DER (X.690) writer and reader for the CA: just what certificates and PKCS#10
 * requests need, nothing more.
 *
 * Two styles of writing live here. The builders (`sequence`, `integer`, `oid`, ...) allocate a
 * Buffer per value and are meant for values encoded once: templates, CA certificates, OID
 * constants. The `write*` functions write into a caller's Buffer at an offset and return the
 * next offset; the SVID encoder uses them on its hot path, after computing every size first, so
 * that one certificate costs one allocation.
 *
 * Times follow RFC 5280 §4.1.2.5: UTCTime (YYMMDDHHMMSSZ) for 1950 through 2049,
 * GeneralizedTime (YYYYMMDDHHMMSSZ) otherwise, always UTC, always whole seconds.
 */

// ---------------------------------------------------------------------------------------------
// Tags.

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A context-specific tag `[n]`: constructed (0xa0|n) or primitive (0x80|n), n < 31. */
export function contextTagByte(n: number, constructed: boolean): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`context tag [${n}] is out of range`);
  return (constructed ? 0xa0 : 0x80) | n;
}

// ---------------------------------------------------------------------------------------------
// Lengths and headers.

/** Bytes the length field takes for a content of `n` bytes (definite form, minimal). */
export function lengthSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x100) return 2;
  if (n < 0x10000) return 3;
  if (n < 0x1000000) return 4;
  return 5;
}

/** Bytes a whole TLV takes (one tag byte) for a content of `n` bytes. */
export function tlvSize(n: number): number {
  return 1 + lengthSize(n) + n;
}

/** Writes a length field at `off`; returns the offset after it. */
export function writeLength(buf: Uint8Array, off: number, n: number): number {
  if (n < 0x80) {
    buf[off] = n;
    return off + 1;
  }
  const size = lengthSize(n) - 1;
  buf[off++] = 0x80 | size;
  for (let i = size - 1; i >= 0; i--) buf[off++] = (n / 2 ** (8 * i)) & 0xff;
  return off;
}

/** Writes a tag and a length at `off`; returns the offset of the content. */
export function writeHeader(buf: Uint8Array, off: number, tag: number, n: number): number {
  buf[off] = tag;
  return writeLength(buf, off + 1, n);
}

/** Writes a whole TLV whose content is given; returns the offset after it. */
export function writeTlv(buf: Uint8Array, off: number, tag: number, content: Uint8Array): number {
  const at = writeHeader(buf, off, tag, content.length);
  buf.set(content, at);
  return at + content.length;
}

/** Writes an ASCII string (already checked to be ASCII) as a whole TLV. */
export function writeAsciiTlv(buf: Buffer, off: number, tag: number, text: string): number {
  const at = writeHeader(buf, off, tag, text.length);
  return at + buf.write(text, at, "latin1");
}

// ---------------------------------------------------------------------------------------------
// Builders (one allocation per value; for values encoded once).

function total(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** A TLV with the given tag; the content is the concatenation of `parts`. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  const n = total(parts);
  const out = Buffer.allocUnsafe(tlvSize(n));
  let off = writeHeader(out, 0, tag, n);
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const sequence = (...parts: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...parts);
export const set = (...parts: Uint8Array[]): Buffer => tlv(TAG.SET, ...parts);
export const octetString = (content: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, content);
export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0x00]);
export const boolean = (v: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 0x01, v ? 0xff : 0x00]);

/** `[n]` wrapping `parts`: EXPLICIT (constructed) by default, or a primitive IMPLICIT value. */
export function contextTag(n: number, parts: Uint8Array[], constructed = true): Buffer {
  return tlv(contextTagByte(n, constructed), ...parts);
}

/** BIT STRING with `unusedBits` (0..7) unused bits in the last byte. */
export function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (unusedBits && !content.length)) {
    throw new RangeError("a BIT STRING has 0..7 unused bits, and none when it is empty");
  }
  return tlv(TAG.BIT_STRING, Uint8Array.of(unusedBits), content);
}

/**
 * The minimal two's-complement content of a non-negative integer given as big-endian unsigned
 * bytes: leading zero bytes dropped, one 0x00 added when the high bit is set.
 */
export function unsignedIntegerContent(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  if (b.length === 0) return Buffer.from([0]);
  if ((b[0] as number) & 0x80) {
    const out = Buffer.allocUnsafe(b.length + 1);
    out[0] = 0;
    out.set(b, 1);
    return out;
  }
  return Buffer.from(b);
}

/** INTEGER from a non-negative number or bigint, or from big-endian unsigned bytes. */
export function integer(value: number | bigint | Uint8Array): Buffer {
  if (value instanceof Uint8Array) return tlv(TAG.INTEGER, unsignedIntegerContent(value));
  let v = BigInt(value);
  if (v < 0n) throw new RangeError("only non-negative INTEGERs are encoded here");
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  return tlv(TAG.INTEGER, unsignedIntegerContent(Uint8Array.from(bytes)));
}

/** OBJECT IDENTIFIER from dotted text, e.g. "2.5.29.17". Encode once, reuse the Buffer. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map((s) => {
    if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new RangeError(`bad OID arc ${JSON.stringify(s)} in ${dotted}`);
    return BigInt(s);
  });
  const [a, b, ...rest] = arcs;
  if (a === undefined || b === undefined || a > 2n || (a < 2n && b > 39n)) {
    throw new RangeError(`bad OID ${dotted}`);
  }
  const bytes: number[] = [];
  for (const arc of [a * 40n + b, ...rest]) {
    const chunk = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(TAG.OID, Uint8Array.from(bytes));
}

/** UTF8String. */
export function utf8String(text: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(text, "utf8"));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** PrintableString (X.680 §41.4 character set only). */
export function printableString(text: string): Buffer {
  if (!PRINTABLE.test(text)) throw new RangeError(`${JSON.stringify(text)} is not a PrintableString`);
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(text, "latin1"));
}

/** IA5String (7-bit ASCII). */
export function ia5String(text: string): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the IA5 range starts at NUL
  if (!/^[\x00-\x7f]*$/.test(text)) throw new RangeError("an IA5String holds 7-bit ASCII only");
  return tlv(TAG.IA5_STRING, Buffer.from(text, "latin1"));
}

// ---------------------------------------------------------------------------------------------
// Times.

/** The earliest and latest instants a certificate time can express (GeneralizedTime years 0000..9999). */
export const MIN_TIME_MS = new Date("0000-01-01T00:00:00Z").getTime();
export const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const UTC_FROM = Date.UTC(1950, 0, 1);
const UTC_UNTIL = Date.UTC(2050, 0, 1);

function checkTime(ms: number): void {
  if (!Number.isFinite(ms) || ms < MIN_TIME_MS || ms > MAX_TIME_MS) {
    throw new RangeError("a certificate time must be a valid date in the years 0000..9999");
  }
}

/** Whether `ms` (whole seconds are used) is written as UTCTime (else GeneralizedTime). */
export function isUtcTime(ms: number): boolean {
  return ms >= UTC_FROM && ms < UTC_UNTIL;
}

/** Bytes the time TLV takes: 15 for UTCTime, 17 for GeneralizedTime. */
export function timeSize(ms: number): number {
  return isUtcTime(ms) ? 15 : 17;
}

function two(buf: Uint8Array, off: number, v: number): void {
  buf[off] = 0x30 + ((v / 10) | 0);
  buf[off + 1] = 0x30 + (v % 10);
}

/** Writes the time TLV for `ms` (truncated to the second); returns the offset after it. */
export function writeTime(buf: Uint8Array, off: number, ms: number): number {
  checkTime(ms);
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  if (isUtcTime(ms)) {
    buf[off++] = TAG.UTC_TIME;
    buf[off++] = 13;
    two(buf, off, year % 100);
    off += 2;
  } else {
    buf[off++] = TAG.GENERALIZED_TIME;
    buf[off++] = 15;
    two(buf, off, (year / 100) | 0);
    two(buf, off + 2, year % 100);
    off += 4;
  }
  two(buf, off, d.getUTCMonth() + 1);
  two(buf, off + 2, d.getUTCDate());
  two(buf, off + 4, d.getUTCHours());
  two(buf, off + 6, d.getUTCMinutes());
  two(buf, off + 8, d.getUTCSeconds());
  buf[off + 10] = 0x5a; // Z
  return off + 11;
}

/** The time TLV for a Date (UTCTime through 2049, GeneralizedTime otherwise). */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  checkTime(ms);
  const out = Buffer.allocUnsafe(timeSize(ms));
  writeTime(out, 0, ms);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pre-encoded OBJECT IDENTIFIERs (whole TLVs), encoded once at load.

export const OID = {
  // Key algorithms and curves.
  ecPublicKey: oid("1.2.840.10045.2.1"),
  prime256v1: oid("1.2.840.10045.3.1.7"),
  secp384r1: oid("1.3.132.0.34"),
  secp521r1: oid("1.3.132.0.35"),
  rsaEncryption: oid("1.2.840.113549.1.1.1"),
  // Signature algorithms.
  ecdsaWithSha256: oid("1.2.840.10045.4.3.2"),
  ecdsaWithSha384: oid("1.2.840.10045.4.3.3"),
  ecdsaWithSha512: oid("1.2.840.10045.4.3.4"),
  sha256WithRsa: oid("1.2.840.113549.1.1.11"),
  sha384WithRsa: oid("1.2.840.113549.1.1.12"),
  sha512WithRsa: oid("1.2.840.113549.1.1.13"),
  // Name attributes.
  countryName: oid("2.5.4.6"),
  organizationName: oid("2.5.4.10"),
  commonName: oid("2.5.4.3"),
  serialNumber: oid("2.5.4.5"),
  // Certificate extensions.
  subjectKeyIdentifier: oid("2.5.29.14"),
  keyUsage: oid("2.5.29.15"),
  subjectAltName: oid("2.5.29.17"),
  basicConstraints: oid("2.5.29.19"),
  authorityKeyIdentifier: oid("2.5.29.35"),
  extKeyUsage: oid("2.5.29.37"),
  // Extended key usages.
  serverAuth: oid("1.3.6.1.5.5.7.3.1"),
  clientAuth: oid("1.3.6.1.5.5.7.3.2"),
} as const;

// ---------------------------------------------------------------------------------------------
// Reading (strict DER: single-byte tags, definite minimal lengths).

export class DerReadError extends Error {
  override readonly name = "DerReadError";
}

export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly body: number;
  /** Offset one past the last content byte. */
  readonly end: number;
}

/** Reads one TLV at `pos`, which must end by `limit`. */
export function readTlv(buf: Uint8Array, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new DerReadError("truncated (a value needs at least 2 bytes)");
  const tag = buf[pos] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerReadError("multi-byte tags are not used here");
  let len = buf[pos + 1] as number;
  let body = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerReadError("indefinite length is not DER");
    if (n > 4) throw new DerReadError("length field too large");
    if (body + n > limit) throw new DerReadError("truncated length");
    if (buf[body] === 0) throw new DerReadError("non-minimal length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[body + i] as number);
    body += n;
    if (len < 0x80) throw new DerReadError("non-minimal length");
  }
  const end = body + len;
  if (end > limit) throw new DerReadError("truncated content");
  return { tag, start: pos, body, end };
}

/** Reads one TLV and checks its tag; `what` names it in the error. */
export function expectTlv(buf: Uint8Array, pos: number, limit: number, tag: number, what: string): Tlv {
  let t: Tlv;
  try {
    t = readTlv(buf, pos, limit);
  } catch (e) {
    throw new DerReadError(`${what}: ${(e as Error).message}`);
  }
  if (t.tag !== tag) {
    throw new DerReadError(`${what}: expected tag 0x${hex2(tag)}, found 0x${hex2(t.tag)}`);
  }
  return t;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

/** The direct children of a constructed value. */
export function readChildren(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.body; p < t.end; ) {
    const c = readTlv(buf, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

/** Dotted text of an OID TLV's content, for messages. */
export function oidText(buf: Uint8Array, t: Tlv): string {
  if (t.end === t.body) throw new DerReadError("empty OID");
  const parts: bigint[] = [];
  let value = 0n;
  for (let i = t.body; i < t.end; i++) {
    const b = buf[i] as number;
    value = (value << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) {
        const first = value < 80n ? value / 40n : 2n;
        parts.push(first, value - first * 40n);
      } else parts.push(value);
      value = 0n;
    } else if (i === t.end - 1) throw new DerReadError("truncated OID");
  }
  return parts.join(".");
}

/** Whether the TLV `t` of `buf` is byte for byte the pre-encoded TLV `encoded`. */
export function tlvEquals(buf: Uint8Array, t: Tlv, encoded: Uint8Array): boolean {
  if (t.end - t.start !== encoded.length) return false;
  for (let i = 0; i < encoded.length; i++) if (buf[t.start + i] !== encoded[i]) return false;
  return true;
}
