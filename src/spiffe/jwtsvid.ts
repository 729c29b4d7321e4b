/**
 * JWT-SVIDs (JWT-SVID.md): validate, parse without signature check, and sign (server side).
 *
 * Validation order, each step with its own error reason:
 *   1. JWS Compact Serialization only: three base64url parts (`not-compact` for the JWS JSON
 *      Serialization and for JWE, `malformed` otherwise);
 *   2. the header: JSON object; `alg` in the allowlist before anything else (§2.1, §4); only
 *      `alg`, `kid` and `typ` (§2); `typ`, when present, exactly `JWT` or `JOSE` (§2.3);
 *   3. the claims (§3): `sub` a SPIFFE ID, `aud` present and containing one of the expected
 *      audiences (a validator without an expected audience fails), `exp` present and not past,
 *      `nbf`/`iat` NumericDates when present (RFC 7519), `nbf` not in the future;
 *   4. the JWT bundle of the `sub`'s trust domain only (SPIFFE_Workload_API.md §6.3);
 *   5. the key: the bundle's key for `kid`, or, without `kid` (optional, §2.2), every key of
 *      the bundle whose type fits `alg`;
 *   6. the signature, with node:crypto.
 *
 * A JSON member that appears twice counts with its last value (RFC 7515 §5.2, RFC 7519 §4).
 *
 * The token is never put into an error message, `toString()` or `util.inspect` output.
 */
