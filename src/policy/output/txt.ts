import type { Row } from "./rows.js";

export function formatTxt(rows: readonly Row[]): string {
  return rows.map((r) => `${r.src} => ${r.dst} : ${r.conn}\n`).join("");
}
