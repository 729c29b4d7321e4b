import type { DiffEntry } from "../diff.js";
import { csvField } from "./csv.js";
import { mdCell } from "./md.js";
import type { Format } from "./rows.js";

function q(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

const COLORS = { added: "darkgreen", removed: "red2", changed: "magenta" } as const;

/** Diff output in the shape netpol-analyzer's `diff` prints, in every format. */
export function formatDiff(entries: readonly DiffEntry[], format: Format): string {
  switch (format) {
    case "json":
      return `${JSON.stringify(entries, null, 2)}\n`;
    case "csv":
      return `${["diff-type,source,destination,ref1,ref2", ...entries.map((e) => [e.diffType, e.src, e.dst, e.ref1, e.ref2].map(csvField).join(","))].join("\n")}\n`;
    case "md":
      return `${[
        "| diff-type | source | destination | ref1 | ref2 |",
        "|-----------|--------|-------------|------|------|",
        ...entries.map((e) => `| ${[e.diffType, e.src, e.dst, e.ref1, e.ref2].map(mdCell).join(" | ")} |`),
      ].join("\n")}\n`;
    case "dot": {
      const lines = ["digraph {", '\tlabel="Connectivity Diff"', '\tlabelloc="t"'];
      for (const e of entries) {
        const label =
          e.diffType === "changed" ? `${e.ref1} -> ${e.ref2}` : e.diffType === "added" ? e.ref2 : e.ref1;
        lines.push(
          `\t${q(e.src)} -> ${q(e.dst)} [label=${q(label)} color=${COLORS[e.diffType]} fontcolor=${COLORS[e.diffType]}]`,
        );
      }
      lines.push("}");
      return `${lines.join("\n")}\n`;
    }
    case "txt":
      return `Connectivity diff:\n${entries.map((e) => `diff-type: ${e.diffType}, source: ${e.src}, destination: ${e.dst}, ref1: ${e.ref1}, ref2: ${e.ref2}\n`).join("")}`;
  }
}
