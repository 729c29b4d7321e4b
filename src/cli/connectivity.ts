import { Command, Option } from "commander";
import { connectivity } from "../policy/connectivity.js";
import { compile } from "../policy/engine.js";
import { formatExplanation } from "../policy/explain.js";
import { FORMATS, type Format, formatRows, toRows } from "../policy/output/index.js";
import { collectPaths, EXIT_OK, loadInputs, printWarnings, run } from "./common.js";
import { progressReporter } from "./progress.js";

export function connectivityCommand(): Command {
  return new Command("connectivity")
    .description(
      "List every allowed connection between workloads, and between workloads and external IPv4 ranges, under the NetworkPolicies of the input and then its Istio mesh (PeerAuthentication, AuthorizationPolicy).",
    )
    .argument("[paths...]", "files or directories (recursive) of Kubernetes YAML/JSON; - for stdin")
    .option(
      "-f, --filename <path>",
      "a file, a directory (read recursively) or - for stdin; repeatable",
      collectPaths,
      [],
    )
    .addOption(new Option("-o, --output <format>", "output format").choices(FORMATS).default("txt"))
    .option(
      "--explain",
      "for each pair of peers: what is allowed and denied, and which policy and rule (or default) decided",
    )
    .option(
      "--focus <workload>",
      "only connections from or to this workload (ns/name, name in default, or ns/name[Kind])",
    )
    .option("-q, --quiet", "do not print warnings")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera connectivity examples/zero-trust-shop
  $ tessera connectivity -f manifests/ -f policies.yaml -o json
  $ kubectl get pods,deploy,netpol,ns -A -o yaml | tessera connectivity -f -
  $ tessera connectivity examples/zero-trust-shop --focus shop/frontend --explain

Lines read SRC => DST : CONN, e.g. "shop/frontend[Deployment] => shop/cart[Deployment] : TCP 7070".
Where the destination's mesh proxy lets only some HTTP requests through, the L7 part follows
CONN in parentheses, e.g. "default/sleep[Deployment] => default/httpbin[Deployment] : TCP 80 (HTTP GET)",
"(TCP 8080: HTTP GET|POST but not /admin*)" or "(HTTP only)" (any request, but no other TCP
traffic); json adds "l7": [{"ports", "http": {"allow"?, "deny"}}], csv and md an l7 column.
Exit status: 0 on success, 2 for bad input (the message names file, line and object).`,
    )
    .action(
      (
        paths: string[],
        opts: { filename: string[]; output: Format; explain?: boolean; focus?: string; quiet?: boolean },
      ) =>
        run(() => {
          const progress = progressReporter();
          progress.phase("reading inputs");
          const loaded = loadInputs([...opts.filename, ...paths]);
          progress.phase("compiling policies");
          const compiled = compile(loaded.cluster, loaded.diagnostics);
          progress.phase("connectivity of source workloads");
          const result = connectivity(
            loaded.cluster,
            compiled.engine,
            { focus: opts.focus, includeDenied: opts.explain === true, onProgress: progress.update },
            loaded.diagnostics,
          );
          progress.done();
          printWarnings(loaded, opts.quiet === true);
          if (opts.explain) {
            process.stdout.write(formatExplanation(compiled.engine, result.connections, opts.output));
          } else {
            process.stdout.write(formatRows(toRows(result.connections), opts.output));
          }
          return EXIT_OK;
        }),
    );
}
