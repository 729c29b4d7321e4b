/**
 * X.509-SVIDs (X509-SVID.md): parsing a certificate chain and its PKCS#8 key, the structural
 * rules for leaf and signing certificates, and verification of a chain against the bundle of
 * the peer's own trust domain at a given time.
 *
 * Parsing never looks at validity dates; verification does, at `options.at` (default: now).
 * Extensions are decoded once per certificate by a small DER reader and cached by certificate
 * object, so verifying the same certificates again costs little more than the signatures.
 * Private keys never appear in errors, logs, `toString`, `toJSON` or `util.inspect` output.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { inspect } from "node:util";
import type { X509BundleSource } from "./bundle/x509bundle.js";
import { InvalidSpiffeIdError, SpiffeId } from "./id.js";
import { X509SvidError, type X509SvidErrorReason } from "./x509errors.js";

export { X509SvidError, type X509SvidErrorReason } from "./x509errors.js";

/** Longest chain accepted (leaf included), as rust-spiffe's MAX_CERT_CHAIN_LENGTH. */
export const MAX_CHAIN_LENGTH = 16;

// ---------------------------------------------------------------------------------------------
// A minimal DER reader: just enough of RFC 5280 for the fields node:crypto does not expose.

class DerError extends Error {}

interface Tlv {
  tag: number;
  /** First byte of the header. */
  start: number;
  /** First byte of the content. */
  body: number;
  /** One past the last byte of the content. */
  end: number;
}

function readTlv(buf: Uint8Array, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new DerError("truncated");
  const tag = buf[pos] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not used here");
  let len = buf[pos + 1] as number;
  let body = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError("indefinite or oversized length");
    if (body + n > limit) throw new DerError("truncated length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[body + i] as number);
    body += n;
    if (len < 0x80 || (n > 1 && (buf[pos + 2] as number) === 0)) throw new DerError("non-minimal length");
  }
  const end = body + len;
  if (end > limit) throw new DerError("truncated content");
  return { tag, start: pos, body, end };
}

function expectTlv(buf: Uint8Array, pos: number, limit: number, tag: number): Tlv {
  const t = readTlv(buf, pos, limit);
  if (t.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
  return t;
}

/** The children of a constructed value. */
function children(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.body; p < t.end; ) {
    const c = readTlv(buf, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

function oidToString(buf: Uint8Array, t: Tlv): string {
  if (t.end === t.body) throw new DerError("empty OID");
  const parts: number[] = [];
  let value = 0;
  for (let i = t.body; i < t.end; i++) {
    const b = buf[i] as number;
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        parts.push(first, value - first * 40);
      } else parts.push(value);
      value = 0;
    } else if (i === t.end - 1) throw new DerError("truncated OID");
  }
  return parts.join(".");
}

function parseBoolean(buf: Uint8Array, t: Tlv): boolean {
  if (t.tag !== 0x01 || t.end - t.body !== 1) throw new DerError("bad BOOLEAN");
  const v = buf[t.body];
  if (v === 0x00) return false;
  if (v === 0xff) return true;
  throw new DerError("BOOLEAN is neither 0x00 nor 0xFF");
}

function parseSmallUnsigned(buf: Uint8Array, t: Tlv): number {
  if (t.tag !== 0x02 || t.end === t.body || t.end - t.body > 4) throw new DerError("bad INTEGER");
  if ((buf[t.body] as number) & 0x80) throw new DerError("negative INTEGER");
  let v = 0;
  for (let i = t.body; i < t.end; i++) v = v * 256 + (buf[i] as number);
  return v;
}

function digits(buf: Uint8Array, pos: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = (buf[pos + i] as number) - 0x30;
    if (c < 0 || c > 9) throw new DerError("bad time digit");
    v = v * 10 + c;
  }
  return v;
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as milliseconds since the epoch. */
function parseTime(buf: Uint8Array, t: Tlv): number {
  const len = t.end - t.body;
  let p = t.body;
  let year: number;
  if (t.tag === 0x17 && len === 13) {
    year = digits(buf, p, 2);
    year += year >= 50 ? 1900 : 2000;
    p += 2;
  } else if (t.tag === 0x18 && len === 15) {
    year = digits(buf, p, 4);
    p += 4;
  } else throw new DerError("bad time");
  const month = digits(buf, p, 2);
  const day = digits(buf, p + 2, 2);
  const hour = digits(buf, p + 4, 2);
  const minute = digits(buf, p + 6, 2);
  const second = digits(buf, p + 8, 2);
  if (buf[p + 10] !== 0x5a) throw new DerError("time not in UTC");
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
    throw new DerError("time out of range");
  }
  return Date.UTC(year, month - 1, day, hour, minute, second);
}

// ---------------------------------------------------------------------------------------------
// Certificate facts, decoded once per certificate object.

const KU_DIGITAL_SIGNATURE = 1 << 0;
const KU_KEY_CERT_SIGN = 1 << 5;
const KU_CRL_SIGN = 1 << 6;
const KEY_USAGE_NAMES = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
] as const;
export type KeyUsageName = (typeof KEY_USAGE_NAMES)[number];

const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/** Extensions whose semantics are handled here (or, as in Go's crypto/x509, safely ignored). */
const EXT = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  crlDistributionPoints: "2.5.29.31",
  certificatePolicies: "2.5.29.32",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
} as const;
const HANDLED_EXTENSIONS = new Set<string>(Object.values(EXT));
const EXTENSION_NAMES = new Map<string, string>(Object.entries(EXT).map(([k, v]) => [v, k]));

/** GeneralName tags (context-specific, RFC 5280 §4.2.1.6). */
const GN_RFC822 = 0x81;
const GN_DNS = 0x82;
const GN_URI = 0x86;
const GN_IP = 0x87;

interface GeneralNames {
  uris: string[];
  dns: string[];
  ips: Buffer[];
  emails: string[];
  /** Tags of names of any other form. */
  others: number[];
}

interface NameConstraints {
  permitted: GeneralNames;
  excluded: GeneralNames;
  critical: boolean;
}

