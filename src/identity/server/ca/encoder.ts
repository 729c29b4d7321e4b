/**
 * The certificate encoder: X.509-SVIDs (X509-SVID.md) and CA certificates, written directly as
 * DER and signed with node:crypto.
 *
 * An X.509-SVID here is, as SPIRE issues them:
 *
 *   version v3, serial (random, positive), signature (by the issuer's key type), issuer,
 *   validity, subject O=Tessera, the workload's SubjectPublicKeyInfo, and the extensions
 *     keyUsage (critical): digitalSignature, keyEncipherment, keyAgreement
 *     extKeyUsage: serverAuth, clientAuth
 *     basicConstraints (critical): cA false
 *     subjectKeyIdentifier: SHA-1 of the subject key (RFC 5280 §4.2.1.2 method 1)
 *     authorityKeyIdentifier: the issuer's key identifier
 *     subjectAltName: exactly one URI (the SPIFFE ID), then the DNS names
 *
 * Everything that depends only on the issuer (signature algorithm, issuer name, subject name,
 * the fixed extensions, the AKI) is encoded once per issuer object into a template; each SVID
 * then only fills in the serial, the dates, the SPKI, the SKI and the SAN, computing every size
 * first and writing into one Buffer that also has room for the signature.
 */
import { type KeyObject, sign } from "node:crypto";
import { SpiffeId, TrustDomain } from "../../../spiffe/id.js";
import {
  bitString,
  boolean,
  contextTag,
  expectTlv,
  integer,
  lengthSize,
  MAX_TIME_MS,
  MIN_TIME_MS,
  OID,
  octetString,
  printableString,
  readTlv,
  sequence,
  set,
  TAG,
  time,
  timeSize,
  tlv,
  tlvSize,
  utf8String,
  writeAsciiTlv,
  writeHeader,
  writeTime,
} from "./der.js";
import { CaError, fail } from "./errors.js";
import { keyIdentifier, type SignatureAlgorithm, signatureAlgorithmFor } from "./keys.js";

/** Who signs a certificate: the issuer's subject Name DER, its key identifier and private key. */
export interface CertificateIssuer {
  /** The issuer's subject Name, DER: it becomes the issuer field. */
  readonly nameDer: Buffer;
  /** The issuer's subject key identifier: it becomes the authority key identifier. */
  readonly keyId: Buffer;
  readonly privateKey: KeyObject;
}

export interface X509SvidParams {
  readonly issuer: CertificateIssuer;
  /** The workload's SubjectPublicKeyInfo, DER (as checked by the CSR parser). */
  readonly subjectPublicKeyDer: Buffer;
  /** The SPIFFE ID: exactly one URI SAN. Must have a path (X509-SVID §3.1). */
  readonly spiffeId: SpiffeId | string;
  readonly dnsNames?: readonly string[];
  /** The serial number as unsigned big-endian bytes (16 random bytes); not zero, at most 20 octets encoded. */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface CaCertificateParams {
  /** The signer of an intermediate; absent for a self-signed root, signed by `privateKey`. */
  readonly issuer?: CertificateIssuer;
  /** The private key of a self-signed root (its own). */
  readonly privateKey?: KeyObject;
  readonly subjectNameDer: Buffer;
  readonly subjectPublicKeyDer: Buffer;
  /** The CA's URI SAN is `spiffe://<trust domain>`, as SPIRE's. */
  readonly trustDomain: TrustDomain | string;
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints pathLenConstraint; absent: none. */
  readonly pathLen?: number;
}

// ---------------------------------------------------------------------------------------------
// Names and extensions.

export type NameAttribute = "C" | "O" | "OU" | "CN" | "serialNumber";
const NAME_OIDS: Record<NameAttribute, Buffer> = {
  C: OID.countryName,
  O: OID.organizationName,
  OU: Buffer.from([0x06, 0x03, 0x55, 0x04, 0x0b]),
  CN: OID.commonName,
  serialNumber: OID.serialNumber,
};

/** A Name of one attribute per RDN, in the order given (C and serialNumber as PrintableString). */
export function encodeName(attributes: readonly (readonly [NameAttribute, string])[]): Buffer {
  return sequence(
    ...attributes.map(([type, value]) => {
      const oid = NAME_OIDS[type];
      if (!oid) throw new CaError("invalid-argument", `unknown name attribute ${JSON.stringify(type)}`);
      const v = type === "C" || type === "serialNumber" ? printableString(value) : utf8String(value);
      return set(sequence(oid, v));
    }),
  );
}

/** The subject of every X.509-SVID: O=Tessera (the SPIFFE ID is in the SAN). */
export const SVID_SUBJECT: Buffer = encodeName([["O", "Tessera"]]);

function extension(oid: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid, boolean(true), octetString(value)) : sequence(oid, octetString(value));
}

