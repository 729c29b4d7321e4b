import type { Row } from "./rows.js";

export function formatJson(rows: readonly Row[]): string {
  return `${JSON.stringify(rows, null, 2)}\n`;
}
