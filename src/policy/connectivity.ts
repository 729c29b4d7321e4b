import type { Diagnostics } from "../kube/errors.js";
import { formatRange } from "../kube/ip.js";
import type { Cluster, Pod, Workload } from "../kube/objects.js";
import { ConnectionSet } from "./connset.js";
import type { Engine } from "./engine.js";
import * as iv from "./intervals.js";
import { requestsEqual } from "./istio/httpset.js";
import type { IstioMesh } from "./istio/layer.js";
import type { L7Constraint } from "./istio/summary.js";
import type { Endpoint } from "./model.js";

/** A node of the connectivity graph: a workload (or one distinct pod group of it) or an IPv4 range. */
export type Peer =
  | {
      readonly kind: "workload";
      readonly id: string;
      readonly workload: Workload;
      readonly pods: readonly Pod[];
      readonly endpoint: Endpoint;
    }
  | {
      readonly kind: "external";
      readonly id: string;
      readonly start: number;
      readonly end: number;
      readonly endpoint: Endpoint;
    };

export interface Connection {
  readonly src: Peer;
  readonly dst: Peer;
  readonly conn: ConnectionSet;
  /**
   * TCP ports of `conn` where the destination's mesh proxy lets only HTTP requests through,
   * and which ones; absent when every connection of `conn` passes whole.
   */
  readonly l7?: readonly L7Constraint[];
}

/** The mesh when the input has one (a proxy or an Istio policy), else undefined. */
function activeMesh(engine: Engine): IstioMesh | undefined {
  return engine.mesh?.active ? engine.mesh : undefined;
}

/** Pods with the same class get the same answers from every layer and from the mesh. */
function peerClassOf(engine: Engine): (pod: Pod) => string {
  const mesh = activeMesh(engine);
  return mesh
    ? (pod) => `${engine.classOf(pod)}\u0000${mesh.classKey(pod)}`
    : (pod) => String(engine.classOf(pod));
}

/** The IPv4 boundaries an analysis cuts external ranges at: every layer's and the mesh's. */
export function analysisBoundaries(engine: Engine): number[] {
  const set = new Set([...engine.ipBoundaries(), ...(activeMesh(engine)?.ipBoundaries() ?? [])]);
  return [...set].sort((a, b) => a - b);
}

/**
 * What passes from src to dst: the L3/L4 layers' connections, then the mesh at the
 * destination (its TCP ports cut down to what peer authentication and authorization let
 * through, with the HTTP requests where only some pass).
 */
export function pairConnection(
  engine: Engine,
  src: Endpoint,
  dst: Endpoint,
  l4: ConnectionSet = engine.allowed(src, dst),
): { conn: ConnectionSet; l7?: readonly L7Constraint[] } {
  const mesh = activeMesh(engine);
  const tcp = l4.portsOf("TCP");
  if (!mesh || dst.kind !== "pod" || tcp.length === 0) return { conn: l4 };
  const summary = mesh.meshConnection(src, dst.pod);
  if (!summary.applies) return { conn: l4 };
  const allowedTcp = iv.intersect(tcp, summary.tcpAllowed);
  const conn = iv.equals(allowedTcp, tcp)
    ? l4
    : ConnectionSet.fromRecord({ SCTP: l4.portsOf("SCTP"), TCP: allowedTcp, UDP: l4.portsOf("UDP") });
  const l7 = summary.constraints
    .map((c) => ({ ...c, ports: iv.intersect(c.ports, allowedTcp) }))
    .filter((c) => c.ports.length > 0);
  return l7.length > 0 ? { conn, l7 } : { conn };
}

/** The same L7 constraints, by meaning (ports and requests), regardless of how they are grouped. */
export function l7Equal(
  a: readonly L7Constraint[] | undefined,
  b: readonly L7Constraint[] | undefined,
): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length === 0 || y.length === 0) return x.length === y.length;
  const cuts = new Set<number>();
  for (const c of [...x, ...y]) {
    for (let i = 0; i < c.ports.length; i += 2) {
      cuts.add(c.ports[i] as number);
      cuts.add((c.ports[i + 1] as number) + 1);
    }
  }
  const points = [...cuts].sort((p, q) => p - q);
  const at = (list: readonly L7Constraint[], port: number) => list.find((c) => iv.contains(c.ports, port));
  for (const port of points) {
    const cx = at(x, port);
    const cy = at(y, port);
    if (cx === undefined || cy === undefined) {
      if (cx !== cy) return false;
      continue;
    }
    if (!requestsEqual(cx.http, cy.http, cx.pathNormalization)) return false;
  }
  return true;
}

/** Same connections and same L7 constraints. */
export function sameConnection(
  a: { conn: ConnectionSet; l7?: readonly L7Constraint[] },
  b: { conn: ConnectionSet; l7?: readonly L7Constraint[] },
): boolean {
  return a.conn.equals(b.conn) && l7Equal(a.l7, b.l7);
}