interface CertInfo {
  readonly cert: X509Certificate;
  readonly issuerRaw: Buffer;
  readonly subjectRaw: Buffer;
  readonly subjectEmpty: boolean;
  readonly notBefore: number;
  readonly notAfter: number;
  /** basicConstraints: undefined when the extension is absent. */
  readonly ca: boolean | undefined;
  readonly pathLen: number | undefined;
  readonly bcCritical: boolean | undefined;
  /** keyUsage bit mask (bit i = RFC 5280 bit i); undefined when absent. */
  readonly keyUsage: number | undefined;
  readonly kuCritical: boolean | undefined;
  readonly eku: readonly string[] | undefined;
  readonly san: GeneralNames | undefined;
  readonly sanCritical: boolean | undefined;
  readonly nameConstraints: NameConstraints | undefined;
  readonly subjectKeyId: Buffer | undefined;
  readonly authorityKeyId: Buffer | undefined;
  readonly unhandledCritical: readonly string[];
  /** Filled lazily. */
  publicKey?: KeyObject;
  leafId?: SpiffeId | X509SvidError;
}

/** A parse failure, kept so that a bad certificate is decoded only once too. */
interface CertInfoFailure {
  readonly reason: X509SvidErrorReason;
  readonly detail: string;
}

const infoCache = new WeakMap<X509Certificate, CertInfo | CertInfoFailure>();

function emptyNames(): GeneralNames {
  return { uris: [], dns: [], ips: [], emails: [], others: [] };
}

function addGeneralName(buf: Buffer, t: Tlv, into: GeneralNames): void {
  switch (t.tag) {
    case GN_URI:
      into.uris.push(buf.toString("latin1", t.body, t.end));
      break;
    case GN_DNS:
      into.dns.push(buf.toString("latin1", t.body, t.end));
      break;
    case GN_RFC822:
      into.emails.push(buf.toString("latin1", t.body, t.end));
      break;
    case GN_IP:
      into.ips.push(Buffer.from(buf.subarray(t.body, t.end)));
      break;
    default:
      if ((t.tag & 0xc0) !== 0x80) throw new DerError("not a GeneralName");
      into.others.push(t.tag & 0x1f);
  }
}

function parseSan(buf: Buffer, value: Tlv): GeneralNames {
  const seq = expectTlv(buf, value.body, value.end, 0x30);
  if (seq.end !== value.end) throw new DerError("trailing bytes");
  const names = emptyNames();
  for (const gn of children(buf, seq)) addGeneralName(buf, gn, names);
  return names;
}

function parseNameConstraints(buf: Buffer, value: Tlv, critical: boolean): NameConstraints {
  const seq = expectTlv(buf, value.body, value.end, 0x30);
  if (seq.end !== value.end) throw new DerError("trailing bytes");
  const nc: NameConstraints = { permitted: emptyNames(), excluded: emptyNames(), critical };
  for (const part of children(buf, seq)) {
    if (part.tag !== 0xa0 && part.tag !== 0xa1) throw new DerError("bad NameConstraints member");
    const into = part.tag === 0xa0 ? nc.permitted : nc.excluded;
    for (const subtree of children(buf, part)) {
      if (subtree.tag !== 0x30) throw new DerError("bad GeneralSubtree");
      const [base, ...rest] = children(buf, subtree);
      if (!base) throw new DerError("GeneralSubtree without base");
      // minimum MUST be 0 and maximum MUST be absent (RFC 5280 §4.2.1.10); anything else is not understood.
      if (rest.some((r) => r.tag !== 0x80 || r.end - r.body !== 1 || buf[r.body] !== 0)) {
        throw new DerError("GeneralSubtree minimum/maximum other than the default");
      }
      addGeneralName(buf, base, into);
    }
  }
  return nc;
}

function parseKeyUsage(buf: Buffer, value: Tlv): number {
  const bits = expectTlv(buf, value.body, value.end, 0x03);
  if (bits.end !== value.end || bits.end === bits.body) throw new DerError("bad BIT STRING");
  const unused = buf[bits.body] as number;
  if (unused > 7 || (bits.end - bits.body === 1 && unused !== 0)) throw new DerError("bad BIT STRING");
  let mask = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bits.body + 1 + (i >> 3);
    if (byte < bits.end && (buf[byte] as number) & (0x80 >> (i & 7))) mask |= 1 << i;
  }
  return mask;
}

