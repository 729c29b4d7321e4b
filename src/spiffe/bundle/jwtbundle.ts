import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import type { TrustDomain } from "../id.js";
import { BundleError } from "./errors.js";
import {
  formatJsonPath,
  isJsonObject,
  type JsonObject,
  JsonReadError,
  type JsonValue,
  readJson,
} from "./json.js";

/**
 * Anything that can hand out the JWT bundle of a trust domain. A JWT-SVID is checked only with
 * the keys of its `sub`'s trust domain (SPIFFE_Workload_API.md §6.3); unknown means untrusted.
 */
export interface JwtBundleSource {
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined;
}

/**
 * The JWT authorities (public keys by `kid`) of one trust domain, as the Workload API's
 * `FetchJWTBundles` sends them: a JWK Set per trust domain. Immutable, like X509Bundle.
 */
export class JwtBundle implements JwtBundleSource {
  readonly authorities: ReadonlyMap<string, KeyObject>;

  private constructor(
    readonly trustDomain: TrustDomain,
    authorities: ReadonlyMap<string, KeyObject>,
  ) {
    this.authorities = authorities;
  }

  /**
   * Parses a JWK Set. Unlike a SPIFFE bundle, `use` is not required here: the Workload API
   * sends JWT-SVID keys only, and SDKs publish them without `use`. Entries that say they are
   * for another SVID type (`x509-svid`, `wit-svid`) are skipped, since they cannot sign JWT-SVIDs.
   * A missing or null `keys` is an empty bundle (go-spiffe, py-spiffe): it trusts nothing.
   */
  static parse(trustDomain: TrustDomain, jwks: Buffer | string): JwtBundle {
    const doc = readBundleJson(jwks, "JWT bundle");
    if (!isJsonObject(doc)) throw new BundleError("not-jwks", "a JWT bundle is a JWK Set: a JSON object");
    const keys = doc.get("keys");
    const authorities = new Map<string, KeyObject>();
    if (keys === undefined || keys === null) return new JwtBundle(trustDomain, authorities);
    if (!Array.isArray(keys)) throw new BundleError("not-jwks", "the JWK Set member keys must be an array");
    keys.forEach((entry, i) => {
      const where = formatJsonPath(["keys", i]);
      if (!isJsonObject(entry)) throw new BundleError("not-jwks", `${where} is not a JSON object`);
      const use = entry.get("use");
      if (use === "x509-svid" || use === "wit-svid") return;
      const kid = requireKid(entry, where);
      const key = importJwtAuthority(entry, where);
      if (authorities.has(kid)) {
        throw new BundleError("duplicate-kid", `${where}: kid ${JSON.stringify(kid)} is used by two keys`);
      }
      authorities.set(kid, key);
    });
    return new JwtBundle(trustDomain, authorities);
  }

  /** Checks every key as `parse` does, so a bundle built in code obeys the same rules. */
  static fromAuthorities(
    trustDomain: TrustDomain,
    authorities: ReadonlyMap<string, KeyObject> | Iterable<readonly [string, KeyObject]>,
  ): JwtBundle {
    const map = new Map<string, KeyObject>();
    for (const [kid, key] of authorities) {
      if (kid === "") throw new BundleError("missing-kid", "a JWT authority needs a non-empty kid");
      checkAuthorityKey(key, `key ${JSON.stringify(kid)}`);
      map.set(kid, key);
    }
    return new JwtBundle(trustDomain, map);
  }

  findKey(kid: string): KeyObject | undefined {
    return this.authorities.get(kid);
  }

  /** A bundle is a source of itself, and only for its own trust domain. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this : undefined;
  }

  /**
   * A JWK Set. Each key carries `use: "jwt-svid"` so that the same text is also a valid
   * SPIFFE bundle holding these keys (which requires `use`); JWK Set readers ignore it.
   */
  marshal(): string {
    const keys = [...this.authorities].map(([kid, key]) => jwkEntry(key, "jwt-svid", kid));
    return JSON.stringify({ keys });
  }
}