export interface ConnectivityOptions {
  /** Extra IP boundaries, so that two analyses (diff) split external ranges alike. */
  readonly extraBoundaries?: readonly number[];
  /** Only connections from or to this peer (a workload id, `ns/name` or `name` in default). */
  readonly focus?: string;
  /** Include pairs with no allowed connection (for explanations). */
  readonly includeDenied?: boolean;
  /**
   * Keep external ranges cut at every boundary instead of joining adjacent ranges that allow
   * the same to the same workload (diff needs the cut form so both sides line up).
   */
  readonly splitExternal?: boolean;
  /** Called now and then with the number of source peers done, for a progress display. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface ConnectivityResult {
  readonly peers: readonly Peer[];
  readonly connections: readonly Connection[];
}

function labelText(pod: Pod, keys: readonly string[]): string {
  return keys.map((k) => (pod.labels[k] === undefined ? `!${k}` : `${k}=${pod.labels[k]}`)).join(",");
}

/**
 * Workload peers: a workload's pods normally behave alike and form one peer. When policies
 * tell some of its pods apart (different labels that a selector reads), the workload is split
 * into one peer per distinct group, named by the labels that differ, with a warning.
 */
export function workloadPeers(cluster: Cluster, engine: Engine, diag?: Diagnostics): Peer[] {
  const peers: Peer[] = [];
  const classOf = peerClassOf(engine);
  for (const w of cluster.workloads) {
    const groups = new Map<string, Pod[]>();
    for (const pod of w.pods) {
      const c = classOf(pod);
      const g = groups.get(c);
      if (g) g.push(pod);
      else groups.set(c, [pod]);
    }
    if (groups.size === 1) {
      const pods = [...groups.values()][0] as Pod[];
      peers.push({
        kind: "workload",
        id: w.id,
        workload: w,
        pods,
        endpoint: { kind: "pod", pod: pods[0] as Pod },
      });
      continue;
    }
    const keys = new Set<string>();
    for (const p of w.pods) for (const k of Object.keys(p.labels)) keys.add(k);
    const differing = [...keys].filter((k) => new Set(w.pods.map((p) => p.labels[k])).size > 1).sort();
    const byLabels = new Map<string, number>();
    for (const pods of groups.values()) {
      const text = labelText(pods[0] as Pod, differing);
      byLabels.set(text, (byLabels.get(text) ?? 0) + 1);
    }
    const names: string[] = [];
    for (const pods of groups.values()) {
      const first = pods[0] as Pod;
      // Labels name a group when they tell it apart; otherwise (pod IP in or out of an ipBlock,
      // different named ports) the group's first pod does.
      const text = labelText(first, differing);
      const unique = text !== "" && byLabels.get(text) === 1;
      const id = `${w.id}{${unique ? text : `${text ? `${text},` : ""}pod=${first.name}`}}`;
      names.push(id);
      peers.push({ kind: "workload", id, workload: w, pods, endpoint: { kind: "pod", pod: first } });
    }
    const why =
      differing.length > 0
        ? `different labels (${differing.join(", ")})`
        : "different pod IPs or named ports";
    diag?.warn(
      "workload-split",
      `pods of ${w.id} have ${why} that ${activeMesh(engine) ? "policies" : "network policies"} tell apart; analyzed as ${groups.size} groups: ${names.join(" ")}`,
      w.source,
      w.id,
    );
  }
  return peers;
}

/** The IPv4 space cut at every boundary: [start, end] ranges covering 0.0.0.0-255.255.255.255. */
export function externalRanges(boundaries: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  for (const b of boundaries) {
    if (b <= start || b > 0xffffffff) continue;
    out.push([start, b - 1]);
    start = b;
  }
  out.push([start, 0xffffffff]);
  return out;
}

export function matchesFocus(peer: Peer, focus: string): boolean {
  if (peer.kind !== "workload") return false;
  const w = peer.workload;
  return (
    focus === peer.id ||
    focus === w.id ||
    focus === `${w.namespace}/${w.name}` ||
    (w.namespace === "default" && focus === w.name)
  );
}

/** Every allowed connection between workloads, and between workloads and external ranges. */
export function connectivity(
  cluster: Cluster,
  engine: Engine,
  options: ConnectivityOptions = {},
  diag?: Diagnostics,
): ConnectivityResult {
  const workloads = workloadPeers(cluster, engine, diag);
  const boundaries = new Set([...analysisBoundaries(engine), ...(options.extraBoundaries ?? [])]);
  const externals: Peer[] = externalRanges([...boundaries].sort((a, b) => a - b)).map(([start, end]) =>
    externalPeer(start, end),
  );
  const focus = options.focus;
  const focused = focus ? workloads.filter((p) => matchesFocus(p, focus)) : undefined;
  if (focus && focused?.length === 0) throw new FocusError(focus);
  const inFocus = (p: Peer) => !focused || focused.includes(p);

  const layers = engine.layers;
  const classesOf = (p: Peer): number[] =>
    layers.map((l) => (p.endpoint.kind === "pod" ? l.classOf(p.endpoint.pod) : -1));
  const wClasses = workloads.map(classesOf);
  const connections: Connection[] = [];
  const pairAllowed = (src: Peer, sc: number[], dst: Peer, dc: number[]): ConnectionSet => {
    let out = ConnectionSet.ALL;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i] as (typeof layers)[number];
      const s = sc[i] as number;
      const d = dc[i] as number;
      if (s >= 0 && d >= 0 && !layer.mayConnect(s, d)) return ConnectionSet.NONE;
      out = out.intersect(layer.allowedByClass(src.endpoint, s, dst.endpoint, d));
      if (out.isEmpty()) return out;
    }
    return out;
  };
  const push = (src: Peer, dst: Peer, l4: ConnectionSet) => {
    const c = pairConnection(engine, src.endpoint, dst.endpoint, l4);
    if (!c.conn.isEmpty() || options.includeDenied) connections.push({ src, dst, ...c });
  };
  const none = layers.map(() => -1);
  for (let i = 0; i < workloads.length; i++) {
    if (options.onProgress && i % 256 === 0) options.onProgress(i, workloads.length);
    const src = workloads[i] as Peer;
    const sc = wClasses[i] as number[];
    for (let j = 0; j < workloads.length; j++) {
      if (i === j) continue;
      const dst = workloads[j] as Peer;
      if (focused && !inFocus(src) && !inFocus(dst)) continue;
      push(src, dst, pairAllowed(src, sc, dst, wClasses[j] as number[]));
    }
    if (focused && !inFocus(src)) continue;
    for (const ext of externals) {
      push(src, ext, pairAllowed(src, sc, ext, none));
      push(ext, src, pairAllowed(ext, none, src, sc));
    }
  }
  const result = options.splitExternal ? connections : joinExternalRanges(connections);
  result.sort((a, b) => compareIds(a.src.id, b.src.id) || compareIds(a.dst.id, b.dst.id));
  return { peers: [...workloads, ...externals], connections: result };
}

