/**
 * `tessera httpbin`: serves the httpbin endpoints for local-mesh pods whose image is
 * `kennethreitz/httpbin`, on the image's port 80 unless told otherwise, until SIGTERM or SIGINT.
 */
import { Command } from "commander";
import { startHttpbin } from "../mesh/local/httpbin.js";
import { parseHostPort, run } from "./common.js";

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses HOST:PORT, [IPv6]:PORT, :PORT or PORT (no host means every address, as the image does). */
export function parseListenAddress(text: string): ListenAddress {
  return parseHostPort("--listen", text);
}

/** The address the image listens on: 0.0.0.0:80, or the PORT the environment names. */
export function defaultListenAddress(env: NodeJS.ProcessEnv): string {
  return env.PORT ? `0.0.0.0:${env.PORT}` : "0.0.0.0:80";
}

function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve(signal);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}

export function httpbinCommand(): Command {
  return new Command("httpbin")
    .description(
      "Serve httpbin's endpoints (/headers, /get, /post, /status/..., /anything) like kennethreitz/httpbin",
    )
    .option("--listen <host:port>", "where to listen (default 0.0.0.0:80, or 0.0.0.0:$PORT when PORT is set)")
    .action((opts: { listen?: string }) =>
      run(async () => {
        const { host, port } = parseListenAddress(opts.listen ?? defaultListenAddress(process.env));
        let running: Awaited<ReturnType<typeof startHttpbin>>;
        try {
          running = await startHttpbin({ host, port });
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          const why =
            err.code === "EADDRINUSE"
              ? "the address is in use"
              : err.code === "EACCES"
                ? "permission denied"
                : err.message;
          process.stderr.write(`error: httpbin cannot listen on ${host}:${port}: ${why}\n`);
          return 1;
        }
        const shown =
          running.address.family === "IPv6" ? `[${running.address.address}]` : running.address.address;
        process.stderr.write(`httpbin: listening on http://${shown}:${running.address.port}\n`);
        const signal = await waitForStopSignal();
        process.stderr.write(`httpbin: ${signal}, shutting down\n`);
        await running.close();
        return 0;
      }),
    );
}
