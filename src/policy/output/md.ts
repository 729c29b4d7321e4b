import type { Row } from "./rows.js";

export function mdCell(s: string): string {
  return s.replaceAll("|", "\\|");
}

export function formatMd(rows: readonly Row[]): string {
  const lines = [
    "| src | dst | conn |",
    "|-----|-----|------|",
    ...rows.map((r) => `| ${mdCell(r.src)} | ${mdCell(r.dst)} | ${mdCell(r.conn)} |`),
  ];
  return `${lines.join("\n")}\n`;
}
