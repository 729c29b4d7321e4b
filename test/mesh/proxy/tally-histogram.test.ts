import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Histogram, Registry } from "prom-client";
import { TallyHistogram } from "../../../src/mesh/proxy/tally-histogram.js";

const BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1, 10];
const NAME = "t_duration_seconds";
const HELP = "Durations.";

describe("TallyHistogram", () => {
  it("exports what prom-client's Histogram exports for the same observations (property)", async () => {
    const labelValue = fc.oneof(fc.constantFrom("inbound", "outbound", ""), fc.string({ maxLength: 4 }));
    const observation = fc.record({
      direction: labelValue,
      protocol: fc.constantFrom("http", "tcp"),
      value: fc.oneof(fc.constantFrom(...BOUNDS, 0), fc.double({ min: 0, max: 100, noNaN: true })),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 30 }), async (observations) => {
        const reference = new Registry();
        const fast = new Registry();
        for (const r of [reference, fast]) r.setDefaultLabels({ workload: "w" });
        const histogram = new Histogram({
          name: NAME,
          help: HELP,
          labelNames: ["direction", "protocol"],
          buckets: BOUNDS,
          registers: [reference],
        });
        const tallyHistogram = new TallyHistogram(NAME, HELP, BOUNDS, fast);
        const tallies = new Map<string, ReturnType<TallyHistogram["tally"]>>();
        for (const o of observations) {
          histogram.observe({ direction: o.direction, protocol: o.protocol }, o.value);
          const key = JSON.stringify([o.direction, o.protocol]);
          let t = tallies.get(key);
          if (!t) {
            t = tallyHistogram.tally({ direction: o.direction, protocol: o.protocol });
            tallies.set(key, t);
          }
          t.observe(o.value);
        }
        assert.equal(await fast.metrics(), await reference.metrics());
        // Exemplars (OpenMetrics only) are the one thing not kept.
        const withoutExemplars = (json: unknown) =>
          JSON.parse(JSON.stringify(json, (key, value) => (key === "exemplar" ? undefined : value)));
        assert.deepEqual(
          withoutExemplars(await fast.getMetricsAsJSON()),
          withoutExemplars(await reference.getMetricsAsJSON()),
        );
        fast.resetMetrics();
        reference.resetMetrics();
        // prom-client drops its series on reset; the tallies stay, at zero.
        const zeroed = (await fast.getMetricsAsJSON())[0]?.values ?? [];
        assert.ok(zeroed.every((v) => v.value === 0));
      }),
      { numRuns: 300 },
    );
  });
});
