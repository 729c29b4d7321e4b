import type { Row } from "./rows.js";

export function mdCell(s: string): string {
  return s.replaceAll("|", "\\|");
}

/** A table `src | dst | conn`, and an `l7` column when the mesh limits some connection to HTTP requests. */
export function formatMd(rows: readonly Row[]): string {
  const withL7 = rows.some((r) => r.l7Text);
  const lines = withL7
    ? [
        "| src | dst | conn | l7 |",
        "|-----|-----|------|----|",
        ...rows.map((r) => `| ${[r.src, r.dst, r.conn, r.l7Text ?? ""].map(mdCell).join(" | ")} |`),
      ]
    : [
        "| src | dst | conn |",
        "|-----|-----|------|",
        ...rows.map((r) => `| ${mdCell(r.src)} | ${mdCell(r.dst)} | ${mdCell(r.conn)} |`),
      ];
  return `${lines.join("\n")}\n`;
}
