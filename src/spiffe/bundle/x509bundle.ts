import { X509Certificate } from "node:crypto";
import type { TrustDomain } from "../id.js";
import { BundleError } from "./errors.js";

/**
 * Anything that can hand out the X.509 bundle of a trust domain. Callers ask with the trust
 * domain of the peer's SVID and get nothing for an unknown one, so roots of one trust domain can
 * never verify another's SVIDs (X509-SVID.md §5, SPIFFE_Workload_API.md §4.6).
 */
export interface X509BundleSource {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined;
}

/**
 * The X.509 authorities (root CA certificates) of one trust domain. Immutable: a new bundle
 * from the Workload API replaces the old one as a whole, so nothing can observe half an update.
 */
export class X509Bundle implements X509BundleSource {
  readonly authorities: readonly X509Certificate[];

  private constructor(
    readonly trustDomain: TrustDomain,
    authorities: readonly X509Certificate[],
  ) {
    this.authorities = Object.freeze([...authorities]);
  }

  /**
   * Parses PEM text, or concatenated DER when given bytes that start like a DER certificate.
   * Empty input gives an empty bundle (as go-spiffe does), which trusts nothing.
   */
  static parse(trustDomain: TrustDomain, data: Buffer | string): X509Bundle {
    if (typeof data !== "string" && looksLikeDer(data)) return X509Bundle.fromDer(trustDomain, data);
    const text = typeof data === "string" ? data : data.toString("latin1");
    return new X509Bundle(trustDomain, dedupe(parsePemCertificates(text)));
  }

  /** The Workload API form (`X509SVID.bundle`, `X509BundlesResponse.bundles`): DER certificates back to back. */
  static fromDer(trustDomain: TrustDomain, der: Buffer): X509Bundle {
    return new X509Bundle(trustDomain, dedupe(splitDerCertificates(der)));
  }

  static fromCertificates(trustDomain: TrustDomain, certificates: Iterable<X509Certificate>): X509Bundle {
    return new X509Bundle(trustDomain, dedupe([...certificates]));
  }

  /** Compares the DER bytes: two parses of the same certificate are the same authority. */
  hasAuthority(certificate: X509Certificate): boolean {
    return this.authorities.some((a) => a.raw.equals(certificate.raw));
  }

  /** A bundle is a source of itself, and only for its own trust domain. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this : undefined;
  }

  /** PEM, one CERTIFICATE block per authority; "" for an empty bundle. */
  marshal(): string {
    return this.authorities.map((c) => pemBlock("CERTIFICATE", c.raw)).join("");
  }

  /** Concatenated DER, the Workload API form. */
  marshalDer(): Buffer {
    return Buffer.concat(this.authorities.map((c) => c.raw));
  }
}

/** go-spiffe keeps one copy of an authority added twice; so do we, so counts mean distinct roots. */
function dedupe(certs: X509Certificate[]): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const c of certs) if (!out.some((o) => o.raw.equals(c.raw))) out.push(c);
  return out;
}

/**
 * A certificate is always longer than 127 bytes, so DER starts with SEQUENCE (0x30) and a
 * long-form length (0x81..0x84). No text can start that way: 0x81..0x84 are UTF-8 continuation
 * bytes and never follow an ASCII '0'.
 */
function looksLikeDer(b: Buffer): boolean {
  const second = b[1];
  return b[0] === 0x30 && second !== undefined && second >= 0x81 && second <= 0x84;
}

/**
 * The total size (header plus content) of the DER SEQUENCE at `offset`. Only the definite,
 * minimal encodings that DER allows are accepted, so a certificate cannot be cut two ways.
 */
function derSequenceLength(b: Buffer, offset: number): number {
  const where = `at byte ${offset}`;
  if (b[offset] !== 0x30)
    throw new BundleError("corrupt", `expected a DER SEQUENCE (a certificate) ${where}`);
  const first = b[offset + 1];
  if (first === undefined) throw new BundleError("corrupt", `truncated DER length ${where}`);
  let header = 2;
  let length = first;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0) throw new BundleError("corrupt", `indefinite length is not DER ${where}`);
    if (n > 4) throw new BundleError("corrupt", `DER length too large ${where}`);
    if (offset + 2 + n > b.length) throw new BundleError("corrupt", `truncated DER length ${where}`);
    length = 0;
    for (let k = 0; k < n; k++) length = length * 256 + (b[offset + 2 + k] ?? 0);
    if (b[offset + 2] === 0 || length < 0x80) {
      throw new BundleError("corrupt", `DER length is not minimally encoded ${where}`);
    }
    header += n;
  }
  const total = header + length;
  if (offset + total > b.length) {
    throw new BundleError(
      "corrupt",
      `DER certificate ${where} claims ${total} bytes, only ${b.length - offset} remain`,
    );
  }
  return total;
}

