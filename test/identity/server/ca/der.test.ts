import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import {
  bitString,
  contextTag,
  DerReadError,
  integer,
  isUtcTime,
  OID,
  oid,
  oidText,
  printableString,
  readChildren,
  readTlv,
  sequence,
  TAG,
  time,
  timeSize,
  tlv,
  tlvSize,
  utf8String,
  writeLength,
  writeTime,
} from "../../../../src/identity/server/ca/der.js";
import { der as refDer } from "../../../spiffe/testca.js";
import { opensslAsn1, TempDir } from "./helpers.js";

const dir = new TempDir();
after(() => dir.done());

/** Length field by the X.690 rule, written independently. */
function refLength(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

describe("DER lengths", () => {
  it("writes the minimal definite form at every boundary", () => {
    for (const n of [0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffff, 0x1000000, 0x7fffffff]) {
      const buf = Buffer.alloc(8);
      const end = writeLength(buf, 0, n);
      assert.deepEqual([...buf.subarray(0, end)], refLength(n), `length ${n}`);
      assert.equal(tlvSize(n), 1 + end + n);
    }
  });

  it("round-trips any content through tlv() and readTlv()", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 1, max: 30 }), (n, tag) => {
        const content = Buffer.alloc(n, 0xab);
        const t = tlv(tag, content);
        const r = readTlv(t, 0, t.length);
        assert.equal(r.tag, tag);
        assert.equal(r.end, t.length);
        assert.equal(r.end - r.body, n);
      }),
      { numRuns: 200 },
    );
  });

  it("the reader refuses what DER forbids", () => {
    const cases: [string, number[]][] = [
      ["indefinite length", [0x30, 0x80, 0x00, 0x00]],
      ["non-minimal long form", [0x04, 0x81, 0x05, 1, 2, 3, 4, 5]],
      ["leading zero length byte", [0x04, 0x82, 0x00, 0x85, ...new Array(0x85).fill(0)]],
      ["truncated content", [0x04, 0x05, 1, 2]],
      ["truncated header", [0x04]],
      ["multi-byte tag", [0x1f, 0x81, 0x01, 0x00]],
      ["oversized length field", [0x04, 0x85, 1, 0, 0, 0, 0]],
    ];
    for (const [what, bytes] of cases) {
      assert.throws(() => readTlv(Uint8Array.from(bytes), 0, bytes.length), DerReadError, what);
    }
  });
});

describe("DER values", () => {
  it("INTEGERs match the reference writer and are minimal two's complement", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 200n) - 1n }), (v) => {
        const enc = integer(v);
        const t = readTlv(enc, 0, enc.length);
        const content = enc.subarray(t.body, t.end);
        assert.equal(t.tag, TAG.INTEGER);
        assert.equal(BigInt(`0x${content.toString("hex")}`), v);
        assert.equal((content[0] as number) & 0x80, 0, "non-negative");
        if (content.length > 1)
          assert.ok(content[0] !== 0 || ((content[1] as number) & 0x80) !== 0, "minimal");
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) assert.deepEqual(enc, refDer.int(Number(v)));
      }),
      { numRuns: 300 },
    );
    assert.deepEqual(integer(Buffer.from([0, 0, 0x80])), Buffer.from([0x02, 0x02, 0x00, 0x80]));
    assert.deepEqual(integer(Buffer.from([0])), Buffer.from([0x02, 0x01, 0x00]));
  });

  it("OIDs match the reference writer and read back, arcs beyond 2^53 included", () => {
    for (const dotted of ["2.5.29.17", "1.2.840.10045.4.3.2", "1.3.6.1.5.5.7.3.1", "0.39"]) {
      assert.deepEqual(oid(dotted), refDer.oid(dotted), dotted);
    }
    // X.690 §8.19.5's own example: the first subidentifier 2*40+999 = 1079 takes two bytes.
    assert.deepEqual(oid("2.999.3"), Buffer.from([0x06, 0x03, 0x88, 0x37, 0x03]));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 0, max: 39 }),
        fc.array(fc.bigInt({ min: 0n, max: 1n << 70n }), { maxLength: 8 }),
        (a, b, rest) => {
          const dotted = [a, b, ...rest].join(".");
          const enc = oid(dotted);
          assert.equal(oidText(enc, readTlv(enc, 0, enc.length)), dotted);
        },
      ),
      { numRuns: 300 },
    );
    assert.throws(() => oid("3.1"), RangeError);
    assert.throws(() => oid("1.40"), RangeError);
    assert.throws(() => oid("1.2.03"), RangeError);
  });

  it("the pre-encoded OID constants are the OIDs they are named after", () => {
    const expected: Record<string, string> = {
      ecPublicKey: "1.2.840.10045.2.1",
      prime256v1: "1.2.840.10045.3.1.7",
      secp384r1: "1.3.132.0.34",
      rsaEncryption: "1.2.840.113549.1.1.1",
      ecdsaWithSha256: "1.2.840.10045.4.3.2",
      ecdsaWithSha384: "1.2.840.10045.4.3.3",
      sha256WithRsa: "1.2.840.113549.1.1.11",
      subjectAltName: "2.5.29.17",
      keyUsage: "2.5.29.15",
      extKeyUsage: "2.5.29.37",
      basicConstraints: "2.5.29.19",
      subjectKeyIdentifier: "2.5.29.14",
      authorityKeyIdentifier: "2.5.29.35",
      serverAuth: "1.3.6.1.5.5.7.3.1",
      clientAuth: "1.3.6.1.5.5.7.3.2",
    };
    for (const [name, dotted] of Object.entries(expected)) {
      const enc = OID[name as keyof typeof OID];
      assert.equal(oidText(enc, readTlv(enc, 0, enc.length)), dotted, name);
    }
  });

  it("strings, BIT STRINGs and context tags", () => {
    assert.deepEqual(utf8String("é"), Buffer.from([0x0c, 0x02, 0xc3, 0xa9]));
    assert.deepEqual(printableString("US"), Buffer.from([0x13, 0x02, 0x55, 0x53]));
    assert.throws(() => printableString("a@b"), RangeError);
    assert.deepEqual(bitString(Buffer.from([0xa8]), 3), Buffer.from([0x03, 0x02, 0x03, 0xa8]));
    assert.throws(() => bitString(Buffer.alloc(0), 1), RangeError);
    assert.deepEqual(contextTag(0, [integer(2)]), Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]));
    assert.deepEqual(contextTag(0, [Buffer.from([1, 2])], false), Buffer.from([0x80, 0x02, 1, 2]));
    const seq = sequence(integer(1), integer(2));
    assert.equal(readChildren(seq, readTlv(seq, 0, seq.length)).length, 2);
  });
});

