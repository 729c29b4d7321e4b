/**
 * SPIFFE IDs against the shared oracle (spiffe-id.json, 887 cases from four SDKs and the spec),
 * plus a few unit tests and a round-trip property. The oracle follows the spec where the spec and
 * go-spiffe disagree (uppercase scheme/trust domain accepted and lowered; length limits).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { InvalidSpiffeIdError, SpiffeId, TrustDomain, validatePath } from "../../src/spiffe/id.js";
import { oracle } from "../helpers/paths.js";

interface IdCase {
  kind: "id" | "trust-domain" | "path" | "segments";
  input: string | string[];
  valid: boolean;
  trustDomain?: string;
  path?: string;
  normalized?: string;
  reason?: string;
  altReasons?: string[];
  file?: string;
  source: string;
}

const cases = JSON.parse(readFileSync(oracle("spiffe", "spiffe-id.json"), "utf8")) as IdCase[];

/** Cases where id.ts knowingly differs from the oracle, with the reason. Keep it empty. */
const DIFFERING: readonly { kind: string; input: string; why: string }[] = [];

function run(c: IdCase): { trustDomain?: string; path?: string; text?: string } {
  switch (c.kind) {
    case "id": {
      const id = SpiffeId.parse(c.input as string);
      return { trustDomain: id.trustDomain.name, path: id.path, text: id.toString() };
    }
    case "trust-domain":
      return { trustDomain: TrustDomain.parse(c.input as string).name };
    case "path":
      validatePath(c.input as string);
      return { path: c.input as string };
    case "segments": {
      const id = SpiffeId.fromSegments(TrustDomain.parse("example.org"), ...(c.input as string[]));
      return { path: id.path };
    }
  }
}

function label(c: IdCase, i: number): string {
  return `#${i} ${c.kind} ${JSON.stringify(c.input).slice(0, 80)} → ${c.valid ? "valid" : c.reason}`;
}

describe("spiffe-id.json oracle", () => {
  it("has the 887 cases the README announces", () => {
    assert.equal(cases.length, 887);
  });

  cases.forEach((c, i) => {
    const differs = DIFFERING.find((d) => d.kind === c.kind && d.input === JSON.stringify(c.input));
    it(label(c, i), { skip: differs?.why ?? false }, () => {
      if (c.valid) {
        const got = run(c);
        if (c.trustDomain !== undefined) assert.equal(got.trustDomain, c.trustDomain);
        if (c.path !== undefined) assert.equal(got.path, c.path);
        if (c.normalized !== undefined) assert.equal(got.text, c.normalized);
        // An ID that parsed must print as something that parses to the same ID.
        if (c.kind === "id" && got.text !== undefined) {
          assert.equal(SpiffeId.parse(got.text).toString(), got.text);
        }
      } else {
        const accepted = [c.reason, ...(c.altReasons ?? [])];
        assert.throws(
          () => run(c),
          (err: unknown) => {
            assert.ok(
              err instanceof InvalidSpiffeIdError,
              `expected InvalidSpiffeIdError, got ${String(err)}`,
            );
            assert.ok(
              accepted.includes(err.problem),
              `problem ${err.problem} not in ${JSON.stringify(accepted)} (${err.message})`,
            );
            assert.equal(err.code, `invalid-spiffe-id:${err.problem}`);
            return true;
          },
        );
      }
    });
  });

  it("IDs taken from SDK data files are really in those files", () => {
    for (const c of cases.filter((x) => x.file !== undefined)) {
      const text = readFileSync(oracle("spiffe", c.file as string), "utf8");
      assert.ok(text.split(/\r?\n/).includes(c.input as string), `${c.input} not in ${c.file}`);
    }
  });

  it("lists no differing case", () => {
    assert.equal(DIFFERING.length, 0);
  });
});

describe("SpiffeId and TrustDomain", () => {
  const td = TrustDomain.parse("example.org");
  const other = TrustDomain.parse("example.com");

  it("memberOf compares trust domains only", () => {
    const id = SpiffeId.parse("spiffe://example.org/ns/prod/sa/api");
    assert.equal(id.memberOf(td), true);
    assert.equal(id.memberOf(TrustDomain.parse("EXAMPLE.org")), true);
    assert.equal(id.memberOf(other), false);
    // A trust domain that merely shares a prefix or suffix is another trust domain.
    assert.equal(SpiffeId.parse("spiffe://example.org.evil/x").memberOf(td), false);
    assert.equal(SpiffeId.parse("spiffe://evil-example.org/x").memberOf(td), false);
  });

  it("equals: trust domain case-insensitive, path case-sensitive", () => {
    const a = SpiffeId.parse("spiffe://example.org/Workload");
    assert.equal(a.equals(SpiffeId.parse("SPIFFE://Example.ORG/Workload")), true);
    assert.equal(a.equals(SpiffeId.parse("spiffe://example.org/workload")), false);
    assert.equal(a.equals(SpiffeId.parse("spiffe://example.com/Workload")), false);
    assert.equal(a.equals(SpiffeId.fromSegments(td, "Workload")), true);
  });

  it("idString is the trust domain's own ID, as Workload API bundle maps key it", () => {
    assert.equal(td.idString(), "spiffe://example.org");
    assert.equal(TrustDomain.parse("spiffe://Example.org/a/b").idString(), "spiffe://example.org");
    assert.equal(TrustDomain.parse(td.idString()).equals(td), true);
    assert.equal(SpiffeId.parse(td.idString()).isRoot(), true);
  });

  it("isRoot is true only without a path", () => {
    assert.equal(SpiffeId.parse("spiffe://example.org").isRoot(), true);
    assert.equal(SpiffeId.fromSegments(td).isRoot(), true);
    assert.equal(SpiffeId.parse("spiffe://example.org/a").isRoot(), false);
  });

  it("trust domain equals and toString", () => {
    assert.equal(td.equals(TrustDomain.parse("Example.Org")), true);
    assert.equal(td.equals(other), false);
    assert.equal(td.toString(), "example.org");
  });
});

describe("round trip property", () => {
  const tdChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789.-_".split(""));
  const segChar = fc.constantFrom(
    ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_".split(""),
  );
  const trustDomainName = fc.string({ unit: tdChar, minLength: 1, maxLength: 40 });
  const segment = fc
    .string({ unit: segChar, minLength: 1, maxLength: 12 })
    .filter((s) => s !== "." && s !== "..");

  it("parse(fromSegments(td, ...s).toString()) gives back the same ID", () => {
    fc.assert(
      fc.property(trustDomainName, fc.array(segment, { maxLength: 8 }), (name, segs) => {
        const td = TrustDomain.parse(name);
        const id = SpiffeId.fromSegments(td, ...segs);
        const back = SpiffeId.parse(id.toString());
        assert.ok(back.equals(id));
        assert.equal(back.trustDomain.name, name);
        assert.equal(back.path, segs.map((s) => `/${s}`).join(""));
        assert.equal(back.toString(), id.toString());
      }),
      { numRuns: 500 },
    );
  });

  it("uppercase trust domains normalise to the same ID", () => {
    fc.assert(
      fc.property(trustDomainName, fc.array(segment, { maxLength: 4 }), (name, segs) => {
        const id = SpiffeId.fromSegments(TrustDomain.parse(name), ...segs);
        const upper = `SPIFFE://${name.toUpperCase()}${id.path}`;
        assert.ok(SpiffeId.parse(upper).equals(id));
      }),
      { numRuns: 200 },
    );
  });
});
