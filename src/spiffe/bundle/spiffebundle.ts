import type { KeyObject, X509Certificate } from "node:crypto";
import type { TrustDomain } from "../id.js";
import { BundleError } from "./errors.js";
import {
  formatJsonPath,
  isJsonObject,
  JsonNumber,
  type JsonObject,
  type JsonPath,
  type JsonValue,
} from "./json.js";
import {
  checkAuthorityKey,
  importJwtAuthority,
  JWT_KEY_TYPES,
  JwtBundle,
  type JwtBundleSource,
  jwkEntry,
  readBundleJson,
  requireKid,
} from "./jwtbundle.js";
import { certificateFromBase64, X509Bundle, type X509BundleSource } from "./x509bundle.js";

/** go-spiffe and SPIRE store the sequence as uint64; a larger value could not travel through them. */
const MAX_SEQUENCE = (1n << 64n) - 1n;

/** Key types that may carry an X.509 authority: the certificate decides, the JWK only describes it. */
const X509_KEY_TYPES: ReadonlySet<string> = new Set(["EC", "RSA", "OKP"]);

export interface SpiffeBundleInit {
  x509Authorities?: Iterable<X509Certificate>;
  jwtAuthorities?: ReadonlyMap<string, KeyObject> | Iterable<readonly [string, KeyObject]>;
  witAuthorities?: ReadonlyMap<string, KeyObject> | Iterable<readonly [string, KeyObject]>;
  sequence?: bigint;
  refreshHintSeconds?: number;
}

/**
 * A SPIFFE bundle (SPIFFE_Trust_Domain_and_Bundle.md §4): the JWK Set a trust domain publishes
 * for federation, holding its X.509 and JWT (and WIT) authorities. It belongs to exactly one
 * trust domain, given by the caller: the document itself does not name it (§3).
 */
export class SpiffeBundle implements X509BundleSource, JwtBundleSource {
  readonly x509Authorities: readonly X509Certificate[];
  readonly jwtAuthorities: ReadonlyMap<string, KeyObject>;
  /** `wit-svid` entries (WIT-SVID.md). Kept apart: a WIT key must never verify a JWT-SVID. */
  readonly witAuthorities: ReadonlyMap<string, KeyObject>;
  /** `spiffe_sequence`, a 64-bit counter: a bigint because a JS number loses digits above 2^53. */
  readonly sequence: bigint | undefined;
  /** `spiffe_refresh_hint`: only a hint; undefined means "refresh often" (§6.1, about 5 minutes). */
  readonly refreshHintSeconds: number | undefined;
  /** Built once: the views handed to verifiers are the same objects on every call. */
  private readonly x509: X509Bundle;
  private readonly jwt: JwtBundle;

  private constructor(
    readonly trustDomain: TrustDomain,
    x509: X509Bundle,
    jwt: JwtBundle,
    wit: ReadonlyMap<string, KeyObject>,
    sequence: bigint | undefined,
    refreshHintSeconds: number | undefined,
  ) {
    this.x509Authorities = x509.authorities;
    this.jwtAuthorities = jwt.authorities;
    this.witAuthorities = wit;
    this.sequence = sequence;
    this.refreshHintSeconds = refreshHintSeconds;
    this.x509 = x509;
    this.jwt = jwt;
  }

  static parse(trustDomain: TrustDomain, json: Buffer | string): SpiffeBundle {
    return spiffeBundleFromJson(trustDomain, readBundleJson(json, "SPIFFE bundle"), []);
  }

  /** Builds a bundle in code, checking sequence and hint with the same rules as `parse`. */
  static create(trustDomain: TrustDomain, init: SpiffeBundleInit = {}): SpiffeBundle {
    if (init.sequence !== undefined && (init.sequence < 0n || init.sequence > MAX_SEQUENCE)) {
      throw new BundleError("invalid-sequence", "spiffe_sequence must be an unsigned 64-bit integer");
    }
    if (init.refreshHintSeconds !== undefined)
      checkRefreshHint(init.refreshHintSeconds, "spiffe_refresh_hint");
    return new SpiffeBundle(
      trustDomain,
      X509Bundle.fromCertificates(trustDomain, init.x509Authorities ?? []),
      JwtBundle.fromAuthorities(trustDomain, init.jwtAuthorities ?? []),
      witAuthorities(init.witAuthorities ?? []),
      init.sequence,
      init.refreshHintSeconds,
    );
  }

  /** The X.509 authorities alone: what a TLS peer check needs. */
  x509Bundle(): X509Bundle {
    return this.x509;
  }

  /** The JWT authorities alone (never the WIT ones): what a JWT-SVID check needs. */
  jwtBundle(): JwtBundle {
    return this.jwt;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this.x509 : undefined;
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this.jwt : undefined;
  }

  /**
   * The §4 JSON document. The sequence is written as its exact digits: going through
   * `JSON.stringify` would need a Number and could change the value.
   */
  marshal(): string {
    const keys = [
      ...this.x509Authorities.map((c) => ({
        ...jwkEntry(c.publicKey, "x509-svid"),
        x5c: [c.raw.toString("base64")],
      })),
      ...[...this.jwtAuthorities].map(([kid, key]) => jwkEntry(key, "jwt-svid", kid)),
      ...[...this.witAuthorities].map(([kid, key]) => jwkEntry(key, "wit-svid", kid)),
    ];
    let out = `{"keys":${JSON.stringify(keys)}`;
    if (this.sequence !== undefined) out += `,"spiffe_sequence":${this.sequence.toString()}`;
    if (this.refreshHintSeconds !== undefined) out += `,"spiffe_refresh_hint":${this.refreshHintSeconds}`;
    return `${out}}`;
  }
}

