/**
 * `tessera server run`: the identity server (CA, registration entries, Agent API, Admin API).
 * Options may also come from `--config FILE` (YAML, keys in camelCase: src/cli/config-file.ts);
 * flags on the command line override it.
 */
import { Command, Option } from "commander";
import { DEFAULT_BIND, DEFAULT_TRUST_DOMAIN, IdentityServer } from "../identity/server/server.js";
import { DEFAULT_SERVER_DATA_DIR } from "./admin.js";
import { run, UsageError } from "./common.js";
import { applyConfigFile, schemaOf } from "./config-file.js";
import { readInputFile } from "./inspect-common.js";

interface RunOptions {
  config?: string;
  dataDir: string;
  bind: string;
  trustDomain: string;
  datastore?: string;
  upstreamCaCert?: string;
  upstreamCaKey?: string;
  upstreamCaBundle?: string;
  x509popCa?: string;
  caTtl?: string;
  caKeyType?: "ec-p256" | "ec-p384" | "rsa-2048";
  adminSocket?: string;
}

/** A file named by an option, as text; an unreadable one is bad input. */
const readFile = (path: string, option: string): string => readInputFile(path, option).toString("utf8");

export function serverCommand(): Command {
  const runCmd = new Command("run")
    .description(
      "Run the identity server: CA, registration entries, node attestation, Agent API (TLS) and Admin API (Unix socket).",
    )
    .option(
      "--config <file>",
      "YAML file of options (keys: the long option names in camelCase, e.g. dataDir); flags override it",
    )
    .option(
      "--data-dir <dir>",
      "keeps the database, keys and admin socket (DIR/admin.sock); created 0700",
      DEFAULT_SERVER_DATA_DIR,
    )
    .option("--bind <host:port>", "address of the Agent API", DEFAULT_BIND)
    .option("--trust-domain <name>", "the trust domain", DEFAULT_TRUST_DOMAIN)
    .option(
      "--datastore <url>",
      "sqlite:///path.db (default DIR/datastore.db) or postgres://user:pass@host:5432/db for replicas",
    )
    .option(
      "--upstream-ca-cert <file>",
      "PEM: the upstream CA certificate (then its chain); the server's CAs become its intermediates",
    )
    .option("--upstream-ca-key <file>", "PEM: the upstream CA's private key")
    .option(
      "--upstream-ca-bundle <file>",
      "PEM: the upstream roots for the bundle (default: the self-signed ones of --upstream-ca-cert)",
    )
    .option("--x509pop-ca <file>", "PEM: CA of node certificates; enables x509pop node attestation")
    .option("--ca-ttl <seconds>", "lifetime of each CA and JWT key (default 86400); rotated at 1/2 and 5/6")
    .addOption(
      new Option("--ca-key-type <type>", "key type of new CAs and JWT keys").choices([
        "ec-p256",
        "ec-p384",
        "rsa-2048",
      ]),
    )
    .option("--admin-socket <path>", "admin socket path (default DIR/admin.sock)")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera server run --data-dir /var/lib/tessera/server --trust-domain example.org
  $ tessera server run --bind 0.0.0.0:8081 --x509pop-ca nodes-ca.pem
  $ tessera server run --config /etc/tessera/server.yaml   # e.g. "trustDomain: example.org"
  $ tessera server run --datastore postgres://tessera:secret@db:5432/tessera \\
      --upstream-ca-cert upstream.pem --upstream-ca-key upstream.key

Then, as the same user: tessera token generate; tessera entry create ...; tessera bundle show.
Stop with Ctrl-C (SIGINT) or SIGTERM. A restart keeps the CA, entries and agents.`,
    )
    .action((cliOpts: RunOptions) =>
      run(async () => {
        const o =
          cliOpts.config === undefined
            ? cliOpts
            : applyConfigFile<RunOptions>(runCmd, cliOpts.config, schemaOf(runCmd, ["caTtl"]));
        if ((o.upstreamCaCert === undefined) !== (o.upstreamCaKey === undefined)) {
          throw new UsageError("give both --upstream-ca-cert and --upstream-ca-key, or neither");
        }
        let caTtlSeconds: number | undefined;
        if (o.caTtl !== undefined) {
          if (!/^\d+$/.test(o.caTtl) || Number(o.caTtl) < 60)
            throw new UsageError("--ca-ttl must be a whole number of seconds, at least 60");
          caTtlSeconds = Number(o.caTtl);
        }
        let server: IdentityServer;
        try {
          server = await IdentityServer.start({
            dataDir: o.dataDir,
            bind: o.bind,
            trustDomain: o.trustDomain,
            ...(o.datastore ? { datastoreUrl: o.datastore } : {}),
            ...(o.adminSocket ? { adminSocketPath: o.adminSocket } : {}),
            ...(caTtlSeconds === undefined ? {} : { caTtlSeconds }),
            ...(o.caKeyType ? { caKeyType: o.caKeyType } : {}),
            ...(o.upstreamCaCert && o.upstreamCaKey
              ? {
                  upstream: {
                    certificatesPem: readFile(o.upstreamCaCert, "--upstream-ca-cert"),
                    keyPem: readFile(o.upstreamCaKey, "--upstream-ca-key"),
                    ...(o.upstreamCaBundle
                      ? { bundlePem: readFile(o.upstreamCaBundle, "--upstream-ca-bundle") }
                      : {}),
                  },
                }
              : {}),
            ...(o.x509popCa ? { x509popCaPem: readFile(o.x509popCa, "--x509pop-ca") } : {}),
          });
        } catch (e) {
          if (e instanceof UsageError) throw e;
          throw new UsageError(`cannot start the server: ${(e as Error).message}`);
        }
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            server.stop().then(resolve, resolve);
          };
          process.on("SIGINT", stop);
          process.on("SIGTERM", stop);
        });
        return 0;
      }),
    );
  return new Command("server").description("The identity server.").addCommand(runCmd);
}
