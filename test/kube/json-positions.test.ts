import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { jsonItemOffsets, linesOfOffsets } from "../../src/kube/json-positions.js";
import { parseObjects } from "../../src/kube/load.js";

/** The YAML parser's answer, taken as the truth: JSON is YAML, and that path keeps positions. */
function yamlLines(text: string): number[] {
  // A leading comment forces the YAML path without moving any line.
  return parseObjects({ name: "f", text: `#\n${text}` }).map((r) => r.source.line - 1);
}

const item = fc.record({
  kind: fc.constantFrom("Pod", "Namespace"),
  metadata: fc.record({
    name: fc.string({ minLength: 1, maxLength: 5 }),
    labels: fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 6 })),
  }),
  note: fc.oneof(fc.string(), fc.array(fc.jsonValue(), { maxLength: 3 })),
});

describe("JSON fast path: positions of List items", () => {
  it("gives every item the line the YAML parser gives it", () => {
    fc.assert(
      fc.property(
        fc.array(item, { maxLength: 6 }),
        fc.constantFrom(0, 2, 4),
        fc.boolean(),
        (items, indent, itemsFirst) => {
          const list = itemsFirst
            ? { items, kind: "List", apiVersion: "v1", metadata: { items: [{ x: 1 }] } }
            : { apiVersion: "v1", kind: "List", metadata: { items: [{ x: 1 }] }, items };
          const text = JSON.stringify(list, null, indent);
          const fast = parseObjects({ name: "f", text }).map((r) => r.source.line);
          assert.deepEqual(fast, yamlLines(text));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("finds items only in the root's items array, skipping strings with brackets and escapes", () => {
    const text =
      '{"metadata":{"items":[{}]},"s":"[{\\"items\\":[{","items":[\n{"a":"}"},\n {"b":[{}]}],"x":[{}]}';
    assert.deepEqual(linesOfOffsets(text, jsonItemOffsets(text)), [2, 3]);
  });
});
