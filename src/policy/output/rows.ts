import type { Connection } from "../connectivity.js";

/** A connection as printed: the strings np-guard/netpol-analyzer users know. */
export interface Row {
  readonly src: string;
  readonly dst: string;
  readonly conn: string;
}

export function toRows(connections: readonly Connection[]): Row[] {
  return connections.map((c) => ({ src: c.src.id, dst: c.dst.id, conn: c.conn.toString() }));
}

export const FORMATS = ["txt", "json", "csv", "md", "dot"] as const;
export type Format = (typeof FORMATS)[number];

export function isFormat(s: string): s is Format {
  return (FORMATS as readonly string[]).includes(s);
}
