/**
 * What the identity server keeps: registration entries, attested agents, join tokens, its CA
 * and JWT signing keys, and trust bundles. Plain data: the rules that check it live in
 * validate.ts, the storage behind it in sqlstore.ts (SQLite, PostgreSQL).
 */

/** Default X.509-SVID lifetime of an entry: 1 hour. */
export const DEFAULT_X509_SVID_TTL_SECONDS = 3600;
/** Default JWT-SVID lifetime of an entry: 5 minutes. */
export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;

/** A selector `type:value`, e.g. `unix:uid:1000` is `{ type: "unix", value: "uid:1000" }`. */
export interface Selector {
  /** The attestor that produces it (`unix`, `k8s`, `join_token`, `x509pop`...): no `:`. */
  readonly type: string;
  /** Anything after the first `:`, colons included. */
  readonly value: string;
}

/** A registration entry: who (selectors, under which parent) gets which SPIFFE ID. */
export interface RegistrationEntry {
  /** A UUID. */
  readonly id: string;
  readonly spiffeId: string;
  /** The agent (or node alias, or the server for alias entries) that may issue it. */
  readonly parentId: string;
  /** All must be among a workload's selectors for the entry to match. Sorted, no duplicates. */
  readonly selectors: readonly Selector[];
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  /** Lowercase; the first one is the X.509-SVID's subject common name by convention. */
  readonly dnsNames: readonly string[];
  /** Tells workloads with several SVIDs which one is which ("" for none). */
  readonly hint: string;
  /** May call the server's admin API. */
  readonly admin: boolean;
  /** May mint SVIDs for a downstream (nested) server. */
  readonly downstream: boolean;
  /** After this the entry matches nothing; absent for no expiry. */
  readonly expiresAt?: Date;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** 1 at creation, +1 for each update: pass it back to `updateEntry` (optimistic concurrency). */
  readonly revision: number;
}

/** What `createEntry` takes. Selectors may be given as `"type:value"` strings. */
export interface NewEntry {
  /** A UUID; generated when absent. */
  readonly id?: string;
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly (Selector | string)[];
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly dnsNames?: readonly string[];
  readonly hint?: string;
  readonly admin?: boolean;
  readonly downstream?: boolean;
  readonly expiresAt?: Date;
}

/** What `updateEntry` changes: absent fields stay; `expiresAt: null` removes the expiry. */
export interface EntryChanges {
  readonly spiffeId?: string;
  readonly parentId?: string;
  readonly selectors?: readonly (Selector | string)[];
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly dnsNames?: readonly string[];
  readonly hint?: string;
  readonly admin?: boolean;
  readonly downstream?: boolean;
  readonly expiresAt?: Date | null;
}

/** Filters of `listEntries`; all given ones must hold. */
export interface EntryFilter {
  readonly parentId?: string;
  readonly spiffeId?: string;
  /** Entries whose selectors are all among these (how entries match a workload or a node). */
  readonly selectorsSubsetOf?: readonly (Selector | string)[];
  /** Leave out entries whose `expiresAt` has passed (default: include them). */
  readonly excludeExpired?: boolean;
}

export type NodeAttestationType = "join_token" | "x509pop";

/** An agent that attested: the server issues and renews its agent SVID. */
export interface AttestedAgent {
  /** `spiffe://<td>/spire/agent/<attestor>/...` */
  readonly spiffeId: string;
  readonly attestationType: NodeAttestationType;
  /** Serial number of the agent SVID it holds now: renewal must present this one. */
  readonly serialNumber: string;
  /** When that agent SVID expires. */
  readonly expiresAt: Date;
  /** A banned agent cannot renew nor attest again until it is deleted. */
  readonly banned: boolean;
  /** Node selectors from attestation: node alias entries match on them. */
  readonly selectors: readonly Selector[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface NewAgent {
  readonly spiffeId: string;
  readonly attestationType: NodeAttestationType;
  readonly serialNumber: string;
  readonly expiresAt: Date;
  readonly selectors?: readonly (Selector | string)[];
}

/** What `updateAgentSerial` sets when an agent renews (or attests again). */
export interface AgentRenewal {
  readonly serialNumber: string;
  readonly expiresAt: Date;
  /** When given, the stored serial must be this one (the SVID the agent presented), else conflict. */
  readonly expectedSerial?: string;
  /** New node selectors, when attestation ran again. */
  readonly selectors?: readonly (Selector | string)[];
}

export interface AgentFilter {
  readonly banned?: boolean;
  readonly attestationType?: NodeAttestationType;
}

/** A join token as stored: only its SHA-256, never the token. */
export interface JoinToken {
  /** Lowercase hex SHA-256 of the token's UTF-8 bytes. */
  readonly tokenHash: string;
  readonly expiresAt: Date;
  readonly used: boolean;
  readonly createdAt: Date;
}

/** The result of `spendJoinToken`: exactly one caller ever gets `ok` for a token. */
export type SpendResult =
  | { readonly status: "ok"; readonly expiresAt: Date }
  | { readonly status: "expired"; readonly expiresAt: Date }
  | { readonly status: "used" }
  | { readonly status: "unknown" };

export type KeyKind = "x509" | "jwt";
/** A key is prepared (published in the bundle, not signing yet), then active (signing), then old. */
export type KeyState = "prepared" | "active" | "old";

/** A signing key of the server: the X.509 CA or a JWT-SVID signing key. */
export interface CaKey {
  /** Unique; for JWT keys this is the `kid`. */
  readonly id: string;
  readonly kind: KeyKind;
  readonly state: KeyState;
  /** X.509: the CA certificate (PEM). */
  readonly certificatePem?: string;
  /** JWT: the public key (JWK, `kid` equal to `id`). */
  readonly publicJwk?: Jwk;
  /**
   * The private key, PKCS#8 PEM. See README.md in this folder for how it is protected at rest
   * (file mode 0600 for SQLite, optional AES-256-GCM sealing with `keyEncryptionKey`).
   */
  readonly privateKeyPem: string;
  readonly notAfter: Date;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface NewCaKey {
  readonly id: string;
  readonly kind: KeyKind;
  readonly state: KeyState;
  readonly certificatePem?: string;
  readonly publicJwk?: Jwk;
  readonly privateKeyPem: string;
  readonly notAfter: Date;
}

export interface CaKeyFilter {
  readonly kind?: KeyKind;
  readonly state?: KeyState;
}

/** A public JWK with its key ID (the only fields the store looks at are `kid` and `kty`). */
export interface Jwk {
  readonly kid: string;
  readonly kty: string;
  readonly [field: string]: unknown;
}

/** The contents of a trust bundle, without its bookkeeping. */
export interface BundleContent {
  readonly trustDomain: string;
  /** X.509 authorities, PEM certificates. */
  readonly x509Authorities: readonly string[];
  /** JWT authorities, public JWKs each with a `kid`. */
  readonly jwtAuthorities: readonly Jwk[];
  /** How often consumers should refresh it, in seconds. */
  readonly refreshHintSeconds: number;
}

/** A stored bundle: `sequence` grows by exactly 1 at each write (compare-and-set). */
export interface BundleRecord extends BundleContent {
  readonly sequence: bigint;
  readonly updatedAt: Date;
}
