import { readFileSync } from "node:fs";
import { describeWarning, InputError } from "../kube/errors.js";
import { type LoadedCluster, loadCluster } from "../kube/index.js";
import { FocusError } from "../policy/connectivity.js";

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
export const EXIT_DENIED = 1;
export const EXIT_BAD_INPUT = 2;

export function collectPaths(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function readStdin(): string {
  return readFileSync(0, "utf8");
}

/** Loads `-f` paths plus positional paths; requires at least one. */
export function loadInputs(paths: readonly string[]): LoadedCluster {
  if (paths.length === 0)
    throw new UsageError("no input: give a file or directory (or -f PATH, or -f - for stdin)");
  return loadCluster(paths, readStdin);
}

export function printWarnings(
  loaded: { diagnostics: { warnings: readonly Parameters<typeof describeWarning>[0][] } },
  quiet: boolean,
): void {
  if (quiet) return;
  for (const w of loaded.diagnostics.warnings) process.stderr.write(`${describeWarning(w)}\n`);
}

export class UsageError extends Error {}

/** `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT` (host 0.0.0.0), for listen and connect flags. */
export function parseHostPort(flag: string, text: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:[\]]*):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(`${flag} ${text}: expected HOST:PORT (e.g. 127.0.0.1:8080 or [::]:8080)`);
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/**
 * Runs a command body: bad input and usage errors become one clear line on stderr and exit 2;
 * anything else is a bug and still never prints a stack trace unless TESSERA_DEBUG is set.
 */
export async function run(body: () => Promise<number> | number): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (e) {
    if (e instanceof InputError) {
      process.stderr.write(`error: ${e.describe()}\n`);
    } else if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`);
    } else if (e instanceof FocusError) {
      process.stderr.write(`error: ${e.message}\n`);
    } else {
      process.stderr.write(`internal error: ${e instanceof Error ? e.message : String(e)}\n`);
      if (process.env.TESSERA_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 70;
      return;
    }
    process.exitCode = EXIT_BAD_INPUT;
  }
}