import { constants, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { SpiffeError } from "./errors.js";
import { InvalidSpiffeIdError, SpiffeId, type TrustDomain } from "./id.js";

/** The JWS algorithms a JWT-SVID may use (JWT-SVID.md §2.1). Everything else is rejected. */
export const JWT_SVID_ALGORITHMS = Object.freeze([
  "RS256",
  "RS384",
  "RS512",
  "ES256",
  "ES384",
  "ES512",
  "PS256",
  "PS384",
  "PS512",
] as const);

export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/** Why a JWT-SVID was refused (the categories of the SPIFFE oracle's jwt-svid.json, plus two). */
export type JwtSvidErrorReason =
  /** Not three base64url parts, or a part that is not base64url JSON of the right shape. */
  | "malformed"
  /** JWS JSON Serialization or JWE: JWT-SVID.md §1, §5.1 allow the JWS Compact Serialization only. */
  | "not-compact"
  | "alg-not-allowed"
  /** A header member other than alg, kid and typ. */
  | "header-not-allowed"
  | "typ-invalid"
  | "missing-sub"
  | "invalid-sub"
  /** The validator was given no audience to check `aud` against. */
  | "no-expected-audience"
  | "missing-aud"
  | "audience-mismatch"
  | "missing-exp"
  | "expired"
  | "not-yet-valid"
  /** A registered claim of the wrong type (`aud` not string/string[], `exp`/`nbf`/`iat` not a NumericDate). */
  | "invalid-claim"
  | "no-bundle-for-trust-domain"
  | "kid-not-found"
  /** No key verifies the signature, including a key whose type does not fit `alg`. */
  | "signature-invalid"
  /** The caller passed a bad argument (options, signing parameters). */
  | "invalid-argument";

/** A JWT-SVID failure. `code` is `jwt-svid:<reason>`; the message names the rule, never the token. */
export class JwtSvidError extends SpiffeError {
  constructor(
    readonly reason: JwtSvidErrorReason,
    message: string,
  ) {
    super(`jwt-svid:${reason}`, message);
    this.name = "JwtSvidError";
  }
}

function fail(reason: JwtSvidErrorReason, message: string): never {
  throw new JwtSvidError(reason, message);
}

/** A short, quoted rendering of a value taken from a token, for messages (never the token). */
function show(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = typeof value;
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

// ---------------------------------------------------------------------------------------------
// Algorithms and keys

type Family = "RS" | "PS" | "ES";

interface AlgSpec {
  readonly alg: JwtSvidAlgorithm;
  readonly index: number;
  readonly family: Family;
  readonly hash: "sha256" | "sha384" | "sha512";
  readonly hashBytes: number;
  /** ES*: the curve (node's name) and the length of the raw r||s signature. */
  readonly curve?: string;
  readonly sigBytes?: number;
}

const ALG_SPECS = new Map<string, AlgSpec>(
  JWT_SVID_ALGORITHMS.map((alg, index) => {
    const family = alg.slice(0, 2) as Family;
    const bits = alg.slice(2);
    const hash = `sha${bits}` as AlgSpec["hash"];
    const hashBytes = Number(bits) / 8;
    const spec: AlgSpec =
      family === "ES"
        ? {
            alg,
            index,
            family,
            hash,
            hashBytes,
            curve: { "256": "prime256v1", "384": "secp384r1", "512": "secp521r1" }[bits],
            sigBytes: { "256": 64, "384": 96, "512": 132 }[bits],
          }
        : { alg, index, family, hash, hashBytes };
    return [alg, spec] as const;
  }),
);

/** RFC 7518 §3.3, §3.5: RSA keys of 2048 bits or more. */
const MIN_RSA_BITS = 2048;

type KeyInput =
  | { key: KeyObject; dsaEncoding: "ieee-p1363" }
  | { key: KeyObject; padding: number; saltLength?: number };

/** Whether `key` can produce/verify `spec` signatures, and the node:crypto options to do so. */
function keyInputFor(key: KeyObject, spec: AlgSpec): KeyInput | null {
  if (key.type === "secret") return null;
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  switch (spec.family) {
    case "ES":
      return type === "ec" && details?.namedCurve === spec.curve ? { key, dsaEncoding: "ieee-p1363" } : null;
    case "RS":
      return type === "rsa" && (details?.modulusLength ?? 0) >= MIN_RSA_BITS
        ? { key, padding: constants.RSA_PKCS1_PADDING }
        : null;
    case "PS": {
      if (type !== "rsa" && type !== "rsa-pss") return null;
      if ((details?.modulusLength ?? 0) < MIN_RSA_BITS) return null;
      // An RSA-PSS key may be restricted to one hash, MGF1 hash and minimum salt length.
      if (type === "rsa-pss" && details?.hashAlgorithm !== undefined) {
        if (details.hashAlgorithm !== spec.hash) return null;
        if ((details.mgf1HashAlgorithm ?? spec.hash) !== spec.hash) return null;
        if ((details.saltLength ?? 0) > spec.hashBytes) return null;
      }
      return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.hashBytes };
    }
  }
}

/** Per key, per algorithm (by index): the verify options, or null when the key does not fit. */
const keyInputCache = new WeakMap<KeyObject, (KeyInput | null | undefined)[]>();

function cachedKeyInput(key: KeyObject, spec: AlgSpec): KeyInput | null {
  let row = keyInputCache.get(key);
  if (row === undefined) {
    row = [];
    keyInputCache.set(key, row);
  }
  let input = row[spec.index];
  if (input === undefined) {
    input = keyInputFor(key, spec);
    row[spec.index] = input;
  }
  return input;
}

function describeKey(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails;
  if (type === "ec") return `EC ${d?.namedCurve ?? "?"}`;
  if (type === "rsa" || type === "rsa-pss") return `${type.toUpperCase()} ${d?.modulusLength ?? "?"}-bit`;
  return type ?? key.type;
}

function keyFitRule(spec: AlgSpec): string {
  if (spec.family === "ES") return `${spec.alg} needs an EC ${spec.curve} key`;
  return `${spec.alg} needs an RSA key of at least ${MIN_RSA_BITS} bits`;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** An own member of a parsed JSON object (never one inherited from Object.prototype). */
function own(o: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeJson(part: string, what: string): unknown {
  if (!BASE64URL.test(part) || part.length % 4 === 1) {
    fail("malformed", `the JWT-SVID ${what} is not base64url without padding (RFC 7515 §2, §7.1)`);
  }
  let text: string;
  try {
    text = utf8.decode(Buffer.from(part, "base64url"));
  } catch {
    fail("malformed", `the JWT-SVID ${what} is not UTF-8 (RFC 7515 §7.1)`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    fail("malformed", `the JWT-SVID ${what} is not JSON (RFC 7515 §7.1)`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("malformed", `the JWT-SVID ${what} is not a JSON object (RFC 7515 §4, RFC 7519 §7.2)`);
  }
  return value;
}

interface Header {
  readonly spec: AlgSpec;
  readonly kid: string | undefined;
}

const ALLOWED_HEADER = new Set(["alg", "kid", "typ"]);
const ALG_LIST = JWT_SVID_ALGORITHMS.join(", ");

function parseHeader(part: string): Header {
  const header = decodeJson(part, "header") as Record<string, unknown>;
  // JWT-SVID.md §2.1, §4: the algorithm is checked before any other processing.
  const alg = own(header, "alg");
  if (alg === undefined)
    fail("alg-not-allowed", "the JWT-SVID header has no alg; alg is required (JWT-SVID.md §2.1)");
  const spec = typeof alg === "string" ? ALG_SPECS.get(alg) : undefined;
  if (spec === undefined) {
    fail(
      "alg-not-allowed",
      `JWT-SVID alg ${show(alg)} is not allowed: alg must be one of ${ALG_LIST} (JWT-SVID.md §2.1)`,
    );
  }
  const extra = Object.keys(header).filter((k) => !ALLOWED_HEADER.has(k));
  if (extra.length > 0) {
    fail(
      "header-not-allowed",
      `the JWT-SVID header has member(s) ${show(extra)}: only alg, kid and typ may appear (JWT-SVID.md §2)`,
    );
  }
  const typ = own(header, "typ");
  if (typ !== undefined && typ !== "JWT" && typ !== "JOSE") {
    fail(
      "typ-invalid",
      `JWT-SVID typ ${show(typ)} is not allowed: typ, when present, is JWT or JOSE (JWT-SVID.md §2.3)`,
    );
  }
  const kid = own(header, "kid");
  if (kid !== undefined && typeof kid !== "string") {
    fail("malformed", "the JWT-SVID kid header is not a string (RFC 7515 §4.1.4)");
  }
  return { spec, kid };
}

/** Parsed headers by their base64url text: issuers reuse a handful of headers for every token. */
const headerCache = new Map<string, Header>();
const HEADER_CACHE_MAX = 256;

function headerOf(part: string): Header {
  let header = headerCache.get(part);
  if (header === undefined) {
    header = parseHeader(part);
    if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
    headerCache.set(part, header);
  }
  return header;
}

interface ParsedToken {
  readonly header: Header;
  readonly claims: Record<string, unknown>;
  /** End of `header.payload`, the JWS signing input. */
  readonly signedEnd: number;
  readonly signature: string;
}

function parseCompact(token: string): ParsedToken {
  if (typeof token !== "string") fail("malformed", "a JWT-SVID is a string (JWS Compact Serialization)");
  if (token.charCodeAt(0) === 0x7b /* { */) {
    fail(
      "not-compact",
      "the JWS JSON Serialization is not allowed: JWT-SVIDs use the JWS Compact Serialization (JWT-SVID.md §1, §5.1)",
    );
  }
  const d1 = token.indexOf(".");
  const d2 = d1 < 0 ? -1 : token.indexOf(".", d1 + 1);
  if (d2 < 0 || token.indexOf(".", d2 + 1) >= 0) {
    if (token.split(".").length === 5) {
      fail("not-compact", "a JWE is not a JWT-SVID: JWT-SVIDs are JWS only (JWT-SVID.md §1)");
    }
    fail(
      "malformed",
      "a JWT-SVID has three base64url parts separated by '.' (JWS Compact Serialization, JWT-SVID.md §1)",
    );
  }
  if (d1 === 0) fail("malformed", "the JWT-SVID header part is empty (RFC 7515 §7.1)");
  const header = headerOf(token.slice(0, d1));
  const claims = decodeJson(token.slice(d1 + 1, d2), "payload") as Record<string, unknown>;
  const signature = token.slice(d2 + 1);
  if (signature.length === 0 || !BASE64URL.test(signature) || signature.length % 4 === 1) {
    fail(
      "malformed",
      "the JWT-SVID signature part is not non-empty base64url without padding (RFC 7515 §7.1)",
    );
  }
  return { header, claims, signedEnd: d2, signature };
}

// ---------------------------------------------------------------------------------------------
// Claims

/** Largest NumericDate (seconds) that a Date can hold. */
const MAX_NUMERIC_DATE = 8.64e12;

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = own(claims, name);
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || Math.abs(v) > MAX_NUMERIC_DATE) {
    fail("invalid-claim", `the JWT-SVID ${name} claim is not a NumericDate (RFC 7519 §2, §4.1)`);
  }
  return v;
}

interface CheckedClaims {
  readonly id: SpiffeId;
  readonly audience: readonly string[];
  readonly expMs: number;
}

function checkClaims(
  claims: Record<string, unknown>,
  expected: readonly string[],
  atMs: number,
  leewayMs: number,
): CheckedClaims {
  const sub = own(claims, "sub");
  if (sub === undefined || sub === "") {
    fail(
      "missing-sub",
      "the JWT-SVID has no sub claim; sub is required and holds the SPIFFE ID (JWT-SVID.md §3.1)",
    );
  }
  if (typeof sub !== "string")
    fail("invalid-sub", "the JWT-SVID sub claim is not a string SPIFFE ID (JWT-SVID.md §3.1)");
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(sub);
  } catch (e) {
    if (!(e instanceof InvalidSpiffeIdError)) throw e;
    fail("invalid-sub", `the JWT-SVID sub claim is not a SPIFFE ID (JWT-SVID.md §3.1): ${e.message}`);
  }

  if (expected.length === 0) {
    fail(
      "no-expected-audience",
      "no expected audience was given: a JWT-SVID validator must check aud against at least one audience (JWT-SVID.md §3.2, Appendix A)",
    );
  }
  const aud = own(claims, "aud");
  let audience: readonly string[];
  if (aud === undefined) {
    fail("missing-aud", "the JWT-SVID has no aud claim; aud is required (JWT-SVID.md §3.2)");
  } else if (typeof aud === "string") {
    audience = [aud];
  } else if (Array.isArray(aud)) {
    if (aud.length === 0)
      fail("missing-aud", "the JWT-SVID aud claim is empty; aud needs at least one value (JWT-SVID.md §3.2)");
    for (const a of aud) {
      if (typeof a !== "string")
        fail("invalid-claim", "the JWT-SVID aud claim holds a value that is not a string (RFC 7519 §4.1.3)");
    }
    audience = aud as string[];
  } else {
    fail(
      "invalid-claim",
      "the JWT-SVID aud claim is neither a string nor an array of strings (RFC 7519 §4.1.3)",
    );
  }
  let match = false;
  for (const e of expected) {
    if (audience.includes(e)) {
      match = true;
      break;
    }
  }
  if (!match) {
    fail(
      "audience-mismatch",
      `the JWT-SVID aud claim ${show(audience)} contains none of the expected audiences ${show(expected)} (JWT-SVID.md §3.2)`,
    );
  }

  const exp = numericDate(claims, "exp");
  if (exp === undefined)
    fail("missing-exp", "the JWT-SVID has no exp claim; exp is required (JWT-SVID.md §3.3)");
  const expMs = exp * 1000;
  if (atMs >= expMs + leewayMs) {
    fail(
      "expired",
      `the JWT-SVID expired at ${new Date(expMs).toISOString()}: exp must be after the validation time ${new Date(atMs).toISOString()}${leewayMs > 0 ? ` minus ${leewayMs / 1000} s leeway` : ""} (JWT-SVID.md §3.3, RFC 7519 §4.1.4)`,
    );
  }
  const nbf = numericDate(claims, "nbf");
  if (nbf !== undefined && atMs + leewayMs < nbf * 1000) {
    fail(
      "not-yet-valid",
      `the JWT-SVID is not valid before ${new Date(nbf * 1000).toISOString()} (nbf, RFC 7519 §4.1.5)`,
    );
  }
  numericDate(claims, "iat");
  return { id, audience, expMs };
}

// ---------------------------------------------------------------------------------------------
// The SVID

const INTERNAL: unique symbol = Symbol("JwtSvid");

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** A JWT-SVID that passed validation (or, from `parseJwtSvidInsecure`, the claims checks only). */
export class JwtSvid {
  readonly #token: string;
  readonly #expMs: number;
  /** The SPIFFE ID of `sub`, normalised. */
  readonly id: SpiffeId;
  /** The token's `aud` values. */
  readonly audience: readonly string[];
  /** Every claim of the token, frozen. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** The Workload API's hint for this SVID (SPIFFE_Workload_API.md §5.3), when it came with one. */
  readonly hint: string | undefined;

  /** Not public: use validateJwtSvid or parseJwtSvidInsecure. */
  constructor(
    internal: typeof INTERNAL,
    token: string,
    checked: CheckedClaims,
    claims: Readonly<Record<string, unknown>>,
    hint: string | undefined,
  ) {
    if (internal !== INTERNAL)
      throw new TypeError("JwtSvid is created by validateJwtSvid or parseJwtSvidInsecure");
    this.#token = token;
    this.#expMs = checked.expMs;
    this.id = checked.id;
    this.audience = Object.freeze(checked.audience);
    this.claims = claims;
    this.hint = hint;
  }

  /** The expiry (`exp`), as a fresh Date. */
  get expiry(): Date {
    return new Date(this.#expMs);
  }

  /** The compact token, for sending it on (e.g. `Authorization: Bearer <token>`). */
  marshal(): string {
    return this.#token;
  }

  /** The same SVID with a Workload API hint attached. */
  withHint(hint: string | undefined): JwtSvid {
    return new JwtSvid(
      INTERNAL,
      this.#token,
      { id: this.id, audience: this.audience, expMs: this.#expMs },
      this.claims,
      hint,
    );
  }

  toString(): string {
    return `JwtSvid(${this.id.toString()}, aud=${JSON.stringify(this.audience)}, exp=${new Date(this.#expMs).toISOString()}${this.hint === undefined ? "" : `, hint=${JSON.stringify(this.hint)}`})`;
  }

  /** JSON without the token. */
  toJSON(): { spiffeId: string; audience: readonly string[]; expiry: string; hint?: string } {
    return {
      spiffeId: this.id.toString(),
      audience: this.audience,
      expiry: new Date(this.#expMs).toISOString(),
      ...(this.hint === undefined ? {} : { hint: this.hint }),
    };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

/**
 * What validation needs from JWT bundles: the bundle of a trust domain, its keys by `kid`, and
 * all of its keys. `JwtBundleSource` (bundle/jwtbundle.ts) satisfies it.
 */
export interface JwtSvidBundleSource {
  getJwtBundleForTrustDomain(
    trustDomain: TrustDomain,
  ):
    | { readonly authorities: ReadonlyMap<string, KeyObject>; findKey(kid: string): KeyObject | undefined }
    | undefined;
}

export interface JwtSvidValidationOptions {
  /** The validation time; default now. */
  at?: Date;
  /** Clock-skew allowance for exp and nbf, in seconds; default 0. */
  leewaySeconds?: number;
}

function expectedAudiences(audience: readonly string[] | string): readonly string[] {
  if (typeof audience === "string") {
    if (audience === "") fail("invalid-argument", "an expected audience must be a non-empty string");
    return [audience];
  }
  if (!Array.isArray(audience))
    fail("invalid-argument", "the expected audience must be a string or an array of strings");
  for (const a of audience) {
    if (typeof a !== "string" || a === "")
      fail("invalid-argument", "an expected audience must be a non-empty string");
  }
  return audience;
}

function timing(options: JwtSvidValidationOptions | undefined): { atMs: number; leewayMs: number } {
  const at = options?.at;
  const atMs = at === undefined ? Date.now() : at instanceof Date ? at.getTime() : Number.NaN;
  if (Number.isNaN(atMs)) fail("invalid-argument", "options.at must be a valid Date");
  const leeway = options?.leewaySeconds ?? 0;
  if (typeof leeway !== "number" || !Number.isFinite(leeway) || leeway < 0) {
    fail("invalid-argument", "options.leewaySeconds must be a finite number >= 0");
  }
  return { atMs, leewayMs: leeway * 1000 };
}

function verifies(input: KeyInput, spec: AlgSpec, data: Buffer, signature: Buffer): boolean {
  if (spec.sigBytes !== undefined && signature.length !== spec.sigBytes) return false;
  try {
    return cryptoVerify(spec.hash, data, input, signature);
  } catch {
    return false;
  }
}

/**
 * Validates a JWT-SVID against the JWT bundle of its subject's trust domain and the expected
 * audience(s): see the module comment for the rules and their order. Rejects with JwtSvidError.
 */
export async function validateJwtSvid(
  token: string,
  bundles: JwtSvidBundleSource,
  audience: readonly string[] | string,
  options?: JwtSvidValidationOptions,
): Promise<JwtSvid> {
  const expected = expectedAudiences(audience);
  const { atMs, leewayMs } = timing(options);
  const parsed = parseCompact(token);
  const checked = checkClaims(parsed.claims, expected, atMs, leewayMs);
  const { spec, kid } = parsed.header;
  const trustDomain = checked.id.trustDomain;

  const bundle = bundles.getJwtBundleForTrustDomain(trustDomain);
  if (bundle === undefined) {
    fail(
      "no-bundle-for-trust-domain",
      `no JWT bundle for trust domain "${trustDomain.name}": a JWT-SVID is validated with the bundle of its sub's trust domain only (SPIFFE_Workload_API.md §6.3)`,
    );
  }
  const data = Buffer.from(token.slice(0, parsed.signedEnd), "latin1");
  const signature = Buffer.from(parsed.signature, "base64url");
  // Unused trailing bits would let one signature be written several ways: accept one spelling.
  if (signature.toString("base64url") !== parsed.signature) {
    fail("malformed", "the JWT-SVID signature part is not canonical base64url (RFC 4648 §3.5)");
  }
  if (kid !== undefined) {
    if (kid.trim() === "") {
      fail(
        "kid-not-found",
        `the JWT-SVID kid header is blank; no key of trust domain "${trustDomain.name}" has such an id (JWT-SVID.md §2.2)`,
      );
    }
    const key = bundle.findKey(kid);
    if (key === undefined) {
      fail(
        "kid-not-found",
        `no JWT authority with kid ${show(kid)} in the bundle of trust domain "${trustDomain.name}" (JWT-SVID.md §2.2)`,
      );
    }
    const input = cachedKeyInput(key, spec);
    if (input === null) {
      fail(
        "signature-invalid",
        `the key with kid ${show(kid)} (${describeKey(key)}) cannot verify ${spec.alg}: ${keyFitRule(spec)} (RFC 7518 §3)`,
      );
    }
    if (!verifies(input, spec, data, signature)) {
      fail(
        "signature-invalid",
        `the JWT-SVID signature does not verify with the key with kid ${show(kid)} of trust domain "${trustDomain.name}" (${spec.alg}, RFC 7515 §5.2)`,
      );
    }
  } else {
    let tried = 0;
    let ok = false;
    for (const key of bundle.authorities.values()) {
      const input = cachedKeyInput(key, spec);
      if (input === null) continue;
      tried++;
      if (verifies(input, spec, data, signature)) {
        ok = true;
        break;
      }
    }
    if (!ok) {
      fail(
        "signature-invalid",
        `the JWT-SVID has no kid and its signature verifies with none of the ${tried} key(s) of trust domain "${trustDomain.name}" that fit ${spec.alg} (JWT-SVID.md §2.2, RFC 7515 §5.2)`,
      );
    }
  }
  return new JwtSvid(INTERNAL, token, checked, deepFreeze(parsed.claims), undefined);
}

/**
 * Parses a JWT-SVID and checks its header and claims exactly as validateJwtSvid does, but NOT
 * its signature: only for tokens that came from a trusted channel (e.g. the Workload API).
 */
export function parseJwtSvidInsecure(
  token: string,
  audience: readonly string[] | string,
  options?: JwtSvidValidationOptions & { hint?: string },
): JwtSvid {
  const expected = expectedAudiences(audience);
  const { atMs, leewayMs } = timing(options);
  const parsed = parseCompact(token);
  const checked = checkClaims(parsed.claims, expected, atMs, leewayMs);
  return new JwtSvid(INTERNAL, token, checked, deepFreeze(parsed.claims), options?.hint);
}

// ---------------------------------------------------------------------------------------------
// Signing (server side)

export interface SignJwtSvidParams {
  id: SpiffeId;
  /** One audience (emitted as a string) or several (emitted as an array). */
  audience: readonly string[] | string;
  expiresAt: Date;
  /** `iat`; default now. */
  issuedAt?: Date;
  /** The private signing key. */
  key: KeyObject;
  kid: string;
  /** Default from the key: EC P-256/P-384/P-521 → ES256/ES384/ES512, RSA → RS256, RSA-PSS → PS256 (or the key's hash). */
  alg?: JwtSvidAlgorithm;
  /** `typ` header; default "JWT", null leaves it out. */
  typ?: "JWT" | "JOSE" | null;
  /** Further claims (e.g. iss, jti, nbf); sub, aud, exp and iat are set from the other parameters. */
  extraClaims?: Readonly<Record<string, unknown>>;
}

function defaultAlg(key: KeyObject): JwtSvidAlgorithm {
  const type = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails;
  if (type === "ec") {
    const alg = ({ prime256v1: "ES256", secp384r1: "ES384", secp521r1: "ES512" } as const)[
      (d?.namedCurve ?? "") as "prime256v1"
    ];
    if (alg !== undefined) return alg;
  } else if (type === "rsa") {
    return "RS256";
  } else if (type === "rsa-pss") {
    const h = d?.hashAlgorithm;
    return h === "sha384" ? "PS384" : h === "sha512" ? "PS512" : "PS256";
  }
  fail("invalid-argument", `no JWT-SVID algorithm signs with a ${describeKey(key)} key (JWT-SVID.md §2.1)`);
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

const RESERVED_CLAIMS = new Set(["sub", "aud", "exp", "iat"]);

/** Signs a JWT-SVID (JWS Compact Serialization, header alg/kid/typ only). */
export async function signJwtSvid(params: SignJwtSvidParams): Promise<string> {
  const { id, key, kid } = params;
  if (!(id instanceof SpiffeId)) fail("invalid-argument", "id must be a SpiffeId");
  if (typeof kid !== "string" || kid.trim() === "")
    fail("invalid-argument", "kid must be a non-empty string");
  const audience = typeof params.audience === "string" ? [params.audience] : [...params.audience];
  if (audience.length === 0 || audience.some((a) => typeof a !== "string" || a === "")) {
    fail(
      "invalid-argument",
      "a JWT-SVID needs at least one audience, each a non-empty string (JWT-SVID.md §3.2)",
    );
  }
  const expMs = params.expiresAt instanceof Date ? params.expiresAt.getTime() : Number.NaN;
  const iatMs =
    params.issuedAt === undefined
      ? Date.now()
      : params.issuedAt instanceof Date
        ? params.issuedAt.getTime()
        : Number.NaN;
  if (Number.isNaN(expMs) || Number.isNaN(iatMs))
    fail("invalid-argument", "expiresAt and issuedAt must be valid Dates");
  const exp = Math.floor(expMs / 1000);
  const iat = Math.floor(iatMs / 1000);
  if (exp <= iat)
    fail("invalid-argument", "expiresAt must be at least one second after issuedAt (JWT-SVID.md §3.3)");
  if (typeof key !== "object" || key === null || (key as KeyObject).type !== "private") {
    fail("invalid-argument", "key must be a private KeyObject");
  }
  const alg = params.alg ?? defaultAlg(key);
  const spec = ALG_SPECS.get(alg);
  if (spec === undefined)
    fail(
      "alg-not-allowed",
      `alg ${show(alg)} is not allowed: alg must be one of ${ALG_LIST} (JWT-SVID.md §2.1)`,
    );
  const input = keyInputFor(key, spec);
  if (input === null)
    fail(
      "invalid-argument",
      `a ${describeKey(key)} key cannot sign ${alg}: ${keyFitRule(spec)} (RFC 7518 §3)`,
    );
  const typ = params.typ === undefined ? "JWT" : params.typ;
  if (typ !== null && typ !== "JWT" && typ !== "JOSE")
    fail("invalid-argument", "typ must be JWT, JOSE or null (JWT-SVID.md §2.3)");

  const extra = params.extraClaims ?? {};
  for (const name of Object.keys(extra)) {
    if (RESERVED_CLAIMS.has(name))
      fail("invalid-argument", `extraClaims must not set ${name}; it comes from the parameters`);
  }
  const header = typ === null ? { alg, kid } : { alg, kid, typ };
  const claims = {
    sub: id.toString(),
    aud: audience.length === 1 ? audience[0] : audience,
    exp,
    iat,
    ...extra,
  };
  const signingInput = `${b64json(header)}.${b64json(claims)}`;
  const signature = await new Promise<Buffer>((resolve, reject) => {
    cryptoSign(spec.hash, Buffer.from(signingInput, "latin1"), input, (err, sig) => {
      if (err) reject(new JwtSvidError("invalid-argument", `signing with ${alg} failed (${err.name})`));
      else resolve(sig);
    });
  });
  return `${signingInput}.${signature.toString("base64url")}`;
}
