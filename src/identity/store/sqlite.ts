/**
 * The datastore on a SQLite file: the default, for one server. WAL journal, foreign keys on,
 * a busy timeout for the rare second process, every transaction `BEGIN IMMEDIATE` and run
 * synchronously, migrations at open. The file (and its -wal and -shm files, which SQLite
 * creates with the same mode) is readable by its owner only: it holds the CA private keys.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { StoreError } from "./datastore.js";
import { migrate } from "./migrations.js";
import { checkKeyEncryptionKey } from "./sealing.js";
import { driveSync, type SqlDriver, type Statement, type TxBody, UniqueViolation } from "./sql.js";
import { SqlDatastore, type StoreOptions } from "./sqlstore.js";

export interface SqliteOptions extends StoreOptions {
  /** How long a write waits for another process holding the file's lock (default 5000 ms). */
  readonly busyTimeoutMs?: number;
}

function errorCode(e: unknown): string {
  return typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "string"
    ? (e as { code: string }).code
    : "";
}

class SqliteDriver implements SqlDriver {
  readonly dialect = "sqlite" as const;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
    private readonly busyTimeoutMs: number,
  ) {}

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (stmt === undefined) {
      stmt = this.db.prepare(sql);
      if (!/^\s*(CREATE|ALTER|DROP)\b/i.test(sql)) this.statements.set(sql, stmt);
    }
    return stmt;
  }

  private exec(s: Statement): unknown {
    const params = s.params.map((p) => (typeof p === "boolean" ? (p ? 1 : 0) : p));
    try {
      const stmt = this.prepare(s.sql);
      if (s.kind === "all") {
        if (stmt.reader) return stmt.all(...params);
        stmt.run(...params);
        return [];
      }
      return stmt.run(...params).changes;
    } catch (e) {
      if (
        errorCode(e).startsWith("SQLITE_CONSTRAINT_UNIQUE") ||
        errorCode(e) === "SQLITE_CONSTRAINT_PRIMARYKEY"
      ) {
        throw new UniqueViolation({ cause: e });
      }
      throw e;
    }
  }

  transaction<T>(body: () => TxBody<T>, mode: "read" | "write"): Promise<T> {
    try {
      const fn = this.db.transaction(() => driveSync(body(), (s) => this.exec(s)));
      return Promise.resolve(mode === "write" ? fn.immediate() : fn.deferred());
    } catch (e) {
      return Promise.reject(this.translate(e));
    }
  }

  translate(e: unknown): unknown {
    const code = errorCode(e);
    if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
      return new StoreError(
        "unavailable",
        `the SQLite database ${this.path} stayed locked by another process for over ${this.busyTimeoutMs} ms: is another server using this file? One file serves one server; use PostgreSQL for several replicas`,
        { cause: e },
      );
    }
    if (code.startsWith("SQLITE_READONLY")) {
      return new StoreError(
        "unavailable",
        `the SQLite database ${this.path} is read-only: make it writable by the server`,
        {
          cause: e,
        },
      );
    }
    if (code === "SQLITE_FULL" || code.startsWith("SQLITE_IOERR")) {
      return new StoreError(
        "unavailable",
        `writing the SQLite database ${this.path} failed (${code}): check the disk`,
        {
          cause: e,
        },
      );
    }
    return e;
  }

  async close(): Promise<void> {
    this.statements.clear();
    if (this.db.open) this.db.close();
  }
}

/** Creates the file (and its folder) readable by the owner only, or tightens an existing file. */
function prepareFile(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(path)) {
    closeSync(openSync(path, "a", 0o600));
    return;
  }
  try {
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) chmodSync(path, mode & 0o700);
  } catch {
    // Not ours to change (another owner): SQLite will say if it cannot open it.
  }
}

/**
 * Opens (creating if needed) the SQLite datastore at `path` (`:memory:` for a private in-memory
 * database) and brings its schema to the latest version.
 */
export async function openSqliteStore(path: string, options: SqliteOptions = {}): Promise<SqlDatastore> {
  const memory = path === ":memory:";
  const file = memory ? path : resolve(path);
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  checkKeyEncryptionKey(options.keyEncryptionKey);
  let db: Database.Database;
  try {
    if (!memory) prepareFile(file);
    db = new Database(file, { timeout: busyTimeoutMs });
  } catch (e) {
    throw new StoreError(
      "unavailable",
      `cannot open the SQLite database ${file}: ${(e as Error).message}; check the path and that its folder is writable by the server`,
      { cause: e },
    );
  }
  const driver = new SqliteDriver(db, file, busyTimeoutMs);
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    if (!memory) {
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (String(mode).toLowerCase() !== "wal") {
        throw new StoreError(
          "unavailable",
          `the SQLite database ${file} cannot use WAL (journal mode ${String(mode)})`,
        );
      }
    }
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    const now = (options.now?.() ?? new Date()).getTime();
    await driver.transaction(() => migrate("sqlite", now), "write");
  } catch (e) {
    await driver.close();
    if (e instanceof StoreError) throw e;
    const code = errorCode(e);
    throw new StoreError(
      "unavailable",
      code === "SQLITE_NOTADB"
        ? `${file} is not a SQLite database: point the datastore at another file`
        : `cannot prepare the SQLite database ${file}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return new SqlDatastore(driver, options);
}
