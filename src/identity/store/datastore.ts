import type {
  AgentFilter,
  AgentRenewal,
  AttestedAgent,
  BundleContent,
  BundleRecord,
  CaKey,
  CaKeyFilter,
  EntryChanges,
  EntryFilter,
  JoinToken,
  KeyState,
  NewAgent,
  NewCaKey,
  NewEntry,
  RegistrationEntry,
  Selector,
  SpendResult,
} from "./model.js";

/**
 * Stable codes of store failures:
 * - `invalid`: the input breaks a rule (the message names the field and the rule);
 * - `not-found`: no such entry, agent, key or bundle;
 * - `already-exists`: creating something that exists (same ID, or an identical entry);
 * - `conflict`: someone else changed it first (revision, serial, bundle sequence, key state):
 *   read it again and retry;
 * - `banned`: the agent is banned: it cannot renew nor attest until it is deleted;
 * - `unavailable`: the database cannot be reached or is too new for this version.
 */
export type StoreErrorCode =
  | "invalid"
  | "not-found"
  | "already-exists"
  | "conflict"
  | "banned"
  | "unavailable";

/** Every failure of the store. Messages say what to do next and never hold tokens or keys. */
export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StoreError";
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}

/** A join token just created: the token is returned once, the store keeps only its hash. */
export interface CreatedJoinToken {
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * The identity server's datastore. Same behaviour on SQLite (one server) and PostgreSQL
 * (several replicas sharing one database): every check-then-write is atomic in the database,
 * so two replicas never both spend a join token, both bump a bundle to the same sequence, or
 * both apply an update to the same entry revision.
 */
export interface Datastore {
  /** "sqlite" or "postgres". */
  readonly kind: "sqlite" | "postgres";

  // Registration entries.
  /** Validates and stores an entry (revision 1). `already-exists` for the same ID or the same
   * SPIFFE ID + parent ID + selectors; `invalid` for bad input. */
  createEntry(entry: NewEntry): Promise<RegistrationEntry>;
  /** `not-found` when absent. */
  getEntry(id: string): Promise<RegistrationEntry>;
  /** Ordered by creation time, then ID. */
  listEntries(filter?: EntryFilter): Promise<RegistrationEntry[]>;
  /** Applies changes if the stored revision is `expectedRevision` (else `conflict`); returns
   * the entry at its new revision. */
  updateEntry(id: string, expectedRevision: number, changes: EntryChanges): Promise<RegistrationEntry>;
  /** Deletes it (if `expectedRevision` is given, only at that revision). `not-found` when absent. */
  deleteEntry(id: string, expectedRevision?: number): Promise<void>;
  /**
   * The entries an agent may issue SVIDs for: those whose parent is the agent, or one of its
   * node aliases. A node alias is an entry whose parent is the server
   * (`spiffe://<td>/spire/server`) and whose selectors are all among the agent's node
   * selectors; entries parented to the alias's SPIFFE ID are the agent's too. `agentSelectors`
   * defaults to the stored agent's selectors. Expired entries are left out; alias entries
   * themselves are not in the result (see `listNodeAliases`).
   */
  listEntriesForAgent(
    agentId: string,
    agentSelectors?: readonly (Selector | string)[],
  ): Promise<RegistrationEntry[]>;
  /** The node alias entries of an agent with these node selectors (expired ones left out). */
  listNodeAliases(
    agentId: string,
    agentSelectors: readonly (Selector | string)[],
  ): Promise<RegistrationEntry[]>;

  // Attested agents.
  /** `already-exists` when the agent is known (renew with `updateAgentSerial`, or delete it first). */
  createAgent(agent: NewAgent): Promise<AttestedAgent>;
  getAgent(spiffeId: string): Promise<AttestedAgent>;
  listAgents(filter?: AgentFilter): Promise<AttestedAgent[]>;
  /** Records a renewed agent SVID. `banned` for a banned agent, `not-found` for a deleted one,
   * `conflict` when `expectedSerial` is not the stored serial. */
  updateAgentSerial(spiffeId: string, renewal: AgentRenewal): Promise<AttestedAgent>;
  /** Bans the agent: it can no longer renew. Idempotent. */
  banAgent(spiffeId: string): Promise<AttestedAgent>;
  /** Forgets the agent (it must attest again). `not-found` when absent. */
  deleteAgent(spiffeId: string): Promise<void>;

  // Join tokens.
  /** Creates a one-use token valid for `ttlSeconds` (random unless `token` is given). */
  createJoinToken(ttlSeconds: number, token?: string): Promise<CreatedJoinToken>;
  /** Spends a token atomically: exactly one caller, across replicas, gets `ok`. */
  spendJoinToken(token: string): Promise<SpendResult>;
  listJoinTokens(): Promise<JoinToken[]>;
  /** Deletes tokens expired at `before` (default: now), used or not; returns how many. */
  pruneJoinTokens(before?: Date): Promise<number>;

  // CA and JWT signing keys.
  /** `already-exists` for a known ID. */
  putCaKey(key: NewCaKey): Promise<CaKey>;
  getCaKey(id: string): Promise<CaKey>;
  /** Ordered by creation time, then ID. */
  listCaKeys(filter?: CaKeyFilter): Promise<CaKey[]>;
  /** Moves a key to `state`; with `expectedState`, only from that state (else `conflict`). */
  setCaKeyState(id: string, state: KeyState, expectedState?: KeyState): Promise<CaKey>;
  /** Rotation in one transaction: the `prepared` key `id` becomes `active`, and the key(s) of
   * the same kind that were active become `old`. `conflict` if `id` is not prepared. */
  activateCaKey(id: string): Promise<CaKey>;
  deleteCaKey(id: string): Promise<void>;

  // Trust bundles.
  /** `undefined` when the store has no bundle for that trust domain. */
  getBundle(trustDomain: string): Promise<BundleRecord | undefined>;
  listBundles(): Promise<BundleRecord[]>;
  /**
   * Compare-and-set: stores `bundle` if the stored sequence is `expectedSequence` (0n: no bundle
   * yet), with sequence `expectedSequence + 1n`; else `conflict`.
   */
  putBundle(bundle: BundleContent, expectedSequence: bigint): Promise<BundleRecord>;
  /** Reads, applies `change`, and writes with `putBundle`, retrying on conflicts. */
  updateBundle(
    trustDomain: string,
    change: (current: BundleRecord | undefined) => BundleContent,
  ): Promise<BundleRecord>;
  deleteBundle(trustDomain: string): Promise<void>;

  /** The schema version the database is at. */
  schemaVersion(): Promise<number>;
  /** Closes connections. Further calls fail. */
  close(): Promise<void>;
}
