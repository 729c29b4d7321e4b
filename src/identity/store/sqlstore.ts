/**
 * The Datastore on SQL, shared by SQLite and PostgreSQL. Each method is one transaction body
 * (see sql.ts); every check-then-write is either one conditional statement
 * (`UPDATE ... WHERE revision = ?`, `... WHERE used = false`, `... WHERE sequence = ?`) or
 * guarded by a UNIQUE constraint, so it stays atomic across replicas under PostgreSQL's
 * READ COMMITTED as well as under SQLite's single writer.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { type CreatedJoinToken, type Datastore, StoreError } from "./datastore.js";
import { currentVersion } from "./migrations.js";
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
  Jwk,
  KeyState,
  NewAgent,
  NewCaKey,
  NewEntry,
  RegistrationEntry,
  Selector,
  SpendResult,
} from "./model.js";
import { checkKeyEncryptionKey, seal, unseal } from "./sealing.js";
import {
  all,
  bigint,
  bool,
  int,
  one,
  type Param,
  placeholders,
  type Row,
  run,
  type SqlDriver,
  str,
  type TxBody,
  UniqueViolation,
} from "./sql.js";
import {
  applyEntryChanges,
  checkAgentId,
  checkAttestationType,
  checkDate,
  checkJwk,
  checkKeyId,
  checkKeyKind,
  checkKeyState,
  checkNewEntry,
  checkPem,
  checkSerial,
  checkTrustDomain,
  checkTtl,
  checkUuid,
  type EntryFields,
  entryIdentityHash,
  invalid,
  normalizeSelectors,
  normalizeSpiffeId,
  serverIdOf,
  sha256Hex,
} from "./validate.js";

export interface StoreOptions {
  /** The clock; tests set it. Default: the system clock. */
  readonly now?: () => Date;
  /**
   * 32 bytes. When given, CA private keys are sealed with AES-256-GCM before they are written,
   * and opened when read. Keys written without it stay readable.
   */
  readonly keyEncryptionKey?: Uint8Array;
  /** How many times `updateBundle` retries on a conflict (default 100). */
  readonly bundleUpdateAttempts?: number;
}

const ENTRY_COLUMNS =
  "id, spiffe_id, parent_id, selectors, identity_hash, x509_svid_ttl, jwt_svid_ttl, dns_names, hint, admin, downstream, expires_at, created_at, updated_at, revision";

function entryFromRow(r: Row): RegistrationEntry {
  const expiresAt =
    r.expires_at === null || r.expires_at === undefined ? undefined : new Date(int(r.expires_at));
  return {
    id: str(r.id),
    spiffeId: str(r.spiffe_id),
    parentId: str(r.parent_id),
    selectors: JSON.parse(str(r.selectors)) as Selector[],
    x509SvidTtlSeconds: int(r.x509_svid_ttl),
    jwtSvidTtlSeconds: int(r.jwt_svid_ttl),
    dnsNames: JSON.parse(str(r.dns_names)) as string[],
    hint: str(r.hint),
    admin: bool(r.admin),
    downstream: bool(r.downstream),
    ...(expiresAt === undefined ? {} : { expiresAt }),
    createdAt: new Date(int(r.created_at)),
    updatedAt: new Date(int(r.updated_at)),
    revision: int(r.revision),
  };
}

/** The entry columns from `selectors` to `expires_at`, in ENTRY_COLUMNS order (insert and update share them). */
function entryColumnValues(fields: EntryFields, hash: string): Param[] {
  return [
    JSON.stringify(fields.selectors),
    hash,
    fields.x509SvidTtlSeconds,
    fields.jwtSvidTtlSeconds,
    JSON.stringify(fields.dnsNames),
    fields.hint,
    fields.admin,
    fields.downstream,
    fields.expiresAt?.getTime() ?? null,
  ];
}

/** `SELECT * FROM table` with an equality condition for each column whose value is given. */
function selectWhere(
  table: string,
  conditions: ReadonlyArray<[string, Param | undefined]>,
): { sql: string; params: Param[] } {
  const given = conditions.filter((c): c is [string, Param] => c[1] !== undefined);
  const where = given.map(([column]) => `${column} = ?`).join(" AND ");
  return { sql: `SELECT * FROM ${table}${where ? ` WHERE ${where}` : ""}`, params: given.map(([, v]) => v) };
}

function fieldsOf(e: RegistrationEntry): EntryFields {
  return {
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: [...e.selectors],
    x509SvidTtlSeconds: e.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: e.jwtSvidTtlSeconds,
    dnsNames: [...e.dnsNames],
    hint: e.hint,
    admin: e.admin,
    downstream: e.downstream,
    expiresAt: e.expiresAt,
  };
}

