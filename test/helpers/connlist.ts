import { ConnectionSet } from "../../src/policy/connset.js";

/** One `SRC => DST : CONN` line, or one `{src, dst, conn}` JSON entry. */
export interface ConnLine {
  src: string;
  dst: string;
  conn: string;
}

export function parseTxt(text: string): ConnLine[] {
  const out: ConnLine[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const m = /^(.*?) => (.*?) : (.*)$/.exec(line);
    if (!m) throw new Error(`not a connection line: ${line}`);
    out.push({ src: m[1] as string, dst: m[2] as string, conn: m[3] as string });
  }
  return out;
}

const RANGE = /^(\d+)\.(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+)\.(\d+)\[External\]$/;

function externalRange(id: string): [number, number] | undefined {
  const m = RANGE.exec(id);
  if (!m) return undefined;
  const n = (i: number) => Number(m[i]);
  return [((n(1) * 256 + n(2)) * 256 + n(3)) * 256 + n(4), ((n(5) * 256 + n(6)) * 256 + n(7)) * 256 + n(8)];
}

interface Side {
  /** workload pairs: "src\0dst" -> conns */
  pairs: Map<string, ConnectionSet>;
  /** (workload, direction) -> list of [start, end, conns] */
  external: Map<string, Array<[number, number, ConnectionSet]>>;
}

function index(lines: readonly ConnLine[]): Side {
  const pairs = new Map<string, ConnectionSet>();
  const external = new Map<string, Array<[number, number, ConnectionSet]>>();
  for (const l of lines) {
    const conn = ConnectionSet.parse(l.conn);
    const srcRange = externalRange(l.src);
    const dstRange = externalRange(l.dst);
    if (srcRange || dstRange) {
      const key = srcRange ? `from-external\0${l.dst}` : `to-external\0${l.src}`;
      const r = (srcRange ?? dstRange) as [number, number];
      const list = external.get(key) ?? [];
      list.push([r[0], r[1], conn]);
      external.set(key, list);
      continue;
    }
    const key = `${l.src}\0${l.dst}`;
    pairs.set(key, (pairs.get(key) ?? ConnectionSet.NONE).union(conn));
  }
  return { pairs, external };
}

/**
 * Semantic comparison, as the oracle README prescribes: workload pairs by connection set;
 * external ranges split at the union of both sides' boundaries and compared atom by atom.
 * Returns readable differences (empty when equal).
 */
export function compareConnLists(actual: readonly ConnLine[], expected: readonly ConnLine[]): string[] {
  const a = index(actual);
  const e = index(expected);
  const diffs: string[] = [];
  for (const key of new Set([...a.pairs.keys(), ...e.pairs.keys()])) {
    const x = a.pairs.get(key) ?? ConnectionSet.NONE;
    const y = e.pairs.get(key) ?? ConnectionSet.NONE;
    if (!x.equals(y)) diffs.push(`${key.replace("\0", " => ")}: got ${x}, expected ${y}`);
  }
  for (const key of new Set([...a.external.keys(), ...e.external.keys()])) {
    const xs = a.external.get(key) ?? [];
    const ys = e.external.get(key) ?? [];
    const cuts = new Set<number>([0]);
    for (const [s, t] of [...xs, ...ys]) {
      cuts.add(s);
      if (t < 0xffffffff) cuts.add(t + 1);
    }
    const starts = [...cuts].sort((p, q) => p - q);
    const at = (list: Array<[number, number, ConnectionSet]>, ip: number) =>
      list.filter(([s, t]) => s <= ip && ip <= t).reduce((acc, [, , c]) => acc.union(c), ConnectionSet.NONE);
    starts.forEach((s, i) => {
      const x = at(xs, s);
      const y = at(ys, s);
      if (!x.equals(y)) {
        const end = (starts[i + 1] ?? 2 ** 32) - 1;
        diffs.push(`${key.replace("\0", " ")} range ${s}-${end}: got ${x}, expected ${y}`);
      }
    });
  }
  return diffs;
}
