import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DENIAL_OUTCOMES, ProxyMetrics, type RequestRecord } from "../../../src/mesh/proxy/metrics.js";

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the Prometheus text exposition format (0.0.4): one sample per non-comment line. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    let at = 0;
    while (at < line.length && line[at] !== "{" && line[at] !== " ") at++;
    const name = line.slice(0, at);
    const labels: Record<string, string> = {};
    if (line[at] === "{") {
      at++;
      while (line[at] !== "}") {
        const eq = line.indexOf("=", at);
        const key = line.slice(at, eq);
        assert.equal(line[eq + 1], '"', `label ${key} is not quoted in ${line}`);
        at = eq + 2;
        let value = "";
        while (line[at] !== '"') {
          if (line[at] === "\\") {
            const escaped = line[at + 1];
            value += escaped === "n" ? "\n" : escaped;
            at += 2;
          } else {
            value += line[at];
            at++;
          }
          assert.ok(at < line.length, `unterminated label value in ${line}`);
        }
        labels[key] = value;
        at++;
        if (line[at] === ",") at++;
      }
      at++;
    }
    assert.equal(line[at], " ", `no value separator in ${line}`);
    const value = Number(line.slice(at + 1).split(" ")[0]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    samples.push({ name, labels, value });
  }
  return samples;
}

async function samples(metrics: ProxyMetrics): Promise<Sample[]> {
  return parseExposition(await metrics.render());
}

