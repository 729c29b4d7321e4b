import { connText, type Row } from "./rows.js";

/** `SRC => DST : CONN`, with the mesh's L7 part after CONN in parentheses: `TCP 80 (HTTP GET)`. */
export function formatTxt(rows: readonly Row[]): string {
  return rows.map((r) => `${r.src} => ${r.dst} : ${connText(r)}\n`).join("");
}
