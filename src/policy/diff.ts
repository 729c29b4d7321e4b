import type { Diagnostics } from "../kube/errors.js";
import type { Cluster } from "../kube/objects.js";
import { connectivity } from "./connectivity.js";
import { ConnectionSet } from "./connset.js";
import type { Engine } from "./engine.js";

export type DiffType = "added" | "removed" | "changed";

export interface DiffEntry {
  readonly diffType: DiffType;
  readonly src: string;
  readonly dst: string;
  /** What the first input allows ("No Connections" when the pair is new). */
  readonly ref1: string;
  readonly ref2: string;
}

export interface Analysis {
  readonly cluster: Cluster;
  readonly engine: Engine;
  readonly diagnostics: Diagnostics;
}

/**
 * Semantic connectivity diff: both inputs are analyzed with external ranges cut at the union
 * of their boundaries, so pairs line up; a pair is added, removed or changed by meaning, not
 * by text.
 */
export function connectivityDiff(a: Analysis, b: Analysis): DiffEntry[] {
  const boundaries = [...a.engine.ipBoundaries(), ...b.engine.ipBoundaries()];
  const left = connectivity(
    a.cluster,
    a.engine,
    { extraBoundaries: boundaries, splitExternal: true },
    a.diagnostics,
  );
  const right = connectivity(
    b.cluster,
    b.engine,
    { extraBoundaries: boundaries, splitExternal: true },
    b.diagnostics,
  );
  const key = (src: string, dst: string) => `${src}\0${dst}`;
  const leftMap = new Map(left.connections.map((c) => [key(c.src.id, c.dst.id), c.conn]));
  const out: DiffEntry[] = [];
  for (const c of right.connections) {
    const k = key(c.src.id, c.dst.id);
    const before = leftMap.get(k);
    leftMap.delete(k);
    if (!before) {
      out.push({
        diffType: "added",
        src: c.src.id,
        dst: c.dst.id,
        ref1: ConnectionSet.NONE.toString(),
        ref2: c.conn.toString(),
      });
    } else if (!before.equals(c.conn)) {
      out.push({
        diffType: "changed",
        src: c.src.id,
        dst: c.dst.id,
        ref1: before.toString(),
        ref2: c.conn.toString(),
      });
    }
  }
  for (const c of left.connections) {
    if (!leftMap.has(key(c.src.id, c.dst.id))) continue;
    out.push({
      diffType: "removed",
      src: c.src.id,
      dst: c.dst.id,
      ref1: c.conn.toString(),
      ref2: ConnectionSet.NONE.toString(),
    });
  }
  const order: Record<DiffType, number> = { changed: 0, added: 1, removed: 2 };
  return out.sort(
    (x, y) =>
      order[x.diffType] - order[y.diffType] ||
      (x.src < y.src ? -1 : x.src > y.src ? 1 : x.dst < y.dst ? -1 : x.dst > y.dst ? 1 : 0),
  );
}
