import type { Row } from "./rows.js";

/** RFC 4180 quoting: fields with commas, quotes or newlines are quoted. */
export function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** `src,dst,conn`, and an `l7` column when the mesh limits some connection to HTTP requests. */
export function formatCsv(rows: readonly Row[]): string {
  const withL7 = rows.some((r) => r.l7Text);
  const lines = [
    withL7 ? "src,dst,conn,l7" : "src,dst,conn",
    ...rows.map((r) =>
      (withL7 ? [r.src, r.dst, r.conn, r.l7Text ?? ""] : [r.src, r.dst, r.conn]).map(csvField).join(","),
    ),
  ];
  return `${lines.join("\n")}\n`;
}