/** Reads a JSON bundle document, turning reader errors into bundle errors. */
export function readBundleJson(input: Buffer | string, what: string): JsonValue {
  try {
    return readJson(input);
  } catch (e) {
    if (!(e instanceof JsonReadError)) throw e;
    if (e.kind === "duplicate") throw new BundleError("duplicate-member", `${what}: ${e.message}`);
    throw new BundleError("not-json", `${what} is not valid JSON: ${e.message}`);
  }
}

/** JWT-SVID.md §6: `kid` MUST be set; all SDKs reject a key without one (see RULES.md §4). */
export function requireKid(entry: JsonObject, where: string): string {
  const kid = entry.get("kid");
  if (typeof kid !== "string" || kid === "") {
    throw new BundleError(
      "missing-kid",
      `${where}: a JWT authority must have a non-empty string kid (JWT-SVID.md §6)`,
    );
  }
  return kid;
}

/** The curves of ES256/ES384/ES512, the only EC algorithms JWT-SVID.md §2.1 allows. */
const EC_CURVES = new Set(["P-256", "P-384", "P-521"]);
/** RFC 7518 §3.3: RS* and PS* keys MUST be at least 2048 bits. */
const MIN_RSA_BITS = 2048;
/** Key types a JWT/WIT authority may have; anything else could never verify a JWT-SVID. */
export const JWT_KEY_TYPES: ReadonlySet<string> = new Set(["EC", "RSA"]);

const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;

/**
 * Imports the public part of a JWK. Only the public members are passed on: some published
 * JWK Sets carry private members (d, p, q, ...) by mistake, and a verifier must never hold them.
 */
export function importJwtAuthority(entry: JsonObject, where: string): KeyObject {
  const kty = entry.get("kty");
  const str = (name: string): string => {
    const v = entry.get(name);
    if (typeof v !== "string" || !BASE64URL.test(v)) {
      throw new BundleError("invalid-key", `${where}: JWK member ${name} must be a base64url string`);
    }
    return v;
  };
  let jwk: JsonWebKey;
  if (kty === "EC") {
    const crv = entry.get("crv");
    if (typeof crv !== "string" || !EC_CURVES.has(crv)) {
      throw new BundleError(
        "unsupported-key-type",
        `${where}: EC curve ${JSON.stringify(crv ?? null)} is not one of P-256, P-384, P-521`,
      );
    }
    jwk = { kty, crv, x: str("x"), y: str("y") };
  } else if (kty === "RSA") {
    jwk = { kty, n: str("n"), e: str("e") };
  } else {
    throw new BundleError(
      "unsupported-key-type",
      `${where}: key type ${JSON.stringify(kty ?? null)} cannot verify JWT-SVIDs (EC or RSA only, JWT-SVID.md §2.1)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: "jwk" });
  } catch (e) {
    throw new BundleError("invalid-key", `${where}: the ${kty} key is not valid (${(e as Error).message})`);
  }
  checkAuthorityKey(key, where);
  return key;
}

/** The checks that hold for every JWT (and WIT) authority, however it was obtained. */
export function checkAuthorityKey(key: KeyObject, where: string): void {
  if (key.type !== "public") {
    throw new BundleError("invalid-key", `${where}: a JWT authority must be a public key, not ${key.type}`);
  }
  const t = key.asymmetricKeyType;
  if (t === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new BundleError(
        "invalid-key",
        `${where}: RSA key has ${bits} bits; RFC 7518 §3.3 requires at least ${MIN_RSA_BITS}`,
      );
    }
    return;
  }
  if (t === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1" || curve === "secp384r1" || curve === "secp521r1") return;
    throw new BundleError("unsupported-key-type", `${where}: EC curve ${curve} cannot verify JWT-SVIDs`);
  }
  throw new BundleError("unsupported-key-type", `${where}: key type ${t} cannot verify JWT-SVIDs`);
}

/** A public JWK with `use` (and `kid` where given) first, for readable output. */
export function jwkEntry(key: KeyObject, use: string, kid?: string): Record<string, unknown> {
  let jwk: JsonWebKey;
  try {
    jwk = key.export({ format: "jwk" });
  } catch (e) {
    throw new BundleError(
      "unsupported-key-type",
      `a ${key.asymmetricKeyType} key cannot be written as a JWK (${(e as Error).message})`,
    );
  }
  return kid === undefined ? { use, ...jwk } : { use, kid, ...jwk };
}
