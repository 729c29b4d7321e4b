/**
 * Sets of integers as sorted, disjoint, non-adjacent inclusive intervals, stored flat:
 * [start0, end0, start1, end1, ...]. Used for ports and for IPv4 ranges. Values are
 * immutable: every operation returns a new array (or one of its inputs).
 */
export type Intervals = readonly number[];

export const EMPTY: Intervals = [];

export function interval(start: number, end: number): Intervals {
  return start <= end ? [start, end] : EMPTY;
}

/** Normalizes any list of intervals (unsorted, overlapping) into canonical form. */
export function fromRanges(ranges: ReadonlyArray<readonly [number, number]>): Intervals {
  const sorted = ranges.filter(([s, e]) => s <= e).sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [s, e] of sorted) appendMerged(out, s, e);
  return out;
}

/** Appends [s, e] to canonical intervals whose starts are all <= s, merging when it touches the last. */
function appendMerged(out: number[], s: number, e: number): void {
  const last = out.length - 1;
  if (last > 0 && s <= (out[last] as number) + 1) {
    if (e > (out[last] as number)) out[last] = e;
  } else {
    out.push(s, e);
  }
}

export function union(a: Intervals, b: Intervals): Intervals {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let s: number;
    let e: number;
    if (j >= b.length || (i < a.length && (a[i] as number) <= (b[j] as number))) {
      s = a[i] as number;
      e = a[i + 1] as number;
      i += 2;
    } else {
      s = b[j] as number;
      e = b[j + 1] as number;
      j += 2;
    }
    appendMerged(out, s, e);
  }
  return out;
}

export function intersect(a: Intervals, b: Intervals): Intervals {
  if (a.length === 0 || b.length === 0) return EMPTY;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i] as number, b[j] as number);
    const e = Math.min(a[i + 1] as number, b[j + 1] as number);
    if (s <= e) out.push(s, e);
    if ((a[i + 1] as number) < (b[j + 1] as number)) i += 2;
    else j += 2;
  }
  return out;
}

/** a minus b */
export function subtract(a: Intervals, b: Intervals): Intervals {
  if (a.length === 0 || b.length === 0) return a;
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let s = a[i] as number;
    const e = a[i + 1] as number;
    while (j < b.length && (b[j + 1] as number) < s) j += 2;
    let k = j;
    while (k < b.length && (b[k] as number) <= e) {
      if ((b[k] as number) > s) out.push(s, (b[k] as number) - 1);
      s = Math.max(s, (b[k + 1] as number) + 1);
      k += 2;
    }
    if (s <= e) out.push(s, e);
  }
  return out;
}

export function contains(a: Intervals, x: number): boolean {
  // Binary search over interval starts.
  let lo = 0;
  let hi = a.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (x < (a[2 * mid] as number)) hi = mid - 1;
    else if (x > (a[2 * mid + 1] as number)) lo = mid + 1;
    else return true;
  }
  return false;
}

/** True when every value of the closed range [s, e] is in a. */
export function coversRange(a: Intervals, s: number, e: number): boolean {
  for (let i = 0; i < a.length; i += 2) {
    if ((a[i] as number) <= s && e <= (a[i + 1] as number)) return true;
  }
  return false;
}

export function equals(a: Intervals, b: Intervals): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `1-79,81-65535` */
export function format(a: Intervals): string {
  const parts: string[] = [];
  for (let i = 0; i < a.length; i += 2) {
    parts.push(a[i] === a[i + 1] ? String(a[i]) : `${a[i]}-${a[i + 1]}`);
  }
  return parts.join(",");
}
