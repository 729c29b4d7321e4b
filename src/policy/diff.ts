import type { Diagnostics } from "../kube/errors.js";
import type { Cluster } from "../kube/objects.js";
import { analysisBoundaries, type Connection, connectivity, sameConnection } from "./connectivity.js";
import { ConnectionSet } from "./connset.js";
import type { Engine } from "./engine.js";
import { connText, toRows } from "./output/rows.js";

export type DiffType = "added" | "removed" | "changed";

export interface DiffEntry {
  readonly diffType: DiffType;
  readonly src: string;
  readonly dst: string;
  /**
   * What the first input allows ("No Connections" when the pair is new), with the mesh's L7
   * part as connectivity prints it: `TCP 80 (HTTP GET)`.
   */
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
 * by text: its connections, and the HTTP requests the mesh lets through where it limits them
 * (a change only in those is a change).
 */
export function connectivityDiff(a: Analysis, b: Analysis): DiffEntry[] {
  const boundaries = [...analysisBoundaries(a.engine), ...analysisBoundaries(b.engine)];
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
  const leftMap = new Map(left.connections.map((c) => [key(c.src.id, c.dst.id), c]));
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
        ref2: textOf(c),
      });
    } else if (!sameConnection(before, c)) {
      out.push({
        diffType: "changed",
        src: c.src.id,
        dst: c.dst.id,
        ref1: textOf(before),
        ref2: textOf(c),
      });
    }
  }
  for (const c of left.connections) {
    if (!leftMap.has(key(c.src.id, c.dst.id))) continue;
    out.push({
      diffType: "removed",
      src: c.src.id,
      dst: c.dst.id,
      ref1: textOf(c),
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

function textOf(c: Connection): string {
  const [row] = toRows([c]);
  return row ? connText(row) : c.conn.toString();
}
