/**
 * Opens the datastore a URL names:
 * - `sqlite:///var/lib/tessera/datastore.db`, `sqlite:relative.db`, or a plain file path: SQLite;
 * - `postgres://user:password@host:5432/db` or `postgresql://...`: PostgreSQL.
 */
import type { Datastore } from "./datastore.js";
import { StoreError } from "./datastore.js";
import { openPostgresStore, type PostgresOptions } from "./postgres.js";
import { openSqliteStore, type SqliteOptions } from "./sqlite.js";

export type OpenOptions = SqliteOptions & PostgresOptions;

export type StoreLocation = { kind: "sqlite"; path: string } | { kind: "postgres"; connectionString: string };

/** Where a datastore URL points, without opening it. */
export function parseStoreUrl(url: string): StoreLocation {
  if (typeof url !== "string" || url.trim() === "") {
    throw new StoreError(
      "invalid",
      "the datastore URL is empty: give a SQLite file (e.g. sqlite:///var/lib/tessera/datastore.db) or postgres://user:password@host:5432/db",
    );
  }
  if (/^postgres(ql)?:\/\//i.test(url)) return { kind: "postgres", connectionString: url };
  const sqlite = /^sqlite:(\/\/)?(.*)$/i.exec(url);
  if (sqlite) {
    const path = decodeURIComponent(sqlite[2] ?? "");
    if (path === "")
      throw new StoreError(
        "invalid",
        "the sqlite: URL has no path: e.g. sqlite:///var/lib/tessera/datastore.db",
      );
    return { kind: "sqlite", path };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme) {
    throw new StoreError(
      "invalid",
      `the datastore scheme ${scheme[1]}:// is not supported: use sqlite:///path/to/file.db or postgres://user:password@host:5432/db`,
    );
  }
  return { kind: "sqlite", path: url };
}

export async function openStore(url: string, options: OpenOptions = {}): Promise<Datastore> {
  const location = parseStoreUrl(url);
  return location.kind === "sqlite"
    ? openSqliteStore(location.path, options)
    : openPostgresStore(location.connectionString, options);
}
