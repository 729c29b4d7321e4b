import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { normalizePath, normalizePathFully } from "../../../src/policy/istio/authz/match.js";
import { pathNormalizationArb } from "./arbitraries.js";

/** Paths made of the characters normalization acts on, and ordinary ones. */
const pathArb = fc
  .array(
    fc.constantFrom(
      "/",
      ".",
      "..",
      "%2e",
      "%2E",
      "%2f",
      "%5C",
      "%41",
      "%zz",
      "\\",
      "a",
      "b-c",
      "?",
      "#",
      "//",
    ),
    {
      maxLength: 10,
    },
  )
  .map((parts) => parts.join(""));

describe("normalizePath", () => {
  it("its shortcut for already normal paths changes no answer", () => {
    fc.assert(
      fc.property(fc.oneof(pathArb, fc.string()), pathNormalizationArb, (path, mode) => {
        assert.equal(normalizePath(path, mode), normalizePathFully(path, mode));
      }),
      { numRuns: 5000 },
    );
  });

  it("normalizes as Envoy does (examples)", () => {
    assert.equal(normalizePath("/a/./b/../c?x=/..", "BASE"), "/a/c");
    assert.equal(normalizePath("/%2e%2E/admin", "BASE"), "/admin");
    assert.equal(normalizePath("/a\\b", "BASE"), "/a/b");
    assert.equal(normalizePath("/a//b", "BASE"), "/a//b");
    assert.equal(normalizePath("/a//b", "MERGE_SLASHES"), "/a/b");
    assert.equal(normalizePath("/a%2Fb", "MERGE_SLASHES"), "/a%2Fb");
    assert.equal(normalizePath("/a%2f%2Fb", "DECODE_AND_MERGE_SLASHES"), "/a/b");
    assert.equal(normalizePath("/get", "BASE"), "/get");
    assert.equal(normalizePath("/a/../b", "NONE"), "/a/../b");
  });
});
