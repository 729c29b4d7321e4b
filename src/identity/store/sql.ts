/**
 * The little the shared store needs from a SQL database: run a transaction body.
 *
 * A body is a generator that yields statements and receives their results, so one body runs
 * on both drivers: SQLite drives it synchronously inside one `BEGIN IMMEDIATE` transaction (no
 * other work can interleave: better-sqlite3 is synchronous), PostgreSQL drives it
 * asynchronously on one pooled connection inside `BEGIN ... COMMIT`.
 *
 * Statements use `?` placeholders; the PostgreSQL driver rewrites them to `$1, $2...`.
 */

export type Param = string | number | bigint | boolean | null;
export type Row = Record<string, unknown>;

export interface Statement {
  readonly kind: "all" | "run";
  readonly sql: string;
  readonly params: readonly Param[];
}

export type TxBody<T> = Generator<Statement, T, unknown>;

/** Runs a query and returns its rows (also for `... RETURNING`). */
export function* all<R extends Row = Row>(
  sql: string,
  ...params: Param[]
): Generator<Statement, R[], unknown> {
  return (yield { kind: "all", sql, params }) as R[];
}

/** The first row, or undefined. */
export function* one<R extends Row = Row>(
  sql: string,
  ...params: Param[]
): Generator<Statement, R | undefined, unknown> {
  const rows = (yield { kind: "all", sql, params }) as R[];
  return rows[0];
}

/** Runs a statement and returns how many rows it changed. */
export function* run(sql: string, ...params: Param[]): Generator<Statement, number, unknown> {
  return (yield { kind: "run", sql, params }) as number;
}

/** A UNIQUE or PRIMARY KEY constraint refused a row (thrown into the body, which may catch it). */
export class UniqueViolation extends Error {
  constructor(options?: { cause?: unknown }) {
    super("unique constraint violated", options);
    this.name = "UniqueViolation";
  }
}

export interface SqlDriver {
  readonly dialect: "sqlite" | "postgres";
  /** Runs `body` in one transaction; commits when it returns, rolls back when it throws. */
  transaction<T>(body: () => TxBody<T>, mode: "read" | "write"): Promise<T>;
  close(): Promise<void>;
}

/** Steps a body synchronously: `exec` runs each statement (SQLite). */
export function driveSync<T>(body: TxBody<T>, exec: (s: Statement) => unknown): T {
  let next: { ok: unknown } | { err: unknown } = { ok: undefined };
  for (;;) {
    const step: IteratorResult<Statement, T> = "err" in next ? body.throw(next.err) : body.next(next.ok);
    if (step.done) return step.value;
    try {
      next = { ok: exec(step.value) };
    } catch (e) {
      next = { err: e };
    }
  }
}

/** Steps a body asynchronously: `exec` runs each statement (PostgreSQL). */
export async function driveAsync<T>(body: TxBody<T>, exec: (s: Statement) => Promise<unknown>): Promise<T> {
  let next: { ok: unknown } | { err: unknown } = { ok: undefined };
  for (;;) {
    const step: IteratorResult<Statement, T> = "err" in next ? body.throw(next.err) : body.next(next.ok);
    if (step.done) return step.value;
    try {
      next = { ok: await exec(step.value) };
    } catch (e) {
      next = { err: e };
    }
  }
}

/** Rewrites `?` placeholders to `$1, $2...`, leaving quoted text alone. */
export function toNumberedPlaceholders(sql: string): string {
  let out = "";
  let n = 0;
  let quote: string | undefined;
  for (const c of sql) {
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      out += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      out += c;
    } else if (c === "?") {
      n++;
      out += `$${n}`;
    } else {
      out += c;
    }
  }
  return out;
}

/** Reads an integer column that a driver may return as number, bigint or string. */
export function int(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint" || typeof v === "string") return Number(v);
  throw new TypeError(`expected an integer column, got ${typeof v}`);
}

export function bigint(v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" || typeof v === "string") return BigInt(v);
  throw new TypeError(`expected an integer column, got ${typeof v}`);
}

/** Reads a boolean column (SQLite: 0/1, PostgreSQL: boolean). */
export function bool(v: unknown): boolean {
  return v === true || v === 1 || v === 1n || v === "1" || v === "t" || v === "true";
}

export function str(v: unknown): string {
  if (typeof v !== "string") throw new TypeError(`expected a text column, got ${typeof v}`);
  return v;
}

/** `?, ?, ?` for n values. */
export function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}
