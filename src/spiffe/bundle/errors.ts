import { SpiffeError } from "../errors.js";

/**
 * Why a bundle was refused. The names are the oracle's `reason` categories (bundles.json) so
 * that programs and tests can branch on them; a few extra ones cover rules the oracle does not
 * exercise (duplicate kids, malformed sequence numbers, ...).
 */
export type BundleErrorReason =
  // X.509 bundles (PEM or concatenated DER)
  | "not-pem"
  | "corrupt"
  | "no-certificates"
  | "not-certificate"
  // JSON documents (JWK Sets, SPIFFE bundles, bundle maps)
  | "not-json"
  | "not-jwks"
  | "duplicate-member"
  // JWK entries
  | "missing-kid"
  | "duplicate-kid"
  | "invalid-key"
  | "unsupported-key-type"
  | "invalid-x5c"
  // SPIFFE bundle members (SPIFFE_Trust_Domain_and_Bundle.md §4)
  | "keys-missing"
  | "invalid-sequence"
  | "invalid-refresh-hint"
  // bundle maps (§5)
  | "not-bundle-map"
  | "trust-domains-missing"
  | "duplicate-trust-domain"
  | "invalid-trust-domain";

/**
 * A bundle that cannot be trusted as given. The code is `invalid-bundle:<reason>` (stable, for
 * programs); the message names the rule that failed and where, never key material.
 */
export class BundleError extends SpiffeError {
  constructor(
    readonly reason: BundleErrorReason,
    message: string,
  ) {
    super(`invalid-bundle:${reason}`, message);
    this.name = "BundleError";
  }
}
