import type { Row } from "./rows.js";

/** `{src, dst, conn}` per connection, plus `l7` (TCP ports and the HTTP requests that pass there) when the mesh limits them. */
export function formatJson(rows: readonly Row[]): string {
  return `${JSON.stringify(
    rows.map((r) =>
      r.l7 ? { src: r.src, dst: r.dst, conn: r.conn, l7: r.l7 } : { src: r.src, dst: r.dst, conn: r.conn },
    ),
    null,
    2,
  )}\n`;
}