function agentFromRow(r: Row): AttestedAgent {
  return {
    spiffeId: str(r.spiffe_id),
    attestationType: checkAttestationType(r.attestation_type),
    serialNumber: str(r.serial_number),
    expiresAt: new Date(int(r.expires_at)),
    banned: bool(r.banned),
    selectors: JSON.parse(str(r.selectors)) as Selector[],
    createdAt: new Date(int(r.created_at)),
    updatedAt: new Date(int(r.updated_at)),
  };
}

function bundleFromRow(r: Row): BundleRecord {
  return {
    trustDomain: str(r.trust_domain),
    sequence: bigint(r.sequence),
    x509Authorities: JSON.parse(str(r.x509_authorities)) as string[],
    jwtAuthorities: JSON.parse(str(r.jwt_authorities)) as Jwk[],
    refreshHintSeconds: int(r.refresh_hint),
    updatedAt: new Date(int(r.updated_at)),
  };
}

function byCreatedThenId<T extends { createdAt: Date; id: string }>(a: T, b: T): number {
  const d = a.createdAt.getTime() - b.createdAt.getTime();
  if (d !== 0) return d;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function entryNotFound(id: string): StoreError {
  return new StoreError(
    "not-found",
    `there is no registration entry ${id}: list entries to find its current ID`,
  );
}

function agentNotFound(id: string): StoreError {
  return new StoreError("not-found", `agent ${id} is not attested (or was deleted): it must attest again`);
}

function agentBanned(id: string): StoreError {
  return new StoreError(
    "banned",
    `agent ${id} is banned: it cannot renew nor attest; delete the agent to let it attest again`,
  );
}

function checkRevision(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    invalid(
      `${field} must be the entry's revision (a whole number from 1), as read with getEntry or listEntries`,
    );
  }
  return value;
}

export class SqlDatastore implements Datastore {
  private closed = false;
  private readonly kek: Buffer | undefined;

  constructor(
    private readonly driver: SqlDriver,
    private readonly options: StoreOptions = {},
  ) {
    this.kek = checkKeyEncryptionKey(options.keyEncryptionKey);
  }

  get kind(): "sqlite" | "postgres" {
    return this.driver.dialect;
  }

  private nowMs(): number {
    return (this.options.now?.() ?? new Date()).getTime();
  }

  private tx<T>(mode: "read" | "write", body: () => TxBody<T>): Promise<T> {
    if (this.closed) {
      return Promise.reject(new StoreError("unavailable", "the datastore is closed: open it again"));
    }
    return this.driver.transaction(body, mode);
  }

  // ---- Registration entries ----

  async createEntry(input: NewEntry): Promise<RegistrationEntry> {
    const fields = checkNewEntry(input);
    const id = input.id === undefined ? randomUUID() : checkUuid(input.id, "id");
    const now = this.nowMs();
    const hash = entryIdentityHash(fields);
    return this.tx("write", function* () {
      const same = yield* one("SELECT id FROM registered_entries WHERE identity_hash = ?", hash);
      if (same !== undefined) {
        throw new StoreError(
          "already-exists",
          `entry ${str(same.id)} has the same SPIFFE ID (${fields.spiffeId}), parent ID and selectors: update that entry instead`,
        );
      }
      try {
        yield* run(
          `INSERT INTO registered_entries (${ENTRY_COLUMNS}) VALUES (${placeholders(15)})`,
          id,
          fields.spiffeId,
          fields.parentId,
          ...entryColumnValues(fields, hash),
          now,
          now,
          1,
        );
      } catch (e) {
        if (e instanceof UniqueViolation) {
          throw new StoreError(
            "already-exists",
            `entry ${id}, or one with the same SPIFFE ID, parent ID and selectors, exists already: read it and update it instead`,
          );
        }
        throw e;
      }
      yield* insertSelectors(id, fields.selectors);
      return entryFromRow({
        id,
        spiffe_id: fields.spiffeId,
        parent_id: fields.parentId,
        selectors: JSON.stringify(fields.selectors),
        x509_svid_ttl: fields.x509SvidTtlSeconds,
        jwt_svid_ttl: fields.jwtSvidTtlSeconds,
        dns_names: JSON.stringify(fields.dnsNames),
        hint: fields.hint,
        admin: fields.admin,
        downstream: fields.downstream,
        expires_at: fields.expiresAt?.getTime() ?? null,
        created_at: now,
        updated_at: now,
        revision: 1,
      });
    });
  }

  async getEntry(id: string): Promise<RegistrationEntry> {
    const key = checkUuid(id, "entry id");
    return this.tx("read", function* () {
      const row = yield* one(`SELECT ${ENTRY_COLUMNS} FROM registered_entries WHERE id = ?`, key);
      if (row === undefined) throw entryNotFound(key);
      return entryFromRow(row);
    });
  }

