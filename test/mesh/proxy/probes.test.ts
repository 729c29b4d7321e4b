import assert from "node:assert/strict";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import type { Probe } from "../../../src/kube/containers.js";
import { InputError } from "../../../src/kube/errors.js";
import { clusterFromObjects, clusterFromText } from "../../../src/kube/index.js";
import type { Pod } from "../../../src/kube/objects.js";
import {
  decodeHealthCheckRequest,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  encodeHealthCheckResponse,
  HEALTH_CHECK_METHOD,
  ProtobufDecodeError,
  rewrittenProbes,
  runProbe,
  ServingStatus,
} from "../../../src/mesh/proxy/probes.js";
import { TestCa } from "../../spiffe/testca.js";

const LOOPBACK = "127.0.0.1";

function podOf(yamlText: string): Pod {
  const pod = clusterFromText(yamlText).cluster.pods[0];
  assert.ok(pod, "the YAML holds a pod");
  return pod;
}

function listenOn(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    if (server instanceof http.Server) server.closeAllConnections();
  });
}

/** A port nothing listens on: bound once by this process, then released. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listenOn(server);
  await closeServer(server);
  return port;
}

const httpProbe = (
  path: string,
  options: Partial<Extract<Probe["action"], { kind: "http" }>> = {},
): Probe => ({
  action: { kind: "http", port: 1, path, scheme: "HTTP", headers: [], ...options },
  timeoutSeconds: 2,
});

describe("rewrittenProbes", () => {
  const pod = podOf(`
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
  - name: app
    image: app
    ports:
    - {name: http, containerPort: 8080}
    - {name: admin, containerPort: 9090}
    livenessProbe:
      httpGet: {path: /livez, port: admin, httpHeaders: [{name: X-Probe, value: "yes"}]}
      timeoutSeconds: 3
    readinessProbe: {httpGet: {path: /ready, port: http, scheme: HTTPS}}
    startupProbe: {tcpSocket: {port: 8080}}
  - name: rpc
    image: rpc
    ports: [{name: grpc, containerPort: 50051}]
    livenessProbe: {grpc: {port: 50051, service: shop.Cart}}
    readinessProbe: {exec: {command: [cat, /tmp/ready]}}
  - name: sidecar-less
    image: plain
`);

  it("rewrites every http, tcp and grpc probe to its /app-health path, with Istio's names", () => {
    const rewritten = rewrittenProbes(pod);
    assert.deepEqual(
      rewritten.map((r) => [r.path, r.container, r.kind]),
      [
        ["/app-health/app/livez", "app", "liveness"],
        ["/app-health/app/readyz", "app", "readiness"],
        ["/app-health/app/startupz", "app", "startup"],
        ["/app-health/rpc/livez", "rpc", "liveness"],
      ],
    );
  });

  it("resolves named ports through the pod's ports and keeps the rest of the probe", () => {
    const byPath = new Map(rewrittenProbes(pod).map((r) => [r.path, r.probe]));
    assert.deepEqual(byPath.get("/app-health/app/livez"), {
      action: {
        kind: "http",
        port: 9090,
        path: "/livez",
        scheme: "HTTP",
        headers: [{ name: "X-Probe", value: "yes" }],
      },
      timeoutSeconds: 3,
    });
    assert.deepEqual(byPath.get("/app-health/app/readyz")?.action, {
      kind: "http",
      port: 8080,
      path: "/ready",
      scheme: "HTTPS",
      headers: [],
    });
    assert.deepEqual(byPath.get("/app-health/app/startupz")?.action, { kind: "tcp", port: 8080 });
    assert.deepEqual(byPath.get("/app-health/rpc/livez")?.action, {
      kind: "grpc",
      port: 50051,
      service: "shop.Cart",
    });
  });

  it("leaves exec probes to the kubelet", () => {
    assert.ok(!rewrittenProbes(pod).some((r) => r.container === "rpc" && r.kind === "readiness"));
  });

  it("refuses a named port the pod does not declare, naming the container and the probe", () => {
    const bad = podOf(`
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
  - name: app
    image: app
    ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9100, protocol: UDP}]
    readinessProbe: {tcpSocket: {port: metrics}}
`);
    assert.throws(
      () => rewrittenProbes(bad),
      (error: unknown) => {
        assert.ok(error instanceof InputError);
        assert.equal(error.code, "unresolved-probe-port");
        assert.match(error.message, /container "app" readinessProbe: port "metrics"/);
        assert.match(error.message, /named ports: "http"/);
        assert.equal(error.object, "Pod shop/web");
        return true;
      },
    );
  });

  it("yields exactly the non-exec probes, each at a distinct path (property)", () => {
    const action = fc.constantFrom(
      { httpGet: { path: "/h", port: "http" } },
      { httpGet: { path: "/h", port: 8080 } },
      { tcpSocket: { port: "http" } },
      { grpc: { port: 50051 } },
      { exec: { command: ["true"] } },
    );
    const container = fc.record(
      {
        livenessProbe: action,
        readinessProbe: action,
        startupProbe: action,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(container, { maxLength: 4 }), (containers) => {
        const spec = {
          containers: containers.map((probes, i) => ({
            name: `c${i}`,
            image: "i",
            ports: [{ name: "http", containerPort: 8080 }],
            ...probes,
          })),
        };
        const pod = clusterFromObjects([
          { apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "n" }, spec },
        ]).cluster.pods[0];
        assert.ok(pod);
        const rewritten = rewrittenProbes(pod);
        const expected = containers.flatMap((probes, i) =>
          (["liveness", "readiness", "startup"] as const).flatMap((kind) => {
            const probe = probes[`${kind}Probe`];
            return probe && !("exec" in probe) ? [`c${i}/${kind}`] : [];
          }),
        );
        assert.deepEqual(
          rewritten.map((r) => `${r.container}/${r.kind}`),
          expected,
        );
        assert.equal(new Set(rewritten.map((r) => r.path)).size, rewritten.length);
        for (const r of rewritten) {
          assert.ok(r.probe.action.kind !== "exec");
          assert.equal(r.probe.action.port, r.probe.action.kind === "grpc" ? 50051 : 8080);
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe("runProbe over HTTP", () => {
  const seen: http.IncomingHttpHeaders[] = [];
  const routes = (request: http.IncomingMessage, response: http.ServerResponse) => {
    seen.push(request.headers);
    switch (request.url) {
      case "/ok":
        response.writeHead(200).end("ok");
        return;
      case "/fail":
        response.writeHead(500).end("broken");
        return;
      case "/unavailable":
        response.writeHead(503).end();
        return;
      case "/moved":
        response.writeHead(302, { Location: "/elsewhere" }).end();
        return;
      case "/needs-header":
        response.writeHead(request.headers["x-probe-token"] === "open sesame" ? 200 : 401).end();
        return;
      default:
        response.writeHead(404).end();
    }
  };
  const plain = http.createServer(routes);
  // Accepts the request and never answers: a wedged app.
  const hanging = http.createServer(() => {});
  let secure: https.Server;
  let plainPort = 0;
  let hangingPort = 0;
  let securePort = 0;

  before(async () => {
    const certificate = await TestCa.selfSigned({ subject: "CN=app", dnsSans: ["localhost"] });
    secure = https.createServer({ cert: certificate.pem, key: certificate.privateKeyPem }, routes);
    plainPort = await listenOn(plain);
    hangingPort = await listenOn(hanging);
    securePort = await listenOn(secure);
  });

  after(async () => {
    await Promise.all([closeServer(plain), closeServer(hanging), closeServer(secure)]);
  });

  const at = (port: number) => ({ host: LOOPBACK, port });

  it("answers 200 when the app does", async () => {
    assert.deepEqual(await runProbe(httpProbe("/ok"), at(plainPort)), {
      ok: true,
      status: 200,
      detail: "HTTP 200",
    });
  });

  it("passes the app's failure status through", async () => {
    assert.deepEqual(await runProbe(httpProbe("/fail"), at(plainPort)), {
      ok: false,
      status: 500,
      detail: "HTTP 500",
    });
    const unavailable = await runProbe(httpProbe("/unavailable"), at(plainPort));
    assert.equal(unavailable.ok, false);
    assert.equal(unavailable.status, 503);
  });

  it("counts a redirect as success, as the kubelet does (200-399)", async () => {
    const result = await runProbe(httpProbe("/moved"), at(plainPort));
    assert.equal(result.ok, true);
    assert.equal(result.status, 302);
  });

  it("sends the probe's custom headers and the kubelet's defaults", async () => {
    const withHeader = httpProbe("/needs-header", {
      headers: [{ name: "X-Probe-Token", value: "open sesame" }],
    });
    assert.equal((await runProbe(withHeader, at(plainPort))).status, 200);
    const request = seen.at(-1);
    assert.equal(request?.["user-agent"], "kube-probe/tessera");
    assert.equal(request?.accept, "*/*");
    assert.equal((await runProbe(httpProbe("/needs-header"), at(plainPort))).status, 401);
  });

  it("lets the probe set Host and User-Agent, and forwards the kubelet's User-Agent otherwise", async () => {
    const custom = httpProbe("/ok", {
      headers: [
        { name: "Host", value: "app.example" },
        { name: "user-agent", value: "custom/1" },
        { name: "X-Multi", value: "a" },
        { name: "x-multi", value: "b" },
        { name: "host", value: "second.example" },
      ],
    });
    assert.equal((await runProbe(custom, at(plainPort))).status, 200);
    assert.equal(seen.at(-1)?.host, "app.example");
    assert.equal(seen.at(-1)?.["user-agent"], "custom/1");
    assert.equal(seen.at(-1)?.["x-multi"], "a, b");
    await runProbe(httpProbe("/ok"), at(plainPort), { userAgent: "kube-probe/1.30" });
    assert.equal(seen.at(-1)?.["user-agent"], "kube-probe/1.30");
  });

  it("probes an HTTPS app without verifying its certificate", async () => {
    const result = await runProbe(httpProbe("/ok", { scheme: "HTTPS" }), at(securePort));
    assert.deepEqual(result, { ok: true, status: 200, detail: "HTTP 200" });
  });

  it("fails with 500 when nothing listens", async () => {
    const result = await runProbe(httpProbe("/ok"), at(await closedPort()));
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
    assert.match(result.detail, /ECONNREFUSED/);
  });

  it("fails with 500 on a path Node cannot send, instead of throwing", async () => {
    const result = await runProbe(httpProbe("/with space"), at(plainPort));
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
  });

  it("times out a hanging app with 500 'timeout' (override)", { timeout: 5000 }, async () => {
    const result = await runProbe(httpProbe("/ok"), at(hangingPort), { timeoutMs: 200 });
    assert.deepEqual(result, { ok: false, status: 500, detail: "timeout" });
  });

  it("times out a hanging app after the probe's timeoutSeconds", { timeout: 5000 }, async () => {
    const probe: Probe = { ...httpProbe("/ok"), timeoutSeconds: 1 };
    const started = Date.now();
    const result = await runProbe(probe, at(hangingPort));
    assert.equal(result.detail, "timeout");
    // Not a performance bound: only that the probe waited for its own timeout, not the override default.
    assert.ok(Date.now() - started >= 900);
  });
});

