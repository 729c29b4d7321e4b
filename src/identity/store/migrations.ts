/**
 * Schema migrations, applied in order at start and recorded in `schema_migrations`.
 *
 * Never edit a released migration: add the next one. SQL that both databases understand
 * goes in `sql`; where they differ, a migration gives `sqlite` and `postgres` separately.
 * Portable choices: TEXT, BIGINT (64-bit in both), BOOLEAN (0/1 in SQLite), JSON kept as TEXT,
 * times as BIGINT milliseconds since the epoch.
 */
import { StoreError } from "./datastore.js";
import { all, one, run, type TxBody } from "./sql.js";

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql?: readonly string[];
  readonly sqlite?: readonly string[];
  readonly postgres?: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "entries, agents, join tokens, CA keys, bundles",
    sql: [
      `CREATE TABLE registered_entries (
        id TEXT PRIMARY KEY,
        spiffe_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        selectors TEXT NOT NULL,
        identity_hash TEXT NOT NULL UNIQUE,
        x509_svid_ttl INTEGER NOT NULL,
        jwt_svid_ttl INTEGER NOT NULL,
        dns_names TEXT NOT NULL,
        hint TEXT NOT NULL,
        admin BOOLEAN NOT NULL,
        downstream BOOLEAN NOT NULL,
        expires_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        revision BIGINT NOT NULL
      )`,
      "CREATE INDEX registered_entries_parent_id ON registered_entries (parent_id)",
      "CREATE INDEX registered_entries_spiffe_id ON registered_entries (spiffe_id)",
      `CREATE TABLE entry_selectors (
        entry_id TEXT NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (entry_id, type, value)
      )`,
      "CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value)",
      `CREATE TABLE attested_agents (
        spiffe_id TEXT PRIMARY KEY,
        attestation_type TEXT NOT NULL,
        serial_number TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        banned BOOLEAN NOT NULL,
        selectors TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE join_tokens (
        token_hash TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        used BOOLEAN NOT NULL,
        used_at BIGINT,
        created_at BIGINT NOT NULL
      )`,
      `CREATE TABLE ca_keys (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        certificate_pem TEXT,
        public_jwk TEXT,
        private_key TEXT NOT NULL,
        not_after BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE bundles (
        trust_domain TEXT PRIMARY KEY,
        sequence BIGINT NOT NULL,
        x509_authorities TEXT NOT NULL,
        jwt_authorities TEXT NOT NULL,
        refresh_hint INTEGER NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
];

export const LATEST_SCHEMA_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

/** Any fixed 64-bit number: the PostgreSQL advisory lock replicas take to migrate one at a time. */
const MIGRATION_LOCK_KEY = "7306310852144195187";

export function migrationStatements(m: Migration, dialect: "sqlite" | "postgres"): readonly string[] {
  return [...(m.sql ?? []), ...((dialect === "sqlite" ? m.sqlite : m.postgres) ?? [])];
}

/**
 * Brings the schema to the latest version in one transaction; returns the versions applied.
 * On PostgreSQL it first takes a transaction-scoped advisory lock, so replicas starting
 * together migrate one after the other and the later ones find nothing to do.
 */
export function* migrate(dialect: "sqlite" | "postgres", now: number): TxBody<number[]> {
  if (dialect === "postgres") yield* all(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
  yield* run(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
  );
  const current = yield* currentVersion();
  if (current > LATEST_SCHEMA_VERSION) {
    throw new StoreError(
      "unavailable",
      `the database schema is at version ${current}, newer than this Tessera knows (${LATEST_SCHEMA_VERSION}): run a Tessera at least as new as the one that upgraded the database`,
    );
  }
  const applied: number[] = [];
  for (const m of [...MIGRATIONS].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    for (const statement of migrationStatements(m, dialect)) yield* run(statement);
    yield* run(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
      m.version,
      m.name,
      now,
    );
    applied.push(m.version);
  }
  return applied;
}

export function* currentVersion(): TxBody<number> {
  const row = yield* one<{ v: unknown }>("SELECT MAX(version) AS v FROM schema_migrations");
  return row?.v === null || row?.v === undefined ? 0 : Number(row.v);
}
