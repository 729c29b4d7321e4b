import { spawnSync } from "node:child_process";
import { cliPath } from "./paths.js";

export interface CliResult {
  stdout: string;
  stderr: string;
  status: number | null;
}

/** Runs the built `tessera` command. */
export function tessera(args: readonly string[], input?: string): CliResult {
  const r = spawnSync(process.execPath, [cliPath, ...args], {
    encoding: "utf8",
    input,
    maxBuffer: 256 * 1024 * 1024,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}