  async listEntries(filter: EntryFilter = {}): Promise<RegistrationEntry[]> {
    const query = entryQuery(filter);
    const now = this.nowMs();
    return this.tx("read", () => selectEntries(query, now));
  }

  async updateEntry(id: string, expectedRevision: number, changes: EntryChanges): Promise<RegistrationEntry> {
    const key = checkUuid(id, "entry id");
    checkRevision(expectedRevision, "expectedRevision");
    const now = this.nowMs();
    return this.tx("write", function* () {
      const row = yield* one(`SELECT ${ENTRY_COLUMNS} FROM registered_entries WHERE id = ?`, key);
      if (row === undefined) throw entryNotFound(key);
      const current = entryFromRow(row);
      if (current.revision !== expectedRevision)
        throw revisionConflict(key, current.revision, expectedRevision);
      const fields = applyEntryChanges(fieldsOf(current), changes);
      const hash = entryIdentityHash(fields);
      const same = yield* one(
        "SELECT id FROM registered_entries WHERE identity_hash = ? AND id <> ?",
        hash,
        key,
      );
      if (same !== undefined) {
        throw new StoreError(
          "already-exists",
          `entry ${str(same.id)} already has this SPIFFE ID, parent ID and selectors: change that entry, or delete one of the two`,
        );
      }
      let changed: number;
      try {
        changed = yield* run(
          `UPDATE registered_entries SET spiffe_id = ?, parent_id = ?, selectors = ?, identity_hash = ?,
             x509_svid_ttl = ?, jwt_svid_ttl = ?, dns_names = ?, hint = ?, admin = ?, downstream = ?,
             expires_at = ?, updated_at = ?, revision = revision + 1
           WHERE id = ? AND revision = ?`,
          fields.spiffeId,
          fields.parentId,
          ...entryColumnValues(fields, hash),
          now,
          key,
          expectedRevision,
        );
      } catch (e) {
        if (e instanceof UniqueViolation) {
          throw new StoreError(
            "already-exists",
            "another entry with this SPIFFE ID, parent ID and selectors was just created: read the entries again",
          );
        }
        throw e;
      }
      if (changed === 0) throw revisionConflict(key, undefined, expectedRevision);
      if (JSON.stringify(fields.selectors) !== JSON.stringify(current.selectors)) {
        yield* run("DELETE FROM entry_selectors WHERE entry_id = ?", key);
        yield* insertSelectors(key, fields.selectors);
      }
      const updated = yield* one(`SELECT ${ENTRY_COLUMNS} FROM registered_entries WHERE id = ?`, key);
      if (updated === undefined) throw entryNotFound(key);
      return entryFromRow(updated);
    });
  }

  async deleteEntry(id: string, expectedRevision?: number): Promise<void> {
    const key = checkUuid(id, "entry id");
    if (expectedRevision !== undefined) checkRevision(expectedRevision, "expectedRevision");
    return this.tx("write", function* () {
      const n =
        expectedRevision === undefined
          ? yield* run("DELETE FROM registered_entries WHERE id = ?", key)
          : yield* run("DELETE FROM registered_entries WHERE id = ? AND revision = ?", key, expectedRevision);
      if (n > 0) return;
      const row = yield* one("SELECT revision FROM registered_entries WHERE id = ?", key);
      if (row === undefined) throw entryNotFound(key);
      throw revisionConflict(key, int(row.revision), expectedRevision ?? 0);
    });
  }

  async listNodeAliases(
    agentId: string,
    agentSelectors: readonly (Selector | string)[],
  ): Promise<RegistrationEntry[]> {
    const agent = checkAgentId(agentId);
    const selectors = normalizeSelectors(agentSelectors, "agentSelectors", { required: false });
    const now = this.nowMs();
    return this.tx("read", () => selectNodeAliases(agent, selectors, now));
  }

  async listEntriesForAgent(
    agentId: string,
    agentSelectors?: readonly (Selector | string)[],
  ): Promise<RegistrationEntry[]> {
    const agent = checkAgentId(agentId);
    const given =
      agentSelectors === undefined
        ? undefined
        : normalizeSelectors(agentSelectors, "agentSelectors", { required: false });
    const now = this.nowMs();
    return this.tx("read", function* () {
      let selectors = given;
      if (selectors === undefined) {
        const row = yield* one("SELECT selectors FROM attested_agents WHERE spiffe_id = ?", agent);
        if (row === undefined) throw agentNotFound(agent);
        selectors = JSON.parse(str(row.selectors)) as Selector[];
      }
      const aliases = yield* selectNodeAliases(agent, selectors, now);
      const parents = [...new Set([agent, ...aliases.map((a) => a.spiffeId)])];
      const rows = yield* all(
        `SELECT ${ENTRY_COLUMNS} FROM registered_entries
         WHERE parent_id IN (${placeholders(parents.length)}) AND (expires_at IS NULL OR expires_at > ?)`,
        ...parents,
        now,
      );
      return rows.map(entryFromRow).sort(byCreatedThenId);
    });
  }

