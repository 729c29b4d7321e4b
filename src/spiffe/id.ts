import { SpiffeError } from "./errors.js";

/** The longest SPIFFE ID that parsing accepts (SPIFFE-ID.md: implementations MUST handle 2048 bytes). */
export const MAX_ID_BYTES = 2048;
/** The longest trust domain name (SPIFFE-ID.md §2.3). */
export const MAX_TRUST_DOMAIN_BYTES = 255;

/** Why a SPIFFE ID, trust domain or path is invalid: stable codes for programs and tests. */
export type IdProblem =
  | "empty"
  | "scheme"
  | "missing-trust-domain"
  | "trust-domain-chars"
  | "userinfo-or-port"
  | "query-or-fragment"
  | "path-chars"
  | "empty-segment"
  | "dot-segment"
  | "trailing-slash"
  | "no-leading-slash"
  | "too-long";

export class InvalidSpiffeIdError extends SpiffeError {
  constructor(
    readonly problem: IdProblem,
    message: string,
  ) {
    super(`invalid-spiffe-id:${problem}`, message);
  }
}

const SCHEME = "spiffe://";

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

/** Case-insensitive parts are lowered in ASCII only: other characters stay, and are refused. */
function lowerAscii(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function fail(problem: IdProblem, message: string): never {
  throw new InvalidSpiffeIdError(problem, message);
}

function checkTrustDomainName(name: string, inUri: boolean): void {
  if (name.length === 0) fail("missing-trust-domain", "the trust domain is missing");
  if (byteLength(name) > MAX_TRUST_DOMAIN_BYTES) {
    fail("too-long", `the trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (isTrustDomainChar(c)) continue;
    if (inUri && (c === 0x40 || c === 0x3a)) {
      fail("userinfo-or-port", "a trust domain has no userinfo ('@') and no port (':')");
    }
    if (inUri && (c === 0x3f || c === 0x23))
      fail("query-or-fragment", "a SPIFFE ID has no query ('?') and no fragment ('#')");
    fail(
      "trust-domain-chars",
      `the trust domain may only hold lowercase letters, digits, '.', '-' and '_' (found ${JSON.stringify(name[i])})`,
    );
  }
}

/** Validates a SPIFFE ID path: "" or "/seg/seg" with segments of [a-zA-Z0-9._-], no "." or "..". */
export function validatePath(path: string): void {
  if (path === "") return;
  if (path.charCodeAt(0) !== 0x2f) fail("no-leading-slash", "a path must start with '/'");
  let segmentStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const segment = path.slice(segmentStart, i);
      if (segment === "") {
        fail(
          i === path.length ? "trailing-slash" : "empty-segment",
          i === path.length ? "a path must not end with '/'" : "a path segment must not be empty",
        );
      }
      if (segment === "." || segment === "..") fail("dot-segment", "a path segment must not be '.' or '..'");
      segmentStart = i + 1;
      continue;
    }
    if (c === 0x3f || c === 0x23)
      fail("query-or-fragment", "a SPIFFE ID has no query ('?') and no fragment ('#')");
    if (!isPathChar(c)) {
      fail(
        "path-chars",
        `a path segment may only hold letters, digits, '.', '-' and '_' (found ${JSON.stringify(path[i])})`,
      );
    }
  }
}

/** A SPIFFE trust domain, e.g. `example.org`. Compare with `equals`. */
export class TrustDomain {
  private constructor(readonly name: string) {}

  /** Parses a bare trust domain name, or takes the trust domain of a SPIFFE ID. */
  static parse(text: string): TrustDomain {
    if (text.includes(":/")) return SpiffeId.parse(text).trustDomain;
    const name = lowerAscii(text);
    checkTrustDomainName(name, false);
    return new TrustDomain(name);
  }

  /** For names already validated (internal use). */
  static fromValidated(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** `spiffe://example.org`: the form Workload API bundle maps use as keys. */
  idString(): string {
    return `${SCHEME}${this.name}`;
  }

  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }
}

/** A SPIFFE ID: `spiffe://<trust domain><path>`. */
export class SpiffeId {
  private constructor(
    readonly trustDomain: TrustDomain,
    readonly path: string,
  ) {}

  /**
   * Parses a SPIFFE ID. Scheme and trust domain are case-insensitive (SPIFFE-ID.md §2.4) and
   * normalised to lowercase; the path is case-sensitive. IDs over 2048 bytes are refused.
   */
  static parse(text: string): SpiffeId {
    if (text === "") fail("empty", "a SPIFFE ID must not be empty");
    if (byteLength(text) > MAX_ID_BYTES)
      fail("too-long", `a SPIFFE ID must not be longer than ${MAX_ID_BYTES} bytes`);
    if (text.slice(0, SCHEME.length).toLowerCase() !== SCHEME) {
      fail("scheme", "a SPIFFE ID must start with spiffe://");
    }
    const rest = text.slice(SCHEME.length);
    const slash = rest.indexOf("/");
    const authority = slash < 0 ? rest : rest.slice(0, slash);
    const path = slash < 0 ? "" : rest.slice(slash);
    // Only ASCII is lowered: other characters stay and are refused as trust-domain characters.
    const name = lowerAscii(authority);
    checkTrustDomainName(name, true);
    validatePath(path);
    return new SpiffeId(TrustDomain.fromValidated(name), path);
  }

  /** Builds an ID from path segments, each validated: `fromSegments(td, "ns", "prod")`. */
  static fromSegments(trustDomain: TrustDomain, ...segments: string[]): SpiffeId {
    const path = segments.map((s) => `/${s}`).join("");
    for (const s of segments) {
      if (s === "") fail("empty-segment", "a path segment must not be empty");
      if (s.includes("/")) fail("path-chars", "a path segment must not contain '/'");
    }
    validatePath(path);
    return new SpiffeId(trustDomain, path);
  }

  static fromPath(trustDomain: TrustDomain, path: string): SpiffeId {
    validatePath(path);
    return new SpiffeId(trustDomain, path);
  }

  memberOf(trustDomain: TrustDomain): boolean {
    return this.trustDomain.equals(trustDomain);
  }

  equals(other: SpiffeId): boolean {
    return this.trustDomain.equals(other.trustDomain) && this.path === other.path;
  }

  /** True for an ID without path, which only a trust domain's signing authority carries. */
  isRoot(): boolean {
    return this.path === "";
  }

  toString(): string {
    return `${SCHEME}${this.trustDomain.name}${this.path}`;
  }
}