describe("runProbe over TCP", () => {
  const listener = net.createServer((socket) => socket.destroy());
  let port = 0;
  before(async () => {
    port = await listenOn(listener);
  });
  after(() => closeServer(listener));

  const tcpProbe: Probe = { action: { kind: "tcp", port: 1 }, timeoutSeconds: 2 };

  it("answers 200 when the connect succeeds", async () => {
    const result = await runProbe(tcpProbe, { host: LOOPBACK, port });
    assert.equal(result.ok, true);
    assert.equal(result.status, 200);
  });

  it("answers 500 on a closed port", async () => {
    const result = await runProbe(tcpProbe, { host: LOOPBACK, port: await closedPort() });
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
    assert.match(result.detail, /ECONNREFUSED/);
  });
});

describe("runProbe over gRPC", () => {
  const server = new grpc.Server();
  // Accepts TCP and never speaks HTTP/2: the health check can only time out.
  const silent = net.createServer(() => {});
  const silentSockets = new Set<net.Socket>();
  silent.on("connection", (socket) => {
    silentSockets.add(socket);
    socket.on("close", () => silentSockets.delete(socket));
  });
  let port = 0;
  let silentPort = 0;
  const services: Record<string, number> = {
    "": ServingStatus.SERVING,
    "shop.Cart": ServingStatus.SERVING,
    "shop.Down": ServingStatus.NOT_SERVING,
  };

  before(async () => {
    server.addService(
      {
        Check: {
          path: HEALTH_CHECK_METHOD,
          requestStream: false,
          responseStream: false,
          // An object, not the bare string: grpc-js takes a falsy request ("") for a missing one.
          requestSerialize: (request: { service: string }) => encodeHealthCheckRequest(request.service),
          requestDeserialize: (bytes: Buffer) => ({ service: decodeHealthCheckRequest(bytes) }),
          responseSerialize: (bytes: Buffer) => bytes,
          responseDeserialize: (bytes: Buffer) => bytes,
        },
      },
      {
        Check: (
          call: grpc.ServerUnaryCall<{ service: string }, Buffer>,
          callback: grpc.sendUnaryData<Buffer>,
        ) => {
          const service = call.request.service;
          if (service === "shop.Garbled") return callback(null, Buffer.from([0x08]));
          const status = services[service];
          if (status === undefined) {
            return callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
          }
          callback(null, encodeHealthCheckResponse(status));
        },
      },
    );
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${LOOPBACK}:0`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    silentPort = await listenOn(silent);
  });

  after(async () => {
    server.forceShutdown();
    for (const socket of silentSockets) socket.destroy();
    await closeServer(silent);
  });

  const grpcProbe = (service: string | undefined): Probe => ({
    action: { kind: "grpc", port: 1, service },
    timeoutSeconds: 2,
  });

  it("answers 200 when the server is SERVING", async () => {
    assert.deepEqual(await runProbe(grpcProbe(undefined), { host: LOOPBACK, port }), {
      ok: true,
      status: 200,
      detail: "SERVING",
    });
    assert.equal((await runProbe(grpcProbe("shop.Cart"), { host: LOOPBACK, port })).status, 200);
  });

  it("answers 500 when the service is NOT_SERVING", async () => {
    assert.deepEqual(await runProbe(grpcProbe("shop.Down"), { host: LOOPBACK, port }), {
      ok: false,
      status: 500,
      detail: "NOT_SERVING",
    });
  });

  it("answers 500 with the gRPC status when the check fails", async () => {
    const result = await runProbe(grpcProbe("shop.Nope"), { host: LOOPBACK, port });
    assert.equal(result.status, 500);
    assert.match(result.detail, /NOT_FOUND: unknown service shop\.Nope/);
  });

  it("answers 500 on a malformed response", async () => {
    const result = await runProbe(grpcProbe("shop.Garbled"), { host: LOOPBACK, port });
    assert.equal(result.status, 500);
    assert.match(result.detail, /bad HealthCheckResponse: truncated varint/);
  });

  it("answers 500 when nothing listens", { timeout: 5000 }, async () => {
    const result = await runProbe(grpcProbe(undefined), { host: LOOPBACK, port: await closedPort() });
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
  });

  it("times out a server that never answers", { timeout: 5000 }, async () => {
    const result = await runProbe(
      grpcProbe(undefined),
      { host: LOOPBACK, port: silentPort },
      { timeoutMs: 300 },
    );
    assert.deepEqual(result, { ok: false, status: 500, detail: "timeout" });
  });
});

describe("runProbe with an exec probe", () => {
  it("refuses to run it, without throwing", async () => {
    const result = await runProbe(
      { action: { kind: "exec", command: ["true"] }, timeoutSeconds: 1 },
      { host: LOOPBACK, port: 1 },
    );
    assert.equal(result.ok, false);
    assert.equal(result.status, 500);
  });
});

/** A test-side protobuf writer, independent of the one under test. */
function tag(fieldNumber: number, wireType: number): number[] {
  return varintBytes(fieldNumber * 8 + wireType);
}

function varintBytes(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

const unknownField = fc.oneof(
  fc
    .tuple(fc.integer({ min: 2, max: 1000 }), fc.integer({ min: 0, max: 2 ** 40 }))
    .map(([n, v]) => [...tag(n, 0), ...varintBytes(v)]),
  fc
    .tuple(fc.integer({ min: 2, max: 1000 }), fc.uint8Array({ minLength: 8, maxLength: 8 }))
    .map(([n, b]) => [...tag(n, 1), ...b]),
  fc
    .tuple(fc.integer({ min: 2, max: 1000 }), fc.uint8Array({ maxLength: 20 }))
    .map(([n, b]) => [...tag(n, 2), ...varintBytes(b.length), ...b]),
  fc
    .tuple(fc.integer({ min: 2, max: 1000 }), fc.uint8Array({ minLength: 4, maxLength: 4 }))
    .map(([n, b]) => [...tag(n, 5), ...b]),
);

describe("grpc.health.v1 messages", () => {
  it("encode the known vectors", () => {
    assert.deepEqual([...encodeHealthCheckRequest(undefined)], []);
    assert.deepEqual([...encodeHealthCheckRequest("")], []);
    assert.deepEqual([...encodeHealthCheckRequest("a.B")], [0x0a, 3, 0x61, 0x2e, 0x42]);
    assert.deepEqual([...encodeHealthCheckResponse(ServingStatus.SERVING)], [0x08, 0x01]);
    assert.deepEqual([...encodeHealthCheckResponse(ServingStatus.UNKNOWN)], []);
    assert.equal(decodeHealthCheckResponse(Buffer.alloc(0)), ServingStatus.UNKNOWN);
  });

  it("decode a status among unknown fields, the last occurrence winning (property)", () => {
    fc.assert(
      fc.property(
        fc.array(unknownField, { maxLength: 4 }),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        fc.array(unknownField, { maxLength: 4 }),
        fc.integer({ min: 0, max: 3 }),
        (before, status, after, earlier) => {
          const bytes = Buffer.from([
            ...encodeHealthCheckResponse(earlier),
            ...before.flat(),
            ...encodeHealthCheckResponse(status),
            ...after.flat(),
          ]);
          const expected = status === 0 ? earlier : status;
          assert.equal(decodeHealthCheckResponse(bytes), expected);
        },
      ),
    );
  });

  it("round-trip a request's service name (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 200 }),
        fc.array(unknownField, { maxLength: 3 }),
        (s, extra) => {
          const bytes = Buffer.from([...extra.flat(), ...encodeHealthCheckRequest(s)]);
          assert.equal(decodeHealthCheckRequest(bytes), s);
        },
      ),
    );
  });

  it("never crash on random bytes: a value or a ProtobufDecodeError (fuzz)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const decode of [decodeHealthCheckResponse, decodeHealthCheckRequest]) {
          try {
            decode(bytes);
          } catch (error) {
            assert.ok(error instanceof ProtobufDecodeError, `unexpected ${String(error)}`);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("refuse truncated and mistyped messages", () => {
    assert.throws(() => decodeHealthCheckResponse(Buffer.from([0x08])), ProtobufDecodeError);
    assert.throws(() => decodeHealthCheckResponse(Buffer.from([0x0a, 0x01, 0x01])), /not a varint/);
    assert.throws(() => decodeHealthCheckResponse(Buffer.from([0x12, 0x05, 0x01])), /past the end/);
    assert.throws(() => decodeHealthCheckResponse(Buffer.from([0x0b])), /wire type 3/);
    assert.throws(() => decodeHealthCheckRequest(Buffer.from([0x0a, 0x01, 0xff])), /UTF-8/);
    assert.throws(() => decodeHealthCheckRequest(Buffer.from([0x00])), /field number 0/);
  });
});
