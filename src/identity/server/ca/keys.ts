/**
 * Keys for the CA: the key types a CA may have, the signature algorithm each signing key uses,
 * and strict reading of a SubjectPublicKeyInfo (the only part of a CSR the server keeps).
 *
 * Accepted subject keys: EC P-256, P-384, P-521 (named curve, uncompressed point) and RSA of
 * 2048 to 8192 bits with an odd exponent. The SPKI must be exact DER: the bytes that were
 * checked are the bytes put into the certificate.
 *
 * EC keys are imported through their JWK coordinates rather than as SPKI DER: node:crypto (on
 * OpenSSL 3) imports a JWK about twice as fast, and still checks the point is on the curve.
 */

import * as nodeCrypto from "node:crypto";
import {
  createHash,
  createPublicKey,
  generateKeyPair as generateKeyPairCb,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";
import {
  bitString,
  DerReadError,
  expectTlv,
  nullValue,
  OID,
  oidText,
  readChildren,
  readTlv,
  sequence,
  TAG,
  type Tlv,
  tlvEquals,
} from "./der.js";
import { CaError, fail } from "./errors.js";

const generateKeyPairAsync = promisify(generateKeyPairCb);

/** One-shot `crypto.hash` (Node >= 20.12) is faster than createHash; older Node falls back. */
const oneShotHash = (nodeCrypto as Partial<typeof nodeCrypto>).hash;
function sha1(data: Uint8Array): Buffer {
  return oneShotHash ? oneShotHash("sha1", data, "buffer") : createHash("sha1").update(data).digest();
}

/** Key types a CA (X.509 authority or JWT signing key) may have. */
export type CaKeyType = "ec-p256" | "ec-p384" | "rsa-2048";
export const CA_KEY_TYPES: readonly CaKeyType[] = Object.freeze(["ec-p256", "ec-p384", "rsa-2048"]);

/** What a subject (workload) key is. */
export type SubjectKeyType = "ec-p256" | "ec-p384" | "ec-p521" | "rsa";

export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export async function generateCaKeyPair(type: CaKeyType): Promise<KeyPair> {
  switch (type) {
    case "ec-p256":
      return generateKeyPairAsync("ec", { namedCurve: "P-256" });
    case "ec-p384":
      return generateKeyPairAsync("ec", { namedCurve: "P-384" });
    case "rsa-2048":
      return generateKeyPairAsync("rsa", { modulusLength: 2048 });
    default:
      return fail(
        "invalid-argument",
        `key type ${JSON.stringify(type)} is not one of ${CA_KEY_TYPES.join(", ")}`,
      );
  }
}

/** The CA key type of a key, or undefined when it is none of them. */
export function caKeyTypeOf(key: KeyObject): CaKeyType | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "ec") {
    if (d?.namedCurve === "prime256v1") return "ec-p256";
    if (d?.namedCurve === "secp384r1") return "ec-p384";
  } else if (key.asymmetricKeyType === "rsa" && d?.modulusLength === 2048) return "rsa-2048";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Signature algorithms.

export interface SignatureAlgorithm {
  /** The AlgorithmIdentifier TLV, as it appears in a certificate. */
  readonly identifier: Buffer;
  /** The digest for node:crypto `sign`. */
  readonly hash: "sha256" | "sha384" | "sha512";
  /** An upper bound on the signature's length in bytes (DER ECDSA-Sig-Value, or the RSA modulus). */
  readonly maxSignatureLength: number;
  readonly name: string;
}

const ECDSA_SHA256: SignatureAlgorithm = {
  identifier: sequence(OID.ecdsaWithSha256),
  hash: "sha256",
  maxSignatureLength: 72,
  name: "ecdsa-with-SHA256",
};
const ECDSA_SHA384: SignatureAlgorithm = {
  identifier: sequence(OID.ecdsaWithSha384),
  hash: "sha384",
  maxSignatureLength: 104,
  name: "ecdsa-with-SHA384",
};
const ECDSA_SHA512: SignatureAlgorithm = {
  identifier: sequence(OID.ecdsaWithSha512),
  hash: "sha512",
  maxSignatureLength: 139,
  name: "ecdsa-with-SHA512",
};
const RSA_SHA256_IDENTIFIER = sequence(OID.sha256WithRsa, nullValue());