  // ---- Attested agents ----

  async createAgent(input: NewAgent): Promise<AttestedAgent> {
    if (typeof input !== "object" || input === null) invalid("an agent must be an object");
    const spiffeId = checkAgentId(input.spiffeId, "spiffeId");
    const attestationType = checkAttestationType(input.attestationType);
    const serialNumber = checkSerial(input.serialNumber);
    const expiresAt = checkDate(input.expiresAt, "expiresAt");
    const selectors = normalizeSelectors(input.selectors, "selectors", { required: false });
    const now = this.nowMs();
    return this.tx("write", function* () {
      const existing = yield* one("SELECT banned FROM attested_agents WHERE spiffe_id = ?", spiffeId);
      if (existing !== undefined) {
        if (bool(existing.banned)) throw agentBanned(spiffeId);
        throw new StoreError(
          "already-exists",
          `agent ${spiffeId} is already attested: renew its SVID with updateAgentSerial, or delete the agent first`,
        );
      }
      try {
        yield* run(
          `INSERT INTO attested_agents (spiffe_id, attestation_type, serial_number, expires_at, banned, selectors, created_at, updated_at)
           VALUES (${placeholders(8)})`,
          spiffeId,
          attestationType,
          serialNumber,
          expiresAt.getTime(),
          false,
          JSON.stringify(selectors),
          now,
          now,
        );
      } catch (e) {
        if (e instanceof UniqueViolation) {
          throw new StoreError(
            "already-exists",
            `agent ${spiffeId} attested at the same moment on another server: use the record that exists`,
          );
        }
        throw e;
      }
      const row = yield* one("SELECT * FROM attested_agents WHERE spiffe_id = ?", spiffeId);
      if (row === undefined) throw agentNotFound(spiffeId);
      return agentFromRow(row);
    });
  }

  async getAgent(spiffeId: string): Promise<AttestedAgent> {
    const id = checkAgentId(spiffeId);
    return this.tx("read", function* () {
      const row = yield* one("SELECT * FROM attested_agents WHERE spiffe_id = ?", id);
      if (row === undefined) throw agentNotFound(id);
      return agentFromRow(row);
    });
  }

  async listAgents(filter: AgentFilter = {}): Promise<AttestedAgent[]> {
    const { sql, params } = selectWhere("attested_agents", [
      ["banned", filter.banned === undefined ? undefined : Boolean(filter.banned)],
      [
        "attestation_type",
        filter.attestationType === undefined ? undefined : checkAttestationType(filter.attestationType),
      ],
    ]);
    return this.tx("read", function* () {
      const rows = yield* all(sql, ...params);
      return rows
        .map(agentFromRow)
        .sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
    });
  }

  async updateAgentSerial(spiffeId: string, renewal: AgentRenewal): Promise<AttestedAgent> {
    const id = checkAgentId(spiffeId);
    if (typeof renewal !== "object" || renewal === null) invalid("a renewal must be an object");
    const serial = checkSerial(renewal.serialNumber);
    const expiresAt = checkDate(renewal.expiresAt, "expiresAt");
    const expected =
      renewal.expectedSerial === undefined
        ? undefined
        : checkSerial(renewal.expectedSerial, "expectedSerial");
    const selectors =
      renewal.selectors === undefined
        ? undefined
        : normalizeSelectors(renewal.selectors, "selectors", { required: false });
    const now = this.nowMs();
    return this.tx("write", function* () {
      const sets = ["serial_number = ?", "expires_at = ?", "updated_at = ?"];
      const params: Param[] = [serial, expiresAt.getTime(), now];
      if (selectors !== undefined) {
        sets.push("selectors = ?");
        params.push(JSON.stringify(selectors));
      }
      let where = "spiffe_id = ? AND banned = ?";
      params.push(id, false);
      if (expected !== undefined) {
        where += " AND serial_number = ?";
        params.push(expected);
      }
      const n = yield* run(`UPDATE attested_agents SET ${sets.join(", ")} WHERE ${where}`, ...params);
      const row = yield* one("SELECT * FROM attested_agents WHERE spiffe_id = ?", id);
      if (row === undefined) throw agentNotFound(id);
      if (n > 0) return agentFromRow(row);
      if (bool(row.banned)) throw agentBanned(id);
      throw new StoreError(
        "conflict",
        `agent ${id} presented an SVID that is not its current one (it was renewed meanwhile): renew with the newest SVID, or attest again`,
      );
    });
  }

