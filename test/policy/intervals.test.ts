/** Interval sets against a naive Set<number> model on small ranges. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import * as iv from "../../src/policy/intervals.js";

const LO = 0;
const HI = 40;

/** Random (possibly overlapping, unsorted, empty) ranges inside [LO, HI]. */
const rangesArb = fc.array(
  fc
    .tuple(fc.integer({ min: LO, max: HI }), fc.integer({ min: LO - 2, max: HI }))
    .map(([s, len]) => [s, s + len] as [number, number]),
  { maxLength: 6 },
);

function model(ranges: ReadonlyArray<readonly [number, number]>): Set<number> {
  const out = new Set<number>();
  for (const [s, e] of ranges) for (let x = s; x <= e; x++) out.add(x);
  return out;
}

/** Sorted, disjoint, non-adjacent, each start <= end. */
function assertCanonical(a: iv.Intervals): void {
  assert.equal(a.length % 2, 0, `even length: ${JSON.stringify(a)}`);
  for (let i = 0; i < a.length; i += 2) {
    assert.ok((a[i] as number) <= (a[i + 1] as number), `start <= end: ${JSON.stringify(a)}`);
    if (i > 0)
      assert.ok((a[i] as number) > (a[i - 1] as number) + 1, `disjoint, non-adjacent: ${JSON.stringify(a)}`);
  }
}

const sorted = (s: Set<number>) => [...s].sort((x, y) => x - y);

/** Canonical form straight from the model, to compare arrays exactly. */
function fromModel(s: Set<number>): number[] {
  const out: number[] = [];
  for (const x of sorted(s)) {
    if (out.length > 0 && out[out.length - 1] === x - 1) out[out.length - 1] = x;
    else out.push(x, x);
  }
  return out;
}

describe("intervals", () => {
  it("fromRanges normalizes any list of ranges", () => {
    fc.assert(
      fc.property(rangesArb, (r) => {
        const a = iv.fromRanges(r);
        assertCanonical(a);
        assert.deepEqual([...a], fromModel(model(r)));
      }),
      { numRuns: 500 },
    );
  });

  it("union, intersect and subtract agree with sets", () => {
    fc.assert(
      fc.property(rangesArb, rangesArb, (ra, rb) => {
        const a = iv.fromRanges(ra);
        const b = iv.fromRanges(rb);
        const ma = model(ra);
        const mb = model(rb);
        const u = iv.union(a, b);
        const n = iv.intersect(a, b);
        const d = iv.subtract(a, b);
        for (const x of [u, n, d]) assertCanonical(x);
        assert.deepEqual([...u], fromModel(new Set([...ma, ...mb])), "union");
        assert.deepEqual([...n], fromModel(new Set([...ma].filter((x) => mb.has(x)))), "intersect");
        assert.deepEqual([...d], fromModel(new Set([...ma].filter((x) => !mb.has(x)))), "subtract");
      }),
      { numRuns: 1000 },
    );
  });

  it("contains and coversRange agree with sets", () => {
    fc.assert(
      fc.property(
        rangesArb,
        fc.integer({ min: LO - 2, max: HI + 2 }),
        fc.integer({ min: LO - 2, max: HI + 2 }),
        (r, x, y) => {
          const a = iv.fromRanges(r);
          const m = model(r);
          assert.equal(iv.contains(a, x), m.has(x), `contains ${x}`);
          const [s, e] = x <= y ? [x, y] : [y, x];
          let all = true;
          for (let v = s; v <= e; v++) if (!m.has(v)) all = false;
          assert.equal(iv.coversRange(a, s, e), all, `coversRange ${s}-${e}`);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("equals is set equality on canonical forms", () => {
    fc.assert(
      fc.property(rangesArb, rangesArb, (ra, rb) => {
        const same = sorted(model(ra)).join() === sorted(model(rb)).join();
        assert.equal(iv.equals(iv.fromRanges(ra), iv.fromRanges(rb)), same);
      }),
      { numRuns: 500 },
    );
  });

  it("union, intersect and subtract satisfy the set laws", () => {
    fc.assert(
      fc.property(rangesArb, rangesArb, rangesArb, (ra, rb, rc) => {
        const [a, b, c] = [iv.fromRanges(ra), iv.fromRanges(rb), iv.fromRanges(rc)];
        assert.ok(iv.equals(iv.union(a, b), iv.union(b, a)), "union commutes");
        assert.ok(iv.equals(iv.intersect(a, b), iv.intersect(b, a)), "intersect commutes");
        assert.ok(iv.equals(iv.union(iv.subtract(a, b), iv.intersect(a, b)), a), "(a-b) | (a&b) = a");
        assert.ok(iv.equals(iv.intersect(iv.subtract(a, b), b), iv.EMPTY), "(a-b) & b = {}");
        assert.ok(
          iv.equals(iv.intersect(a, iv.union(b, c)), iv.union(iv.intersect(a, b), iv.intersect(a, c))),
          "intersect distributes over union",
        );
      }),
      { numRuns: 500 },
    );
  });

  it("works at the ends of the IPv4 and port ranges", () => {
    const all = iv.interval(0, 0xffffffff);
    assert.deepEqual([...iv.subtract(all, [10, 20])], [0, 9, 21, 0xffffffff]);
    assert.deepEqual([...iv.subtract(all, [0, 0])], [1, 0xffffffff]);
    assert.deepEqual([...iv.subtract(all, [0xffffffff, 0xffffffff])], [0, 0xfffffffe]);
    assert.ok(iv.contains(all, 0xffffffff));
    assert.ok(iv.contains(all, 0));
    assert.deepEqual([...iv.union([1, 79], [81, 65535])], [1, 79, 81, 65535]);
    assert.deepEqual([...iv.union([1, 79], [80, 65535])], [1, 65535]);
    assert.deepEqual([...iv.interval(5, 4)], []);
    assert.equal(iv.format([1, 79, 81, 65535]), "1-79,81-65535");
    assert.equal(iv.format([53, 53, 80, 81]), "53,80-81");
    assert.equal(iv.format([]), "");
  });
});
