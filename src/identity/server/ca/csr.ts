/**
 * PKCS#10 certificate signing requests (RFC 2986), read strictly, for one purpose: to learn the
 * public key a workload wants certified and to check the workload holds its private key (the
 * CSR's self-signature). Everything else in a CSR (subject, attributes, requested extensions)
 * is ignored: the server decides the SPIFFE ID, the DNS names and the TTL itself.
 *
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE { version INTEGER (0), subject Name,
 *                                         subjectPKInfo SubjectPublicKeyInfo,
 *                                         attributes [0] IMPLICIT SET OF Attribute },
 *     signatureAlgorithm AlgorithmIdentifier,
 *     signature BIT STRING }
 *
 * Accepted signatures: ECDSA with SHA-256/384/512, RSA PKCS#1 v1.5 with SHA-256/384/512. A
 * malformed or unsupported CSR is refused with a CaError (`ca:malformed-csr`,
 * `ca:unsupported-algorithm`, `ca:unsupported-key`, `ca:invalid-key`,
 * `ca:csr-signature-invalid`); nothing else is ever thrown for bad input.
 */
import { type KeyObject, verify } from "node:crypto";
import {
  DerReadError,
  expectTlv,
  nullValue,
  OID,
  oidText,
  readTlv,
  TAG,
  type Tlv,
  tlvEquals,
} from "./der.js";
import { CaError, fail } from "./errors.js";
import { readSubjectPublicKeyInfo, type SubjectKeyType } from "./keys.js";

/** Larger requests are refused before any parsing (an RSA-8192 CSR is under 2 KiB). */
export const MAX_CSR_BYTES = 64 * 1024;

export interface CertificateRequest {
  /** The subject public key, imported. */
  readonly publicKey: KeyObject;
  /** The SubjectPublicKeyInfo DER, exactly as in the request (checked to be strict DER). */
  readonly subjectPublicKeyInfo: Buffer;
  readonly keyType: SubjectKeyType;
  /** The self-signature's algorithm, e.g. "ecdsa-with-SHA256". */
  readonly signatureAlgorithm: string;
}

interface CsrAlgorithm {
  readonly oid: Buffer;
  readonly name: string;
  readonly hash: "sha256" | "sha384" | "sha512";
  readonly family: "ec" | "rsa";
}

const ALGORITHMS: readonly CsrAlgorithm[] = [
  { oid: OID.ecdsaWithSha256, name: "ecdsa-with-SHA256", hash: "sha256", family: "ec" },
  { oid: OID.ecdsaWithSha384, name: "ecdsa-with-SHA384", hash: "sha384", family: "ec" },
  { oid: OID.ecdsaWithSha512, name: "ecdsa-with-SHA512", hash: "sha512", family: "ec" },
  { oid: OID.sha256WithRsa, name: "sha256WithRSAEncryption", hash: "sha256", family: "rsa" },
  { oid: OID.sha384WithRsa, name: "sha384WithRSAEncryption", hash: "sha384", family: "rsa" },
  { oid: OID.sha512WithRsa, name: "sha512WithRSAEncryption", hash: "sha512", family: "rsa" },
];
const ACCEPTED = ALGORITHMS.map((a) => a.name).join(", ");

/** Algorithms people do send, named in the refusal. */
const REFUSED_NAMES: Record<string, string> = {
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
  "1.2.840.113549.1.1.10": "RSASSA-PSS",
  "1.3.101.112": "Ed25519",
  "1.3.101.113": "Ed448",
};

const NULL_PARAMS = nullValue();

function malformed(detail: string): never {
  return fail("malformed-csr", `the CSR is not a well-formed PKCS#10 request: ${detail} (RFC 2986 §4)`);
}

const PEM =
  /^-----BEGIN ((?:NEW )?CERTIFICATE REQUEST)-----\r?\n([A-Za-z0-9+/=\s]*?)-----END ((?:NEW )?CERTIFICATE REQUEST)-----$/;

function pemToDer(text: string): Buffer {
  const trimmed = text.trim();
  const m = PEM.exec(trimmed);
  if (!m) {
    if (/-----BEGIN /.test(trimmed)) {
      const label = /-----BEGIN ([^-\r\n]*)-----/.exec(trimmed)?.[1] ?? "";
      if (!/CERTIFICATE REQUEST$/.test(label)) {
        fail(
          "malformed-csr",
          `the PEM block is ${JSON.stringify(label)}; a CSR is a "CERTIFICATE REQUEST" block`,
        );
      }
      fail(
        "malformed-csr",
        "the CSR PEM must be exactly one CERTIFICATE REQUEST block of base64 lines with matching BEGIN and END lines",
      );
    }
    fail("malformed-csr", "the CSR is neither PEM (-----BEGIN CERTIFICATE REQUEST-----) nor DER");
  }
  if (m[1] !== m[3]) fail("malformed-csr", `the PEM block begins as ${m[1]} but ends as ${m[3]}`);
  const b64 = (m[2] ?? "").replace(/\s+/g, "");
  if (b64.length === 0 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
    fail("malformed-csr", "the CSR PEM body is not valid base64");
  }
  const der = Buffer.from(b64, "base64");
  if (der.toString("base64") !== b64) fail("malformed-csr", "the CSR PEM body is not canonical base64");
  return der;
}

