import type { Connection } from "../connectivity.js";
import type { ConnectionSet } from "../connset.js";
import * as iv from "../intervals.js";
import { describeRequests, type HttpRequests } from "../istio/httpset.js";
import type { L7Constraint } from "../istio/summary.js";

/** L7 constraints as json prints them: TCP ports (`80,8080-8090`) and the HTTP requests that pass there. */
export interface L7Row {
  readonly ports: string;
  readonly http: HttpRequests;
}

/** A connection as printed: the strings np-guard/netpol-analyzer users know, and the mesh's L7 part. */
export interface Row {
  readonly src: string;
  readonly dst: string;
  readonly conn: string;
  /** Machine-readable: on these TCP ports only these HTTP requests pass (no other TCP traffic). */
  readonly l7?: readonly L7Row[];
  /** The same for people, e.g. `HTTP GET /headers` or `TCP 80: HTTP GET; TCP 9090: HTTP only`. */
  readonly l7Text?: string;
}

/**
 * The L7 part of a connection for people. One constraint over every TCP port of the connection
 * is written alone (`HTTP GET`, or `TCP: HTTP GET` when UDP or SCTP pass too); otherwise each
 * constraint names its ports: `TCP 80: HTTP GET /headers; TCP 9090: HTTP all but POST /admin*`.
 */
export function describeL7(conn: ConnectionSet, l7: readonly L7Constraint[]): string {
  const only = l7.length === 1 ? l7[0] : undefined;
  if (only && iv.equals(only.ports, conn.portsOf("TCP"))) {
    const tcpOnly = conn.portsOf("UDP").length === 0 && conn.portsOf("SCTP").length === 0;
    return `${tcpOnly ? "" : "TCP: "}${describeRequests(only.http)}`;
  }
  return l7.map((c) => `TCP ${iv.format(c.ports)}: ${describeRequests(c.http)}`).join("; ");
}

/** CONN as txt prints it: the connection set, then the L7 part in parentheses when there is one. */
export function connText(r: Row): string {
  return r.l7Text ? `${r.conn} (${r.l7Text})` : r.conn;
}

export function toRows(connections: readonly Connection[]): Row[] {
  return connections.map((c) => {
    const row = { src: c.src.id, dst: c.dst.id, conn: c.conn.toString() };
    if (!c.l7 || c.l7.length === 0) return row;
    return {
      ...row,
      l7: c.l7.map((x) => ({ ports: iv.format(x.ports), http: x.http })),
      l7Text: describeL7(c.conn, c.l7),
    };
  });
}

export const FORMATS = ["txt", "json", "csv", "md", "dot"] as const;
export type Format = (typeof FORMATS)[number];

export function isFormat(s: string): s is Format {
  return (FORMATS as readonly string[]).includes(s);
}