function parseCertInfo(cert: X509Certificate): CertInfo | CertInfoFailure {
  const der = cert.raw;
  let tbsEnd: number;
  let p: number;
  let issuerRaw: Buffer;
  let subjectRaw: Buffer;
  let subjectEmpty: boolean;
  let notBefore: number;
  let notAfter: number;
  try {
    const top = expectTlv(der, 0, der.length, 0x30);
    if (top.end !== der.length) throw new DerError("trailing bytes");
    const tbs = expectTlv(der, top.body, top.end, 0x30);
    tbsEnd = tbs.end;
    p = tbs.body;
    let t = readTlv(der, p, tbsEnd);
    if (t.tag === 0xa0) t = readTlv(der, t.end, tbsEnd); // version
    if (t.tag !== 0x02) throw new DerError("serialNumber missing");
    const sigAlg = expectTlv(der, t.end, tbsEnd, 0x30);
    const issuer = expectTlv(der, sigAlg.end, tbsEnd, 0x30);
    issuerRaw = der.subarray(issuer.start, issuer.end);
    const validity = expectTlv(der, issuer.end, tbsEnd, 0x30);
    const [nb, na, extra] = children(der, validity);
    if (!nb || !na || extra) throw new DerError("bad validity");
    notBefore = parseTime(der, nb);
    notAfter = parseTime(der, na);
    const subject = expectTlv(der, validity.end, tbsEnd, 0x30);
    subjectRaw = der.subarray(subject.start, subject.end);
    subjectEmpty = subject.body === subject.end;
    const spki = expectTlv(der, subject.end, tbsEnd, 0x30);
    p = spki.end;
  } catch (e) {
    return { reason: "corrupt", detail: `is not a well-formed certificate (${(e as Error).message})` };
  }

  let ca: boolean | undefined;
  let pathLen: number | undefined;
  let bcCritical: boolean | undefined;
  let keyUsage: number | undefined;
  let kuCritical: boolean | undefined;
  let eku: string[] | undefined;
  let san: GeneralNames | undefined;
  let sanCritical: boolean | undefined;
  let nameConstraints: NameConstraints | undefined;
  let subjectKeyId: Buffer | undefined;
  let authorityKeyId: Buffer | undefined;
  const unhandledCritical: string[] = [];
  const seen = new Set<string>();
  let current = "extensions";
  try {
    while (p < tbsEnd) {
      const t = readTlv(der, p, tbsEnd);
      p = t.end;
      if (t.tag === 0x81 || t.tag === 0xa1 || t.tag === 0x82 || t.tag === 0xa2) continue; // unique IDs
      if (t.tag !== 0xa3) throw new DerError("unexpected field in TBSCertificate");
      const list = expectTlv(der, t.body, t.end, 0x30);
      if (list.end !== t.end) throw new DerError("trailing bytes after extensions");
      for (const ext of children(der, list)) {
        current = "an extension";
        if (ext.tag !== 0x30) throw new DerError("extension is not a SEQUENCE");
        const parts = children(der, ext);
        const oidTlv = parts[0];
        if (oidTlv?.tag !== 0x06) throw new DerError("extension without OID");
        const oid = oidToString(der, oidTlv);
        current = `extension ${EXTENSION_NAMES.get(oid) ?? oid}`;
        if (seen.has(oid)) throw new DerError("it appears twice (RFC 5280 §4.2)");
        seen.add(oid);
        let critical = false;
        let value = parts[1];
        if (value?.tag === 0x01) {
          critical = parseBoolean(der, value);
          value = parts[2];
          if (parts.length !== 3) throw new DerError("bad Extension");
        } else if (parts.length !== 2) throw new DerError("bad Extension");
        if (value?.tag !== 0x04) throw new DerError("extnValue is not an OCTET STRING");
        switch (oid) {
          case EXT.basicConstraints: {
            const seq = expectTlv(der, value.body, value.end, 0x30);
            if (seq.end !== value.end) throw new DerError("trailing bytes");
            const kids = children(der, seq);
            let k = 0;
            ca = false;
            if (kids[k]?.tag === 0x01) ca = parseBoolean(der, kids[k++] as Tlv);
            if (kids[k]) pathLen = parseSmallUnsigned(der, kids[k++] as Tlv);
            if (kids[k]) throw new DerError("bad BasicConstraints");
            bcCritical = critical;
            break;
          }
          case EXT.keyUsage:
            keyUsage = parseKeyUsage(der, value);
            kuCritical = critical;
            break;
          case EXT.subjectAltName:
            san = parseSan(der, value);
            sanCritical = critical;
            break;
          case EXT.extKeyUsage: {
            const seq = expectTlv(der, value.body, value.end, 0x30);
            if (seq.end !== value.end) throw new DerError("trailing bytes");
            eku = children(der, seq).map((o) => {
              if (o.tag !== 0x06) throw new DerError("KeyPurposeId is not an OID");
              return oidToString(der, o);
            });
            break;
          }
          case EXT.nameConstraints:
            nameConstraints = parseNameConstraints(der, value, critical);
            break;
          case EXT.subjectKeyIdentifier: {
            const ki = expectTlv(der, value.body, value.end, 0x04);
            subjectKeyId = der.subarray(ki.body, ki.end);
            break;
          }
          case EXT.authorityKeyIdentifier: {
            const seq = expectTlv(der, value.body, value.end, 0x30);
            const first = children(der, seq)[0];
            if (first?.tag === 0x80) authorityKeyId = der.subarray(first.body, first.end);
            break;
          }
          default:
            if (critical && !HANDLED_EXTENSIONS.has(oid)) unhandledCritical.push(oid);
        }
      }
    }
  } catch (e) {
    return {
      reason: "unparseable-extension",
      detail: `has a malformed ${current}: ${(e as Error).message} (RFC 5280 §4.2)`,
    };
  }
  return {
    cert,
    issuerRaw,
    subjectRaw,
    subjectEmpty,
    notBefore,
    notAfter,
    ca,
    pathLen,
    bcCritical,
    keyUsage,
    kuCritical,
    eku,
    san,
    sanCritical,
    nameConstraints,
    subjectKeyId,
    authorityKeyId,
    unhandledCritical,
  };
}

function role(index: number): string {
  return index === 0 ? "the leaf certificate" : `signing certificate #${index}`;
}

function fail(reason: X509SvidErrorReason, message: string, certIndex?: number, cause?: unknown): never {
  throw new X509SvidError(reason, message, certIndex, cause === undefined ? undefined : { cause });
}

function lookup(cert: X509Certificate): CertInfo | CertInfoFailure {
  let info = infoCache.get(cert);
  if (!info) {
    if (!(cert instanceof X509Certificate)) throw new TypeError("expected a node:crypto X509Certificate");
    info = parseCertInfo(cert);
    infoCache.set(cert, info);
  }
  return info;
}

function getInfo(cert: X509Certificate, index: number): CertInfo {
  const info = lookup(cert);
  if ("cert" in info) return info;
  return fail(info.reason, `${role(index)} ${info.detail}`, index);
}

function publicKeyOf(info: CertInfo): KeyObject {
  if (!info.publicKey) info.publicKey = info.cert.publicKey;
  return info.publicKey;
}

/** What a certificate says, as decoded here: for diagnostics, tests and other modules. */
export interface X509CertificateFacts {
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** SAN present and critical; null when there is no SAN extension. */
  readonly sanCritical: boolean | null;
  /** basicConstraints cA; null when the extension is absent. */
  readonly ca: boolean | null;
  readonly pathLen: number | null;
  readonly keyUsage: readonly KeyUsageName[] | null;
  readonly keyUsageCritical: boolean | null;
  /** Extended key usage OIDs; null when absent. */
  readonly extKeyUsage: readonly string[] | null;
  readonly emptySubject: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly hasNameConstraints: boolean;
  readonly unhandledCriticalExtensions: readonly string[];
}