/**
 * The algorithm a signing key signs certificates with: ECDSA with SHA-256/384/512 by curve
 * (P-256/P-384/P-521), RSA PKCS#1 v1.5 with SHA-256.
 */
export function signatureAlgorithmFor(privateKey: KeyObject): SignatureAlgorithm {
  if (privateKey.type !== "private") fail("invalid-argument", "a signing key must be a private key");
  const d = privateKey.asymmetricKeyDetails;
  if (privateKey.asymmetricKeyType === "ec") {
    if (d?.namedCurve === "prime256v1") return ECDSA_SHA256;
    if (d?.namedCurve === "secp384r1") return ECDSA_SHA384;
    if (d?.namedCurve === "secp521r1") return ECDSA_SHA512;
  } else if (privateKey.asymmetricKeyType === "rsa") {
    const bits = d?.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS) {
      return {
        identifier: RSA_SHA256_IDENTIFIER,
        hash: "sha256",
        maxSignatureLength: Math.ceil(bits / 8),
        name: "sha256WithRSAEncryption",
      };
    }
  }
  return fail(
    "unsupported-key",
    `a ${describeKey(privateKey)} key cannot sign certificates here (EC P-256/P-384/P-521 or RSA of at least ${MIN_RSA_BITS} bits)`,
  );
}

export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "ec") return `EC ${d?.namedCurve ?? "unknown curve"}`;
  if (key.asymmetricKeyType === "rsa") return `RSA-${d?.modulusLength ?? "?"}`;
  return String(key.asymmetricKeyType ?? key.type);
}

// ---------------------------------------------------------------------------------------------
// SubjectPublicKeyInfo.

export interface SubjectPublicKey {
  /** The exact SPKI DER (a copy, owned by this object). */
  readonly der: Buffer;
  readonly key: KeyObject;
  readonly type: SubjectKeyType;
}

interface Curve {
  readonly type: SubjectKeyType;
  readonly crv: "P-256" | "P-384" | "P-521";
  readonly coordinate: number;
  readonly curveOid: Buffer;
  /** The SPKI bytes before the point's coordinates (everything up to and including 0x04). */
  readonly prefix: Buffer;
}

function curve(type: SubjectKeyType, crv: Curve["crv"], curveOid: Buffer, coordinate: number): Curve {
  const point = Buffer.alloc(1 + 2 * coordinate);
  point[0] = 0x04;
  const spki = sequence(sequence(OID.ecPublicKey, curveOid), bitString(point));
  return { type, crv, coordinate, curveOid, prefix: spki.subarray(0, spki.length - 2 * coordinate) };
}

const CURVES: readonly Curve[] = [
  curve("ec-p256", "P-256", OID.prime256v1, 32),
  curve("ec-p384", "P-384", OID.secp384r1, 48),
  curve("ec-p521", "P-521", OID.secp521r1, 66),
];

function startsWith(buf: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > buf.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix[i]) return false;
  return true;
}

function importEc(c: Curve, buf: Uint8Array, pointAt: number, where: string): KeyObject {
  const x = Buffer.from(buf.buffer, buf.byteOffset + pointAt, c.coordinate).toString("base64url");
  const y = Buffer.from(buf.buffer, buf.byteOffset + pointAt + c.coordinate, c.coordinate).toString(
    "base64url",
  );
  try {
    return createPublicKey({ key: { kty: "EC", crv: c.crv, x, y }, format: "jwk" });
  } catch (e) {
    return fail("invalid-key", `${where} is not a valid point on ${c.crv}`, e);
  }
}

