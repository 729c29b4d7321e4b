/** ConnectionSet: np-guard printing, parsing, and set operations against a naive model. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { Protocol } from "../../src/kube/objects.js";
import { ConnectionSet } from "../../src/policy/connset.js";
import * as iv from "../../src/policy/intervals.js";

const PROTOCOLS: readonly Protocol[] = ["SCTP", "TCP", "UDP"];

/** Port ranges near the interesting values (1, 53, 80, 65535) so that sets touch and merge. */
const portRangeArb = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(1, 2, 52, 53, 54, 79, 80, 81, 443, 65534, 65535),
      fc.integer({ min: 1, max: 65535 }),
    ),
    fc.oneof(fc.constantFrom(0, 1, 2, 26), fc.integer({ min: 0, max: 65535 })),
  )
  .map(([s, len]) => [s, Math.min(65535, s + len)] as [number, number]);

const connArb: fc.Arbitrary<ConnectionSet> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(ConnectionSet.ALL, ConnectionSet.NONE) },
  {
    weight: 6,
    arbitrary: fc
      .record({
        SCTP: fc.array(portRangeArb, { maxLength: 3 }),
        TCP: fc.array(portRangeArb, { maxLength: 3 }),
        UDP: fc.array(portRangeArb, { maxLength: 3 }),
      })
      .map((r) =>
        ConnectionSet.fromRecord({
          SCTP: iv.fromRanges(r.SCTP),
          TCP: iv.fromRanges(r.TCP),
          UDP: iv.fromRanges(r.UDP),
        }),
      ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(...PROTOCOLS), portRangeArb)
      .map(([p, [s, e]]) => ConnectionSet.of(p, iv.interval(s, e))),
  },
);

/** Probe points where sets built from portRangeArb can differ. */
const probePorts = [
  1, 2, 3, 52, 53, 54, 55, 78, 79, 80, 81, 82, 106, 443, 444, 469, 32768, 65533, 65534, 65535,
];