  async banAgent(spiffeId: string): Promise<AttestedAgent> {
    const id = checkAgentId(spiffeId);
    const now = this.nowMs();
    return this.tx("write", function* () {
      yield* run(
        "UPDATE attested_agents SET banned = ?, updated_at = ? WHERE spiffe_id = ? AND banned = ?",
        true,
        now,
        id,
        false,
      );
      const row = yield* one("SELECT * FROM attested_agents WHERE spiffe_id = ?", id);
      if (row === undefined) throw agentNotFound(id);
      return agentFromRow(row);
    });
  }

  async deleteAgent(spiffeId: string): Promise<void> {
    const id = checkAgentId(spiffeId);
    return this.tx("write", function* () {
      const n = yield* run("DELETE FROM attested_agents WHERE spiffe_id = ?", id);
      if (n === 0) throw agentNotFound(id);
    });
  }

  // ---- Join tokens ----

  async createJoinToken(ttlSeconds: number, token?: string): Promise<CreatedJoinToken> {
    checkTtl(ttlSeconds, "join token TTL (seconds)");
    if (token !== undefined && (typeof token !== "string" || !/^[\x21-\x7e]{16,256}$/.test(token))) {
      invalid(
        "a join token must be 16-256 printable characters without spaces: leave it out to get a random one",
      );
    }
    const value = token ?? randomBytes(24).toString("base64url");
    const hash = sha256Hex(value);
    const now = this.nowMs();
    const expiresAt = now + ttlSeconds * 1000;
    await this.tx("write", function* () {
      try {
        yield* run(
          "INSERT INTO join_tokens (token_hash, expires_at, used, used_at, created_at) VALUES (?, ?, ?, ?, ?)",
          hash,
          expiresAt,
          false,
          null,
          now,
        );
      } catch (e) {
        if (e instanceof UniqueViolation) {
          throw new StoreError(
            "already-exists",
            "this join token exists already: choose another, or let Tessera generate one",
          );
        }
        throw e;
      }
    });
    return { token: value, expiresAt: new Date(expiresAt) };
  }

  async spendJoinToken(token: string): Promise<SpendResult> {
    if (typeof token !== "string" || token === "") return { status: "unknown" };
    const hash = sha256Hex(token);
    const now = this.nowMs();
    return this.tx("write", function* (): TxBody<SpendResult> {
      // One conditional statement: of racing servers, the database lets exactly one match.
      const spent = yield* all(
        "UPDATE join_tokens SET used = ?, used_at = ? WHERE token_hash = ? AND used = ? AND expires_at > ? RETURNING expires_at",
        true,
        now,
        hash,
        false,
        now,
      );
      const row = spent[0];
      if (row !== undefined) return { status: "ok", expiresAt: new Date(int(row.expires_at)) };
      const stored = yield* one("SELECT used, expires_at FROM join_tokens WHERE token_hash = ?", hash);
      if (stored === undefined) return { status: "unknown" };
      if (bool(stored.used)) return { status: "used" };
      return { status: "expired", expiresAt: new Date(int(stored.expires_at)) };
    });
  }

  async listJoinTokens(): Promise<JoinToken[]> {
    return this.tx("read", function* () {
      const rows = yield* all("SELECT token_hash, expires_at, used, created_at FROM join_tokens");
      return rows
        .map((r) => ({
          tokenHash: str(r.token_hash),
          expiresAt: new Date(int(r.expires_at)),
          used: bool(r.used),
          createdAt: new Date(int(r.created_at)),
        }))
        .sort(
          (a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.tokenHash < b.tokenHash ? -1 : 1),
        );
    });
  }

  async pruneJoinTokens(before?: Date): Promise<number> {
    const limit = before === undefined ? this.nowMs() : checkDate(before, "before").getTime();
    return this.tx("write", () => run("DELETE FROM join_tokens WHERE expires_at <= ?", limit));
  }

  // ---- CA and JWT signing keys ----

