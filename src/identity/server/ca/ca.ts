/**
 * The identity server's certificate authority for one trust domain: X.509 authorities that sign
 * X.509-SVIDs from CSRs, JWT keys that sign JWT-SVIDs, and the SPIFFE bundle that publishes both.
 *
 * Modes. Self-signed: each X.509 authority is a root, and the bundle holds the roots. Upstream:
 * each X.509 authority is an intermediate signed by an upstream CA given as PEM (certificate
 * chain and key); SVID chains carry the intermediate (and the upstream intermediates), and the
 * bundle holds the upstream root(s).
 *
 * Rotation, as SPIRE: one authority (and one JWT key) is active; at half of the active
 * authority's lifetime the next one is prepared and published in the bundle (so that every
 * peer learns it before it is used); at 5/6 it becomes active; the previous one stays in the
 * bundle until it expires, since no SVID it signed can outlive it (SVID TTLs are capped to the
 * signing authority's remaining life). `rotateIfDue()` does whatever is due; call it often
 * (every few seconds). Every change of the bundle's content increases its `spiffe_sequence`.
 *
 * What the CA does not decide: which SPIFFE IDs a caller may obtain. The server API checks
 * that the agent is authorized for the registration entry before calling `signX509Svid`; the
 * CA only refuses IDs outside its trust domain. It never sees workload private keys: SVIDs are
 * signed for the public key of a CSR whose self-signature proves possession.
 *
 * Private keys never appear in errors, `toString`, `toJSON` or `util.inspect`. `exportState()`
 * does carry them (PKCS#8 PEM): it is meant for the server's datastore only.
 */
import {
  createPrivateKey,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  randomFillSync,
  X509Certificate,
} from "node:crypto";
import { inspect } from "node:util";
import { SpiffeBundle } from "../../../spiffe/bundle/spiffebundle.js";
import { SpiffeId, TrustDomain } from "../../../spiffe/id.js";
import { signJwtSvid as signJwt } from "../../../spiffe/jwtsvid.js";
import { certificateFacts, parseCertificates } from "../../../spiffe/x509svid.js";
import { parseCsr } from "./csr.js";
import { DerReadError, expectTlv, OID, readChildren, readTlv, TAG, type Tlv, tlvEquals } from "./der.js";
import {
  type CertificateIssuer,
  checkDnsNames,
  encodeCaCertificate,
  encodeName,
  encodeX509Svid,
} from "./encoder.js";
import { CaError, fail } from "./errors.js";
import {
  CA_KEY_TYPES,
  type CaKeyType,
  caKeyTypeOf,
  generateCaKeyPair,
  keyIdentifier,
  signatureAlgorithmFor,
  subjectPublicKeyFromKeyObject,
} from "./keys.js";

export type { CaKeyType } from "./keys.js";

export const DEFAULT_CA_TTL_SECONDS = 24 * 3600;
export const DEFAULT_X509_SVID_TTL_SECONDS = 3600;
export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;
/** Shortest CA lifetime accepted: rotation needs room between preparing and activating. */
export const MIN_CA_TTL_SECONDS = 60;
export const MAX_CA_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** SVIDs and CA certificates start this much before "now", for clocks slightly behind (SPIRE: 10 s). */
export const BACKDATE_SECONDS = 10;
/** Longest SVID TTL accepted in a request (it is capped to the authority's remaining life anyway). */
export const MAX_SVID_TTL_SECONDS = 366 * 24 * 3600;

// ---------------------------------------------------------------------------------------------
// Public types.

export interface UpstreamCaOptions {
  /** PEM: the upstream signing certificate first (the one `keyPem` belongs to), then its chain. */
  readonly certificatesPem: string;
  /** PEM PKCS#8 (or PKCS#1/SEC1) private key of the first certificate. */
  readonly keyPem: string;
  /** PEM roots for the bundle; default: the self-signed certificates of `certificatesPem`. */
  readonly bundlePem?: string;
}

export interface CertificateAuthorityOptions {
  readonly trustDomain: TrustDomain | string;
  /** Key type of the X.509 authorities (default ec-p256). */
  readonly keyType?: CaKeyType;
  /** Key type of the JWT signing keys (default: `keyType`). */
  readonly jwtKeyType?: CaKeyType;
  /** Lifetime of each X.509 authority and JWT key (default 86400 = 24 h). */
  readonly caTtlSeconds?: number;
  readonly upstream?: UpstreamCaOptions;
  /** `spiffe_refresh_hint` of the bundle; default none. */
  readonly refreshHintSeconds?: number;
  readonly clock?: () => Date;
}

export interface RestoreOptions {
  readonly clock?: () => Date;
  /** The upstream key material: needed to prepare new intermediates after a restore in upstream mode. */
  readonly upstream?: UpstreamCaOptions;
}

export interface SignX509SvidParams {
  /** PKCS#10, DER or PEM. Only its public key is used (after checking its self-signature). */
  readonly csr: Buffer | Uint8Array | string;
  readonly spiffeId: SpiffeId | string;
  /** Default 3600; capped to the active authority's remaining lifetime. */
  readonly ttlSeconds?: number;
  readonly dnsNames?: readonly string[];
}

export type SignX509SvidFromKeyParams = Omit<SignX509SvidParams, "csr">;

