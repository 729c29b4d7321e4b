import { SpiffeError } from "./errors.js";

/**
 * Why an X.509-SVID (or its key) was refused. The names are the `reason` categories of the
 * oracle (x509-svid.json), so programs and tests can branch on them; a few extra ones cover
 * rules the oracle does not exercise (marked below).
 */
export type X509SvidErrorReason =
  // decoding
  | "not-pem" // neither PEM nor DER where PEM or DER was expected
  | "corrupt" // bad DER, truncated data, trailing bytes, undecodable key
  | "no-certificates"
  | "no-private-key"
  | "not-pkcs8" // PKCS#1, SEC1 or encrypted key: the SPIFFE SDKs take unencrypted PKCS#8 only
  | "chain-too-long"
  | "unparseable-extension"
  // the leaf's SPIFFE ID (X509-SVID §2, §3.1)
  | "no-uri-san"
  | "multiple-uri-san"
  | "invalid-spiffe-id"
  | "too-long"
  | "leaf-root-path"
  // the leaf's constraints (X509-SVID §4.1, §4.3, §5.2)
  | "leaf-ca-true"
  | "leaf-no-key-usage"
  | "leaf-no-digital-signature"
  | "leaf-key-cert-sign"
  | "leaf-crl-sign"
  // signing certificates (X509-SVID §3.2, §4.1, §4.3)
  | "intermediate-no-ca"
  | "intermediate-no-key-cert-sign"
  // strict mode only: MUST-level rules no SDK checks
  | "key-usage-not-critical"
  | "empty-subject-san-not-critical"
  | "leaf-ext-key-usage" // extra: §4.4, EKU present without serverAuth and clientAuth
  | "signing-cert-id-has-path" // extra: §3.2, a signing certificate's SPIFFE ID has a path
  // key
  | "key-mismatch"
  // verification (X509-SVID §5.1, SPIFFE_Workload_API §4.6)
  | "no-bundle-source"
  | "no-bundle-for-trust-domain"
  | "unknown-authority"
  | "expired"
  | "not-yet-valid"
  | "path-len-exceeded" // extra: RFC 5280 §4.2.1.9
  | "name-constraints" // extra: RFC 5280 §4.2.1.10, X509-SVID §4.2
  | "unhandled-critical-extension"; // extra: RFC 5280 §4.2

/**
 * An X.509-SVID that cannot be parsed, is malformed, or does not verify. `code` is
 * `invalid-x509-svid:<reason>`; the message names the failed rule (with its section of
 * X509-SVID.md or RFC 5280) and, where it helps, the certificate by position (0 = leaf).
 * Messages never contain key material.
 */
export class X509SvidError extends SpiffeError {
  constructor(
    readonly reason: X509SvidErrorReason,
    message: string,
    /** Position of the offending certificate in the chain (0 = leaf), when one is to blame. */
    readonly certIndex?: number,
    options?: { cause?: unknown },
  ) {
    super(`invalid-x509-svid:${reason}`, message);
    this.name = "X509SvidError";
    if (options?.cause !== undefined) Object.defineProperty(this, "cause", { value: options.cause });
  }
}