/** keyUsage bits (RFC 5280 §4.2.1.3) as a DER named-bit BIT STRING. */
function keyUsage(bits: readonly number[]): Buffer {
  const high = Math.max(...bits);
  const bytes = Buffer.alloc((high >> 3) + 1);
  for (const i of bits) bytes[i >> 3] = (bytes[i >> 3] as number) | (0x80 >> (i & 7));
  return bitString(bytes, 7 - (high & 7));
}

const KU_DIGITAL_SIGNATURE = 0;
const KU_KEY_ENCIPHERMENT = 2;
const KU_KEY_AGREEMENT = 4;
const KU_KEY_CERT_SIGN = 5;
const KU_CRL_SIGN = 6;

const LEAF_KEY_USAGE = extension(
  OID.keyUsage,
  true,
  keyUsage([KU_DIGITAL_SIGNATURE, KU_KEY_ENCIPHERMENT, KU_KEY_AGREEMENT]),
);
const LEAF_EKU = extension(OID.extKeyUsage, false, sequence(OID.serverAuth, OID.clientAuth));
const LEAF_BASIC_CONSTRAINTS = extension(OID.basicConstraints, true, sequence());
const CA_KEY_USAGE = extension(OID.keyUsage, true, keyUsage([KU_KEY_CERT_SIGN, KU_CRL_SIGN]));
const VERSION_3 = contextTag(0, [integer(2)]);
/** The SKI extension up to its 20 key-identifier bytes: SEQUENCE { OID, OCTET STRING { OCTET STRING (20) } }. */
const SKI_HEAD = extension(OID.subjectKeyIdentifier, false, octetString(Buffer.alloc(20))).subarray(0, -20);
const SAN_OID = OID.subjectAltName;
const GN_DNS = 0x82;
const GN_URI = 0x86;

function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, sequence(contextTag(0, [keyId], false)));
}

function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyId));
}

// ---------------------------------------------------------------------------------------------
// Argument checks.

const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/**
 * A DNS name for a SAN: letters, digits and hyphens in labels of 1 to 63 characters (not
 * starting or ending with '-'), at most 253 characters, no trailing dot; the first label may
 * be the wildcard "*". Throws `ca:invalid-dns-name`.
 */
export function checkDnsName(name: unknown): string {
  if (typeof name !== "string") fail("invalid-dns-name", "a DNS name must be a string");
  const shown = name.length > 80 ? `${JSON.stringify(name.slice(0, 80))}…` : JSON.stringify(name);
  if (name.length === 0 || name.length > 253) {
    fail("invalid-dns-name", `the DNS name ${shown} must have 1 to 253 characters`);
  }
  const labels = name.split(".");
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as string;
    if (i === 0 && label === "*" && labels.length > 1) continue;
    if (!DNS_LABEL.test(label)) {
      fail(
        "invalid-dns-name",
        `the DNS name ${shown} is not a valid host name: label ${JSON.stringify(label)} must be 1-63 letters, digits or '-', not starting or ending with '-' (a leading "*." wildcard is allowed)`,
      );
    }
  }
  return name;
}

/** Each DNS name checked, duplicates (case-insensitive) dropped, order kept. At most 100. */
export function checkDnsNames(names: readonly string[] | undefined): string[] {
  if (names === undefined) return [];
  if (!Array.isArray(names)) fail("invalid-dns-name", "dnsNames must be an array of strings");
  if (names.length > MAX_DNS_NAMES)
    fail("invalid-dns-name", `at most ${MAX_DNS_NAMES} DNS names are allowed`);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const n of names) {
    const lower = checkDnsName(n).toLowerCase();
    if (seen.has(lower)) continue;
    seen.add(lower);
    out.push(n);
  }
  return out;
}