describe("DER times (RFC 5280 §4.1.2.5)", () => {
  const boundaries: [string, number, string][] = [
    ["1949-12-31T23:59:59Z", TAG.GENERALIZED_TIME, "19491231235959Z"],
    ["1950-01-01T00:00:00Z", TAG.UTC_TIME, "500101000000Z"],
    ["1999-12-31T23:59:59Z", TAG.UTC_TIME, "991231235959Z"],
    ["2000-01-01T00:00:00Z", TAG.UTC_TIME, "000101000000Z"],
    ["2049-12-31T23:59:59.999Z", TAG.UTC_TIME, "491231235959Z"],
    ["2050-01-01T00:00:00Z", TAG.GENERALIZED_TIME, "20500101000000Z"],
    ["9999-12-31T23:59:59Z", TAG.GENERALIZED_TIME, "99991231235959Z"],
    ["0001-02-03T04:05:06Z", TAG.GENERALIZED_TIME, "00010203040506Z"],
  ];

  it("UTCTime through 2049, GeneralizedTime otherwise, at the boundaries", () => {
    for (const [iso, tag, text] of boundaries) {
      const enc = time(new Date(iso));
      assert.equal(enc[0], tag, iso);
      assert.equal(enc.subarray(2).toString("latin1"), text, iso);
    }
  });

  it("openssl asn1parse reads the boundary times as written", () => {
    const enc = sequence(...boundaries.slice(0, 7).map(([iso]) => time(new Date(iso))));
    const lines = opensslAsn1(dir, enc).slice(1);
    assert.deepEqual(
      lines.map((l) => [l.kind, l.value]),
      boundaries
        .slice(0, 7)
        .map(([, tag, text]) => [tag === TAG.UTC_TIME ? "UTCTIME" : "GENERALIZEDTIME", text]),
    );
  });

  it("every instant in 0000..9999 reads back to the same second, in the right type", () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date("0000-01-01T00:00:00Z"),
          max: new Date("9999-12-31T23:59:59Z"),
          noInvalidDate: true,
        }),
        (d) => {
          const ms = d.getTime();
          const enc = time(d);
          assert.equal(enc.length, timeSize(ms));
          const utc = isUtcTime(ms);
          assert.equal(enc[0], utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME);
          const text = enc.subarray(2).toString("latin1");
          assert.match(text, utc ? /^\d{12}Z$/ : /^\d{14}Z$/);
          const full = utc ? `${Number(text.slice(0, 2)) >= 50 ? "19" : "20"}${text}` : text;
          const back = new Date(
            `${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`,
          );
          assert.equal(back.getTime(), Math.floor(ms / 1000) * 1000);
          const buf = Buffer.alloc(20);
          assert.equal(writeTime(buf, 1, ms), 1 + enc.length);
          assert.deepEqual(buf.subarray(1, 1 + enc.length), enc);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("refuses dates outside 0000..9999 and invalid dates", () => {
    assert.throws(() => time(new Date("10000-01-01T00:00:00Z")), RangeError);
    assert.throws(() => time(new Date(Number.NaN)), RangeError);
    assert.throws(() => time(new Date(Date.UTC(-1, 0, 1))), RangeError);
  });
});
