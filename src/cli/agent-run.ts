/**
 * `tessera agent run`: the node agent. Attests the node to the identity server (join token or
 * x509pop) or resumes from its data directory, syncs entries, keeps workload SVIDs rotated and
 * serves the SPIFFE Workload API on a Unix socket until SIGINT/SIGTERM.
 *
 * Options may also come from `--config FILE` (YAML, keys in camelCase: src/cli/config-file.ts);
 * flags on the command line override it.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { Agent, AgentStartError } from "../identity/agent/agent.js";
import { AgentApiError, ServerClient } from "../identity/agent/server-client.js";
import { UnixAttestor } from "../identity/agent/unix-attestor.js";
import { WorkloadApiServer } from "../identity/agent/workload-api-server.js";
import { DEFAULT_BIND } from "../identity/server/server.js";
import { TrustDomain } from "../spiffe/id.js";
import { parseCertificates } from "../spiffe/x509svid.js";
import { run, UsageError } from "./common.js";
import { applyConfigFile, schemaOf } from "./config-file.js";

/** Environment variable that may carry the join token (keeps it out of `ps`). */
export const JOIN_TOKEN_ENV = "TESSERA_JOIN_TOKEN";

/** /var/lib/tessera/agent for root; $XDG_STATE_HOME/tessera/agent (or ~/.local/state/...) otherwise. */
export function defaultAgentDataDir(): string {
  if (process.geteuid?.() === 0) return "/var/lib/tessera/agent";
  const state = process.env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(state, "tessera", "agent");
}

interface RunOptions {
  config?: string;
  dataDir?: string;
  server: string;
  joinToken?: string;
  x509popCert?: string;
  x509popKey?: string;
  socket?: string;
  trustBundle?: string;
  insecureBootstrap?: boolean;
  trustDomain?: string;
  syncInterval: string;
  quiet?: boolean;
}

function readTrustBundle(file: string): X509Certificate[] {
  let certs: X509Certificate[];
  try {
    certs = parseCertificates(readFileSync(file));
  } catch (e) {
    throw new UsageError(`cannot read --trust-bundle ${file}: ${(e as Error).message}`);
  }
  if (certs.length === 0)
    throw new UsageError(`--trust-bundle ${file} holds no certificate (expected the server CA's PEM)`);
  return certs;
}

function readX509Pop(
  certFile: string,
  keyFile: string,
): {
  certificates: X509Certificate[];
  privateKey: KeyObject;
} {
  let certificates: X509Certificate[];
  try {
    certificates = parseCertificates(readFileSync(certFile));
  } catch (e) {
    throw new UsageError(`cannot read --x509pop-cert ${certFile}: ${(e as Error).message}`);
  }
  if (certificates.length === 0) {
    throw new UsageError(
      `--x509pop-cert ${certFile} holds no certificate (expected the node certificate, then its intermediates, PEM)`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(keyFile));
  } catch (e) {
    throw new UsageError(`cannot read --x509pop-key ${keyFile}: ${(e as Error).message}`);
  }
  const leaf = certificates[0] as X509Certificate;
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new UsageError(
      `--x509pop-key ${keyFile} is not the key of the node certificate in --x509pop-cert ${certFile} (the first certificate there)`,
    );
  }
  return { certificates, privateKey };
}