export const MAX_DNS_NAMES = 100;

function checkLeafId(id: SpiffeId | string): string {
  let parsed: SpiffeId;
  if (id instanceof SpiffeId) parsed = id;
  else {
    try {
      parsed = SpiffeId.parse(id);
    } catch (e) {
      return fail(
        "invalid-spiffe-id",
        `${JSON.stringify(String(id)).slice(0, 100)} is not a SPIFFE ID: ${(e as Error).message}`,
        e,
      );
    }
  }
  if (parsed.isRoot()) {
    fail(
      "invalid-spiffe-id",
      `the SPIFFE ID ${parsed} has no path; an X.509-SVID's ID must have one (X509-SVID §3.1)`,
    );
  }
  return parsed.toString();
}

/** [start, end) of the minimal INTEGER content of unsigned `serial`, and whether 0x00 goes first. */
function serialBounds(serial: Uint8Array): { start: number; pad: number; length: number } {
  if (!(serial instanceof Uint8Array))
    fail("invalid-argument", "serial must be a Buffer of unsigned big-endian bytes");
  let start = 0;
  while (start < serial.length && serial[start] === 0) start++;
  if (start === serial.length)
    fail("invalid-argument", "the serial number must be positive (RFC 5280 §4.1.2.2)");
  const pad = (serial[start] as number) & 0x80 ? 1 : 0;
  const length = serial.length - start + pad;
  if (length > 20) fail("invalid-argument", "the serial number must fit in 20 octets (RFC 5280 §4.1.2.2)");
  return { start, pad, length };
}

function checkDates(notBefore: Date, notAfter: Date): [number, number] {
  const nb = notBefore instanceof Date ? Math.floor(notBefore.getTime() / 1000) * 1000 : Number.NaN;
  const na = notAfter instanceof Date ? Math.floor(notAfter.getTime() / 1000) * 1000 : Number.NaN;
  if (Number.isNaN(nb) || Number.isNaN(na))
    fail("invalid-argument", "notBefore and notAfter must be valid Dates");
  if (na < nb) fail("invalid-argument", "notAfter must not be before notBefore");
  if (nb < MIN_TIME_MS || na > MAX_TIME_MS) {
    fail("invalid-argument", "certificate dates must be in the years 0000..9999");
  }
  return [nb, na];
}

function checkIssuer(issuer: CertificateIssuer): void {
  if (typeof issuer !== "object" || issuer === null) fail("invalid-argument", "issuer is required");
  if (!Buffer.isBuffer(issuer.nameDer) || issuer.nameDer[0] !== TAG.SEQUENCE) {
    fail("invalid-argument", "issuer.nameDer must be the DER of a Name (a SEQUENCE)");
  }
  if (!Buffer.isBuffer(issuer.keyId) || issuer.keyId.length === 0) {
    fail("invalid-argument", "issuer.keyId must be a non-empty Buffer");
  }
}

/** The SPKI's key identifier, checking the SPKI is one whole TLV. */
function spkiKeyId(spki: Buffer): Buffer {
  if (!Buffer.isBuffer(spki)) fail("invalid-argument", "subjectPublicKeyDer must be a Buffer of SPKI DER");
  try {
    const t = expectTlv(spki, 0, spki.length, TAG.SEQUENCE, "SubjectPublicKeyInfo");
    if (t.end !== spki.length) throw new Error("trailing bytes after the SubjectPublicKeyInfo");
    readTlv(spki, t.body, t.end);
  } catch (e) {
    fail("invalid-key", `subjectPublicKeyDer is not a SubjectPublicKeyInfo (${(e as Error).message})`);
  }
  return keyIdentifier(spki);
}

// ---------------------------------------------------------------------------------------------
// Signing.

/** Room for the outer SEQUENCE header written in front of the TBS once the signature is known. */
function outerHeaderRoom(maxContent: number): number {
  return 1 + lengthSize(maxContent);
}

/**
 * Signs the TBSCertificate at buf[tbsStart, tbsEnd) and writes the certificate around it:
 * the outer header just before tbsStart (there is room), the algorithm and the signature after.
 */
