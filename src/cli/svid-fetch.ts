/**
 * `tessera svid fetch`: what any workload does, from the command line. Asks the agent's Workload
 * API for the caller's X.509-SVID and bundle (printed as a summary, or written as PEM files with
 * --write DIR) or for a JWT-SVID (--jwt --audience A: the token alone on stdout).
 */
import { readlinkSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { ENDPOINT_SOCKET_ENV } from "../spiffe/workload/address.js";
import { WorkloadApiClient, WorkloadApiError } from "../spiffe/workload/client.js";
import { run, UsageError } from "./common.js";
import { collect } from "./inspect-common.js";

/** The Workload API address from --socket (a path or an address), else SPIFFE_ENDPOINT_SOCKET. */
export function workloadAddress(socket: string | undefined): string {
  if (socket !== undefined && socket !== "") {
    return /^[a-z]+:/.test(socket) ? socket : `unix://${resolve(socket)}`;
  }
  const env = process.env[ENDPOINT_SOCKET_ENV];
  if (env !== undefined && env !== "") return env;
  throw new UsageError(
    `no Workload API socket: pass --socket PATH or set ${ENDPOINT_SOCKET_ENV} (tessera agent run prints the value to use)`,
  );
}

function exePath(): string {
  try {
    return readlinkSync("/proc/self/exe");
  } catch {
    return process.execPath;
  }
}

/** A sentence that says what went wrong and what to do next. */
export function explainWorkloadApiError(err: unknown, address: string): string {
  if (!(err instanceof WorkloadApiError)) return err instanceof Error ? err.message : String(err);
  switch (err.kind) {
    case "PermissionDenied": {
      const uid = process.geteuid?.() ?? -1;
      const gid = process.getegid?.() ?? -1;
      return (
        `no registration entry matches this process: uid ${uid}, gid ${gid}, path ${exePath()} — ` +
        `create one with: tessera entry create --spiffe-id spiffe://<trust domain>/<name> ` +
        `--parent-id <the agent's SPIFFE ID> --selector unix:uid:${uid} ` +
        `(the agent picks it up at its next sync, within a few seconds)`
      );
    }
    case "Unavailable":
      return `the agent does not answer on ${address}: is \`tessera agent run\` running, and is the socket path right (--socket or ${ENDPOINT_SOCKET_ENV})?`;
    case "Cancelled":
    case "DeadlineExceeded":
    case "timeout":
      return `the agent on ${address} did not answer in time: check \`tessera healthcheck --socket ...\` and the agent's log`;
    default:
      return err.message;
  }
}

/** Writes `data` to `path` atomically with `mode`. */
async function writeFileMode(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, data, { mode, flag: "wx" });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

interface FetchOptions {
  socket?: string;
  write?: string;
  jwt?: boolean;
  audience: string[];
  timeout: string;
}

export function svidFetchCommand(): Command {
  return new Command("fetch")
    .description(
      "Fetch this process's X.509-SVID and bundle (or a JWT-SVID) from the agent's Workload API, like any workload would.",
    )
    .option("--socket <path>", `the Workload API socket (default: ${ENDPOINT_SOCKET_ENV})`)
    .option("--write <dir>", "write svid.pem (chain), svid.key (0600) and bundle.pem into DIR")
    .option("--jwt", "fetch a JWT-SVID instead; prints the token alone on stdout")
    .option("--audience <aud>", "JWT audience (repeatable; required with --jwt)", collect, [])
    .option("--timeout <seconds>", "give up after this long", "10")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera svid fetch --socket /var/lib/tessera/agent/workload.sock
  $ tessera svid fetch --write ./certs
  $ tessera svid fetch --jwt --audience spiffe://example.org/db > token.jwt

Exit status: 0 on success, 1 when the agent refuses or cannot be reached, 2 for bad input.
Private keys and tokens are never printed, except the token with --jwt (stdout only).`,
    )
    .action((opts: FetchOptions) =>
      run(async () => {
        const timeoutS = Number(opts.timeout);
        if (!Number.isFinite(timeoutS) || timeoutS <= 0)
          throw new UsageError("--timeout must be a positive number of seconds");
        if (opts.jwt && opts.audience.length === 0) {
          throw new UsageError("--jwt needs --audience A (the service the token is for)");
        }
        if (!opts.jwt && opts.audience.length > 0) throw new UsageError("--audience goes with --jwt");
        if (opts.jwt && opts.write)
          throw new UsageError("--write writes X.509 files; leave it out with --jwt");
        const address = workloadAddress(opts.socket);
        const client = new WorkloadApiClient({ address });
        const signal = AbortSignal.timeout(timeoutS * 1000);
        try {
          if (opts.jwt) {
            const svid = await client.fetchJwtSvid({ audience: opts.audience }, { signal });
            process.stdout.write(`${svid.marshal()}\n`);
            return 0;
          }
          const ctx = await client.fetchX509Context({ signal });
          const svid = ctx.svids[0];
          if (svid === undefined) throw new Error("the agent sent no SVID");
          const bundle = ctx.bundles.get(svid.id.trustDomain);
          const validTo = new Date(svid.leaf.validTo).toISOString();
          if (opts.write) {
            const dir = resolve(opts.write);
            await mkdir(dir, { recursive: true, mode: 0o755 });
            const pem = svid.marshal();
            await writeFileMode(join(dir, "svid.key"), pem.privateKey, 0o600);
            await writeFileMode(join(dir, "svid.pem"), pem.certificates, 0o644);
            await writeFileMode(join(dir, "bundle.pem"), bundle?.marshal() ?? "", 0o644);
            process.stdout.write(
              `${svid.id.toString()} (valid until ${validTo}): wrote ${join(dir, "svid.pem")}, ${join(dir, "svid.key")} (0600), ${join(dir, "bundle.pem")}\n`,
            );
            return 0;
          }
          const lines = [
            `SPIFFE ID:    ${svid.id.toString()}`,
            ...(svid.hint ? [`hint:         ${svid.hint}`] : []),
            `valid until:  ${validTo}`,
            `chain:        ${svid.certificates.length} certificate(s)`,
            `bundle:       ${svid.id.trustDomain.name}, ${bundle?.authorities.length ?? 0} authority(ies)`,
            ...ctx.svids.slice(1).map((s) => `also:         ${s.id.toString()}`),
          ];
          process.stdout.write(`${lines.join("\n")}\n`);
          return 0;
        } catch (err) {
          if (err instanceof UsageError) throw err;
          process.stderr.write(`error: ${explainWorkloadApiError(err, address)}\n`);
          return 1;
        } finally {
          await client.close();
        }
      }),
    );
}
