import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from dist/test/...). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** Other projects' test data, read in place: ../shared/oracles beside the clone. */
export const oraclesDir = process.env.TESSERA_ORACLES ?? join(repoRoot, "..", "shared", "oracles");

export function oracle(...parts: string[]): string {
  const p = join(oraclesDir, ...parts);
  if (!existsSync(p))
    throw new Error(`oracle data missing: ${p} (set TESSERA_ORACLES to the shared/oracles folder)`);
  return p;
}

/** The built CLI entry point. */
export const cliPath = join(repoRoot, "dist", "src", "cli", "main.js");
