/**
 * `tessera curl`: the built-in curl for local-mesh pods whose image is `curlimages/curl` when the
 * machine has no curl of its own. Every argument goes to curl unchanged (it parses them itself,
 * as curl does), and the exit status is curl's.
 */
import { Command } from "commander";
import { type CurlIo, curl } from "../mesh/local/curl.js";
import { run } from "./common.js";

export function curlCommand(io: Partial<CurlIo> = {}): Command {
  return new Command("curl")
    .description("Transfer a URL like curl 7.88 (HTTP and HTTPS); exit status and messages as curl's")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]", "curl's options and URLs, as for curl itself")
    .action((args: string[]) =>
      run(() =>
        curl(args, {
          stdout: io.stdout ?? process.stdout,
          stderr: io.stderr ?? process.stderr,
          env: io.env ?? process.env,
          stdin: io.stdin ?? process.stdin,
        }),
      ),
    );
}
