import type { X509Certificate } from "node:crypto";
import { SpiffeError } from "./errors.js";
import type { SpiffeId, TrustDomain } from "./id.js";

/** Refusal of a peer by an authorizer; the message says which rule refused it. */
export class AuthorizationError extends SpiffeError {
  constructor(
    readonly rule: string,
    message: string,
  ) {
    super("unauthorized", message);
  }
}

/**
 * Decides whether a verified peer may talk to us. Called after the chain verified against the
 * bundle of the peer's own trust domain; throws AuthorizationError to refuse.
 */
export type Authorizer = (peer: SpiffeId, chain: readonly X509Certificate[]) => void;

/** Any SPIFFE ID whose chain verified. */
export function authorizeAny(): Authorizer {
  return () => {};
}

export function authorizeId(expected: SpiffeId): Authorizer {
  return (peer) => {
    if (!peer.equals(expected)) {
      throw new AuthorizationError("exact-id", `peer ${peer} is not ${expected} (authorizer: exact ID)`);
    }
  };
}

export function authorizeOneOf(allowed: readonly SpiffeId[]): Authorizer {
  return (peer) => {
    if (!allowed.some((id) => id.equals(peer))) {
      throw new AuthorizationError(
        "one-of",
        `peer ${peer} is not one of ${allowed.map(String).join(", ")} (authorizer: one of a set)`,
      );
    }
  };
}

export function authorizeMemberOf(trustDomain: TrustDomain): Authorizer {
  return (peer) => {
    if (!peer.memberOf(trustDomain)) {
      throw new AuthorizationError(
        "member-of",
        `peer ${peer} is not a member of trust domain ${trustDomain} (authorizer: member of)`,
      );
    }
  };
}

/** A custom rule: `description` names it in refusals. */
export function authorizeIf(
  description: string,
  predicate: (peer: SpiffeId, chain: readonly X509Certificate[]) => boolean,
): Authorizer {
  return (peer, chain) => {
    if (!predicate(peer, chain)) {
      throw new AuthorizationError("custom", `peer ${peer} refused by ${description} (authorizer: custom)`);
    }
  };
}
