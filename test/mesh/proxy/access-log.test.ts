import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  ACCESS_FIELDS,
  accessLine,
  accessLineReference,
  isoNow,
  jsonNumber,
} from "../../../src/mesh/proxy/access-line.js";
import { type AccessRecord, jsonAccessLog, LineBatch } from "../../../src/mesh/proxy/access-log.js";

const NUMERIC: ReadonlySet<string> = new Set(["port", "status", "rule", "durationMs", "bytesIn", "bytesOut"]);

/** Any string JSON must escape (quotes, backslashes, control characters, lone surrogates, emoji). */
const text = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.constantFrom('"', "\\", "\n", "\u0000", "\u2028", "\ud800", "spiffe://td/ns/a/sa/b"),
);
const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY));

const record: fc.Arbitrary<AccessRecord> = fc.record(
  Object.fromEntries(ACCESS_FIELDS.map((key) => [key, NUMERIC.has(key) ? number : text])),
  { requiredKeys: [] },
) as unknown as fc.Arbitrary<AccessRecord>;

describe("access-log lines", () => {
  it("the hand-written line equals JSON.stringify of the ordered record, for any record", () => {
    fc.assert(
      fc.property(record, fc.date({ noInvalidDate: true }), (r, date) => {
        const time = date.toISOString();
        assert.equal(accessLine(r, time), accessLineReference(r, time));
      }),
      { numRuns: 2000 },
    );
  });

  it("keeps every field of a full record, in a line that parses back", () => {
    const full: Required<AccessRecord> = {
      direction: "inbound",
      protocol: "http",
      source: "10.0.0.1:5000",
      sourceIdentity: "spiffe://td/ns/a/sa/b",
      destination: "default/httpbin",
      destinationIdentity: "spiffe://td/ns/default/sa/httpbin",
      port: 80,
      method: "GET",
      path: '/a"b\\c',
      authority: "httpbin",
      status: 200,
      outcome: "forwarded",
      policy: "default/allow",
      rule: 0,
      detail: "line\nbreak",
      durationMs: 0.125,
      bytesIn: 10,
      bytesOut: 20,
    };
    const line = accessLine(full, "2026-11-27T00:00:00.000Z");
    assert.ok(line.endsWith("}\n") && !line.slice(0, -1).includes("\n"), "one line");
    assert.deepEqual(JSON.parse(line), {
      level: "info",
      time: "2026-11-27T00:00:00.000Z",
      type: "access",
      ...full,
    });
  });

  it("spells numbers as JSON.stringify does, durations in thousandths included (property)", () => {
    const thousandths = fc
      .oneof(fc.integer({ min: -2e6, max: 2e6 }), fc.integer({ min: -2e15, max: 2e15 }))
      .map((k) => k / 1000);
    fc.assert(
      fc.property(fc.oneof(thousandths, fc.double(), fc.integer()), (n) => {
        assert.equal(jsonNumber(n), JSON.stringify(n));
      }),
      { numRuns: 20000 },
    );
    for (const n of [0.1, 0.12, 0.123, 1.5, -0.001, 999999999999.999, 1e12 + 0.5, -0, 1e21, Number.NaN]) {
      assert.equal(jsonNumber(n), JSON.stringify(n), String(n));
    }
  });

  it("formats the time as ISO 8601", () => {
    assert.match(isoNow(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
});

describe("LineBatch", () => {
  it("hands on whole lines, in order, before the next might not fit, and what is left on flush", () => {
    const written: string[] = [];
    const batch = new LineBatch((b) => written.push(b.toString("utf8")), 24);
    batch.add("aaaa\n");
    assert.deepEqual(written, []);
    batch.add("bbbbbb\n");
    assert.deepEqual(written, ["aaaa\n"], "5 bytes used + up to 21 for the next line > 24: the first goes");
    batch.add("c\n");
    assert.deepEqual(written, ["aaaa\n"]);
    batch.flush();
    batch.flush();
    assert.deepEqual(written, ["aaaa\n", "bbbbbb\nc\n"]);
  });

  it("keeps any text intact, lines longer than the buffer included (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: "grapheme", maxLength: 40 }), { maxLength: 30 }),
        fc.integer({ min: 4, max: 64 }),
        (lines, capacity) => {
          const chunks: Buffer[] = [];
          const batch = new LineBatch((b) => chunks.push(Buffer.from(b)), capacity);
          for (const line of lines) batch.add(line);
          batch.flush();
          assert.equal(Buffer.concat(chunks).toString("utf8"), lines.join(""));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("jsonAccessLog", () => {
  it("writes access lines and messages to the file in the order they happened", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tessera-access-"));
    try {
      const path = join(dir, "access.log");
      const log = jsonAccessLog(path);
      const base = {
        direction: "inbound",
        protocol: "http",
        source: "127.0.0.1:1",
        destination: "d/w",
        port: 80,
      } as const;
      for (let i = 0; i < 500; i++) log.write({ ...base, path: `/${i}`, outcome: "forwarded" });
      log.info("policies reloaded", { policies: 3 });
      log.forConnection(base)({ path: "/after", outcome: "http-403", status: 403, detail: undefined });
      await log.flush();
      const lines = readFileSync(path, "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l));
      assert.equal(lines.length, 502);
      assert.deepEqual(
        lines.slice(0, 500).map((l) => l.path),
        Array.from({ length: 500 }, (_, i) => `/${i}`),
      );
      assert.equal(lines[500].msg, "policies reloaded");
      assert.equal(lines[500].policies, 3);
      assert.deepEqual(lines[501], {
        level: "info",
        time: lines[501].time,
        type: "access",
        ...base,
        path: "/after",
        status: 403,
        outcome: "http-403",
      });
      assert.equal(lines[501].type, "access");
      assert.equal(lines[501].level, "info");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