/** Decodes (once, then cached) the facts SVID rules use. Throws X509SvidError if malformed. */
export function certificateFacts(cert: X509Certificate): X509CertificateFacts {
  const info = lookup(cert);
  if (!("cert" in info)) fail(info.reason, `the certificate ${info.detail}`);
  const ku = info.keyUsage;
  return {
    uriSans: info.san?.uris ?? [],
    dnsSans: info.san?.dns ?? [],
    sanCritical: info.sanCritical ?? null,
    ca: info.ca ?? null,
    pathLen: info.pathLen ?? null,
    keyUsage: ku === undefined ? null : KEY_USAGE_NAMES.filter((_, i) => ku & (1 << i)),
    keyUsageCritical: info.kuCritical ?? null,
    extKeyUsage: info.eku ?? null,
    emptySubject: info.subjectEmpty,
    notBefore: new Date(info.notBefore),
    notAfter: new Date(info.notAfter),
    hasNameConstraints: info.nameConstraints !== undefined,
    unhandledCriticalExtensions: info.unhandledCritical,
  };
}

// ---------------------------------------------------------------------------------------------
// Decoding certificates and keys.

interface PemBlock {
  label: string;
  body: string;
}

const PEM_BLOCK = /-----BEGIN ([^\r\n-]*)-----([\s\S]*?)-----END ([^\r\n-]*)-----/g;

function isPem(data: Buffer | string): boolean {
  return data.includes("-----BEGIN ");
}

function pemBlocks(text: string, what: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = m[1] ?? "";
    if (m[3] !== label) fail("corrupt", `PEM block "${label}" ends with "${m[3]}": ${what} are corrupt`);
    blocks.push({ label, body: m[2] ?? "" });
  }
  if (blocks.length === 0) fail("corrupt", `the PEM data holding ${what} is truncated (no END line)`);
  return blocks;
}

function pemBody(block: PemBlock, what: string): Buffer {
  const b64 = block.body.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0 || b64.length === 0) {
    fail("corrupt", `the PEM "${block.label}" block of ${what} is not valid base64`);
  }
  const der = Buffer.from(b64, "base64");
  // Node's decoder skips what it cannot read; only canonical base64 is taken as is.
  if (der.toString("base64") !== b64)
    fail("corrupt", `the PEM "${block.label}" block of ${what} is not canonical base64`);
  return der;
}

function isBlank(data: Buffer | string): boolean {
  return typeof data === "string"
    ? data.trim() === ""
    : data.every((b) => b === 0x20 || (b >= 0x09 && b <= 0x0d));
}

function certificateFromDer(der: Buffer, index: number): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (e) {
    return fail("corrupt", `certificate #${index} is not a valid DER X.509 certificate`, index, e);
  }
}

/**
 * Splits concatenated DER certificates (the Workload API form). Any byte that is not part of a
 * complete certificate (trailing garbage, truncation) makes the whole input corrupt.
 */
export function parseDerCertificates(der: Buffer | Uint8Array): X509Certificate[] {
  const buf = Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const certs: X509Certificate[] = [];
  for (let p = 0; p < buf.length; ) {
    let t: Tlv;
    try {
      t = expectTlv(buf, p, buf.length, 0x30);
    } catch (e) {
      return fail(
        "corrupt",
        `DER certificate data is corrupt at byte ${p} (${(e as Error).message})${certs.length ? ` after ${certs.length} certificate(s)` : ""}`,
        certs.length,
      );
    }
    certs.push(certificateFromDer(buf.subarray(p, t.end), certs.length));
    p = t.end;
  }
  return certs;
}

/**
 * Parses certificates from PEM (CERTIFICATE blocks; other blocks are skipped) or concatenated
 * DER. Empty input gives []. Throws X509SvidError `not-pem` for text that is neither, `corrupt`
 * for bad DER or base64. Dates are not checked.
 */
export function parseCertificates(data: Buffer | string): X509Certificate[] {
  if (isBlank(data)) return [];
  if (isPem(data)) {
    const text = typeof data === "string" ? data : data.toString("latin1");
    const certs: X509Certificate[] = [];
    for (const block of pemBlocks(text, "certificates")) {
      if (block.label !== "CERTIFICATE") continue;
      const der = pemBody(block, "certificates");
      const one = parseDerCertificates(der);
      if (one.length !== 1) {
        fail(
          "corrupt",
          `a PEM CERTIFICATE block must hold exactly one DER certificate (found trailing data)`,
        );
      }
      certs.push(one[0] as X509Certificate);
    }
    return certs;
  }
  if (typeof data !== "string" && data[0] === 0x30) return parseDerCertificates(data);
  return fail("not-pem", "certificate data is neither PEM nor DER");
}

/** Classifies a DER key that createPrivateKey refused or that is not PKCS#8 PrivateKeyInfo. */
function keyShape(der: Buffer): "pkcs8" | "encrypted-pkcs8" | "pkcs1" | "sec1" | "unknown" {
  try {
    const top = expectTlv(der, 0, der.length, 0x30);
    if (top.end !== der.length) return "unknown";
    const [a, b, c] = children(der, top);
    if (a?.tag === 0x02 && b?.tag === 0x30 && c?.tag === 0x04) return "pkcs8";
    if (a?.tag === 0x30 && b?.tag === 0x04 && c === undefined) return "encrypted-pkcs8";
    if (a?.tag === 0x02 && b?.tag === 0x02) return "pkcs1";
    if (a?.tag === 0x02 && b?.tag === 0x04) return "sec1";
  } catch {
    // not DER at all
  }
  return "unknown";
}

const NOT_PKCS8: Record<string, string> = {
  "encrypted-pkcs8": "the private key is encrypted PKCS#8; an SVID key must be unencrypted PKCS#8",
  pkcs1: "the private key is PKCS#1 (RSAPrivateKey); an SVID key must be unencrypted PKCS#8",
  sec1: "the private key is SEC1 (ECPrivateKey); an SVID key must be unencrypted PKCS#8",
};

/** Parses an unencrypted PKCS#8 DER key. Errors never include key bytes. */
export function parsePkcs8Der(der: Buffer | Uint8Array): KeyObject {
  const buf = Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  if (buf.length === 0) fail("no-private-key", "the private key data is empty");
  const shape = keyShape(buf);
  const refusal = NOT_PKCS8[shape];
  if (refusal) fail("not-pkcs8", refusal);
  if (shape !== "pkcs8") fail("corrupt", "the private key is not a DER PKCS#8 PrivateKeyInfo");
  try {
    return createPrivateKey({ key: buf, format: "der", type: "pkcs8" });
  } catch {
    // The OpenSSL message is dropped on purpose: nothing about the key leaves this function.
    return fail("corrupt", "the PKCS#8 private key could not be decoded");
  }
}

