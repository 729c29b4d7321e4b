import { readFileSync } from "node:fs";
import { EXIT_DENIED, EXIT_OK, UsageError } from "./common.js";

/** Reads a file named on the command line; an unreadable file is bad input (exit 2). */
export function readInputFile(path: string, what: string): Buffer {
  try {
    return path === "-" ? readFileSync(0) : readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** `--bundle TRUSTDOMAIN=FILE`, repeatable. */
export function parseBundleOption(
  value: string,
  previous: Array<[string, string]> = [],
): Array<[string, string]> {
  const eq = value.indexOf("=");
  if (eq <= 0 || eq === value.length - 1)
    throw new UsageError(`--bundle ${value}: expected TRUSTDOMAIN=FILE`);
  return [...previous, [value.slice(0, eq), value.slice(eq + 1)]];
}

/** `--at TIME`: an ISO 8601 time; default now. */
export function parseAt(text: string | undefined): Date {
  if (text === undefined) return new Date();
  const at = new Date(text);
  if (Number.isNaN(at.getTime()))
    throw new UsageError(`--at ${text}: expected an ISO 8601 time, e.g. 2026-01-31T12:00:00Z`);
  return at;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A check an inspected credential fails: the rule it breaks and why. */
export interface Problem {
  rule: string;
  message: string;
}

/**
 * Prints an inspection report: as JSON with `-o json`, else as `textLines()` followed by one line
 * a problem. Returns the exit status: EXIT_OK when the report is valid, EXIT_DENIED otherwise.
 */
export function printReport(
  output: string,
  report: { valid: boolean; problems: readonly Problem[] },
  textLines: () => string[],
): number {
  if (output === "json") {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const lines = [...textLines(), ...report.problems.map((p) => `  - ${p.rule}: ${p.message}`)];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return report.valid ? EXIT_OK : EXIT_DENIED;
}
