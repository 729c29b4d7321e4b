import { spawn } from "node:child_process";

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly command: readonly string[],
    readonly result: CommandResult,
  ) {
    super(`${command.join(" ")} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  }
}

/**
 * Runs a system command (ip, nft) to completion, optionally inside a network namespace
 * (`ip netns exec`) and with text on stdin. Fails with the command's own message unless
 * `allowFailure` is set, so plumbing errors name the command that broke.
 */
export async function runCommand(
  argv: readonly string[],
  options: { input?: string; netns?: string; allowFailure?: boolean } = {},
): Promise<CommandResult> {
  const full = options.netns ? ["ip", "netns", "exec", options.netns, ...argv] : [...argv];
  const [file, ...args] = full as [string, ...string[]];
  const result = await new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // A command that exits before reading its stdin must not crash the caller with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
  if (result.code !== 0 && !options.allowFailure) throw new CommandError(full, result);
  return result;
}