const PEM_KEY_LABELS: Record<string, string> = {
  "RSA PRIVATE KEY": NOT_PKCS8.pkcs1 as string,
  "EC PRIVATE KEY": NOT_PKCS8.sec1 as string,
  "ENCRYPTED PRIVATE KEY": NOT_PKCS8["encrypted-pkcs8"] as string,
};

/**
 * Parses a private key given as PEM (the first "PRIVATE KEY" block) or DER. Only unencrypted
 * PKCS#8 is accepted, as the SPIFFE SDKs require: PKCS#1, SEC1 and encrypted keys give
 * `not-pkcs8`. Errors never include key bytes.
 */
export function parsePrivateKey(data: Buffer | string): KeyObject {
  if (isBlank(data)) fail("no-private-key", "the private key data is empty");
  if (isPem(data)) {
    const text = typeof data === "string" ? data : data.toString("latin1");
    const blocks = pemBlocks(text, "the private key");
    const pkcs8 = blocks.find((b) => b.label === "PRIVATE KEY");
    if (pkcs8) return parsePkcs8Der(pemBody(pkcs8, "the private key"));
    for (const b of blocks) {
      const refusal = PEM_KEY_LABELS[b.label];
      if (refusal) fail("not-pkcs8", refusal);
      if (b.label.endsWith("PRIVATE KEY")) fail("not-pkcs8", `a "${b.label}" PEM block is not a PKCS#8 key`);
    }
    return fail("no-private-key", 'no "PRIVATE KEY" (PKCS#8) PEM block found');
  }
  if (typeof data !== "string" && data[0] === 0x30) return parsePkcs8Der(data);
  return fail("not-pem", "private key data is neither PEM nor DER");
}

// ---------------------------------------------------------------------------------------------
// Structural rules (no dates, no signatures).

export interface X509SvidValidationOptions {
  /**
   * Also enforce the MUST-level rules no SPIFFE SDK checks: keyUsage critical (X509-SVID §4.3),
   * URI SAN critical when the subject is empty (§3.1), EKU with serverAuth and clientAuth when
   * present (§4.4), and no path in a signing certificate's SPIFFE ID (§3.2).
   */
  readonly strict?: boolean;
}

function leafIdOf(info: CertInfo): SpiffeId {
  const cached = info.leafId;
  if (cached instanceof SpiffeId) return cached;
  if (cached) throw new X509SvidError(cached.reason, cached.message, 0, { cause: cached.cause });
  let result: SpiffeId | X509SvidError;
  try {
    result = computeLeafId(info);
  } catch (e) {
    if (!(e instanceof X509SvidError)) throw e;
    result = e;
  }
  info.leafId = result;
  if (result instanceof X509SvidError) throw result;
  return result;
}

function computeLeafId(info: CertInfo): SpiffeId {
  const uris = info.san?.uris ?? [];
  if (uris.length === 0) {
    fail(
      "no-uri-san",
      "the leaf certificate has no URI SAN: an X.509-SVID carries its SPIFFE ID as exactly one URI SAN (X509-SVID §2)",
      0,
    );
  }
  if (uris.length > 1) {
    fail(
      "multiple-uri-san",
      `the leaf certificate has ${uris.length} URI SANs; an X.509-SVID must have exactly one (X509-SVID §2, §5.2)`,
      0,
    );
  }
  const uri = uris[0] as string;
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uri);
  } catch (e) {
    if (!(e instanceof InvalidSpiffeIdError)) throw e;
    const shown = uri.length > 80 ? `${JSON.stringify(uri.slice(0, 80))}…` : JSON.stringify(uri);
    return fail(
      e.problem === "too-long" ? "too-long" : "invalid-spiffe-id",
      `the leaf certificate's URI SAN ${shown} is not a valid SPIFFE ID: ${e.message} (X509-SVID §2, §5.2)`,
      0,
      e,
    );
  }
  if (id.isRoot()) {
    fail(
      "leaf-root-path",
      `the leaf certificate's SPIFFE ID ${id} has no path; a leaf SVID's ID must have a non-root path (X509-SVID §3.1, §5.2)`,
      0,
    );
  }
  return id;
}

/** Reports a broken rule: `fail` throws at the first, `x509SvidProblems` collects them all. */
type Report = (reason: X509SvidErrorReason, message: string, certIndex?: number) => void;

function checkLeaf(info: CertInfo, report: Report = fail): void {
  if (info.ca === true) {
    report(
      "leaf-ca-true",
      "the leaf certificate must not be a CA: basicConstraints cA must be false (X509-SVID §4.1, §5.2)",
      0,
    );
  }
  const ku = info.keyUsage;
  if (ku === undefined) {
    report(
      "leaf-no-key-usage",
      "the leaf certificate has no keyUsage extension; it must have one with digitalSignature set (X509-SVID §4.3)",
      0,
    );
    return;
  }
  if (!(ku & KU_DIGITAL_SIGNATURE)) {
    report(
      "leaf-no-digital-signature",
      "the leaf certificate must have digitalSignature set in keyUsage (X509-SVID §4.3)",
      0,
    );
  }
  if (ku & KU_KEY_CERT_SIGN) {
    report(
      "leaf-key-cert-sign",
      "the leaf certificate must not have keyCertSign set in keyUsage (X509-SVID §4.3, §5.2)",
      0,
    );
  }
  if (ku & KU_CRL_SIGN) {
    report(
      "leaf-crl-sign",
      "the leaf certificate must not have cRLSign set in keyUsage (X509-SVID §4.3, §5.2)",
      0,
    );
  }
}

function checkSigning(info: CertInfo, i: number, report: Report = fail): void {
  if (info.ca !== true) {
    report(
      "intermediate-no-ca",
      `${role(i)} must be a CA: basicConstraints cA must be true (X509-SVID §3.2, §4.1)`,
      i,
    );
  }
  if (info.keyUsage === undefined || !(info.keyUsage & KU_KEY_CERT_SIGN)) {
    report(
      "intermediate-no-key-cert-sign",
      `${role(i)} must have keyCertSign set in keyUsage (X509-SVID §3.2, §4.3)`,
      i,
    );
  }
}