function externalPeer(start: number, end: number): Peer {
  return {
    kind: "external",
    id: `${formatRange(start, end)}[External]`,
    start,
    end,
    endpoint: { kind: "ip", ip: start },
  };
}

/**
 * Joins adjacent external ranges that allow the same connections to or from the same peer:
 * `0.0.0.0-255.255.255.255[External]` for an unisolated workload instead of one line per cut.
 * Connections arrive grouped by workload and direction, external ranges in ascending order.
 */
export function joinExternalRanges(connections: readonly Connection[]): Connection[] {
  const out: Connection[] = [];
  let run:
    | {
        other: Peer;
        outgoing: boolean;
        start: number;
        end: number;
        conn: ConnectionSet;
        l7: readonly L7Constraint[] | undefined;
      }
    | undefined;
  const flush = () => {
    if (!run) return;
    const ext = externalPeer(run.start, run.end);
    const l7 = run.l7 ? { l7: run.l7 } : {};
    out.push(
      run.outgoing
        ? { src: run.other, dst: ext, conn: run.conn, ...l7 }
        : { src: ext, dst: run.other, conn: run.conn, ...l7 },
    );
    run = undefined;
  };
  const external = connections.filter((c) => c.src.kind === "external" || c.dst.kind === "external");
  for (const c of connections) if (c.src.kind !== "external" && c.dst.kind !== "external") out.push(c);
  const key = (c: Connection) => (c.src.kind === "external" ? `in\0${c.dst.id}` : `out\0${c.src.id}`);
  const rangeOf = (c: Connection) =>
    (c.src.kind === "external" ? c.src : c.dst) as Extract<Peer, { kind: "external" }>;
  const sorted = [...external].sort(
    (a, b) => compareIds(key(a), key(b)) || rangeOf(a).start - rangeOf(b).start,
  );
  let runKey = "";
  for (const c of sorted) {
    const r = rangeOf(c);
    const k = key(c);
    if (run && k === runKey && run.end + 1 === r.start && sameConnection(run, c)) {
      run.end = r.end;
      continue;
    }
    flush();
    runKey = k;
    const outgoing = c.dst.kind === "external";
    run = { other: outgoing ? c.src : c.dst, outgoing, start: r.start, end: r.end, conn: c.conn, l7: c.l7 };
  }
  flush();
  return out;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class FocusError extends Error {
  constructor(readonly focus: string) {
    super(`--focus ${focus}: no such workload in the input (use ns/name or ns/name[Kind])`);
    this.name = "FocusError";
  }
}
