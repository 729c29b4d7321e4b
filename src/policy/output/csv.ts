import type { Row } from "./rows.js";

/** RFC 4180 quoting: fields with commas, quotes or newlines are quoted. */
export function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function formatCsv(rows: readonly Row[]): string {
  const lines = ["src,dst,conn", ...rows.map((r) => [r.src, r.dst, r.conn].map(csvField).join(","))];
  return `${lines.join("\n")}\n`;
}