function finish(
  buf: Buffer,
  tbsStart: number,
  tbsEnd: number,
  alg: SignatureAlgorithm,
  key: KeyObject,
): Buffer {
  let signature: Buffer;
  try {
    signature = sign(alg.hash, buf.subarray(tbsStart, tbsEnd), key);
  } catch (e) {
    return fail("invalid-argument", `signing the certificate with ${alg.name} failed`, e);
  }
  const bitsContent = 1 + signature.length;
  const content = tbsEnd - tbsStart + alg.identifier.length + tlvSize(bitsContent);
  const headerSize = 1 + lengthSize(content);
  const start = tbsStart - headerSize;
  if (start < 0) throw new Error("internal: no room for the certificate header");
  writeHeader(buf, start, TAG.SEQUENCE, content);
  let off = tbsEnd;
  off += alg.identifier.copy(buf, off);
  off = writeHeader(buf, off, TAG.BIT_STRING, bitsContent);
  buf[off++] = 0;
  off += signature.copy(buf, off);
  return buf.subarray(start, off);
}

// ---------------------------------------------------------------------------------------------
// X.509-SVIDs.

interface SvidTemplate {
  readonly alg: SignatureAlgorithm;
  readonly key: KeyObject;
  /** signature AlgorithmIdentifier + issuer Name: between the serial and the validity. */
  readonly issuerPart: Buffer;
  /** keyUsage, extKeyUsage, basicConstraints, and the SKI extension up to its 20 bytes. */
  readonly extHead: Buffer;
  /** The AKI extension, whole. */
  readonly aki: Buffer;
}

const templates = new WeakMap<CertificateIssuer, SvidTemplate>();

function templateFor(issuer: CertificateIssuer): SvidTemplate {
  let t = templates.get(issuer);
  if (t === undefined) {
    checkIssuer(issuer);
    const alg = signatureAlgorithmFor(issuer.privateKey);
    t = {
      alg,
      key: issuer.privateKey,
      issuerPart: Buffer.concat([alg.identifier, issuer.nameDer]),
      extHead: Buffer.concat([LEAF_KEY_USAGE, LEAF_EKU, LEAF_BASIC_CONSTRAINTS, SKI_HEAD]),
      aki: authorityKeyIdentifier(issuer.keyId),
    };
    templates.set(issuer, t);
  }
  return t;
}

/** Encodes and signs an X.509-SVID; returns the certificate DER. Throws CaError for bad arguments. */
export function encodeX509Svid(params: X509SvidParams): Buffer {
  const t = templateFor(params.issuer);
  const uri = checkLeafId(params.spiffeId);
  const dnsNames = checkDnsNames(params.dnsNames);
  const serial = params.serial;
  const sb = serialBounds(serial);
  const [nb, na] = checkDates(params.notBefore, params.notAfter);
  const spki = params.subjectPublicKeyDer;
  const ski = spkiKeyId(spki);

  // Sizes, innermost first.
  let names = tlvSize(uri.length);
  for (const d of dnsNames) names += tlvSize(d.length);
  const sanSeq = tlvSize(names);
  const sanOctets = tlvSize(sanSeq);
  const sanExtContent = SAN_OID.length + sanOctets;
  const extsContent = t.extHead.length + 20 + t.aki.length + tlvSize(sanExtContent);
  const extsSeq = tlvSize(extsContent);
  const validityContent = timeSize(nb) + timeSize(na);
  const tbsContent =
    VERSION_3.length +
    2 +
    sb.length +
    t.issuerPart.length +
    tlvSize(validityContent) +
    SVID_SUBJECT.length +
    spki.length +
    tlvSize(extsSeq);
  const tbsSize = tlvSize(tbsContent);
  const maxContent = tbsSize + t.alg.identifier.length + tlvSize(1 + t.alg.maxSignatureLength);
  const room = outerHeaderRoom(maxContent);
  const buf = Buffer.allocUnsafe(room + maxContent);

  // TBSCertificate.
  let off = writeHeader(buf, room, TAG.SEQUENCE, tbsContent);
  off += VERSION_3.copy(buf, off);
  off = writeHeader(buf, off, TAG.INTEGER, sb.length);
  if (sb.pad) buf[off++] = 0;
  buf.set(serial.subarray(sb.start), off);
  off += serial.length - sb.start;
  off += t.issuerPart.copy(buf, off);
  off = writeHeader(buf, off, TAG.SEQUENCE, validityContent);
  off = writeTime(buf, off, nb);
  off = writeTime(buf, off, na);
  off += SVID_SUBJECT.copy(buf, off);
  off += spki.copy(buf, off);
  off = writeHeader(buf, off, 0xa3, extsSeq);
  off = writeHeader(buf, off, TAG.SEQUENCE, extsContent);
  off += t.extHead.copy(buf, off);
  off += ski.copy(buf, off);
  off += t.aki.copy(buf, off);
  off = writeHeader(buf, off, TAG.SEQUENCE, sanExtContent);
  off += SAN_OID.copy(buf, off);
  off = writeHeader(buf, off, TAG.OCTET_STRING, sanSeq);
  off = writeHeader(buf, off, TAG.SEQUENCE, names);
  off = writeAsciiTlv(buf, off, GN_URI, uri);
  for (const d of dnsNames) off = writeAsciiTlv(buf, off, GN_DNS, d);
  if (off !== room + tbsSize) throw new Error("internal: TBSCertificate size mismatch");

  return finish(buf, room, off, t.alg, t.key);
}