/** Magnitude bytes of a strict DER INTEGER that must be positive. */
function positiveInteger(buf: Uint8Array, t: Tlv, what: string): Buffer {
  if (t.tag !== TAG.INTEGER || t.end === t.body) throw new DerReadError(`${what} is not an INTEGER`);
  const first = buf[t.body] as number;
  if (first & 0x80) throw new DerReadError(`${what} is negative`);
  if (first === 0 && t.end - t.body > 1 && !((buf[t.body + 1] as number) & 0x80)) {
    throw new DerReadError(`${what} is not minimally encoded`);
  }
  let s = t.body;
  if (first === 0) s++;
  if (s === t.end) throw new DerReadError(`${what} is zero`);
  return Buffer.from(buf.subarray(s, t.end));
}

const NULL_PARAMS = nullValue();

/**
 * Reads the SubjectPublicKeyInfo at `spki` (a TLV of `buf`) strictly and imports it.
 * `where` names it in errors ("the CSR's public key").
 */
export function readSubjectPublicKeyInfo(buf: Uint8Array, spki: Tlv, where: string): SubjectPublicKey {
  // The common cases first: an EC key is a fixed prefix followed by the point.
  const len = spki.end - spki.start;
  for (const c of CURVES) {
    if (len === c.prefix.length + 2 * c.coordinate && startsWith(buf, spki.start, c.prefix)) {
      const key = importEc(c, buf, spki.start + c.prefix.length, where);
      return { der: Buffer.from(buf.subarray(spki.start, spki.end)), key, type: c.type };
    }
  }
  try {
    if (spki.tag !== TAG.SEQUENCE) throw new DerReadError("not a SEQUENCE");
    const [alg, bits, extra] = readChildren(buf, spki);
    if (!alg || !bits || extra) throw new DerReadError("not SEQUENCE { algorithm, subjectPublicKey }");
    if (alg.tag !== TAG.SEQUENCE) throw new DerReadError("algorithm is not an AlgorithmIdentifier");
    const [algOid, params, more] = readChildren(buf, alg);
    if (algOid?.tag !== TAG.OID || more) throw new DerReadError("bad AlgorithmIdentifier");
    if (bits.tag !== TAG.BIT_STRING || bits.end === bits.body || buf[bits.body] !== 0) {
      throw new DerReadError("subjectPublicKey is not a BIT STRING without unused bits");
    }
    if (tlvEquals(buf, algOid, OID.ecPublicKey)) {
      if (params?.tag !== TAG.OID) {
        fail("unsupported-key", `${where} is an EC key without a named curve; use P-256, P-384 or P-521`);
      }
      if (!CURVES.some((k) => tlvEquals(buf, params, k.curveOid))) {
        fail(
          "unsupported-key",
          `${where} is an EC key on curve ${oidText(buf, params)}; accepted curves are P-256, P-384 and P-521`,
        );
      }
      const first = buf[bits.body + 1];
      if (first === 0x02 || first === 0x03) {
        fail("unsupported-key", `${where} is a compressed EC point; send the uncompressed form (0x04)`);
      }
      throw new DerReadError(
        "the EC point has the wrong length or form (uncompressed 0x04 || X || Y expected)",
      );
    }
    if (tlvEquals(buf, algOid, OID.rsaEncryption)) {
      if (!params || !tlvEquals(buf, params, NULL_PARAMS)) {
        throw new DerReadError("rsaEncryption parameters must be NULL (RFC 3279 §2.3.1)");
      }
      const rsa = readTlv(buf, bits.body + 1, bits.end);
      if (rsa.tag !== TAG.SEQUENCE || rsa.end !== bits.end)
        throw new DerReadError("RSAPublicKey is not a SEQUENCE");
      const [nTlv, eTlv, tail] = readChildren(buf, rsa);
      if (!nTlv || !eTlv || tail) throw new DerReadError("RSAPublicKey is not SEQUENCE { n, e }");
      const n = positiveInteger(buf, nTlv, "the RSA modulus");
      const e = positiveInteger(buf, eTlv, "the RSA exponent");
      const bitLength = (n.length - 1) * 8 + (32 - Math.clz32(n[0] as number));
      if (bitLength < MIN_RSA_BITS || bitLength > MAX_RSA_BITS) {
        fail(
          "unsupported-key",
          `${where} is an RSA key of ${bitLength} bits; accepted are ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`,
        );
      }
      if (!((e[e.length - 1] as number) & 1) || (e.length === 1 && (e[0] as number) < 3) || e.length > 4) {
        fail("invalid-key", `${where} has an RSA exponent that is even, below 3 or above 32 bits`);
      }
      if (!((n[n.length - 1] as number) & 1)) fail("invalid-key", `${where} has an even RSA modulus`);
      let key: KeyObject;
      try {
        key = createPublicKey({
          key: { kty: "RSA", n: n.toString("base64url"), e: e.toString("base64url") },
          format: "jwk",
        });
      } catch (err) {
        return fail("invalid-key", `${where} is not a valid RSA key`, err);
      }
      return { der: Buffer.from(buf.subarray(spki.start, spki.end)), key, type: "rsa" };
    }
    return fail(
      "unsupported-key",
      `${where} has algorithm ${oidText(buf, algOid)}; accepted are EC (P-256, P-384, P-521) and RSA (${MIN_RSA_BITS}-${MAX_RSA_BITS} bits)`,
    );
  } catch (e) {
    if (e instanceof CaError) throw e;
    return fail(
      "invalid-key",
      `${where} is not a well-formed SubjectPublicKeyInfo (${(e as Error).message})`,
    );
  }
}