export function agentRunCommand(): Command {
  const cmd = new Command("run");
  return cmd
    .description(
      "Run the node agent: attest to the identity server and serve the Workload API on a Unix socket",
    )
    .option(
      "--config <file>",
      "YAML file of options (keys: the long option names in camelCase, e.g. dataDir); flags override it",
    )
    .option("--server <host:port>", "the identity server's Agent API", DEFAULT_BIND)
    .option(
      "--data-dir <dir>",
      "where the agent keeps its identity (default /var/lib/tessera/agent, or ~/.local/state/tessera/agent)",
    )
    .option("--join-token <token>", `single-use join token for the first start (or ${JOIN_TOKEN_ENV})`)
    .option(
      "--x509pop-cert <file>",
      "PEM: the node certificate (then its intermediates) for x509pop attestation, instead of a join token",
    )
    .option("--x509pop-key <file>", "PEM: the node certificate's private key (x509pop)")
    .option("--socket <path>", "the Workload API socket (default DATA_DIR/workload.sock)")
    .option(
      "--trust-bundle <file>",
      "the server CA's certificates (PEM) to verify the server on the first start",
    )
    .option(
      "--insecure-bootstrap",
      "trust the server's certificate on the first connection without verifying it (RISK: a man in the middle gets the join token and can issue your workloads' identities)",
    )
    .option("--trust-domain <td>", "the expected trust domain (checked against the server's ID)")
    .option("--sync-interval <seconds>", "how often entries are synced", "5")
    .option("--quiet", "log only problems")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera agent run --server 10.0.0.5:8081 --join-token $TOKEN --trust-bundle server-ca.pem
  $ TESSERA_JOIN_TOKEN=$TOKEN tessera agent run --server 127.0.0.1:8081 --insecure-bootstrap --data-dir /tmp/agent
  $ tessera agent run --server 10.0.0.5:8081 --x509pop-cert node.pem --x509pop-key node.key --trust-bundle server-ca.pem
  $ tessera agent run --config /etc/tessera/agent.yaml     # e.g. "server: 10.0.0.5:8081" and "trustBundle: ..."

Workloads find the socket through SPIFFE_ENDPOINT_SOCKET=unix://<socket>. On a restart the agent
renews the identity kept in its data directory; the join token is needed only once.`,
    )
    .action((cliOpts: RunOptions) =>
      run(async () => {
        const opts =
          cliOpts.config === undefined
            ? cliOpts
            : applyConfigFile<RunOptions>(cmd, cliOpts.config, schemaOf(cmd, ["syncInterval"]));
        if (opts.trustBundle && opts.insecureBootstrap) {
          throw new UsageError(
            "--trust-bundle and --insecure-bootstrap exclude each other: prefer --trust-bundle",
          );
        }
        const interval = Number(opts.syncInterval);
        if (!Number.isFinite(interval) || interval <= 0) {
          throw new UsageError("--sync-interval must be a positive number of seconds");
        }
        let trustDomain: TrustDomain | undefined;
        if (opts.trustDomain) {
          try {
            trustDomain = TrustDomain.parse(opts.trustDomain);
          } catch (e) {
            throw new UsageError(`--trust-domain ${opts.trustDomain}: ${(e as Error).message}`);
          }
        }
        if ((opts.x509popCert === undefined) !== (opts.x509popKey === undefined)) {
          throw new UsageError("give both --x509pop-cert and --x509pop-key, or neither");
        }
        const joinToken = opts.joinToken ?? (process.env[JOIN_TOKEN_ENV] || undefined);
        if (opts.x509popCert !== undefined && opts.joinToken !== undefined) {
          throw new UsageError(
            "--join-token and --x509pop-cert/--x509pop-key exclude each other: give one attestation method",
          );
        }
        const x509pop =
          opts.x509popCert !== undefined && opts.x509popKey !== undefined
            ? readX509Pop(opts.x509popCert, opts.x509popKey)
            : undefined;
        const dataDir = resolve(opts.dataDir ?? defaultAgentDataDir());
        const socketPath = resolve(opts.socket ?? join(dataDir, "workload.sock"));
        let server: ServerClient;
        try {
          server = new ServerClient({
            address: opts.server,
            ...(opts.trustBundle ? { trustBundle: readTrustBundle(opts.trustBundle) } : {}),
            ...(opts.insecureBootstrap ? { insecureBootstrap: true } : {}),
            ...(trustDomain ? { trustDomain } : {}),
          });
        } catch (e) {
          if (e instanceof UsageError) throw e;
          throw new UsageError(`--server: ${(e as Error).message}`);
        }
        const quiet = opts.quiet === true;
        const log = (line: string) => {
          if (!quiet || /fail|cannot|expired|refus|unusable/.test(line)) process.stderr.write(`${line}\n`);
        };
        const agent = new Agent({
          dataDir,
          server,
          ...(x509pop ? { x509pop } : joinToken ? { joinToken } : {}),
          syncIntervalMs: Math.round(interval * 1000),
          log,
        });
        try {
          await agent.start();
        } catch (e) {
          if (e instanceof AgentStartError || e instanceof AgentApiError) {
            process.stderr.write(`error: ${e.message}\n`);
            return 1;
          }
          throw e;
        }
        const wl = new WorkloadApiServer({
          socketPath,
          attestors: [new UnixAttestor()],
          identities: agent,
          log,
        });
        try {
          await wl.start();
        } catch (e) {
          await agent.stop();
          process.stderr.write(
            `error: cannot serve the Workload API on ${socketPath}: ${(e as Error).message}\n`,
          );
          return 1;
        }
        process.stderr.write(
          `tessera agent: ${agent.cache.entryCount} entr${agent.cache.entryCount === 1 ? "y" : "ies"}; Workload API on ${wl.address}\n` +
            `  workloads: export SPIFFE_ENDPOINT_SOCKET=${wl.address}\n`,
        );
        await new Promise<void>((done) => {
          const stop = (signal: string) => {
            process.off("SIGINT", onInt);
            process.off("SIGTERM", onTerm);
            log(`tessera agent: ${signal}, stopping`);
            done();
          };
          const onInt = () => stop("SIGINT");
          const onTerm = () => stop("SIGTERM");
          process.on("SIGINT", onInt);
          process.on("SIGTERM", onTerm);
        });
        await wl.close();
        await agent.stop();
        return 0;
      }),
    );
}