function checkStrict(infos: readonly CertInfo[], report: Report = fail): void {
  const leaf = infos[0] as CertInfo;
  if (leaf.subjectEmpty && leaf.sanCritical !== true) {
    report(
      "empty-subject-san-not-critical",
      "the leaf certificate has an empty subject, so its SAN extension must be critical (X509-SVID §3.1, RFC 5280 §4.1.2.6)",
      0,
    );
  }
  for (let i = 0; i < infos.length; i++) {
    if ((infos[i] as CertInfo).kuCritical !== true) {
      report(
        "key-usage-not-critical",
        `${role(i)} must mark its keyUsage extension critical (X509-SVID §4.3)`,
        i,
      );
    }
  }
  if (leaf.eku && !(leaf.eku.includes(OID_SERVER_AUTH) && leaf.eku.includes(OID_CLIENT_AUTH))) {
    report(
      "leaf-ext-key-usage",
      "the leaf certificate's extended key usage must include both serverAuth and clientAuth when present (X509-SVID §4.4)",
      0,
    );
  }
  for (let i = 1; i < infos.length; i++) {
    for (const uri of (infos[i] as CertInfo).san?.uris ?? []) {
      if (!uri.toLowerCase().startsWith("spiffe://")) continue;
      let hasPath = true;
      try {
        hasPath = !SpiffeId.parse(uri).isRoot();
      } catch {
        // an invalid ID in a signing certificate is reported as having a path: it is not the bare trust domain
      }
      if (hasPath) {
        report("signing-cert-id-has-path", `${role(i)}'s SPIFFE ID must not have a path (X509-SVID §3.2)`, i);
      }
    }
  }
}

function structural(
  certs: readonly X509Certificate[],
  options: X509SvidValidationOptions,
): [SpiffeId, CertInfo[]] {
  if (certs.length === 0)
    fail("no-certificates", "an X.509-SVID needs at least one certificate, the leaf (X509-SVID §3)");
  if (certs.length > MAX_CHAIN_LENGTH) {
    fail(
      "chain-too-long",
      `the chain has ${certs.length} certificates; at most ${MAX_CHAIN_LENGTH} are accepted`,
    );
  }
  const infos = certs.map(getInfo);
  const leaf = infos[0] as CertInfo;
  const id = leafIdOf(leaf);
  checkLeaf(leaf);
  for (let i = 1; i < infos.length; i++) checkSigning(infos[i] as CertInfo, i);
  if (options.strict) checkStrict(infos);
  return [id, infos];
}

/**
 * Every X.509-SVID rule a chain breaks (leaf first), for inspection tools; empty when the
 * chain is a structurally valid X.509-SVID. No dates and no signatures are checked.
 */
export function x509SvidProblems(
  certs: readonly X509Certificate[],
  options: X509SvidValidationOptions = {},
): X509SvidError[] {
  const problems: X509SvidError[] = [];
  const report: Report = (reason, message, certIndex) => {
    problems.push(new X509SvidError(reason, message, certIndex));
  };
  const collect = (check: () => void) => {
    try {
      check();
    } catch (e) {
      if (!(e instanceof X509SvidError)) throw e;
      problems.push(e);
    }
  };
  if (certs.length === 0) {
    collect(() => structural(certs, options));
    return problems;
  }
  collect(() => {
    if (certs.length > MAX_CHAIN_LENGTH) structural(certs, options);
  });
  let infos: CertInfo[] = [];
  collect(() => {
    infos = certs.map(getInfo);
  });
  if (infos.length === 0) return problems;
  collect(() => leafIdOf(infos[0] as CertInfo));
  checkLeaf(infos[0] as CertInfo, report);
  for (let i = 1; i < infos.length; i++) checkSigning(infos[i] as CertInfo, i, report);
  if (options.strict) checkStrict(infos, report);
  return problems;
}

/**
 * Checks the X.509-SVID structure of a chain (leaf first) and returns the leaf's SPIFFE ID:
 * exactly one URI SAN that is a SPIFFE ID with a non-root path, leaf cA false, keyUsage with
 * digitalSignature and without keyCertSign/cRLSign; every signing certificate cA true with
 * keyCertSign. No dates and no signatures are checked.
 */
export function validateX509SvidChain(
  certs: readonly X509Certificate[],
  options: X509SvidValidationOptions = {},
): SpiffeId {
  return structural(certs, options)[0];
}

// ---------------------------------------------------------------------------------------------
// Verification.

export interface X509SvidVerifyOptions extends X509SvidValidationOptions {
  /** The verification time (default: now). Every certificate of the path must be valid then. */
  readonly at?: Date;
}

export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  /** The verified path: leaf, intermediates, and the bundle authority it ends at. */
  readonly chain: X509Certificate[];
}

function checkTime(info: CertInfo, what: string, at: number): X509SvidError | undefined {
  if (at < info.notBefore) {
    return new X509SvidError(
      "not-yet-valid",
      `${what} is not valid before ${new Date(info.notBefore).toISOString()} (verification time ${new Date(at).toISOString()}; RFC 5280 §6.1.3)`,
    );
  }
  if (at > info.notAfter) {
    return new X509SvidError(
      "expired",
      `${what} expired at ${new Date(info.notAfter).toISOString()} (verification time ${new Date(at).toISOString()}; RFC 5280 §6.1.3)`,
    );
  }
  return undefined;
}

function domainMatches(name: string, constraint: string, hostOnly: boolean): boolean {
  const n = name.toLowerCase();
  const c = constraint.toLowerCase();
  if (c === "") return true;
  if (c.startsWith(".")) return n.endsWith(c) && n.length > c.length;
  if (n === c) return true;
  return !hostOnly && n.endsWith(`.${c}`);
}

function ipMatches(ip: Buffer, constraint: Buffer): boolean {
  const n = ip.length;
  if (constraint.length !== n * 2) return false;
  for (let i = 0; i < n; i++) {
    const mask = constraint[n + i] as number;
    if (((ip[i] as number) & mask) !== ((constraint[i] as number) & mask)) return false;
  }
  return true;
}