/** Strict reading of a whole SPKI DER buffer. */
export function parseSubjectPublicKeyInfo(der: Uint8Array, where = "the public key"): SubjectPublicKey {
  let t: Tlv;
  try {
    t = expectTlv(der, 0, der.length, TAG.SEQUENCE, "SubjectPublicKeyInfo");
    if (t.end !== der.length) throw new DerReadError("trailing bytes after the SubjectPublicKeyInfo");
  } catch (e) {
    return fail(
      "invalid-key",
      `${where} is not a well-formed SubjectPublicKeyInfo (${(e as Error).message})`,
    );
  }
  return readSubjectPublicKeyInfo(der, t, where);
}

/** A public KeyObject as a checked subject key (private keys are refused). */
export function subjectPublicKeyFromKeyObject(key: KeyObject, where = "the public key"): SubjectPublicKey {
  if (typeof key !== "object" || key === null || typeof (key as KeyObject).export !== "function") {
    fail("invalid-argument", `${where} must be a node:crypto KeyObject`);
  }
  if (key.type !== "public") {
    fail(
      "invalid-argument",
      `${where} must be a public key, not a ${key.type} key: the server never handles workload private keys`,
    );
  }
  const pub = key;
  let der: Buffer;
  try {
    der = pub.export({ type: "spki", format: "der" });
  } catch (e) {
    return fail("unsupported-key", `${where} (${describeKey(pub)}) cannot be written as SPKI`, e);
  }
  const parsed = parseSubjectPublicKeyInfo(der, where);
  return { der: parsed.der, key: pub, type: parsed.type };
}

/**
 * The key identifier of an SPKI (RFC 5280 §4.2.1.2 method 1): SHA-1 of the subjectPublicKey
 * BIT STRING's bits, as Go's crypto/x509 and SPIRE compute it.
 */
export function keyIdentifier(spkiDer: Uint8Array): Buffer {
  try {
    const spki = readTlv(spkiDer, 0, spkiDer.length);
    const alg = readTlv(spkiDer, spki.body, spki.end);
    const bits = expectTlv(spkiDer, alg.end, spki.end, TAG.BIT_STRING, "subjectPublicKey");
    return sha1(spkiDer.subarray(bits.body + 1, bits.end));
  } catch (e) {
    return fail(
      "invalid-key",
      `cannot compute a key identifier: the SPKI is malformed (${(e as Error).message})`,
    );
  }
}