function certificateFromDer(der: Buffer, where: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (e) {
    throw new BundleError("corrupt", `${where} is not a valid X.509 certificate (${(e as Error).message})`);
  }
}

/** Cuts concatenated DER at each SEQUENCE boundary; any byte left over is an error, never ignored. */
function splitDerCertificates(der: Buffer): X509Certificate[] {
  const out: X509Certificate[] = [];
  let offset = 0;
  while (offset < der.length) {
    const len = derSequenceLength(der, offset);
    out.push(
      certificateFromDer(
        der.subarray(offset, offset + len),
        `DER certificate ${out.length} (byte ${offset})`,
      ),
    );
    offset += len;
  }
  return out;
}

const BEGIN = /^-----BEGIN (.*)-----$/;
const END = /^-----END (.*)-----$/;

interface PemBlock {
  label: string;
  line: number;
  body: string;
}

/**
 * RFC 7468 PEM, strictly: explanatory text may sit between blocks (CA bundles carry comments),
 * but inside a block only base64 is allowed, each BEGIN needs its matching END, and each
 * CERTIFICATE block must hold exactly one DER certificate with nothing after it.
 */
function parsePemCertificates(text: string): X509Certificate[] {
  const lines = text.split(/\r?\n/);
  const blocks: PemBlock[] = [];
  let open: PemBlock | undefined;
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] ?? "").trim();
    if (open === undefined) {
      const begin = BEGIN.exec(line);
      if (begin) open = { label: begin[1] ?? "", line: n + 1, body: "" };
      else if (END.test(line)) throw new BundleError("corrupt", `PEM END line ${n + 1} has no BEGIN line`);
      continue;
    }
    const end = END.exec(line);
    if (end) {
      if (end[1] !== open.label) {
        throw new BundleError(
          "corrupt",
          `PEM block at line ${open.line} begins as ${open.label} but ends as ${end[1]} (line ${n + 1})`,
        );
      }
      blocks.push(open);
      open = undefined;
      continue;
    }
    if (!/^[A-Za-z0-9+/=]*$/.test(line)) {
      throw new BundleError("corrupt", `PEM block at line ${open.line}: line ${n + 1} is not base64`);
    }
    open.body += line;
  }
  if (open !== undefined) throw new BundleError("corrupt", `PEM block at line ${open.line} has no END line`);

  if (blocks.length === 0) {
    if (text.trim() === "") return [];
    throw new BundleError("not-pem", "the data is neither PEM (no -----BEGIN line) nor DER");
  }
  const other = blocks.find((b) => b.label !== "CERTIFICATE");
  if (other !== undefined) {
    const hasCert = blocks.some((b) => b.label === "CERTIFICATE");
    throw new BundleError(
      hasCert ? "not-certificate" : "no-certificates",
      `an X.509 bundle holds only CERTIFICATE PEM blocks; the block at line ${other.line} is ${other.label}`,
    );
  }
  return blocks.map((b) => {
    const where = `PEM block at line ${b.line}`;
    const der = decodeBase64Strict(b.body, where);
    const len = derSequenceLength(der, 0);
    if (len !== der.length) {
      throw new BundleError("corrupt", `${where} has ${der.length - len} bytes after the certificate`);
    }
    return certificateFromDer(der, where);
  });
}

/** Node's decoder skips bad characters silently; a bundle must not be read "mostly right". */
function decodeBase64Strict(b64: string, where: string): Buffer {
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
    throw new BundleError("corrupt", `${where} is not valid base64`);
  }
  const der = Buffer.from(b64, "base64");
  if (der.toString("base64") !== b64) throw new BundleError("corrupt", `${where} is not canonical base64`);
  return der;
}

/** Also used for `x5c` values, which are standard base64 of one DER certificate (RFC 7517 §4.7). */
export function certificateFromBase64(b64: string, where: string): X509Certificate {
  const der = decodeBase64Strict(b64, where);
  const len = derSequenceLength(der, 0);
  if (len !== der.length) {
    throw new BundleError("corrupt", `${where} has ${der.length - len} bytes after the certificate`);
  }
  return certificateFromDer(der, where);
}

function pemBlock(label: string, der: Buffer): string {
  const b64 = der.toString("base64");
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  return `${out}-----END ${label}-----\n`;
}
