import { Command, Option } from "commander";
import { loadCluster } from "../kube/index.js";
import { connectivityDiff } from "../policy/diff.js";
import { compile } from "../policy/engine.js";
import { formatDiff } from "../policy/output/diff.js";
import { FORMATS, type Format } from "../policy/output/index.js";
import { collectPaths, EXIT_OK, printWarnings, readStdin, run, UsageError } from "./common.js";

export function diffCommand(): Command {
  return new Command("diff")
    .description(
      "Semantic connectivity diff between two inputs: pairs of peers whose allowed connections (or the HTTP requests the mesh lets through) were added, removed or changed.",
    )
    .argument("[paths...]", "exactly two inputs (files or directories); - for stdin once")
    .option("-f, --filename <path>", "an input (file, directory or -); give it twice", collectPaths, [])
    .addOption(new Option("-o, --output <format>", "output format").choices(FORMATS).default("txt"))
    .option("-q, --quiet", "do not print warnings")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera diff before/ after/
  $ tessera diff -f cluster-v1.yaml -f cluster-v2.yaml -o md

Exit status: 0 on success (whether or not anything changed), 2 for bad input.`,
    )
    .action((paths: string[], opts: { filename: string[]; output: Format; quiet?: boolean }) =>
      run(() => {
        const inputs = [...opts.filename, ...paths];
        if (inputs.length !== 2) throw new UsageError(`diff needs exactly two inputs, got ${inputs.length}`);
        const analyses = inputs.map((p) => {
          const loaded = loadCluster([p], readStdin);
          const { engine } = compile(loaded.cluster, loaded.diagnostics);
          return { cluster: loaded.cluster, engine, diagnostics: loaded.diagnostics };
        });
        const entries = connectivityDiff(
          analyses[0] as (typeof analyses)[0],
          analyses[1] as (typeof analyses)[0],
        );
        for (const a of analyses) printWarnings(a, opts.quiet === true);
        process.stdout.write(formatDiff(entries, opts.output));
        return EXIT_OK;
      }),
    );
}
