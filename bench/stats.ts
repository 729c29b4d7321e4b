/** Small measurement, statistics and formatting helpers for the benchmarks. */

/** A full garbage collection when node runs with --expose-gc; else nothing. */
export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) g();
}

/** Milliseconds since an arbitrary origin, from the monotonic high-resolution clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Runs fn and returns its result and how long it took, in milliseconds. */
export function timed<T>(fn: () => T): { value: T; ms: number } {
  const t0 = process.hrtime.bigint();
  const value = fn();
  const t1 = process.hrtime.bigint();
  return { value, ms: Number(t1 - t0) / 1e6 };
}

/** The q-quantile (0..1) of already sorted values, nearest rank. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Median cost of an empty `hrtime.bigint(); hrtime.bigint()` pair, in ns. */
export function timerOverheadNs(samples = 200_000): number {
  const d = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const t0 = process.hrtime.bigint();
    const t1 = process.hrtime.bigint();
    d[i] = Number(t1 - t0);
  }
  return quantileSorted(d.sort(), 0.5);
}

/** Latency figures of a function, in ns. */
export interface LatencyFigures {
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  /** Median over batches of 1000 calls of the batch time / 1000: throughput, no per-call timer. */
  batchMeanNs: number;
  /** Per-call latencies in input order, overhead subtracted (for same-input ratios). */
  perCall: Float64Array<ArrayBuffer>;
}

/** One round of timeRound. */
export interface RoundLatency extends LatencyFigures {
  /** How many calls of the per-call pass returned true. */
  trueCount: number;
}

/**
 * One round of latency measurement of call(0..n-1): each call timed on its own (hrtime before
 * and after, `overheadNs` subtracted, at least 0), then batches of 1000 calls over the first
 * `batchN` inputs timed as a whole.
 */
export function timeRound(
  n: number,
  batchN: number,
  call: (i: number) => boolean,
  overheadNs: number,
): RoundLatency {
  const lat = new Float64Array(n);
  let trueCount = 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const ok = call(i);
    const t1 = process.hrtime.bigint();
    if (ok) trueCount++;
    lat[i] = Math.max(Number(t1 - t0) - overheadNs, 0);
  }
  const perCall = lat.slice();
  lat.sort();
  const B = 1000;
  const perBatch: number[] = [];
  for (let b = 0; b + B <= batchN; b += B) {
    const t0 = process.hrtime.bigint();
    for (let i = b; i < b + B; i++) call(i);
    const t1 = process.hrtime.bigint();
    perBatch.push(Number(t1 - t0) / B);
  }
  return {
    trueCount,
    perCall,
    p50Ns: quantileSorted(lat, 0.5),
    p90Ns: quantileSorted(lat, 0.9),
    p99Ns: quantileSorted(lat, 0.99),
    batchMeanNs: median(perBatch),
  };
}

/** Each figure the median over the rounds; perCall of the last round. */
export function medianOfRounds(rounds: readonly RoundLatency[]): LatencyFigures {
  return {
    p50Ns: median(rounds.map((r) => r.p50Ns)),
    p90Ns: median(rounds.map((r) => r.p90Ns)),
    p99Ns: median(rounds.map((r) => r.p99Ns)),
    batchMeanNs: median(rounds.map((r) => r.batchMeanNs)),
    perCall: rounds.at(-1)?.perCall ?? new Float64Array(0),
  };
}

export function quantile(values: ArrayLike<number>, q: number): number {
  return quantileSorted(Float64Array.from(values).sort(), q);
}

export function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 1
    ? (sorted[(n - 1) / 2] as number)
    : ((sorted[n / 2 - 1] as number) + (sorted[n / 2] as number)) / 2;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return "-";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function formatNs(ns: number | undefined): string {
  if (ns === undefined || Number.isNaN(ns)) return "-";
  if (ns < 1000) return `${(ns / 1000).toFixed(3)} µs`;
  if (ns < 10_000) return `${(ns / 1000).toFixed(2)} µs`;
  if (ns < 1_000_000) return `${(ns / 1000).toFixed(1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || Number.isNaN(bytes)) return "-";
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  return `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

export function formatRatio(r: number | undefined): string {
  if (r === undefined || Number.isNaN(r) || !Number.isFinite(r)) return "-";
  if (r >= 100) return `${Math.round(r).toLocaleString("en-US")}x`;
  return `${r.toFixed(1)}x`;
}

/** A share (0..1) as a percentage with one decimal. */
export function formatShare(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** A benchmark size for labels: 10000 → "10k", 1500 → "1500". */
export function formatSize(n: number): string {
  return n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export function formatCount(n: number | undefined): string {
  return n === undefined ? "-" : n.toLocaleString("en-US");
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) =>
        i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number),
      )
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}