export interface SignedX509Svid {
  readonly spiffeId: SpiffeId;
  /** DER, leaf first, then the intermediates up to a bundle authority (none for a self-signed CA). */
  readonly certificates: readonly Buffer[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Uppercase hex, as node:crypto's X509Certificate.serialNumber shows it. */
  readonly serialNumber: string;
}

export interface SignJwtSvidParams {
  readonly spiffeId: SpiffeId | string;
  readonly audience: string | readonly string[];
  /** Default 300; capped to the active JWT key's remaining lifetime. */
  readonly ttlSeconds?: number;
}

export interface SignedJwtSvid {
  readonly token: string;
  readonly spiffeId: SpiffeId;
  readonly audience: readonly string[];
  readonly kid: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
}

export interface X509AuthorityInfo {
  readonly certificate: X509Certificate;
  /** Subject key identifier, lowercase hex. */
  readonly keyId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** What SVIDs signed by this authority carry after the leaf (upstream mode: this certificate and the upstream intermediates). */
  readonly chain: readonly X509Certificate[];
}

export interface JwtKeyInfo {
  readonly kid: string;
  readonly publicKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface Rotation<T> {
  readonly active: T;
  readonly prepared: T | undefined;
  /** Retired, still published until they expire. */
  readonly old: readonly T[];
}

export interface RotationResult {
  readonly prepared: boolean;
  readonly activated: boolean;
  /** Expired authorities and keys removed. */
  readonly pruned: number;
  readonly bundleChanged: boolean;
}

/** `exportState()`: plain JSON (strings, numbers, null, arrays, objects). */
export interface CaState {
  readonly version: 1;
  readonly trustDomain: string;
  readonly keyType: CaKeyType;
  readonly jwtKeyType: CaKeyType;
  readonly caTtlSeconds: number;
  readonly refreshHintSeconds: number | null;
  /** The bundle's spiffe_sequence, as decimal digits (a 64-bit value does not fit a JSON number). */
  readonly sequence: string;
  /** Upstream mode: the public upstream material (the key is not persisted; see RestoreOptions). */
  readonly upstream: { readonly certificatesPem: string; readonly bundlePem: string } | null;
  readonly x509: {
    readonly active: X509AuthorityState;
    readonly prepared: X509AuthorityState | null;
    readonly old: readonly X509AuthorityState[];
  };
  readonly jwt: {
    readonly active: JwtKeyState;
    readonly prepared: JwtKeyState | null;
    readonly old: readonly JwtKeyState[];
  };
}

export interface X509AuthorityState {
  readonly certificatePem: string;
  /** PKCS#8 PEM; null for retired authorities (their keys are discarded). */
  readonly privateKeyPem: string | null;
}

export interface JwtKeyState {
  readonly kid: string;
  readonly publicKeyJwk: JsonWebKey;
  /** PKCS#8 PEM; null for retired keys. */
  readonly privateKeyPem: string | null;
  /** ISO 8601. */
  readonly notBefore: string;
  readonly notAfter: string;
}

// ---------------------------------------------------------------------------------------------
// Internal records.

interface X509Authority {
  readonly certificate: X509Certificate;
  readonly der: Buffer;
  /** Undefined once retired: the private key is discarded. */
  issuer: CertificateIssuer | undefined;
  readonly keyId: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  /** DER after the leaf in every SVID this authority signs. */
  readonly chainDer: readonly Buffer[];
  readonly chain: readonly X509Certificate[];
}

interface JwtKey {
  readonly kid: string;
  privateKey: KeyObject | undefined;
  readonly publicKey: KeyObject;
  readonly notBefore: number;
  readonly notAfter: number;
}

interface Upstream {
  /** Undefined after a restore without the upstream key. */
  readonly signer: CertificateIssuer | undefined;
  readonly signerCert: X509Certificate;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Upstream certificates that are not bundle roots, signer first: they follow our intermediate in SVID chains. */
  readonly intermediates: readonly X509Certificate[];
  readonly roots: readonly X509Certificate[];
  readonly certificatesPem: string;
  readonly bundlePem: string;
}

interface Config {
  readonly trustDomain: TrustDomain;
  readonly keyType: CaKeyType;
  readonly jwtKeyType: CaKeyType;
  readonly caTtlSeconds: number;
  readonly refreshHintSeconds: number | undefined;
  readonly clock: () => Date;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const MAX_SEQUENCE = (1n << 64n) - 1n;

/** Serial numbers: 127 random bits (top bit clear: positive in 16 bytes), from a refilled pool. */
const serialPool = Buffer.alloc(16 * 256);
let serialOffset = serialPool.length;
function nextSerial(): Buffer {
  for (;;) {
    if (serialOffset >= serialPool.length) {
      randomFillSync(serialPool);
      serialOffset = 0;
    }
    const s = serialPool.subarray(serialOffset, serialOffset + 16);
    serialOffset += 16;
    s[0] = (s[0] as number) & 0x7f;
    if (s.some((b) => b !== 0)) return s;
  }
}

function hexSerial(serial: Buffer): string {
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  return serial.toString("hex", i).toUpperCase();
}

function nowMs(clock: () => Date): number {
  const d = clock();
  const ms = d instanceof Date ? d.getTime() : Number.NaN;
  if (Number.isNaN(ms)) throw new CaError("invalid-argument", "the clock returned an invalid Date");
  return ms;
}

function checkTtl(v: unknown, what: string, def: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > max) {
    fail("invalid-ttl", `${what} must be a whole number of seconds from 1 to ${max}`);
  }
  return v;
}

function checkKeyType(v: unknown, what: string): CaKeyType {
  if (!CA_KEY_TYPES.includes(v as CaKeyType)) {
    fail("invalid-argument", `${what} ${JSON.stringify(v)} is not one of ${CA_KEY_TYPES.join(", ")}`);
  }
  return v as CaKeyType;
}

function parseTrustDomain(v: TrustDomain | string): TrustDomain {
  if (v instanceof TrustDomain) return v;
  try {
    return TrustDomain.parse(String(v));
  } catch (e) {
    return fail("invalid-argument", `invalid trust domain ${JSON.stringify(v)}: ${(e as Error).message}`, e);
  }
}

interface CertificateParts {
  readonly subjectDer: Buffer;
  readonly keyId: Buffer;
}

/** The subject Name DER and the key identifier (SKI extension, else computed) of a certificate. */
function certificateParts(der: Buffer): CertificateParts {
  const top = expectTlv(der, 0, der.length, TAG.SEQUENCE, "Certificate");
  const tbs = expectTlv(der, top.body, top.end, TAG.SEQUENCE, "TBSCertificate");
  const fields = readChildren(der, tbs);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  i += 4; // serial, signature, issuer, validity
  const subject = fields[i];
  const spki = fields[i + 1];
  if (subject?.tag !== TAG.SEQUENCE || spki?.tag !== TAG.SEQUENCE)
    throw new DerReadError("bad TBSCertificate");
  let keyId: Buffer | undefined;
  const exts = fields.find((f) => f.tag === 0xa3);
  if (exts) {
    const list = expectTlv(der, exts.body, exts.end, TAG.SEQUENCE, "extensions");
    for (const ext of readChildren(der, list)) {
      const [oid, a, b] = readChildren(der, ext);
      if (!oid || !tlvEquals(der, oid, OID.subjectKeyIdentifier)) continue;
      const value = (b ?? a) as Tlv;
      const inner = readTlv(der, value.body, value.end);
      if (inner.tag === TAG.OCTET_STRING) keyId = Buffer.from(der.subarray(inner.body, inner.end));
    }
  }
  return {
    subjectDer: Buffer.from(der.subarray(subject.start, subject.end)),
    keyId: keyId ?? keyIdentifier(der.subarray(spki.start, spki.end)),
  };
}

/** Whether `parent` issued `child` (names match and the signature verifies). */
function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

function isSelfSigned(cert: X509Certificate): boolean {
  return issuedBy(cert, cert);
}

function certs(
  pemText: string,
  what: string,
  reason: "invalid-upstream" | "invalid-state",
): X509Certificate[] {
  if (typeof pemText !== "string") fail(reason, `${what} must be a PEM string`);
  let list: X509Certificate[];
  try {
    list = parseCertificates(pemText);
  } catch (e) {
    return fail(reason, `${what} is not valid PEM certificates: ${(e as Error).message}`, e);
  }
  if (list.length === 0) fail(reason, `${what} holds no certificate`);
  return list;
}

function privateKey(pemText: unknown, what: string, reason: "invalid-upstream" | "invalid-state"): KeyObject {
  if (typeof pemText !== "string") fail(reason, `${what} must be a PEM string`);
  try {
    const k = createPrivateKey(pemText);
    if (k.type !== "private") throw new Error("not a private key");
    return k;
  } catch {
    // The underlying message could quote key material in some OpenSSL versions: it is not passed on.
    return fail(reason, `${what} is not a readable unencrypted private key (PEM)`);
  }
}

function loadUpstream(o: UpstreamCaOptions | undefined, saved: CaState["upstream"], at: number): Upstream {
  const reason = saved ? "invalid-state" : "invalid-upstream";
  const certificatesPem = saved?.certificatesPem ?? o?.certificatesPem ?? "";
  const list = certs(certificatesPem, "upstream.certificatesPem", reason);
  const signerCert = list[0] as X509Certificate;
  if (saved && o && o.certificatesPem !== undefined) {
    const given = certs(o.certificatesPem, "upstream.certificatesPem", "invalid-upstream");
    if (!given[0]?.raw.equals(signerCert.raw)) {
      fail("invalid-upstream", "the upstream certificate given to restore is not the one in the saved state");
    }
  }
  let signer: CertificateIssuer | undefined;
  const facts = (() => {
    try {
      return certificateFacts(signerCert);
    } catch (e) {
      return fail(reason, `the upstream certificate is malformed: ${(e as Error).message}`);
    }
  })();
  if (facts.ca !== true)
    fail(reason, "the upstream certificate is not a CA (basicConstraints cA must be true)");
  if (facts.keyUsage && !facts.keyUsage.includes("keyCertSign")) {
    fail(reason, "the upstream certificate may not sign certificates (keyUsage lacks keyCertSign)");
  }
  let parts: CertificateParts;
  try {
    parts = certificateParts(signerCert.raw);
  } catch (e) {
    return fail(reason, `the upstream certificate is malformed: ${(e as Error).message}`);
  }
  if (o?.keyPem !== undefined) {
    const key = privateKey(o.keyPem, "upstream.keyPem", "invalid-upstream");
    let matches = false;
    try {
      matches = signerCert.checkPrivateKey(key);
    } catch {
      matches = false;
    }
    if (!matches)
      fail(
        "invalid-upstream",
        "upstream.keyPem does not belong to the first certificate of upstream.certificatesPem",
      );
    signatureAlgorithmFor(key);
    signer = { nameDer: parts.subjectDer, keyId: parts.keyId, privateKey: key };
  }
  const bundlePem = saved?.bundlePem ?? o?.bundlePem;
  const roots =
    bundlePem !== undefined ? certs(bundlePem, "upstream.bundlePem", reason) : list.filter(isSelfSigned);
  if (roots.length === 0) {
    fail(
      reason,
      "upstream.certificatesPem holds no self-signed root; give the upstream roots as upstream.bundlePem",
    );
  }
  const intermediates = list.filter((c) => !roots.some((r) => r.raw.equals(c.raw)));
  // The signer must chain to a root through the given certificates.
  let cur = signerCert;
  for (let hops = 0; ; hops++) {
    if (roots.some((r) => r.raw.equals(cur.raw) || issuedBy(cur, r))) break;
    const next = list.find((c) => c !== cur && issuedBy(cur, c));
    if (!next || hops > 16) fail(reason, "the upstream certificate does not chain to an upstream root");
    cur = next;
  }
  const notBefore = facts.notBefore.getTime();
  const notAfter = facts.notAfter.getTime();
  if (!saved && (at < notBefore || at >= notAfter)) {
    fail(
      "invalid-upstream",
      `the upstream certificate is not valid now (valid ${facts.notBefore.toISOString()} to ${facts.notAfter.toISOString()})`,
    );
  }
  return {
    signer,
    signerCert,
    notBefore,
    notAfter,
    intermediates,
    roots,
    certificatesPem: list.map((c) => c.toString()).join(""),
    bundlePem: roots.map((c) => c.toString()).join(""),
  };
}

function jwkOf(key: KeyObject): JsonWebKey {
  return key.export({ format: "jwk" });
}

// ---------------------------------------------------------------------------------------------
// The CA.

export class CertificateAuthority {
  #x509Active: X509Authority;
  #x509Prepared: X509Authority | undefined;
  #x509Old: X509Authority[];
  #jwtActive: JwtKey;
  #jwtPrepared: JwtKey | undefined;
  #jwtOld: JwtKey[];
  #sequence: bigint;
  #bundle: SpiffeBundle | undefined;
  #bundleFingerprint: string;
  #preparing: Promise<void> | undefined;
  readonly #config: Config;
  readonly #upstream: Upstream | undefined;