// ---------------------------------------------------------------------------------------------
// CA certificates (rare: plain builders).

/**
 * Encodes and signs a CA certificate: a self-signed root (no `issuer`) or an intermediate.
 * basicConstraints critical cA true, keyUsage critical keyCertSign + cRLSign, URI SAN
 * `spiffe://<trust domain>`, SKI, AKI. Returns the DER.
 */
export function encodeCaCertificate(params: CaCertificateParams): Buffer {
  const td =
    params.trustDomain instanceof TrustDomain
      ? params.trustDomain
      : (() => {
          try {
            return TrustDomain.parse(String(params.trustDomain));
          } catch (e) {
            return fail("invalid-argument", `invalid trust domain: ${(e as Error).message}`, e);
          }
        })();
  const ski = spkiKeyId(params.subjectPublicKeyDer);
  if (!Buffer.isBuffer(params.subjectNameDer) || params.subjectNameDer[0] !== TAG.SEQUENCE) {
    fail("invalid-argument", "subjectNameDer must be the DER of a Name (a SEQUENCE)");
  }
  let issuer = params.issuer;
  if (issuer === undefined) {
    if (params.privateKey === undefined) fail("invalid-argument", "a self-signed CA needs its privateKey");
    issuer = { nameDer: params.subjectNameDer, keyId: ski, privateKey: params.privateKey };
  }
  checkIssuer(issuer);
  const alg = signatureAlgorithmFor(issuer.privateKey);
  serialBounds(params.serial);
  const [nb, na] = checkDates(params.notBefore, params.notAfter);
  if (params.pathLen !== undefined && (!Number.isSafeInteger(params.pathLen) || params.pathLen < 0)) {
    fail("invalid-argument", "pathLen must be a non-negative integer");
  }
  const bc = sequence(boolean(true), ...(params.pathLen === undefined ? [] : [integer(params.pathLen)]));
  const extensions = sequence(
    CA_KEY_USAGE,
    extension(OID.basicConstraints, true, bc),
    subjectKeyIdentifier(ski),
    authorityKeyIdentifier(issuer.keyId),
    extension(SAN_OID, false, sequence(tlv(GN_URI, Buffer.from(td.idString(), "latin1")))),
  );
  const tbs = sequence(
    VERSION_3,
    integer(params.serial),
    alg.identifier,
    issuer.nameDer,
    sequence(time(new Date(nb)), time(new Date(na))),
    params.subjectNameDer,
    params.subjectPublicKeyDer,
    contextTag(3, [extensions]),
  );
  const maxContent = tbs.length + alg.identifier.length + tlvSize(1 + alg.maxSignatureLength);
  const room = outerHeaderRoom(maxContent);
  const buf = Buffer.allocUnsafe(room + maxContent);
  tbs.copy(buf, room);
  return Buffer.from(finish(buf, room, room + tbs.length, alg, issuer.privateKey));
}
