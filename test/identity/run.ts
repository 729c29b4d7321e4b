/**
 * Child processes for the identity tests, spawned asynchronously: the server or agent under test
 * runs in the test's own process, so a synchronous spawn would block it.
 */
import { spawn } from "node:child_process";
import { cliPath } from "../helpers/paths.js";

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs `cmd` to its end (SPIFFE_ENDPOINT_SOCKET cleared unless `env` sets it). */
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: "", ...options.env },
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** Runs the built `tessera` command. */
export function tessera(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [cliPath, ...args], options);
}