  private constructor(
    config: Config,
    upstream: Upstream | undefined,
    x509: Rotation<X509Authority>,
    jwt: Rotation<JwtKey>,
    sequence: bigint,
  ) {
    this.#config = config;
    this.#upstream = upstream;
    this.#x509Active = x509.active;
    this.#x509Prepared = x509.prepared;
    this.#x509Old = [...x509.old];
    this.#jwtActive = jwt.active;
    this.#jwtPrepared = jwt.prepared;
    this.#jwtOld = [...jwt.old];
    this.#sequence = sequence;
    this.#bundleFingerprint = this.#fingerprint();
  }

  /** A new CA with a fresh active X.509 authority and JWT key; the bundle starts at sequence 1. */
  static async create(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    if (typeof options !== "object" || options === null) fail("invalid-argument", "options are required");
    const trustDomain = parseTrustDomain(options.trustDomain);
    const keyType = checkKeyType(options.keyType ?? "ec-p256", "keyType");
    const jwtKeyType = checkKeyType(options.jwtKeyType ?? keyType, "jwtKeyType");
    const caTtlSeconds = checkTtl(
      options.caTtlSeconds,
      "caTtlSeconds",
      DEFAULT_CA_TTL_SECONDS,
      MAX_CA_TTL_SECONDS,
    );
    if (caTtlSeconds < MIN_CA_TTL_SECONDS)
      fail("invalid-ttl", `caTtlSeconds must be at least ${MIN_CA_TTL_SECONDS}`);
    const refreshHintSeconds = options.refreshHintSeconds;
    if (
      refreshHintSeconds !== undefined &&
      (!Number.isSafeInteger(refreshHintSeconds) || refreshHintSeconds < 0)
    ) {
      fail("invalid-argument", "refreshHintSeconds must be a non-negative whole number");
    }
    const clock = options.clock ?? (() => new Date());
    if (typeof clock !== "function") fail("invalid-argument", "clock must be a function returning a Date");
    const config: Config = { trustDomain, keyType, jwtKeyType, caTtlSeconds, refreshHintSeconds, clock };
    const at = nowMs(clock);
    const upstream = options.upstream === undefined ? undefined : loadUpstream(options.upstream, null, at);
    const [x509, jwt] = await Promise.all([newX509Authority(config, upstream, at), newJwtKey(config, at)]);
    return new CertificateAuthority(
      config,
      upstream,
      { active: x509, prepared: undefined, old: [] },
      { active: jwt, prepared: undefined, old: [] },
      1n,
    );
  }

