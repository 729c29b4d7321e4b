/**
 * The datastore on PostgreSQL: for several server replicas sharing one database. Each
 * transaction runs on one pooled connection (READ COMMITTED); the shared bodies make every
 * check-then-write a single conditional statement or a UNIQUE insert, so replicas never both
 * win. Migrations run under a transaction-scoped advisory lock, so replicas starting together
 * migrate one after the other. Deadlocks and serialization failures are retried.
 */
import pg from "pg";
import { StoreError } from "./datastore.js";
import { migrate } from "./migrations.js";
import { checkKeyEncryptionKey } from "./sealing.js";
import {
  driveAsync,
  type Param,
  type SqlDriver,
  type Statement,
  type TxBody,
  toNumberedPlaceholders,
  UniqueViolation,
} from "./sql.js";
import { SqlDatastore, type StoreOptions } from "./sqlstore.js";

export interface PostgresOptions extends StoreOptions {
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** How long to wait for a connection (default 10000 ms). */
  readonly connectTimeoutMs?: number;
}

const RETRYABLE = new Set(["40001", "40P01"]);
const MAX_ATTEMPTS = 5;

function sqlState(e: unknown): string {
  return typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "string"
    ? (e as { code: string }).code
    : "";
}

/** Connection lost, refused, or the server shutting down or out of resources. */
function isConnectionProblem(e: unknown, state: string): boolean {
  if (state.startsWith("08") || state.startsWith("57P") || state.startsWith("53")) return true;
  if (/^E[A-Z]+$/.test(state)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT...
  return (
    e instanceof Error && /connection terminated|timeout exceeded when trying to connect/i.test(e.message)
  );
}

/** `user@host:port/db`, never the password. */
export function describePostgresUrl(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    const user = u.username === "" ? "" : `${decodeURIComponent(u.username)}@`;
    return `${user}${u.hostname || "localhost"}${u.port === "" ? "" : `:${u.port}`}${u.pathname}`;
  } catch {
    return "(unparsable connection string)";
  }
}

class PostgresDriver implements SqlDriver {
  readonly dialect = "postgres" as const;
  private readonly texts = new Map<string, string>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly where: string,
  ) {}

  private text(sql: string): string {
    let t = this.texts.get(sql);
    if (t === undefined) {
      t = toNumberedPlaceholders(sql);
      this.texts.set(sql, t);
    }
    return t;
  }

  private async exec(client: pg.PoolClient, s: Statement): Promise<unknown> {
    const values = s.params.map((p: Param) => (typeof p === "bigint" ? p.toString() : p));
    try {
      const res = await client.query({ text: this.text(s.sql), values });
      return s.kind === "all" ? res.rows : (res.rowCount ?? 0);
    } catch (e) {
      if (sqlState(e) === "23505") throw new UniqueViolation({ cause: e });
      throw e;
    }
  }

  private unavailable(e: unknown): StoreError {
    return new StoreError(
      "unavailable",
      `PostgreSQL at ${this.where} is unavailable (${(e as Error).message}): check that it runs and that the connection string is right`,
      { cause: e },
    );
  }

  async transaction<T>(body: () => TxBody<T>, mode: "read" | "write"): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw this.unavailable(e);
      }
      let broken: Error | undefined;
      // A connection that breaks between queries emits "error" on the client: without a
      // listener that would crash the process. The next query then fails and says why.
      const onError = (e: Error): void => {
        broken = e;
      };
      client.on("error", onError);
      try {
        await client.query(mode === "read" ? "BEGIN READ ONLY" : "BEGIN");
        const result = await driveAsync(body(), (s) => this.exec(client, s));
        await client.query("COMMIT");
        return result;
      } catch (e) {
        try {
          await client.query("ROLLBACK");
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        const state = sqlState(e instanceof UniqueViolation ? e.cause : e);
        if (RETRYABLE.has(state) && attempt < MAX_ATTEMPTS) continue;
        if (e instanceof StoreError || e instanceof UniqueViolation) throw e;
        if (isConnectionProblem(e, state)) throw this.unavailable(e);
        throw e;
      } finally {
        client.removeListener("error", onError);
        client.release(broken);
      }
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * Connects to PostgreSQL (`postgres://user:password@host:port/db`, any libpq-style options
 * that `pg` understands, e.g. `?sslmode=verify-full`) and brings the schema to the latest
 * version. Several replicas may call this at once.
 */
export async function openPostgresStore(
  connectionString: string,
  options: PostgresOptions = {},
): Promise<SqlDatastore> {
  const where = describePostgresUrl(connectionString);
  checkKeyEncryptionKey(options.keyEncryptionKey);
  const pool = new pg.Pool({
    connectionString,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10000,
    application_name: "tessera-identity-server",
  });
  // An idle connection that breaks (server restart) must not crash the process: the next
  // transaction gets a fresh connection, or a StoreError "unavailable".
  pool.on("error", () => {});
  const driver = new PostgresDriver(pool, where);
  try {
    const now = (options.now?.() ?? new Date()).getTime();
    await driver.transaction(() => migrate("postgres", now), "write");
  } catch (e) {
    await pool.end().catch(() => {});
    if (e instanceof StoreError) throw e;
    throw new StoreError(
      "unavailable",
      `cannot prepare the PostgreSQL database at ${where}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return new SqlDatastore(driver, options);
}
