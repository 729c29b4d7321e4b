import { PROTOCOLS, type Protocol } from "../kube/objects.js";
import * as iv from "./intervals.js";

export const MIN_PORT = 1;
export const MAX_PORT = 65535;
const ALL_PORTS: iv.Intervals = [MIN_PORT, MAX_PORT];

/**
 * A set of (protocol, port) pairs over TCP, UDP and SCTP, ports 1-65535. Immutable. Prints as
 * np-guard/netpol-analyzer does: `All Connections`, `No Connections`, or protocols in
 * alphabetical order each with its ports: `SCTP 1-65535,TCP 1-79,81-65535,UDP 1-65535`.
 */
export class ConnectionSet {
  static readonly ALL = new ConnectionSet({ SCTP: ALL_PORTS, TCP: ALL_PORTS, UDP: ALL_PORTS });
  static readonly NONE = new ConnectionSet({ SCTP: iv.EMPTY, TCP: iv.EMPTY, UDP: iv.EMPTY });

  private constructor(private readonly ports: Readonly<Record<Protocol, iv.Intervals>>) {}

  static of(protocol: Protocol, ports: iv.Intervals): ConnectionSet {
    if (ports.length === 0) return ConnectionSet.NONE;
    return new ConnectionSet({
      SCTP: iv.EMPTY,
      TCP: iv.EMPTY,
      UDP: iv.EMPTY,
      [protocol]: iv.intersect(ports, ALL_PORTS),
    });
  }

  static allOf(protocol: Protocol): ConnectionSet {
    return ConnectionSet.of(protocol, ALL_PORTS);
  }

  static fromRecord(ports: Readonly<Record<Protocol, iv.Intervals>>): ConnectionSet {
    return new ConnectionSet(ports).normalized();
  }

  portsOf(protocol: Protocol): iv.Intervals {
    return this.ports[protocol];
  }

  has(protocol: Protocol, port: number): boolean {
    return iv.contains(this.ports[protocol], port);
  }

  isEmpty(): boolean {
    return (
      this === ConnectionSet.NONE ||
      (this.ports.TCP.length === 0 && this.ports.UDP.length === 0 && this.ports.SCTP.length === 0)
    );
  }

  isAll(): boolean {
    return this === ConnectionSet.ALL || PROTOCOLS.every((p) => iv.equals(this.ports[p], ALL_PORTS));
  }

  union(other: ConnectionSet): ConnectionSet {
    if (this.isEmpty() || other === ConnectionSet.ALL) return other;
    if (other.isEmpty() || this === ConnectionSet.ALL) return this;
    return new ConnectionSet({
      SCTP: iv.union(this.ports.SCTP, other.ports.SCTP),
      TCP: iv.union(this.ports.TCP, other.ports.TCP),
      UDP: iv.union(this.ports.UDP, other.ports.UDP),
    }).normalized();
  }

  intersect(other: ConnectionSet): ConnectionSet {
    if (this === ConnectionSet.ALL) return other;
    if (other === ConnectionSet.ALL) return this;
    if (this.isEmpty() || other.isEmpty()) return ConnectionSet.NONE;
    return new ConnectionSet({
      SCTP: iv.intersect(this.ports.SCTP, other.ports.SCTP),
      TCP: iv.intersect(this.ports.TCP, other.ports.TCP),
      UDP: iv.intersect(this.ports.UDP, other.ports.UDP),
    }).normalized();
  }

  subtract(other: ConnectionSet): ConnectionSet {
    if (other.isEmpty()) return this;
    if (other === ConnectionSet.ALL) return ConnectionSet.NONE;
    return new ConnectionSet({
      SCTP: iv.subtract(this.ports.SCTP, other.ports.SCTP),
      TCP: iv.subtract(this.ports.TCP, other.ports.TCP),
      UDP: iv.subtract(this.ports.UDP, other.ports.UDP),
    }).normalized();
  }

  equals(other: ConnectionSet): boolean {
    return this === other || PROTOCOLS.every((p) => iv.equals(this.ports[p], other.ports[p]));
  }

  /** Collapses to the shared ALL / NONE instances so identity checks stay cheap. */
  private normalized(): ConnectionSet {
    if (this.isAll()) return ConnectionSet.ALL;
    if (this.ports.TCP.length === 0 && this.ports.UDP.length === 0 && this.ports.SCTP.length === 0)
      return ConnectionSet.NONE;
    return this;
  }

  toString(): string {
    if (this.isAll()) return "All Connections";
    if (this.isEmpty()) return "No Connections";
    return PROTOCOLS.filter((p) => this.ports[p].length > 0)
      .map((p) => `${p} ${iv.format(this.ports[p])}`)
      .join(",");
  }

  /** Parses the printed form back (for comparing outputs); throws on anything else. */
  static parse(text: string): ConnectionSet {
    const t = text.trim();
    if (t === "All Connections") return ConnectionSet.ALL;
    if (t === "No Connections" || t === "") return ConnectionSet.NONE;
    const ranges: Record<Protocol, Array<[number, number]>> = { SCTP: [], TCP: [], UDP: [] };
    let current: Protocol | undefined;
    for (const token of t.split(",")) {
      let rest = token.trim();
      const m = /^(TCP|UDP|SCTP)\s+(.*)$/.exec(rest);
      if (m) {
        current = m[1] as Protocol;
        rest = m[2] as string;
      }
      if (!current) throw new Error(`connection set "${text}": port before any protocol`);
      const r = /^(\d+)(?:-(\d+))?$/.exec(rest.trim());
      if (!r) throw new Error(`connection set "${text}": bad port token "${token}"`);
      const s = Number(r[1]);
      const e = r[2] ? Number(r[2]) : s;
      if (s < MIN_PORT || e > MAX_PORT || e < s) {
        throw new Error(
          `connection set "${text}": port range ${rest.trim()} is not within ${MIN_PORT}-${MAX_PORT} in ascending order`,
        );
      }
      ranges[current].push([s, e]);
    }
    return ConnectionSet.fromRecord({
      SCTP: iv.fromRanges(ranges.SCTP),
      TCP: iv.fromRanges(ranges.TCP),
      UDP: iv.fromRanges(ranges.UDP),
    });
  }
}
