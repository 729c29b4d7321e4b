import { formatCsv } from "./csv.js";
import { formatDot } from "./dot.js";
import { formatJson } from "./json.js";
import { formatMd } from "./md.js";
import type { Format, Row } from "./rows.js";
import { formatTxt } from "./txt.js";

export { FORMATS, type Format, isFormat, type Row, toRows } from "./rows.js";

export function formatRows(rows: readonly Row[], format: Format): string {
  switch (format) {
    case "txt":
      return formatTxt(rows);
    case "json":
      return formatJson(rows);
    case "csv":
      return formatCsv(rows);
    case "md":
      return formatMd(rows);
    case "dot":
      return formatDot(rows);
  }
}