/** The value of the one sample with this name whose labels include `labels`; undefined when none. */
function sampleValue(all: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = all.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(found.length <= 1, `${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

describe("ProxyMetrics", () => {
  it("counts requests by direction, protocol, outcome and policy, with the workload on every series", async () => {
    const metrics = new ProxyMetrics({ workload: "default/httpbin" });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "forwarded",
      policy: "default/allow",
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "forwarded",
      policy: "default/allow",
    });
    metrics.recordRequest({ direction: "inbound", protocol: "http", outcome: "http-403", policy: "" });
    metrics.recordRequest({
      direction: "outbound",
      protocol: "tcp",
      outcome: "upstream-unavailable",
      policy: undefined,
    });
    const all = await samples(metrics);
    const requests = all.filter((s) => s.name === "tessera_proxy_requests_total");
    assert.deepEqual(
      requests.map((s) => s.labels).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        {
          direction: "inbound",
          protocol: "http",
          outcome: "forwarded",
          policy: "default/allow",
          workload: "default/httpbin",
        },
        {
          direction: "inbound",
          protocol: "http",
          outcome: "http-403",
          policy: "",
          workload: "default/httpbin",
        },
        {
          direction: "outbound",
          protocol: "tcp",
          outcome: "upstream-unavailable",
          policy: "",
          workload: "default/httpbin",
        },
      ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
    assert.equal(sampleValue(all, "tessera_proxy_requests_total", { outcome: "forwarded" }), 2);
    assert.equal(sampleValue(all, "tessera_proxy_requests_total", { outcome: "http-403" }), 1);
    assert.ok(all.every((s) => s.labels.workload === "default/httpbin"));
  });

  it("counts denials only for outcomes that are refusals by policy", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "http-403",
      policy: "ns/deny-post",
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome: "tcp-closed",
      policy: "ns/deny-post",
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome: "connection-reset",
      policy: "ns/strict",
    });
    metrics.recordRequest({ direction: "outbound", protocol: "http", outcome: "http-403", policy: "" });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "forwarded",
      policy: "ns/allow",
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "bad-request",
      policy: undefined,
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "upstream-unavailable",
      policy: "",
    });
    const all = await samples(metrics);
    const denials = all.filter((s) => s.name === "tessera_proxy_denials_total");
    assert.equal(denials.length, 3);
    assert.equal(
      sampleValue(all, "tessera_proxy_denials_total", { direction: "inbound", policy: "ns/deny-post" }),
      2,
    );
    assert.equal(
      sampleValue(all, "tessera_proxy_denials_total", { direction: "inbound", policy: "ns/strict" }),
      1,
    );
    assert.equal(sampleValue(all, "tessera_proxy_denials_total", { direction: "outbound", policy: "" }), 1);
    assert.equal(sampleValue(all, "tessera_proxy_denials_total", { policy: "ns/allow" }), undefined);
  });

  it("lets the caller say an unusual outcome is a denial, or that a listed one is not", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "http-401",
      policy: "ns/jwt",
      denied: true,
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome: "connection-reset",
      policy: "",
      denied: false,
    });
    const all = await samples(metrics);
    assert.equal(sampleValue(all, "tessera_proxy_denials_total", { policy: "ns/jwt" }), 1);
    assert.equal(sampleValue(all, "tessera_proxy_denials_total", { policy: "" }), undefined);
    assert.equal(sampleValue(all, "tessera_proxy_requests_total", { outcome: "connection-reset" }), 1);
  });

  it("counts handshake failures by reason", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    metrics.recordHandshakeFailure("no-client-certificate");
    metrics.recordHandshakeFailure("expired");
    metrics.recordHandshakeFailure("expired");
    const all = await samples(metrics);
    assert.equal(sampleValue(all, "tessera_proxy_handshake_failures_total", { reason: "expired" }), 2);
    assert.equal(
      sampleValue(all, "tessera_proxy_handshake_failures_total", { reason: "no-client-certificate" }),
      1,
    );
    assert.equal(
      sampleValue(all, "tessera_proxy_handshake_failures_total", { reason: "bad-signature" }),
      undefined,
    );
  });

  it("tracks open connections per direction, both exported from the start", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    let all = await samples(metrics);
    assert.equal(sampleValue(all, "tessera_proxy_active_connections", { direction: "inbound" }), 0);
    assert.equal(sampleValue(all, "tessera_proxy_active_connections", { direction: "outbound" }), 0);
    metrics.connectionOpened("inbound");
    metrics.connectionOpened("inbound");
    metrics.connectionOpened("outbound");
    metrics.connectionClosed("inbound");
    all = await samples(metrics);
    assert.equal(sampleValue(all, "tessera_proxy_active_connections", { direction: "inbound" }), 1);
    assert.equal(sampleValue(all, "tessera_proxy_active_connections", { direction: "outbound" }), 1);
  });

  it("observes durations only when given, by direction and protocol", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    metrics.recordRequest({ direction: "inbound", protocol: "http", outcome: "forwarded", policy: "" });
    let all = await samples(metrics);
    assert.equal(
      all.filter((s) => s.name.startsWith("tessera_proxy_request_duration_seconds")).length,
      0,
      "no duration series without a duration",
    );
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "forwarded",
      policy: "",
      durationSeconds: 0.003,
    });
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "http-403",
      policy: "",
      durationSeconds: 0.2,
    });
    metrics.recordRequest({
      direction: "outbound",
      protocol: "tcp",
      outcome: "forwarded",
      policy: "",
      durationSeconds: 7,
    });
    // A clock that went backwards is not a duration.
    metrics.recordRequest({
      direction: "outbound",
      protocol: "tcp",
      outcome: "forwarded",
      policy: "",
      durationSeconds: -1,
    });
    all = await samples(metrics);
    const inbound = { direction: "inbound", protocol: "http" };
    assert.equal(sampleValue(all, "tessera_proxy_request_duration_seconds_count", inbound), 2);
    assert.ok(
      Math.abs((sampleValue(all, "tessera_proxy_request_duration_seconds_sum", inbound) ?? 0) - 0.203) < 1e-9,
    );
    assert.equal(
      sampleValue(all, "tessera_proxy_request_duration_seconds_bucket", { ...inbound, le: "0.005" }),
      1,
    );
    assert.equal(
      sampleValue(all, "tessera_proxy_request_duration_seconds_bucket", { ...inbound, le: "+Inf" }),
      2,
    );
    const outbound = { direction: "outbound", protocol: "tcp" };
    assert.equal(sampleValue(all, "tessera_proxy_request_duration_seconds_count", outbound), 1);
    assert.equal(
      sampleValue(all, "tessera_proxy_request_duration_seconds_bucket", { ...outbound, le: "5" }),
      0,
    );
  });

  it("counts identity rotations from zero", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    assert.equal(sampleValue(await samples(metrics), "tessera_proxy_identity_rotations_total"), 0);
    metrics.recordIdentityRotation();
    metrics.recordIdentityRotation();
    assert.equal(sampleValue(await samples(metrics), "tessera_proxy_identity_rotations_total"), 2);
  });

  it("keeps the metrics of several sidecars in one process apart", async () => {
    const a = new ProxyMetrics({ workload: "a" });
    const b = new ProxyMetrics({ workload: "b" });
    a.recordHandshakeFailure("expired");
    const bSamples = await samples(b);
    assert.equal(sampleValue(bSamples, "tessera_proxy_handshake_failures_total"), undefined);
    assert.ok(bSamples.every((s) => s.labels.workload === "b"));
    assert.equal(
      sampleValue(await samples(a), "tessera_proxy_handshake_failures_total", { workload: "a" }),
      1,
    );
  });

  it("declares the Prometheus text content type and HELP/TYPE for every family", async () => {
    const metrics = new ProxyMetrics({ workload: "w" });
    assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
    const text = await metrics.render();
    for (const [family, type] of [
      ["tessera_proxy_requests_total", "counter"],
      ["tessera_proxy_denials_total", "counter"],
      ["tessera_proxy_handshake_failures_total", "counter"],
      ["tessera_proxy_active_connections", "gauge"],
      ["tessera_proxy_request_duration_seconds", "histogram"],
      ["tessera_proxy_identity_rotations_total", "counter"],
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${family} ${type}$`, "m"));
      assert.match(text, new RegExp(`^# HELP ${family} \\S`, "m"));
    }
  });

  it("equals a plain tally of the same requests, whatever the label values (property)", async () => {
    const direction = fc.constantFrom("inbound" as const, "outbound" as const);
    const protocol = fc.constantFrom("http" as const, "tcp" as const);
    // Few distinct values so that label sets repeat (the cached path), plus hostile characters.
    const outcome = fc.oneof(
      fc.constantFrom("forwarded", "http-403", "tcp-closed", "connection-reset", "bad-request"),
      fc.string({ maxLength: 6 }),
    );
    const policy = fc.oneof(
      fc.constantFrom(undefined, "", "ns/a", 'ns/"q"\\\n'),
      fc.string({ maxLength: 6 }),
    );
    const record = fc.record({ direction, protocol, outcome, policy });
    await fc.assert(
      fc.asyncProperty(fc.array(record, { maxLength: 40 }), async (records: RequestRecord[]) => {
        const metrics = new ProxyMetrics({ workload: "w" });
        const requests = new Map<string, number>();
        const denials = new Map<string, number>();
        for (const r of records) {
          metrics.recordRequest(r);
          const policyLabel = r.policy ?? "";
          const key = JSON.stringify([r.direction, r.protocol, r.outcome, policyLabel]);
          requests.set(key, (requests.get(key) ?? 0) + 1);
          if (DENIAL_OUTCOMES.has(r.outcome)) {
            const denialKey = JSON.stringify([r.direction, policyLabel]);
            denials.set(denialKey, (denials.get(denialKey) ?? 0) + 1);
          }
        }
        const all = await samples(metrics);
        const exported = (name: string, labelNames: string[]) =>
          new Map(
            all
              .filter((s) => s.name === name)
              .map((s) => [JSON.stringify(labelNames.map((l) => s.labels[l])), s.value]),
          );
        assert.deepEqual(
          exported("tessera_proxy_requests_total", ["direction", "protocol", "outcome", "policy"]),
          requests,
        );
        assert.deepEqual(exported("tessera_proxy_denials_total", ["direction", "policy"]), denials);
      }),
      { numRuns: 150 },
    );
  });
});