  async putCaKey(input: NewCaKey): Promise<CaKey> {
    if (typeof input !== "object" || input === null) invalid("a CA key must be an object");
    const id = checkKeyId(input.id);
    const kind = checkKeyKind(input.kind);
    const state = checkKeyState(input.state);
    let certificatePem: string | null = null;
    let publicJwk: string | null = null;
    if (kind === "x509") {
      certificatePem = checkPem(input.certificatePem, "CERTIFICATE", "certificatePem");
      if (input.publicJwk !== undefined)
        invalid(`CA key ${id} is an X.509 key: give certificatePem, not publicJwk`);
    } else {
      const jwk = checkJwk(input.publicJwk, "publicJwk");
      if (jwk.kid !== id) invalid(`publicJwk.kid (${jwk.kid}) must equal the key id (${id})`);
      if (input.certificatePem !== undefined)
        invalid(`CA key ${id} is a JWT key: give publicJwk, not certificatePem`);
      publicJwk = JSON.stringify(jwk);
    }
    if (
      typeof input.privateKeyPem !== "string" ||
      !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(input.privateKeyPem)
    ) {
      invalid(
        `privateKeyPem of CA key ${id} must be a PEM private key (PKCS#8: -----BEGIN PRIVATE KEY-----)`,
      );
    }
    const notAfter = checkDate(input.notAfter, "notAfter");
    const privateKey = seal(input.privateKeyPem, this.kek, id);
    const now = this.nowMs();
    await this.tx("write", function* () {
      try {
        yield* run(
          `INSERT INTO ca_keys (id, kind, state, certificate_pem, public_jwk, private_key, not_after, created_at, updated_at)
           VALUES (${placeholders(9)})`,
          id,
          kind,
          state,
          certificatePem,
          publicJwk,
          privateKey,
          notAfter.getTime(),
          now,
          now,
        );
      } catch (e) {
        if (e instanceof UniqueViolation) {
          throw new StoreError("already-exists", `CA key ${id} exists already: give the new key another id`);
        }
        throw e;
      }
    });
    return this.getCaKey(id);
  }

  private caKeyFromRow(r: Row): CaKey {
    const id = str(r.id);
    const cert =
      r.certificate_pem === null || r.certificate_pem === undefined ? undefined : str(r.certificate_pem);
    const jwk =
      r.public_jwk === null || r.public_jwk === undefined
        ? undefined
        : (JSON.parse(str(r.public_jwk)) as Jwk);
    return {
      id,
      kind: checkKeyKind(r.kind),
      state: checkKeyState(r.state),
      ...(cert === undefined ? {} : { certificatePem: cert }),
      ...(jwk === undefined ? {} : { publicJwk: jwk }),
      privateKeyPem: unseal(str(r.private_key), this.kek, id),
      notAfter: new Date(int(r.not_after)),
      createdAt: new Date(int(r.created_at)),
      updatedAt: new Date(int(r.updated_at)),
    };
  }

  async getCaKey(id: string): Promise<CaKey> {
    const key = checkKeyId(id);
    const row = await this.tx("read", () => one("SELECT * FROM ca_keys WHERE id = ?", key));
    if (row === undefined)
      throw new StoreError("not-found", `there is no CA key ${key}: list the keys to see which exist`);
    return this.caKeyFromRow(row);
  }

  async listCaKeys(filter: CaKeyFilter = {}): Promise<CaKey[]> {
    const { sql, params } = selectWhere("ca_keys", [
      ["kind", filter.kind === undefined ? undefined : checkKeyKind(filter.kind)],
      ["state", filter.state === undefined ? undefined : checkKeyState(filter.state)],
    ]);
    const rows = await this.tx("read", () => all(sql, ...params));
    return rows.map((r) => this.caKeyFromRow(r)).sort(byCreatedThenId);
  }

  async setCaKeyState(id: string, state: KeyState, expectedState?: KeyState): Promise<CaKey> {
    const key = checkKeyId(id);
    const to = checkKeyState(state);
    const from = expectedState === undefined ? undefined : checkKeyState(expectedState, "expectedState");
    const now = this.nowMs();
    await this.tx("write", function* () {
      const n =
        from === undefined
          ? yield* run("UPDATE ca_keys SET state = ?, updated_at = ? WHERE id = ?", to, now, key)
          : yield* run(
              "UPDATE ca_keys SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
              to,
              now,
              key,
              from,
            );
      if (n > 0) return;
      const row = yield* one("SELECT state FROM ca_keys WHERE id = ?", key);
      if (row === undefined)
        throw new StoreError("not-found", `there is no CA key ${key}: list the keys to see which exist`);
      throw new StoreError(
        "conflict",
        `CA key ${key} is ${str(row.state)}, not ${from}: another server rotated it; read the keys again`,
      );
    });
    return this.getCaKey(key);
  }

