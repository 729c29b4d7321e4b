/**
 * `tessera healthcheck`: does the agent answer on its Workload API socket? A caller without an
 * entry is answered PermissionDenied, which still proves the agent is up and attesting; only no
 * answer (or a broken one) is unhealthy. For container HEALTHCHECKs and systemd watchdogs.
 */
import { Command } from "commander";
import { WorkloadApiClient, WorkloadApiError } from "../spiffe/workload/client.js";
import { run, UsageError } from "./common.js";
import { explainWorkloadApiError, workloadAddress } from "./svid-fetch.js";

export function healthcheckCommand(): Command {
  return new Command("healthcheck")
    .description("Check that the agent answers on its Workload API socket (exit 0 healthy, 1 not)")
    .option("--socket <path>", "the Workload API socket (default: SPIFFE_ENDPOINT_SOCKET)")
    .option("--timeout <seconds>", "give up after this long", "5")
    .option("--quiet", "print nothing; the exit status says it all")
    .action((opts: { socket?: string; timeout: string; quiet?: boolean }) =>
      run(async () => {
        const timeoutS = Number(opts.timeout);
        if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
          throw new UsageError("--timeout must be a positive number of seconds");
        }
        const address = workloadAddress(opts.socket);
        const client = new WorkloadApiClient({ address });
        const say = (stream: NodeJS.WriteStream, line: string) => {
          if (!opts.quiet) stream.write(`${line}\n`);
        };
        try {
          await client.fetchX509Bundles({ signal: AbortSignal.timeout(timeoutS * 1000) });
          say(process.stdout, `healthy: the agent answers on ${address}`);
          return 0;
        } catch (err) {
          if (err instanceof WorkloadApiError && err.kind === "PermissionDenied") {
            say(
              process.stdout,
              `healthy: the agent answers on ${address} (this process has no identity there)`,
            );
            return 0;
          }
          say(process.stderr, `unhealthy: ${explainWorkloadApiError(err, address)}`);
          return 1;
        } finally {
          await client.close();
        }
      }),
    );
}
