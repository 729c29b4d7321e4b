/**
 * Every refusal of the CA is a CaError with a stable `code` (`ca:<reason>`, for programs) and a
 * message that says what is wrong and what would be right (for people). A refused request
 * changes nothing. Messages never contain private keys.
 */
export type CaErrorReason =
  /** The CSR is not PEM or DER, or its DER is not a PKCS#10 CertificationRequest. */
  | "malformed-csr"
  /** The CSR is signed with an algorithm that is not accepted (SHA-1, RSA-PSS, ...). */
  | "unsupported-algorithm"
  /** The public key (in a CSR, a KeyObject or upstream material) is of a type or size not accepted. */
  | "unsupported-key"
  /** The public key is malformed: a point off the curve, a bad RSA modulus or exponent. */
  | "invalid-key"
  /** The CSR's self-signature does not verify with its own public key. */
  | "csr-signature-invalid"
  | "invalid-spiffe-id"
  /** The SPIFFE ID belongs to another trust domain than the CA's. */
  | "wrong-trust-domain"
  | "invalid-dns-name"
  | "invalid-ttl"
  /** Any other bad argument (options, dates, serial numbers, audiences). */
  | "invalid-argument"
  /** `activate()` was called with no prepared CA. */
  | "not-prepared"
  /** The active CA is past its notAfter: `rotateIfDue()` has not run in time. */
  | "ca-expired"
  /** The upstream CA material is unusable (PEM, key mismatch, not a CA, expired). */
  | "invalid-upstream"
  /** A new intermediate is needed but the upstream key was not given to `restore`. */
  | "no-upstream-key"
  /** `restore` was given a state that is not one `exportState` wrote, or an inconsistent one. */
  | "invalid-state";

export class CaError extends Error {
  readonly code: `ca:${CaErrorReason}`;

  constructor(
    readonly reason: CaErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CaError";
    this.code = `ca:${reason}`;
  }
}

export function fail(reason: CaErrorReason, message: string, cause?: unknown): never {
  throw new CaError(reason, message, cause === undefined ? undefined : { cause });
}
