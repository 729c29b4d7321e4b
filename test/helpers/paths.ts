import { existsSync, statSync } from "node:fs";
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

/**
 * Tests that run processes under other uids (attestation refusals, pods) need those processes to
 * read the built code: fail with the cause, not with "Cannot find module", when a directory above
 * the clone is closed to other users (a clone under /root or in a mktemp -d folder).
 */
export function assertReachableByOtherUids(): void {
  for (let dir = repoRoot; ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `${dir} is not searchable by other users, so processes this test runs under other uids cannot read ${repoRoot}: chmod o+x ${dir}, or clone elsewhere`,
      );
    }
    if (dirname(dir) === dir) return;
  }
}
