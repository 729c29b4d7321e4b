import { spawnSync } from "node:child_process";
import { cliPath } from "./paths.js";

export interface CliResult {
  stdout: string;
  stderr: string;
  status: number | null;
}

/** Runs the built `tessera` command (with extra environment variables and a timeout if given). */
export function tessera(
  args: readonly string[],
  input?: string,
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): CliResult {
  const r = spawnSync(process.execPath, [cliPath, ...args], {
    encoding: "utf8",
    input,
    maxBuffer: 256 * 1024 * 1024,
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}
