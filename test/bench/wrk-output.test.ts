import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseWrkOutput, WrkOutputError } from "../../bench/proxy.js";

/** What wrk 4.1 prints with --latency (taken from a run against a local server). */
const REPORT = `Running 1s test @ http://127.0.0.1:18777/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.59ms    1.34ms   8.35ms   67.40%
    Req/Sec   550.00     50.66   610.00     70.00%
  Latency Distribution
     50%    3.44ms
     75%    4.51ms
     90%    5.51ms
     99%    6.46ms
  548 requests in 1.00s, 6.33MB read
Requests/sec:    547.44
Transfer/sec:      6.32MB
`;

describe("parseWrkOutput", () => {
  it("reads requests, duration, rate and the 50th and 99th percentiles", () => {
    assert.deepEqual(parseWrkOutput(REPORT), {
      requests: 548,
      seconds: 1,
      rps: 547.44,
      p50Ms: 3.44,
      p99Ms: 6.46,
      non2xx: 0,
      socketErrors: 0,
    });
  });

  it("converts every time unit wrk uses to milliseconds", () => {
    const r = parseWrkOutput(
      REPORT.replace("50%    3.44ms", "50%  812.00us")
        .replace("99%    6.46ms", "99%    1.20s")
        .replace("in 1.00s", "in 2.00m"),
    );
    assert.ok(Math.abs(r.p50Ms - 0.812) < 1e-9);
    assert.equal(r.p99Ms, 1200);
    assert.equal(r.seconds, 120);
  });

  it("counts non-2xx responses and every kind of socket error", () => {
    const r = parseWrkOutput(
      REPORT.replace(
        "Requests/sec:",
        "  Socket errors: connect 1, read 2, write 3, timeout 4\n  Non-2xx or 3xx responses: 17\nRequests/sec:",
      ),
    );
    assert.equal(r.non2xx, 17);
    assert.equal(r.socketErrors, 10);
  });

  it("refuses a report without the figures it needs, quoting it", () => {
    for (const [broken, why] of [
      [REPORT.replace(/^\s+50%.*$/m, ""), /50% and 99%/],
      [REPORT.replace(/^\s+99%.*$/m, ""), /50% and 99%/],
      [REPORT.replace(/^.*requests in.*$/m, ""), /requests in/],
      [REPORT.replace(/^Requests\/sec:.*$/m, ""), /Requests\/sec/],
      ["unable to connect to 127.0.0.1:1 Connection refused\n", /50% and 99%/],
    ] as const) {
      assert.throws(
        () => parseWrkOutput(broken),
        (err: unknown) =>
          err instanceof WrkOutputError && why.test(err.message) && err.message.includes("\n"),
      );
    }
  });
});