  get trustDomain(): TrustDomain {
    return this.#config.trustDomain;
  }

  get keyType(): CaKeyType {
    return this.#config.keyType;
  }

  get jwtKeyType(): CaKeyType {
    return this.#config.jwtKeyType;
  }

  get caTtlSeconds(): number {
    return this.#config.caTtlSeconds;
  }

  /** Whether the X.509 authorities are intermediates of an upstream CA. */
  get upstreamMode(): boolean {
    return this.#upstream !== undefined;
  }

  /** The bundle's current spiffe_sequence. */
  get sequence(): bigint {
    return this.#sequence;
  }

  get x509Authorities(): Rotation<X509AuthorityInfo> {
    return {
      active: x509Info(this.#x509Active),
      prepared: this.#x509Prepared && x509Info(this.#x509Prepared),
      old: this.#x509Old.map(x509Info),
    };
  }

  get jwtKeys(): Rotation<JwtKeyInfo> {
    return {
      active: jwtInfo(this.#jwtActive),
      prepared: this.#jwtPrepared && jwtInfo(this.#jwtPrepared),
      old: this.#jwtOld.map(jwtInfo),
    };
  }

  /** When the next steps are due for the active authority: prepare at 1/2, activate at 5/6 of its life. */
  schedule(): { prepareAt: Date; activateAt: Date; expiresAt: Date } {
    const a = this.#x509Active;
    return {
      prepareAt: new Date(prepareAt(a)),
      activateAt: new Date(activateAt(a)),
      expiresAt: new Date(a.notAfter),
    };
  }

  /**
   * Prepares the next X.509 authority and JWT key and publishes them in the bundle (the
   * sequence increases). A prepared pair that was not activated yet is replaced.
   */
  async prepare(): Promise<void> {
    if (this.#preparing) return this.#preparing;
    this.#preparing = (async () => {
      const at = nowMs(this.#config.clock);
      const [x509, jwt] = await Promise.all([
        newX509Authority(this.#config, this.#upstream, at),
        newJwtKey(this.#config, at),
      ]);
      this.#x509Prepared = x509;
      this.#jwtPrepared = jwt;
      this.#commit();
    })();
    try {
      await this.#preparing;
    } finally {
      this.#preparing = undefined;
    }
  }

  /**
   * Makes the prepared X.509 authority and JWT key active. The previous ones are retired: their
   * private keys are discarded, their public parts stay in the bundle until they expire.
   */
  activate(): void {
    const x509 = this.#x509Prepared;
    const jwt = this.#jwtPrepared;
    if (!x509 || !jwt)
      fail("not-prepared", "there is no prepared authority to activate: call prepare() first");
    const old = this.#x509Active;
    old.issuer = undefined;
    const oldJwt = this.#jwtActive;
    oldJwt.privateKey = undefined;
    this.#x509Old.push(old);
    this.#jwtOld.push(oldJwt);
    this.#x509Active = x509;
    this.#jwtActive = jwt;
    this.#x509Prepared = undefined;
    this.#jwtPrepared = undefined;
    this.#commit();
  }

  /**
   * Does what is due now: removes expired retired authorities and keys; prepares the next pair
   * at half the active authority's life; activates it at 5/6. If the active authority has
   * expired (the server was down), a valid prepared one is activated at once, or a new one is
   * made and activated.
   */
  async rotateIfDue(): Promise<RotationResult> {
    const before = this.#sequence;
    let prepared = false;
    let activated = false;
    let at = nowMs(this.#config.clock);
    if (at >= this.#x509Active.notAfter || at >= this.#jwtActive.notAfter) {
      if (
        !this.#x509Prepared ||
        at >= this.#x509Prepared.notAfter ||
        !this.#jwtPrepared ||
        at >= this.#jwtPrepared.notAfter
      ) {
        await this.prepare();
        prepared = true;
      }
      this.activate();
      activated = true;
      at = nowMs(this.#config.clock);
    }
    if (!this.#x509Prepared && at >= prepareAt(this.#x509Active)) {
      await this.prepare();
      prepared = true;
      at = nowMs(this.#config.clock);
    }
    if (this.#x509Prepared && at >= activateAt(this.#x509Active)) {
      this.activate();
      activated = true;
    }
    const pruned = this.#prune(at);
    return { prepared, activated, pruned, bundleChanged: this.#sequence !== before };
  }

  /**
   * Signs an X.509-SVID for the public key of `csr` (after checking its self-signature). The
   * TTL is capped to the active authority's remaining lifetime. Throws CaError; a refused
   * request changes nothing.
   */
  signX509Svid(params: SignX509SvidParams): SignedX509Svid {
    if (typeof params !== "object" || params === null) fail("invalid-argument", "params are required");
    const request = this.#checkSvidRequest(params);
    const csr = parseCsr(params.csr);
    return this.#issue(request, csr.subjectPublicKeyInfo);
  }

  /** As `signX509Svid`, for a public key given directly (a server-internal caller, no CSR). */
  signX509SvidFromKey(publicKey: KeyObject, params: SignX509SvidFromKeyParams): SignedX509Svid {
    if (typeof params !== "object" || params === null) fail("invalid-argument", "params are required");
    const request = this.#checkSvidRequest(params);
    const spki = subjectPublicKeyFromKeyObject(publicKey);
    return this.#issue(request, spki.der);
  }

  /** Signs a JWT-SVID with the active JWT key; expiry capped to the key's remaining lifetime. */
  async signJwtSvid(params: SignJwtSvidParams): Promise<SignedJwtSvid> {
    if (typeof params !== "object" || params === null) fail("invalid-argument", "params are required");
    const id = this.#checkId(params.spiffeId);
    const ttl = checkTtl(params.ttlSeconds, "ttlSeconds", DEFAULT_JWT_SVID_TTL_SECONDS, MAX_SVID_TTL_SECONDS);
    const audience = typeof params.audience === "string" ? [params.audience] : params.audience;
    if (
      !Array.isArray(audience) ||
      audience.length === 0 ||
      audience.some((a) => typeof a !== "string" || a === "")
    ) {
      fail(
        "invalid-argument",
        "audience must be a non-empty string or a non-empty array of non-empty strings (JWT-SVID §3.2)",
      );
    }
    const key = this.#jwtActive;
    const at = Math.floor(nowMs(this.#config.clock) / 1000) * 1000;
    const exp = Math.min(at + ttl * 1000, Math.floor(key.notAfter / 1000) * 1000);
    if (exp <= at || !key.privateKey) {
      fail(
        "ca-expired",
        `the active JWT key ${key.kid} expired at ${new Date(key.notAfter).toISOString()}: rotateIfDue() must run`,
      );
    }
    let token: string;
    try {
      token = await signJwt({
        id,
        audience: [...audience],
        expiresAt: new Date(exp),
        issuedAt: new Date(at),
        key: key.privateKey,
        kid: key.kid,
      });
    } catch (e) {
      return fail("invalid-argument", `cannot sign the JWT-SVID: ${(e as Error).message}`, e);
    }
    return {
      token,
      spiffeId: id,
      audience: [...audience],
      kid: key.kid,
      issuedAt: new Date(at),
      expiresAt: new Date(exp),
    };
  }

  /**
   * The trust domain's bundle: X.509 authorities (self-signed: the active, prepared and retired
   * roots; upstream: the upstream roots) and JWT keys (active, prepared, retired), with the
   * current sequence. The same object is returned until something changes.
   */
  bundle(): SpiffeBundle {
    if (!this.#bundle) {
      this.#bundle = SpiffeBundle.create(this.#config.trustDomain, {
        x509Authorities: this.#bundleX509(),
        jwtAuthorities: this.#bundleJwt().map((k) => [k.kid, k.publicKey] as const),
        sequence: this.#sequence,
        ...(this.#config.refreshHintSeconds === undefined
          ? {}
          : { refreshHintSeconds: this.#config.refreshHintSeconds }),
      });
    }
    return this.#bundle;
  }

  /** A plain JSON-serializable snapshot, private keys included (PKCS#8 PEM): for the datastore only. */
  exportState(): CaState {
    const c = this.#config;
    const x509State = (a: X509Authority): X509AuthorityState => ({
      certificatePem: a.certificate.toString(),
      privateKeyPem: a.issuer
        ? (a.issuer.privateKey.export({ type: "pkcs8", format: "pem" }) as string)
        : null,
    });
    const jwtState = (k: JwtKey): JwtKeyState => ({
      kid: k.kid,
      publicKeyJwk: jwkOf(k.publicKey),
      privateKeyPem: k.privateKey ? (k.privateKey.export({ type: "pkcs8", format: "pem" }) as string) : null,
      notBefore: new Date(k.notBefore).toISOString(),
      notAfter: new Date(k.notAfter).toISOString(),
    });
    return {
      version: 1,
      trustDomain: c.trustDomain.name,
      keyType: c.keyType,
      jwtKeyType: c.jwtKeyType,
      caTtlSeconds: c.caTtlSeconds,
      refreshHintSeconds: c.refreshHintSeconds ?? null,
      sequence: this.#sequence.toString(),
      upstream: this.#upstream
        ? { certificatesPem: this.#upstream.certificatesPem, bundlePem: this.#upstream.bundlePem }
        : null,
      x509: {
        active: x509State(this.#x509Active),
        prepared: this.#x509Prepared ? x509State(this.#x509Prepared) : null,
        old: this.#x509Old.map(x509State),
      },
      jwt: {
        active: jwtState(this.#jwtActive),
        prepared: this.#jwtPrepared ? jwtState(this.#jwtPrepared) : null,
        old: this.#jwtOld.map(jwtState),
      },
    };
  }

  /**
   * A CA from `exportState()` output (possibly after a JSON round trip). Everything is checked
   * (`ca:invalid-state`): certificates against keys, trust domain, dates. In upstream mode, pass
   * `options.upstream` (with the key) to be able to prepare new intermediates.
   */
  static restore(state: CaState, options: RestoreOptions = {}): CertificateAuthority {
    const bad = (m: string): never => fail("invalid-state", `cannot restore the CA: ${m}`);
    if (typeof state !== "object" || state === null) bad("the state is not an object");
    if (state.version !== 1) bad(`unknown state version ${JSON.stringify(state.version)}`);
    let trustDomain: TrustDomain;
    try {
      trustDomain = TrustDomain.parse(String(state.trustDomain));
    } catch {
      return bad("trustDomain is not a valid trust domain");
    }
    if (!CA_KEY_TYPES.includes(state.keyType)) bad("keyType is not a known key type");
    if (!CA_KEY_TYPES.includes(state.jwtKeyType)) bad("jwtKeyType is not a known key type");
    const ttl = state.caTtlSeconds;
    if (!Number.isSafeInteger(ttl) || ttl < MIN_CA_TTL_SECONDS || ttl > MAX_CA_TTL_SECONDS)
      bad("caTtlSeconds is out of range");
    const hint = state.refreshHintSeconds;
    if (hint !== null && hint !== undefined && (!Number.isSafeInteger(hint) || hint < 0))
      bad("refreshHintSeconds is invalid");
    if (typeof state.sequence !== "string" || !/^(0|[1-9][0-9]{0,19})$/.test(state.sequence))
      bad("sequence must be decimal digits");
    const sequence = BigInt(state.sequence);
    if (sequence > MAX_SEQUENCE) bad("sequence does not fit in 64 bits");
    const clock = options.clock ?? (() => new Date());
    const config: Config = {
      trustDomain,
      keyType: state.keyType,
      jwtKeyType: state.jwtKeyType,
      caTtlSeconds: ttl,
      refreshHintSeconds: hint ?? undefined,
      clock,
    };
    const at = nowMs(clock);
    let upstream: Upstream | undefined;
    if (state.upstream !== null && state.upstream !== undefined) {
      if (typeof state.upstream !== "object") bad("upstream must be an object or null");
      upstream = loadUpstream(options.upstream, state.upstream, at);
    } else if (options.upstream) {
      fail("invalid-upstream", "the saved CA is self-signed; it cannot be restored with an upstream CA");
    }
    if (typeof state.x509 !== "object" || state.x509 === null) bad("x509 is missing");
    if (typeof state.jwt !== "object" || state.jwt === null) bad("jwt is missing");
    if (!Array.isArray(state.x509.old) || !Array.isArray(state.jwt.old)) bad("old must be arrays");
    const x509: Rotation<X509Authority> = {
      active: restoreX509(state.x509.active, config, upstream, true, "x509.active"),
      prepared:
        state.x509.prepared === null || state.x509.prepared === undefined
          ? undefined
          : restoreX509(state.x509.prepared, config, upstream, true, "x509.prepared"),
      old: state.x509.old.map((s, i) => restoreX509(s, config, upstream, false, `x509.old[${i}]`)),
    };
    const jwt: Rotation<JwtKey> = {
      active: restoreJwt(state.jwt.active, true, "jwt.active"),
      prepared:
        state.jwt.prepared === null || state.jwt.prepared === undefined
          ? undefined
          : restoreJwt(state.jwt.prepared, true, "jwt.prepared"),
      old: state.jwt.old.map((s, i) => restoreJwt(s, false, `jwt.old[${i}]`)),
    };
    const kids = [jwt.active, ...(jwt.prepared ? [jwt.prepared] : []), ...jwt.old].map((k) => k.kid);
    if (new Set(kids).size !== kids.length) bad("two JWT keys share a kid");
    if (!!x509.prepared !== !!jwt.prepared) bad("an X.509 authority and a JWT key are prepared together");
    return new CertificateAuthority(config, upstream, x509, jwt, sequence);
  }

  toString(): string {
    return `CertificateAuthority(${this.#config.trustDomain.name}, ${this.#config.keyType}${this.#upstream ? ", upstream" : ""}, sequence ${this.#sequence})`;
  }

  toJSON(): Record<string, unknown> {
    return {
      trustDomain: this.#config.trustDomain.name,
      keyType: this.#config.keyType,
      upstream: this.#upstream !== undefined,
      sequence: this.#sequence.toString(),
      active: {
        keyId: this.#x509Active.keyId.toString("hex"),
        notAfter: new Date(this.#x509Active.notAfter).toISOString(),
      },
      jwtKid: this.#jwtActive.kid,
    };
  }

  [inspect.custom](): string {
    return this.toString();
  }

  // -------------------------------------------------------------------------------------------

  #checkId(spiffeId: SpiffeId | string): SpiffeId {
    let id: SpiffeId;
    if (spiffeId instanceof SpiffeId) id = spiffeId;
    else {
      if (typeof spiffeId !== "string")
        fail("invalid-spiffe-id", "spiffeId must be a SPIFFE ID string or a SpiffeId");
      try {
        id = SpiffeId.parse(spiffeId);
      } catch (e) {
        const shown =
          spiffeId.length > 100 ? `${JSON.stringify(spiffeId.slice(0, 100))}…` : JSON.stringify(spiffeId);
        return fail("invalid-spiffe-id", `${shown} is not a SPIFFE ID: ${(e as Error).message}`, e);
      }
    }
    if (!id.memberOf(this.#config.trustDomain)) {
      fail(
        "wrong-trust-domain",
        `the SPIFFE ID ${id} is in trust domain ${id.trustDomain.name}; this CA signs only for ${this.#config.trustDomain.name}`,
      );
    }
    if (id.isRoot()) fail("invalid-spiffe-id", `the SPIFFE ID ${id} has no path; an SVID's ID must have one`);
    return id;
  }

  #checkSvidRequest(params: SignX509SvidFromKeyParams): { id: SpiffeId; ttl: number; dnsNames: string[] } {
    const id = this.#checkId(params.spiffeId);
    const ttl = checkTtl(
      params.ttlSeconds,
      "ttlSeconds",
      DEFAULT_X509_SVID_TTL_SECONDS,
      MAX_SVID_TTL_SECONDS,
    );
    const dnsNames = checkDnsNames(params.dnsNames);
    return { id, ttl, dnsNames };
  }

  #issue(request: { id: SpiffeId; ttl: number; dnsNames: string[] }, spki: Buffer): SignedX509Svid {
    const ca = this.#x509Active;
    const at = Math.floor(nowMs(this.#config.clock) / 1000) * 1000;
    const notAfter = Math.min(at + request.ttl * 1000, ca.notAfter);
    if (notAfter <= at || !ca.issuer) {
      fail(
        "ca-expired",
        `the active X.509 authority expired at ${new Date(ca.notAfter).toISOString()}: rotateIfDue() must run`,
      );
    }
    const notBefore = Math.max(at - BACKDATE_SECONDS * 1000, ca.notBefore);
    const serial = nextSerial();
    const leaf = encodeX509Svid({
      issuer: ca.issuer,
      subjectPublicKeyDer: spki,
      spiffeId: request.id,
      dnsNames: request.dnsNames,
      serial,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
    });
    return {
      spiffeId: request.id,
      certificates: ca.chainDer.length ? [leaf, ...ca.chainDer] : [leaf],
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      serialNumber: hexSerial(serial),
    };
  }

  #bundleX509(): X509Certificate[] {
    if (this.#upstream) return [...this.#upstream.roots];
    return [this.#x509Active, ...(this.#x509Prepared ? [this.#x509Prepared] : []), ...this.#x509Old].map(
      (a) => a.certificate,
    );
  }

  #bundleJwt(): JwtKey[] {
    return [this.#jwtActive, ...(this.#jwtPrepared ? [this.#jwtPrepared] : []), ...this.#jwtOld];
  }

  #fingerprint(): string {
    const x = this.#bundleX509()
      .map((c) => c.fingerprint256)
      .sort();
    const j = this.#bundleJwt()
      .map((k) => k.kid)
      .sort();
    return `${x.join(",")}|${j.join(",")}`;
  }

  /** After a change: a new bundle content means a new sequence. */
  #commit(): void {
    const f = this.#fingerprint();
    if (f !== this.#bundleFingerprint) {
      if (this.#sequence >= MAX_SEQUENCE)
        fail("invalid-state", "the bundle sequence cannot increase beyond 2^64-1");
      this.#sequence += 1n;
      this.#bundleFingerprint = f;
      this.#bundle = undefined;
    }
  }

  #prune(at: number): number {
    const x = this.#x509Old.length;
    const j = this.#jwtOld.length;
    this.#x509Old = this.#x509Old.filter((a) => a.notAfter > at);
    this.#jwtOld = this.#jwtOld.filter((k) => k.notAfter > at);
    const pruned = x - this.#x509Old.length + (j - this.#jwtOld.length);
    if (pruned) this.#commit();
    return pruned;
  }
}

// ---------------------------------------------------------------------------------------------
// Making and restoring authorities and keys.

function prepareAt(a: { notBefore: number; notAfter: number }): number {
  return a.notBefore + Math.floor((a.notAfter - a.notBefore) / 2);
}

function activateAt(a: { notBefore: number; notAfter: number }): number {
  return a.notBefore + Math.floor(((a.notAfter - a.notBefore) * 5) / 6);
}

function x509Info(a: X509Authority): X509AuthorityInfo {
  return {
    certificate: a.certificate,
    keyId: a.keyId.toString("hex"),
    notBefore: new Date(a.notBefore),
    notAfter: new Date(a.notAfter),
    chain: a.chain,
  };
}

function jwtInfo(k: JwtKey): JwtKeyInfo {
  return {
    kid: k.kid,
    publicKey: k.publicKey,
    notBefore: new Date(k.notBefore),
    notAfter: new Date(k.notAfter),
  };
}

function authorityName(keyId: Buffer): Buffer {
  return encodeName([
    ["O", "Tessera"],
    ["CN", `Tessera CA ${keyId.toString("hex", 0, 8)}`],
  ]);
}

async function newX509Authority(
  config: Config,
  upstream: Upstream | undefined,
  at: number,
): Promise<X509Authority> {
  if (upstream && !upstream.signer) {
    fail(
      "no-upstream-key",
      "a new intermediate is needed but the upstream key was not given (RestoreOptions.upstream)",
    );
  }
  if (upstream && at >= upstream.notAfter) {
    fail(
      "invalid-upstream",
      `the upstream certificate expired at ${new Date(upstream.notAfter).toISOString()}`,
    );
  }
  const pair = await generateCaKeyPair(config.keyType);
  const spki = pair.publicKey.export({ type: "spki", format: "der" });
  const keyId = keyIdentifier(spki);
  const nameDer = authorityName(keyId);
  let notBefore = Math.floor(at / 1000) * 1000 - BACKDATE_SECONDS * 1000;
  let notAfter = Math.floor(at / 1000) * 1000 + config.caTtlSeconds * 1000;
  if (upstream) {
    notBefore = Math.max(notBefore, upstream.notBefore);
    notAfter = Math.min(notAfter, upstream.notAfter);
  }
  const der = encodeCaCertificate({
    ...(upstream?.signer ? { issuer: upstream.signer } : { privateKey: pair.privateKey }),
    subjectNameDer: nameDer,
    subjectPublicKeyDer: spki,
    trustDomain: config.trustDomain,
    serial: Buffer.from(nextSerial()),
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
  });
  const certificate = new X509Certificate(der);
  const chain = upstream ? [certificate, ...upstream.intermediates] : [];
  return {
    certificate,
    der,
    issuer: { nameDer, keyId, privateKey: pair.privateKey },
    keyId,
    notBefore,
    notAfter,
    chainDer: chain.map((c) => c.raw),
    chain,
  };
}

async function newJwtKey(config: Config, at: number): Promise<JwtKey> {
  const pair = await generateCaKeyPair(config.jwtKeyType);
  return {
    kid: randomBytes(24).toString("base64url"),
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    notBefore: Math.floor(at / 1000) * 1000,
    notAfter: Math.floor(at / 1000) * 1000 + config.caTtlSeconds * 1000,
  };
}

function restoreX509(
  s: X509AuthorityState,
  config: Config,
  upstream: Upstream | undefined,
  needsKey: boolean,
  where: string,
): X509Authority {
  const bad = (m: string): never => fail("invalid-state", `cannot restore the CA: ${where} ${m}`);
  if (typeof s !== "object" || s === null) bad("is not an object");
  const list = certs(s.certificatePem, `${where}.certificatePem`, "invalid-state");
  if (list.length !== 1) bad("must hold exactly one certificate");
  const certificate = list[0] as X509Certificate;
  let facts: ReturnType<typeof certificateFacts>;
  try {
    facts = certificateFacts(certificate);
  } catch (e) {
    return bad(`is malformed: ${(e as Error).message}`);
  }
  if (facts.ca !== true) bad("is not a CA certificate");
  if (!facts.uriSans.includes(config.trustDomain.idString()))
    bad(`is not an authority of ${config.trustDomain.name}`);
  let parts: CertificateParts;
  try {
    parts = certificateParts(certificate.raw);
  } catch (e) {
    return bad(`is malformed: ${(e as Error).message}`);
  }
  if (upstream) {
    if (!issuedBy(certificate, upstream.signerCert)) {
      bad("is not signed by the upstream CA");
    }
  } else if (!isSelfSigned(certificate)) bad("is not a self-signed root");
  let issuer: CertificateIssuer | undefined;
  if (needsKey || (s.privateKeyPem !== null && s.privateKeyPem !== undefined)) {
    if (s.privateKeyPem === null || s.privateKeyPem === undefined) bad("has no private key");
    const key = privateKey(s.privateKeyPem, `${where}.privateKeyPem`, "invalid-state");
    let matches = false;
    try {
      matches = certificate.checkPrivateKey(key);
    } catch {
      matches = false;
    }
    if (!matches) bad("has a private key that does not match its certificate");
    if (caKeyTypeOf(key) === undefined) bad("has a key of an unsupported type");
    issuer = needsKey ? { nameDer: parts.subjectDer, keyId: parts.keyId, privateKey: key } : undefined;
  }
  const chain = upstream ? [certificate, ...upstream.intermediates] : [];
  return {
    certificate,
    der: certificate.raw,
    issuer,
    keyId: parts.keyId,
    notBefore: facts.notBefore.getTime(),
    notAfter: facts.notAfter.getTime(),
    chainDer: chain.map((c) => c.raw),
    chain,
  };
}

function restoreJwt(s: JwtKeyState, needsKey: boolean, where: string): JwtKey {
  const bad = (m: string): never => fail("invalid-state", `cannot restore the CA: ${where} ${m}`);
  if (typeof s !== "object" || s === null) bad("is not an object");
  if (typeof s.kid !== "string" || s.kid === "") bad("has no kid");
  const notBefore = typeof s.notBefore === "string" ? Date.parse(s.notBefore) : Number.NaN;
  const notAfter = typeof s.notAfter === "string" ? Date.parse(s.notAfter) : Number.NaN;
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter) || notAfter <= notBefore) bad("has invalid dates");
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: s.publicKeyJwk, format: "jwk" });
  } catch {
    return bad("has an invalid publicKeyJwk");
  }
  if (caKeyTypeOf(publicKey) === undefined) bad("has a key of an unsupported type");
  let key: KeyObject | undefined;
  if (needsKey) {
    key = privateKey(s.privateKeyPem, `${where}.privateKeyPem`, "invalid-state");
    const derived = createPublicKey(key).export({ type: "spki", format: "der" });
    if (!derived.equals(publicKey.export({ type: "spki", format: "der" }))) {
      bad("has a private key that does not match its public key");
    }
  }
  return { kid: s.kid, privateKey: key, publicKey, notBefore, notAfter };
}