/** Name constraints of a CA applied to the leaf's names (RFC 5280 §4.2.1.10; DNS, URI, IP). */
function checkNameConstraints(
  nc: NameConstraints,
  leaf: CertInfo,
  id: SpiffeId,
  what: string,
): X509SvidError | undefined {
  const bad = (m: string) =>
    new X509SvidError("name-constraints", `${what}: ${m} (X509-SVID §4.2, RFC 5280 §4.2.1.10)`);
  const unsupported = [...nc.permitted.others, ...nc.excluded.others];
  if (nc.permitted.emails.length || nc.excluded.emails.length) unsupported.push(1);
  if (unsupported.length && nc.critical) {
    return bad(
      `its critical name constraints use GeneralName forms that are not supported ([${unsupported.join(", ")}])`,
    );
  }
  const host = id.trustDomain.name;
  const uriConstrained = nc.permitted.uris.length > 0 || nc.excluded.uris.length > 0;
  if (uriConstrained && /^[0-9.]+$/.test(host)) {
    return bad(`the SPIFFE ID's host ${host} is an IP address, which URI name constraints cannot match`);
  }
  if (nc.permitted.uris.length && !nc.permitted.uris.some((c) => domainMatches(host, c, true))) {
    return bad(`the SPIFFE ID ${id} is outside the permitted URI subtrees`);
  }
  if (nc.excluded.uris.some((c) => domainMatches(host, c, true)))
    return bad(`the SPIFFE ID ${id} is in an excluded URI subtree`);
  for (const dns of leaf.san?.dns ?? []) {
    if (nc.permitted.dns.length && !nc.permitted.dns.some((c) => domainMatches(dns, c, false))) {
      return bad(`the DNS name ${dns} is outside the permitted subtrees`);
    }
    if (nc.excluded.dns.some((c) => domainMatches(dns, c, false)))
      return bad(`the DNS name ${dns} is in an excluded subtree`);
  }
  for (const ip of leaf.san?.ips ?? []) {
    if (nc.permitted.ips.length && !nc.permitted.ips.some((c) => ipMatches(ip, c))) {
      return bad("an IP address SAN is outside the permitted subtrees");
    }
    if (nc.excluded.ips.some((c) => ipMatches(ip, c)))
      return bad("an IP address SAN is in an excluded subtree");
  }
  return undefined;
}

/** Signature checks one verification may spend (as Go's crypto/x509): bounds adversarial chains. */
const MAX_SIGNATURE_CHECKS = 100;

function signedBy(s: PathSearch, child: CertInfo, parent: CertInfo): boolean {
  if (!child.issuerRaw.equals(parent.subjectRaw)) return false;
  if (child.authorityKeyId && parent.subjectKeyId && !child.authorityKeyId.equals(parent.subjectKeyId))
    return false;
  if (++s.signatureChecks > MAX_SIGNATURE_CHECKS) {
    throw new X509SvidError(
      "unknown-authority",
      `path building gave up after ${MAX_SIGNATURE_CHECKS} signature checks without reaching an authority of trust domain ${s.id.trustDomain.name}`,
    );
  }
  try {
    return child.cert.verify(publicKeyOf(parent));
  } catch {
    return false;
  }
}

interface PathSearch {
  readonly infos: readonly CertInfo[];
  readonly roots: readonly X509Certificate[];
  readonly at: number;
  readonly id: SpiffeId;
  readonly used: boolean[];
  /** The first specific reason a signing candidate was refused (beats "unknown-authority"). */
  failure: X509SvidError | undefined;
  signatureChecks: number;
}

function acceptIssuer(s: PathSearch, path: readonly CertInfo[], parent: CertInfo, what: string): boolean {
  const intermediatesBelow = path.length - 1;
  let problem = checkTime(parent, what, s.at);
  if (!problem && parent.pathLen !== undefined && intermediatesBelow > parent.pathLen) {
    problem = new X509SvidError(
      "path-len-exceeded",
      `${what} allows ${parent.pathLen} intermediate certificate(s) below it (pathLenConstraint), the path has ${intermediatesBelow} (RFC 5280 §4.2.1.9)`,
    );
  }
  if (!problem && parent.nameConstraints) {
    problem = checkNameConstraints(parent.nameConstraints, path[0] as CertInfo, s.id, what);
  }
  if (problem) {
    s.failure ??= problem;
    return false;
  }
  return true;
}

function extendPath(s: PathSearch, path: CertInfo[]): CertInfo[] | undefined {
  const child = path[path.length - 1] as CertInfo;
  for (const root of s.roots) {
    const info = lookup(root);
    if (!("cert" in info) || !signedBy(s, child, info)) continue;
    if (!acceptIssuer(s, path, info, `the bundle authority that issued ${describeAt(s, child)}`)) continue;
    return [...path, info];
  }
  for (let j = 1; j < s.infos.length; j++) {
    if (s.used[j]) continue;
    const cand = s.infos[j] as CertInfo;
    if (!signedBy(s, child, cand)) continue;
    if (!acceptIssuer(s, path, cand, role(j))) continue;
    if (cand.unhandledCritical.length) {
      s.failure ??= unhandled(cand, role(j));
      continue;
    }
    s.used[j] = true;
    path.push(cand);
    const found = extendPath(s, path);
    if (found) return found;
    path.pop();
    s.used[j] = false;
  }
  return undefined;
}

function describeAt(s: PathSearch, info: CertInfo): string {
  const i = s.infos.indexOf(info);
  return i < 0 ? "a certificate" : role(i);
}

function unhandled(info: CertInfo, what: string): X509SvidError {
  return new X509SvidError(
    "unhandled-critical-extension",
    `${what} has critical extension(s) ${info.unhandledCritical.join(", ")} that are not understood (RFC 5280 §4.2)`,
  );
}

/**
 * Verifies an X.509-SVID chain (leaf first, then intermediates) at `options.at` (default now):
 * the structural SVID rules, then a path from the leaf to an authority of the bundle of the
 * leaf's own trust domain only (no bundle: untrusted), checking every signature, the validity
 * of every certificate of the path at that time, pathLenConstraint, name constraints and
 * unknown critical extensions. Returns the leaf's SPIFFE ID and the verified path.
 */
