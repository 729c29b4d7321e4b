/**
 * Runs a pod's processes: inside its network namespace, under their own numeric uid and gid
 * with no supplementary groups and no capabilities, with a clean environment. The uid is what
 * attestation reads (SO_PEERCRED) and what capture tells the sidecar apart by, so no process of
 * a pod runs as root (a root process could also flush the pod's capture rules).
 *
 * `ip netns exec NS setpriv --reuid=U --regid=G --clear-groups -- argv...`: ip enters the
 * namespace and mounts /etc/netns/NS over /etc (resolv.conf, hosts), then execs setpriv, which
 * drops to the uid and execs the program; no user account is needed, and as setresuid from
 * root to a non-zero uid clears the capability sets, the program starts with none. Both exec,
 * so the child's pid is the program's and signals reach it directly.
 */
import { type ChildProcess, type StdioOptions, spawn } from "node:child_process";
import type { CommandResult } from "./exec.js";
import { checkNetnsName } from "./netns.js";

/** A PATH that finds system tools and nothing from the caller's environment. */
export const POD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface PodProcessOptions {
  readonly uid: number;
  readonly gid: number;
  /** Added to PATH and HOME=/tmp (and may replace them). */
  readonly env?: Readonly<Record<string, string>>;
  /** Default /tmp. */
  readonly cwd?: string;
  readonly stdio?: StdioOptions;
}

export class PodProcessError extends Error {
  readonly code = "pod-process-invalid";

  constructor(message: string) {
    super(message);
    this.name = "PodProcessError";
  }
}

function checkId(value: number, what: "uid" | "gid"): number {
  // 0 is root; 2^32-1 is (uid_t)-1, which setresuid reads as "leave unchanged".
  if (!Number.isInteger(value) || value < 1 || value > 0xfffffffe) {
    throw new PodProcessError(
      `${what} ${value} is not valid for a pod process: expected a non-root id from 1 to 4294967294`,
    );
  }
  return value;
}

/** The argv that runs `argv` in the namespace as uid/gid (exported for tests and logs). */
export function podCommand(
  netns: string,
  argv: readonly string[],
  ids: { uid: number; gid: number },
): string[] {
  checkNetnsName(netns);
  if (argv.length === 0 || argv[0] === "") throw new PodProcessError("no program to run: argv is empty");
  for (const arg of argv) {
    if (arg.includes("\0")) throw new PodProcessError("an argument contains a NUL byte");
  }
  return [
    "ip",
    "netns",
    "exec",
    netns,
    "setpriv",
    `--reuid=${checkId(ids.uid, "uid")}`,
    `--regid=${checkId(ids.gid, "gid")}`,
    "--clear-groups",
    "--",
    ...argv,
  ];
}

/** The whole environment of a pod process: nothing is inherited from the caller. */
export function podEnvironment(env: Readonly<Record<string, string>> = {}): Record<string, string> {
  const clean: Record<string, string> = { PATH: POD_PATH, HOME: "/tmp" };
  for (const [key, value] of Object.entries(env)) {
    if (key === "" || key.includes("=") || key.includes("\0") || value.includes("\0")) {
      throw new PodProcessError(
        `environment variable "${key}" is not valid (no "=" or NUL in names, no NUL in values)`,
      );
    }
    clean[key] = value;
  }
  return clean;
}

/** Starts a process in a pod. */
export function spawnInPod(netns: string, argv: readonly string[], options: PodProcessOptions): ChildProcess {
  const [file, ...args] = podCommand(netns, argv, options) as [string, ...string[]];
  return spawn(file, args, {
    env: podEnvironment(options.env),
    cwd: options.cwd ?? "/tmp",
    stdio: options.stdio ?? ["ignore", "pipe", "pipe"],
  });
}

/**
 * Runs a process in a pod to completion. A non-zero exit is a result, not an error (the caller
 * often expects one); failing to start, or running past timeoutMs (then killed), is an error.
 */
export async function execInPod(
  netns: string,
  argv: readonly string[],
  options: Omit<PodProcessOptions, "stdio"> & { input?: string; timeoutMs?: number },
): Promise<CommandResult> {
  const child = spawnInPod(netns, argv, { ...options, stdio: ["pipe", "pipe", "pipe"] });
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise<CommandResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${argv.join(" ")} in ${netns} did not finish within ${timeoutMs} ms: killed`));
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    // A program that does not read stdin closes it early; that EPIPE is not the caller's error.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input ?? "");
  });
}