describe("ConnectionSet", () => {
  it("prints the np-guard forms", () => {
    assert.equal(String(ConnectionSet.ALL), "All Connections");
    assert.equal(String(ConnectionSet.NONE), "No Connections");
    const notTcp80 = ConnectionSet.ALL.subtract(ConnectionSet.of("TCP", [80, 80]));
    assert.equal(String(notTcp80), "SCTP 1-65535,TCP 1-79,81-65535,UDP 1-65535");
    const dns = ConnectionSet.of("TCP", [10053, 10054]).union(ConnectionSet.of("UDP", [10053, 10053]));
    assert.equal(String(dns), "TCP 10053-10054,UDP 10053");
    assert.equal(String(ConnectionSet.allOf("TCP")), "TCP 1-65535");
    assert.equal(
      String(ConnectionSet.of("UDP", [53, 53]).union(ConnectionSet.of("TCP", [80, 81]))),
      "TCP 80-81,UDP 53",
    );
  });

  it("parses the np-guard forms", () => {
    assert.equal(ConnectionSet.parse("All Connections"), ConnectionSet.ALL);
    assert.equal(ConnectionSet.parse("No Connections"), ConnectionSet.NONE);
    const notTcp80 = ConnectionSet.parse("SCTP 1-65535,TCP 1-79,81-65535,UDP 1-65535");
    assert.ok(notTcp80.equals(ConnectionSet.ALL.subtract(ConnectionSet.of("TCP", [80, 80]))));
    assert.ok(!notTcp80.has("TCP", 80));
    assert.ok(
      notTcp80.has("TCP", 79) &&
        notTcp80.has("TCP", 81) &&
        notTcp80.has("UDP", 80) &&
        notTcp80.has("SCTP", 80),
    );
    const dns = ConnectionSet.parse("TCP 10053-10054,UDP 10053");
    assert.deepEqual([...dns.portsOf("TCP")], [10053, 10054]);
    assert.deepEqual([...dns.portsOf("UDP")], [10053, 10053]);
    assert.deepEqual([...dns.portsOf("SCTP")], []);
    // Every protocol on every port is the canonical ALL, however it is written.
    assert.equal(ConnectionSet.parse("SCTP 1-65535,TCP 1-65535,UDP 1-65535"), ConnectionSet.ALL);
    assert.equal(
      String(ConnectionSet.parse("TCP 1-79,80,81-65535,SCTP 1-65535,UDP 1-65535")),
      "All Connections",
    );
    // Tolerates spaces after commas; merges overlapping and adjacent ranges.
    assert.equal(String(ConnectionSet.parse("TCP 80, 81, 443,UDP 53")), "TCP 80-81,443,UDP 53");
  });

  it("refuses text that is not a connection set", () => {
    for (const bad of ["TCP", "80", "HTTP 80", "TCP 80-", "TCP eighty", "TCP 80,,UDP 53"]) {
      assert.throws(() => ConnectionSet.parse(bad), Error, bad);
    }
  });

  it("refuses ports outside 1-65535 and reversed ranges", () => {
    for (const bad of ["TCP 0-80", "TCP 80-70000", "UDP 0", "TCP 5-3"]) {
      assert.throws(() => ConnectionSet.parse(bad), Error, bad);
    }
  });

  it("round-trips through toString and parse", () => {
    fc.assert(
      fc.property(connArb, (c) => {
        const text = c.toString();
        const back = ConnectionSet.parse(text);
        assert.ok(back.equals(c), `${text} -> ${back}`);
        assert.equal(back.toString(), text);
      }),
      { numRuns: 500 },
    );
  });

  it("union, intersect and subtract agree with membership", () => {
    fc.assert(
      fc.property(connArb, connArb, (a, b) => {
        const u = a.union(b);
        const n = a.intersect(b);
        const d = a.subtract(b);
        for (const p of PROTOCOLS) {
          for (const port of probePorts) {
            const ia = a.has(p, port);
            const ib = b.has(p, port);
            assert.equal(u.has(p, port), ia || ib, `union ${p} ${port}`);
            assert.equal(n.has(p, port), ia && ib, `intersect ${p} ${port}`);
            assert.equal(d.has(p, port), ia && !ib, `subtract ${p} ${port}`);
          }
          assert.ok(iv.equals(u.portsOf(p), iv.union(a.portsOf(p), b.portsOf(p))), `union ${p}`);
          assert.ok(iv.equals(n.portsOf(p), iv.intersect(a.portsOf(p), b.portsOf(p))), `intersect ${p}`);
          assert.ok(iv.equals(d.portsOf(p), iv.subtract(a.portsOf(p), b.portsOf(p))), `subtract ${p}`);
        }
        assert.equal(u.isEmpty(), a.isEmpty() && b.isEmpty());
        assert.equal(u.equals(b.union(a)), true);
        assert.equal(n.equals(b.intersect(a)), true);
      }),
      { numRuns: 1000 },
    );
  });

  it("isAll / isEmpty and the shared instances agree with the contents", () => {
    fc.assert(
      fc.property(connArb, (c) => {
        const all = PROTOCOLS.every((p) => iv.equals(c.portsOf(p), [1, 65535]));
        const none = PROTOCOLS.every((p) => c.portsOf(p).length === 0);
        assert.equal(c.isAll(), all);
        assert.equal(c.isEmpty(), none);
        assert.equal(c.equals(ConnectionSet.ALL), all);
        assert.equal(c.equals(ConnectionSet.NONE), none);
        assert.equal(c.toString() === "All Connections", all);
        assert.equal(c.toString() === "No Connections", none);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps ports inside 1-65535", () => {
    const c = ConnectionSet.of("TCP", [0, 70000]);
    assert.deepEqual([...c.portsOf("TCP")], [1, 65535]);
    assert.equal(String(c), "TCP 1-65535");
    assert.ok(ConnectionSet.of("UDP", [70000, 70001]).isEmpty());
  });
});