export function verifyX509Svid(
  certs: readonly X509Certificate[],
  bundles: X509BundleSource,
  options: X509SvidVerifyOptions = {},
): VerifiedX509Svid {
  if (bundles == null) fail("no-bundle-source", "a bundle source is required to verify an X.509-SVID");
  const at = options.at === undefined ? Date.now() : options.at.getTime();
  if (Number.isNaN(at)) throw new TypeError("the verification time is not a valid Date");
  const [id, infos] = structural(certs, options);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (!bundle) {
    fail(
      "no-bundle-for-trust-domain",
      `no X.509 bundle for trust domain ${id.trustDomain.name}: the peer ${id} is untrusted (authorities are only taken from the bundle of the peer's own trust domain; SPIFFE Workload API §4.6)`,
    );
  }
  const leaf = infos[0] as CertInfo;
  const leafTime = checkTime(leaf, "the leaf certificate", at);
  if (leafTime) throw new X509SvidError(leafTime.reason, leafTime.message, 0);
  if (leaf.unhandledCritical.length) throw unhandled(leaf, "the leaf certificate");
  const search: PathSearch = {
    infos,
    roots: bundle.authorities,
    at,
    id,
    used: infos.map(() => false),
    failure: undefined,
    signatureChecks: 0,
  };
  const path = extendPath(search, [leaf]);
  if (!path) {
    if (search.failure) throw search.failure;
    fail(
      "unknown-authority",
      `the chain of ${id} does not lead to an authority of the X.509 bundle of trust domain ${id.trustDomain.name} (${bundle.authorities.length} authorities): no valid signature path (X509-SVID §5.1)`,
    );
  }
  return { id, chain: path.map((i) => i.cert) };
}

/**
 * Parses DER certificates (one Buffer per certificate, or one Buffer of concatenated DER as the
 * Workload API sends) and verifies them as `verifyX509Svid` does.
 */
export function parseAndVerifyX509Svid(
  rawCerts: Buffer | readonly Buffer[],
  bundles: X509BundleSource,
  options: X509SvidVerifyOptions = {},
): VerifiedX509Svid {
  let certs: X509Certificate[];
  if (Buffer.isBuffer(rawCerts)) certs = parseDerCertificates(rawCerts);
  else {
    certs = rawCerts.map((raw, i) => {
      const one = parseDerCertificates(raw);
      if (one.length !== 1) fail("corrupt", `certificate #${i} must be exactly one DER certificate`, i);
      return one[0] as X509Certificate;
    });
  }
  return verifyX509Svid(certs, bundles, options);
}

// ---------------------------------------------------------------------------------------------
// The SVID.

function checkKeyMatch(leaf: X509Certificate, key: KeyObject): void {
  let ok = false;
  try {
    ok = key.type === "private" && leaf.checkPrivateKey(key);
  } catch {
    ok = false;
  }
  if (!ok) fail("key-mismatch", "the private key does not match the leaf certificate's public key", 0);
}

/**
 * An X.509-SVID: the leaf's SPIFFE ID, the chain (leaf first) and the private key of the leaf.
 * Printing it (`toString`, `util.inspect`, `JSON.stringify`) never shows the key.
 */
export class X509Svid {
  declare readonly privateKey: KeyObject;

  private constructor(
    readonly id: SpiffeId,
    readonly certificates: readonly X509Certificate[],
    privateKey: KeyObject,
    readonly hint: string | undefined,
  ) {
    // Not enumerable: spreading or walking the object does not carry the key along.
    Object.defineProperty(this, "privateKey", { value: privateKey, enumerable: false, writable: false });
  }

  /**
   * Parses certificates and key, each PEM or DER (a single PEM file may hold both). The key
   * must be unencrypted PKCS#8. Checks the structural SVID rules, then that the key matches
   * the leaf. Never checks dates.
   */
  static parse(certs: Buffer | string, key: Buffer | string): X509Svid {
    const chain = parseCertificates(certs);
    if (chain.length === 0) fail("no-certificates", "no certificates found in the certificate data");
    const privateKey = parsePrivateKey(key);
    return X509Svid.fromParts(chain, privateKey);
  }

  /** The Workload API form: concatenated DER certificates and a PKCS#8 DER key. */
  static parseRaw(derChain: Buffer, derKey: Buffer, hint?: string): X509Svid {
    const chain = parseDerCertificates(derChain);
    if (chain.length === 0) fail("no-certificates", "no certificates found in the DER certificate data");
    const privateKey = parsePkcs8Der(derKey);
    return X509Svid.fromParts(chain, privateKey, hint);
  }

  /** From already decoded parts, with the same checks as `parse`. */
  static fromParts(
    certificates: readonly X509Certificate[],
    privateKey: KeyObject,
    hint?: string,
    options: X509SvidValidationOptions = {},
  ): X509Svid {
    const id = validateX509SvidChain(certificates, options);
    checkKeyMatch(certificates[0] as X509Certificate, privateKey);
    return new X509Svid(id, Object.freeze([...certificates]), privateKey, hint);
  }

  get leaf(): X509Certificate {
    return this.certificates[0] as X509Certificate;
  }

  /** PEM: the chain (leaf first) and the PKCS#8 key. Handle the key with care. */
  marshal(): { certificates: string; privateKey: string } {
    return {
      certificates: this.certificates.map((c) => c.toString()).join(""),
      privateKey: this.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    };
  }

  /** DER, the Workload API form: concatenated certificates and the PKCS#8 key. */
  marshalRaw(): { certificates: Buffer; privateKey: Buffer } {
    return {
      certificates: Buffer.concat(this.certificates.map((c) => c.raw)),
      privateKey: this.privateKey.export({ type: "pkcs8", format: "der" }) as Buffer,
    };
  }

  toString(): string {
    return `X509Svid(${this.id}, ${this.certificates.length} certificate(s)${this.hint === undefined ? "" : `, hint ${JSON.stringify(this.hint)}`})`;
  }

  toJSON(): { id: string; hint: string | undefined; certificates: string[] } {
    return {
      id: this.id.toString(),
      hint: this.hint,
      certificates: this.certificates.map((c) => c.toString()),
    };
  }

  [inspect.custom](): string {
    return `X509Svid { id: ${this.id}, certificates: ${this.certificates.length}, hint: ${JSON.stringify(this.hint)}, privateKey: [redacted] }`;
  }
}
