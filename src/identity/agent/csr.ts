/**
 * PKCS#10 certificate signing requests (RFC 2986) for the agent's own key and its workloads'
 * keys: EC P-256, self-signed with ECDSA-SHA256. The server reads only the public key and checks
 * the self-signature (it decides the SPIFFE ID, DNS names and TTL itself), so the subject is
 * empty and there are no attributes.
 *
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE { version INTEGER (0), subject Name (empty),
 *                                         subjectPKInfo SubjectPublicKeyInfo,
 *                                         attributes [0] IMPLICIT SET OF Attribute (empty) },
 *     signatureAlgorithm AlgorithmIdentifier (ecdsa-with-SHA256, no parameters),
 *     signature BIT STRING }
 */
import { createPublicKey, generateKeyPair as generateKeyPairCb, type KeyObject, sign } from "node:crypto";
import { promisify } from "node:util";
import { bitString, contextTag, integer, OID, sequence } from "../server/ca/der.js";

const generateKeyPairAsync = promisify(generateKeyPairCb);

/** A fresh EC P-256 key pair (the key type of every SVID the agent requests). */
export async function generateP256Key(): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  return generateKeyPairAsync("ec", { namedCurve: "P-256" });
}

/** The DER CSR for `privateKey` (EC P-256), signed with it (ECDSA-SHA256). */
export function createCsr(privateKey: KeyObject): Buffer {
  if (privateKey.type !== "private") throw new TypeError("a CSR is signed with a private key");
  if (privateKey.asymmetricKeyType !== "ec" || privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new TypeError("the agent builds CSRs for EC P-256 keys only");
  }
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const info = sequence(integer(0), sequence(), spki, contextTag(0, []));
  const signature = sign("sha256", info, privateKey);
  return sequence(info, sequence(OID.ecdsaWithSha256), bitString(signature));
}

/** A new P-256 key and its CSR, the CSR base64 as the Agent API wants it. */
export async function newKeyAndCsr(): Promise<{ privateKey: KeyObject; csr: string }> {
  const { privateKey } = await generateP256Key();
  return { privateKey, csr: createCsr(privateKey).toString("base64") };
}