/**
 * WIT keys get the same checks as JWT keys. This library does not verify WIT-SVIDs yet; it keeps
 * their keys so that a bundle survives a parse/marshal round trip without losing them.
 */
function witAuthorities(
  authorities: ReadonlyMap<string, KeyObject> | Iterable<readonly [string, KeyObject]>,
): ReadonlyMap<string, KeyObject> {
  const map = new Map<string, KeyObject>();
  for (const [kid, key] of authorities) {
    if (kid === "") throw new BundleError("missing-kid", "a WIT authority needs a non-empty kid");
    checkAuthorityKey(key, `WIT key ${JSON.stringify(kid)}`);
    map.set(kid, key);
  }
  return map;
}

function checkRefreshHint(v: number, where: string): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new BundleError(
      "invalid-refresh-hint",
      `${where} must be a non-negative integer number of seconds`,
    );
  }
}

/**
 * Reads a parsed §4 document. Exported for bundle maps, whose entries are bundles already
 * parsed as part of the map; `path` says where the bundle sits, for error messages.
 */
export function spiffeBundleFromJson(trustDomain: TrustDomain, doc: JsonValue, path: JsonPath): SpiffeBundle {
  const at = (...more: (string | number)[]) => formatJsonPath([...path, ...more]);
  if (!isJsonObject(doc))
    throw new BundleError("not-jwks", `${at()}: a SPIFFE bundle is a JSON object (a JWK Set)`);

  const keys = doc.get("keys");
  if (keys === undefined || keys === null) {
    throw new BundleError(
      "keys-missing",
      `${at()}: a SPIFFE bundle must have a keys member (SPIFFE_Trust_Domain_and_Bundle.md §4.1.3); [] revokes everything`,
    );
  }
  if (!Array.isArray(keys)) throw new BundleError("not-jwks", `${at("keys")} must be an array`);

  const sequence = readSequence(doc.get("spiffe_sequence"), at("spiffe_sequence"));
  const refreshHint = readRefreshHint(doc.get("spiffe_refresh_hint"), at("spiffe_refresh_hint"));

  const x509: X509Certificate[] = [];
  const jwt = new Map<string, KeyObject>();
  const wit = new Map<string, KeyObject>();
  keys.forEach((entry, i) => {
    const where = at("keys", i);
    if (!isJsonObject(entry)) throw new BundleError("not-jwks", `${where} is not a JSON object`);
    const use = entry.get("use");
    const kty = entry.get("kty");
    // §4.2: an entry with an unknown kty or use is dropped, not fatal; use is case-sensitive.
    if (typeof kty !== "string") return;
    if (use === "x509-svid") {
      if (!X509_KEY_TYPES.has(kty)) return;
      const cert = readX509Entry(entry, where);
      if (cert !== undefined && !x509.some((c) => c.raw.equals(cert.raw))) x509.push(cert);
    } else if (use === "jwt-svid" || use === "wit-svid") {
      if (!JWT_KEY_TYPES.has(kty)) return;
      const kid = requireKid(entry, where);
      const key = importJwtAuthority(entry, where);
      const into = use === "wit-svid" ? wit : jwt;
      if (into.has(kid)) {
        throw new BundleError(
          "duplicate-kid",
          `${where}: kid ${JSON.stringify(kid)} is used by two ${use} keys`,
        );
      }
      into.set(kid, key);
    }
  });

  return SpiffeBundle.create(trustDomain, {
    x509Authorities: x509,
    jwtAuthorities: jwt,
    witAuthorities: wit,
    ...(sequence === undefined ? {} : { sequence }),
    ...(refreshHint === undefined ? {} : { refreshHintSeconds: refreshHint }),
  });
}

/**
 * X509-SVID.md §6.2: the authority is `x5c[0]`; an entry without certificates is ignored
 * rather than fatal (go-spiffe rejects the bundle; the spec and RULES.md §2 say ignore).
 * RFC 7517 §4.7: the key in x5c[0] MUST match the JWK's own key members, so a mismatch is refused.
 */
function readX509Entry(entry: JsonObject, where: string): X509Certificate | undefined {
  const x5c = entry.get("x5c");
  if (x5c === undefined || x5c === null) return undefined;
  if (!Array.isArray(x5c))
    throw new BundleError("invalid-x5c", `${where}.x5c must be an array of base64 strings`);
  const first = x5c[0];
  if (first === undefined) return undefined;
  if (typeof first !== "string")
    throw new BundleError("invalid-x5c", `${where}.x5c[0] must be a base64 string`);
  const cert = certificateFromBase64(first, `${where}.x5c[0]`);
  const certJwk = jwkEntry(cert.publicKey, "x509-svid");
  for (const member of ["kty", "crv", "x", "y", "n", "e"]) {
    const v = entry.get(member);
    if (v === undefined) continue;
    if (v !== certJwk[member]) {
      throw new BundleError(
        "invalid-key",
        `${where}: JWK member ${member} does not match the public key of x5c[0] (RFC 7517 §4.7)`,
      );
    }
  }
  return cert;
}

function readSequence(v: JsonValue | undefined, where: string): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (!(v instanceof JsonNumber) || !v.isPlainInteger() || v.raw.startsWith("-")) {
    throw new BundleError("invalid-sequence", `${where} must be a non-negative integer (§4.1.1)`);
  }
  const n = BigInt(v.raw);
  if (n > MAX_SEQUENCE) throw new BundleError("invalid-sequence", `${where} does not fit in 64 bits`);
  return n;
}

function readRefreshHint(v: JsonValue | undefined, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!(v instanceof JsonNumber) || !v.isPlainInteger()) {
    throw new BundleError("invalid-refresh-hint", `${where} must be an integer number of seconds (§4.1.2)`);
  }
  const n = Number(v.raw);
  checkRefreshHint(n, where);
  return n;
}