  async activateCaKey(id: string): Promise<CaKey> {
    const key = checkKeyId(id);
    const now = this.nowMs();
    await this.tx("write", function* () {
      const row = yield* one("SELECT kind, state FROM ca_keys WHERE id = ?", key);
      if (row === undefined)
        throw new StoreError("not-found", `there is no CA key ${key}: list the keys to see which exist`);
      const n = yield* run(
        "UPDATE ca_keys SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
        "active",
        now,
        key,
        "prepared",
      );
      if (n === 0) {
        throw new StoreError(
          "conflict",
          `CA key ${key} is ${str(row.state)}, not prepared: only a prepared key can be activated (another server may have rotated already)`,
        );
      }
      yield* run(
        "UPDATE ca_keys SET state = ?, updated_at = ? WHERE kind = ? AND state = ? AND id <> ?",
        "old",
        now,
        str(row.kind),
        "active",
        key,
      );
    });
    return this.getCaKey(key);
  }

  async deleteCaKey(id: string): Promise<void> {
    const key = checkKeyId(id);
    return this.tx("write", function* () {
      const n = yield* run("DELETE FROM ca_keys WHERE id = ?", key);
      if (n === 0)
        throw new StoreError("not-found", `there is no CA key ${key}: list the keys to see which exist`);
    });
  }

  // ---- Trust bundles ----

  async getBundle(trustDomain: string): Promise<BundleRecord | undefined> {
    const td = checkTrustDomain(trustDomain);
    return this.tx("read", function* () {
      const row = yield* one("SELECT * FROM bundles WHERE trust_domain = ?", td);
      return row === undefined ? undefined : bundleFromRow(row);
    });
  }

  async listBundles(): Promise<BundleRecord[]> {
    return this.tx("read", function* () {
      const rows = yield* all("SELECT * FROM bundles");
      return rows
        .map(bundleFromRow)
        .sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0));
    });
  }

  async putBundle(bundle: BundleContent, expectedSequence: bigint): Promise<BundleRecord> {
    const content = checkBundle(bundle);
    if (typeof expectedSequence !== "bigint" || expectedSequence < 0n) {
      invalid("expectedSequence must be the bigint sequence of the bundle you read (0n when there is none)");
    }
    const now = this.nowMs();
    const x509 = JSON.stringify(content.x509Authorities);
    const jwt = JSON.stringify(content.jwtAuthorities);
    return this.tx("write", function* () {
      // Compare-and-set in one statement: of racing writers at the same sequence, one wins.
      const rows =
        expectedSequence === 0n
          ? yield* all(
              `INSERT INTO bundles (trust_domain, sequence, x509_authorities, jwt_authorities, refresh_hint, updated_at)
               VALUES (?, 1, ?, ?, ?, ?) ON CONFLICT (trust_domain) DO NOTHING RETURNING *`,
              content.trustDomain,
              x509,
              jwt,
              content.refreshHintSeconds,
              now,
            )
          : yield* all(
              `UPDATE bundles SET sequence = sequence + 1, x509_authorities = ?, jwt_authorities = ?, refresh_hint = ?, updated_at = ?
               WHERE trust_domain = ? AND sequence = ? RETURNING *`,
              x509,
              jwt,
              content.refreshHintSeconds,
              now,
              content.trustDomain,
              expectedSequence,
            );
      const row = rows[0];
      if (row !== undefined) return bundleFromRow(row);
      const cur = yield* one("SELECT sequence FROM bundles WHERE trust_domain = ?", content.trustDomain);
      throw new StoreError(
        "conflict",
        `the bundle of ${content.trustDomain} is at sequence ${cur === undefined ? "none (no bundle)" : String(bigint(cur.sequence))}, not ${expectedSequence}: read it again, reapply your change and retry`,
      );
    });
  }

  async updateBundle(
    trustDomain: string,
    change: (current: BundleRecord | undefined) => BundleContent,
  ): Promise<BundleRecord> {
    const td = checkTrustDomain(trustDomain);
    const attempts = this.options.bundleUpdateAttempts ?? 100;
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      const current = await this.getBundle(td);
      const next = change(current);
      if (checkTrustDomain(next.trustDomain) !== td) {
        invalid(`updateBundle(${td}) produced a bundle for ${next.trustDomain}: keep the trust domain`);
      }
      try {
        return await this.putBundle(next, current?.sequence ?? 0n);
      } catch (e) {
        if (!(e instanceof StoreError && e.code === "conflict")) throw e;
        last = e;
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * Math.min(50, 2 + i * 2))));
      }
    }
    throw new StoreError(
      "conflict",
      `the bundle of ${td} kept changing under ${attempts} attempts: too many writers; retry later`,
      { cause: last },
    );
  }

  async deleteBundle(trustDomain: string): Promise<void> {
    const td = checkTrustDomain(trustDomain);
    return this.tx("write", function* () {
      const n = yield* run("DELETE FROM bundles WHERE trust_domain = ?", td);
      if (n === 0) throw new StoreError("not-found", `there is no bundle for ${td}`);
    });
  }

  async schemaVersion(): Promise<number> {
    return this.tx("read", currentVersion);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.driver.close();
  }
}