function toDer(input: Buffer | Uint8Array | string): Uint8Array {
  if (typeof input === "string") {
    if (input.length > MAX_CSR_BYTES * 2)
      fail("malformed-csr", `the CSR is larger than ${MAX_CSR_BYTES} bytes`);
    return pemToDer(input);
  }
  if (!(input instanceof Uint8Array))
    fail("malformed-csr", "the CSR must be a Buffer (DER or PEM) or a PEM string");
  if (input.length === 0) fail("malformed-csr", "the CSR is empty");
  if (input.length > MAX_CSR_BYTES * 2)
    fail("malformed-csr", `the CSR is larger than ${MAX_CSR_BYTES} bytes`);
  if (input[0] === 0x30) return input;
  // A PEM in a Buffer: it starts with "-----" once whitespace is skipped.
  const text = Buffer.from(input.buffer, input.byteOffset, input.length).toString("latin1");
  if (text.trimStart().startsWith("-----")) return pemToDer(text);
  return fail(
    "malformed-csr",
    "the CSR is neither DER (a SEQUENCE) nor PEM (-----BEGIN CERTIFICATE REQUEST-----)",
  );
}

/**
 * Parses a PKCS#10 CSR (DER or PEM) and checks its self-signature. Returns the subject public
 * key; throws CaError for anything malformed, unsupported or not self-signed.
 */
export function parseCsr(input: Buffer | Uint8Array | string): CertificateRequest {
  const der = toDer(input);
  if (der.length > MAX_CSR_BYTES) fail("malformed-csr", `the CSR is larger than ${MAX_CSR_BYTES} bytes`);
  let info: Tlv;
  let spki: Tlv;
  let alg: CsrAlgorithm | undefined;
  let algOid: Tlv;
  let sigBody: number;
  let sigEnd: number;
  try {
    const top = expectTlv(der, 0, der.length, TAG.SEQUENCE, "CertificationRequest");
    if (top.end !== der.length) throw new DerReadError(`${der.length - top.end} bytes after the request`);
    info = expectTlv(der, top.body, top.end, TAG.SEQUENCE, "certificationRequestInfo");
    const version = expectTlv(der, info.body, info.end, TAG.INTEGER, "version");
    if (version.end - version.body !== 1 || der[version.body] !== 0) {
      throw new DerReadError("version must be 0 (v1)");
    }
    const subject = expectTlv(der, version.end, info.end, TAG.SEQUENCE, "subject");
    spki = expectTlv(der, subject.end, info.end, TAG.SEQUENCE, "subjectPKInfo");
    if (spki.end < info.end) {
      const attributes = readTlv(der, spki.end, info.end);
      if (attributes.tag !== 0xa0) throw new DerReadError("attributes must be [0] IMPLICIT SET OF Attribute");
      if (attributes.end !== info.end) throw new DerReadError("unexpected field after the attributes");
    }
    const algId = expectTlv(der, info.end, top.end, TAG.SEQUENCE, "signatureAlgorithm");
    algOid = expectTlv(der, algId.body, algId.end, TAG.OID, "signatureAlgorithm.algorithm");
    const sig = expectTlv(der, algId.end, top.end, TAG.BIT_STRING, "signature");
    if (sig.end !== top.end) throw new DerReadError("unexpected field after the signature");
    if (sig.end - sig.body < 2 || der[sig.body] !== 0) {
      throw new DerReadError("the signature BIT STRING must be non-empty with no unused bits");
    }
    sigBody = sig.body + 1;
    sigEnd = sig.end;
    alg = ALGORITHMS.find((a) => tlvEquals(der, algOid, a.oid));
    if (alg) {
      // ECDSA: parameters absent (RFC 5758 §3.2); RSA: NULL (RFC 4055 §5), or absent as some encoders write.
      if (algOid.end !== algId.end) {
        const params = readTlv(der, algOid.end, algId.end);
        const nullOk = alg.family === "rsa" && tlvEquals(der, params, NULL_PARAMS);
        if (!nullOk || params.end !== algId.end) {
          throw new DerReadError(
            `signatureAlgorithm ${alg.name} must have ${alg.family === "ec" ? "no parameters" : "NULL parameters"}`,
          );
        }
      }
    }
  } catch (e) {
    if (e instanceof CaError) throw e;
    return malformed((e as Error).message);
  }
  if (!alg) {
    let dotted: string;
    try {
      dotted = oidText(der, algOid);
    } catch {
      return malformed("signatureAlgorithm is not a valid OBJECT IDENTIFIER");
    }
    const name = REFUSED_NAMES[dotted];
    return fail(
      "unsupported-algorithm",
      `the CSR is signed with ${name ? `${name} (${dotted})` : dotted}, which is not accepted; use one of ${ACCEPTED}`,
    );
  }
  const subjectKey = readSubjectPublicKeyInfo(der, spki, "the CSR's public key");
  const family = subjectKey.type === "rsa" ? "rsa" : "ec";
  if (family !== alg.family) {
    fail(
      "malformed-csr",
      `the CSR's signature algorithm ${alg.name} does not fit its ${family === "rsa" ? "RSA" : "EC"} public key`,
    );
  }
  let ok = false;
  try {
    ok = verify(alg.hash, der.subarray(info.start, info.end), subjectKey.key, der.subarray(sigBody, sigEnd));
  } catch {
    ok = false;
  }
  if (!ok) {
    fail(
      "csr-signature-invalid",
      "the CSR's signature does not verify with the CSR's own public key: the requester has not proven it holds the private key",
    );
  }
  return {
    publicKey: subjectKey.key,
    subjectPublicKeyInfo: subjectKey.der,
    keyType: subjectKey.type,
    signatureAlgorithm: alg.name,
  };
}