function revisionConflict(id: string, current: number | undefined, expected: number): StoreError {
  return new StoreError(
    "conflict",
    `entry ${id} changed since you read it (revision ${current ?? "newer"}, you had ${expected}): read it again, reapply your change and retry`,
  );
}

function* insertSelectors(id: string, selectors: readonly Selector[]): TxBody<void> {
  for (const s of selectors) {
    yield* run("INSERT INTO entry_selectors (entry_id, type, value) VALUES (?, ?, ?)", id, s.type, s.value);
  }
}

interface EntryQuery {
  where: string[];
  params: Param[];
  excludeExpired: boolean;
  /** Set when a subset filter with no selectors makes the answer empty. */
  empty: boolean;
}

function entryQuery(filter: EntryFilter): EntryQuery {
  if (typeof filter !== "object" || filter === null) invalid("an entry filter must be an object");
  const q: EntryQuery = {
    where: [],
    params: [],
    excludeExpired: filter.excludeExpired === true,
    empty: false,
  };
  if (filter.parentId !== undefined) {
    q.where.push("e.parent_id = ?");
    q.params.push(normalizeSpiffeId(filter.parentId, "parentId").toString());
  }
  if (filter.spiffeId !== undefined) {
    q.where.push("e.spiffe_id = ?");
    q.params.push(normalizeSpiffeId(filter.spiffeId, "spiffeId").toString());
  }
  if (filter.selectorsSubsetOf !== undefined) {
    const selectors = normalizeSelectors(filter.selectorsSubsetOf, "selectorsSubsetOf", { required: false });
    if (selectors.length === 0) q.empty = true;
    else addSubsetCondition(q, selectors);
  }
  return q;
}

/** Entries all of whose selectors are among `selectors` (at least one shared, none missing). */
function addSubsetCondition(q: EntryQuery, selectors: readonly Selector[]): void {
  const match = selectors.map(() => "(s.type = ? AND s.value = ?)").join(" OR ");
  const pairs = selectors.flatMap((s) => [s.type, s.value]);
  q.where.push(`e.id IN (SELECT s.entry_id FROM entry_selectors s WHERE ${match})`);
  q.params.push(...pairs);
  q.where.push(`NOT EXISTS (SELECT 1 FROM entry_selectors s WHERE s.entry_id = e.id AND NOT (${match}))`);
  q.params.push(...pairs);
}

function* selectEntries(q: EntryQuery, now: number): TxBody<RegistrationEntry[]> {
  if (q.empty) return [];
  const where = [...q.where];
  const params = [...q.params];
  if (q.excludeExpired) {
    where.push("(e.expires_at IS NULL OR e.expires_at > ?)");
    params.push(now);
  }
  const cols = ENTRY_COLUMNS.split(", ")
    .map((c) => `e.${c}`)
    .join(", ");
  const rows = yield* all(
    `SELECT ${cols} FROM registered_entries e${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""}`,
    ...params,
  );
  return rows.map(entryFromRow).sort(byCreatedThenId);
}

function* selectNodeAliases(
  agentId: string,
  selectors: readonly Selector[],
  now: number,
): TxBody<RegistrationEntry[]> {
  const serverId = serverIdOf(normalizeSpiffeId(agentId, "agent ID"));
  return yield* selectEntries(
    entryQuery({ parentId: serverId, selectorsSubsetOf: selectors, excludeExpired: true }),
    now,
  );
}

function checkBundle(bundle: BundleContent): BundleContent {
  if (typeof bundle !== "object" || bundle === null) invalid("a bundle must be an object");
  const trustDomain = checkTrustDomain(bundle.trustDomain);
  if (!Array.isArray(bundle.x509Authorities)) invalid("x509Authorities must be a list of PEM certificates");
  const x509Authorities = bundle.x509Authorities.map((p, i) =>
    checkPem(p, "CERTIFICATE", `x509Authorities[${i}]`),
  );
  if (!Array.isArray(bundle.jwtAuthorities)) invalid("jwtAuthorities must be a list of JWKs");
  const jwtAuthorities = bundle.jwtAuthorities.map((j, i) => checkJwk(j, `jwtAuthorities[${i}]`));
  const kids = new Set<string>();
  for (const j of jwtAuthorities) {
    if (kids.has(j.kid)) invalid(`jwtAuthorities has kid ${j.kid} twice: key IDs must be unique in a bundle`);
    kids.add(j.kid);
  }
  const refreshHintSeconds = checkTtl(bundle.refreshHintSeconds, "refreshHintSeconds");
  return { trustDomain, x509Authorities, jwtAuthorities, refreshHintSeconds };
}
