import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { connect as netConnect } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  ALLOW_SLEEP_GET,
  DENY_ALL,
  HTTPBIN_ID,
  type Mesh,
  rawExchange,
  request,
  SLEEP_ID,
  STRICT,
  startMesh,
  toSvid,
} from "./fixture.js";

const PERMISSIVE = STRICT.replace("STRICT", "PERMISSIVE");
const DENY_POST = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-post, namespace: default }
spec:
  action: DENY
  rules: [{ to: [{ operation: { methods: ["POST"] } }] }]
`;

describe("sidecar pair: mTLS, identities and the engine's decisions", () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh();
  });
  after(async () => {
    await mesh.close();
  });

  it("forwards over mTLS and the app sees the caller's SPIFFE ID in X-Forwarded-Client-Cert", async () => {
    const r = await request(mesh.httpPort, {
      headers: { "x-forwarded-client-cert": "By=evil;URI=spiffe://cluster.local/ns/default/sa/admin" },
    });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body).headers as Record<string, string>;
    const xfcc = seen["x-forwarded-client-cert"] ?? "";
    assert.match(xfcc, new RegExp(`^By=${HTTPBIN_ID};Hash=[0-9a-f]{64};Subject="";URI=${SLEEP_ID}$`));
    assert.ok(!xfcc.includes("admin"), "the client's own header is replaced, not appended");
    const rec = mesh.serverLog.records.at(-1);
    assert.equal(rec?.outcome, "forwarded");
    assert.equal(rec?.sourceIdentity, SLEEP_ID);
    assert.equal(rec?.destinationIdentity, HTTPBIN_ID);
    assert.equal(rec?.status, 200);
  });

  it("resets plaintext sent to a STRICT port", async () => {
    const port = mesh.serverAddresses.inbound[0]?.port as number;
    const r = await rawExchange(port, "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(r.error?.code, "ECONNRESET");
    assert.equal(r.data, "", "not one byte (no TLS alert, no HTTP answer) before the reset");
    assert.equal(mesh.serverLog.records.at(-1)?.outcome, "connection-reset");
  });

  it("answers 403 RBAC: access denied under allow-nothing, then follows live policy updates", async () => {
    mesh.setPolicies(STRICT, DENY_ALL);
    const denied = await request(mesh.httpPort);
    assert.equal(denied.status, 403);
    assert.equal(denied.body, "RBAC: access denied");
    const rec = mesh.serverLog.records.at(-1);
    assert.equal(rec?.outcome, "http-403");
    assert.equal(rec?.sourceIdentity, SLEEP_ID);

    mesh.setPolicies(STRICT, DENY_ALL, ALLOW_SLEEP_GET);
    assert.equal((await request(mesh.httpPort)).status, 200);
    const allowed = mesh.serverLog.records.at(-1);
    assert.equal(allowed?.policy, "default/allow-sleep-to-httpbin");
    assert.equal(allowed?.rule, 0);
    const post = await request(mesh.httpPort, { method: "POST", path: "/post", body: "x=1" });
    assert.equal(post.status, 403);
    mesh.setPolicies(STRICT);
  });

  it("authorizes every request on a keep-alive connection, not just the first", async () => {
    mesh.setPolicies(STRICT, DENY_ALL, ALLOW_SLEEP_GET);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const statuses: number[] = [];
      for (const method of ["GET", "POST", "GET", "DELETE", "GET"]) {
        statuses.push(
          (await request(mesh.httpPort, { method, agent, body: method === "GET" ? undefined : "" })).status,
        );
      }
      assert.deepEqual(statuses, [200, 403, 200, 403, 200]);
    } finally {
      agent.destroy();
      mesh.setPolicies(STRICT);
    }
  });

  it("keeps answers in order when a denied request is pipelined behind an allowed one", async () => {
    mesh.setPolicies(STRICT, DENY_ALL, ALLOW_SLEEP_GET);
    const r = await rawExchange(
      mesh.httpPort,
      "GET /status/201 HTTP/1.1\r\nHost: h\r\n\r\nPOST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /status/202 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    mesh.setPolicies(STRICT);
    const statuses = [...r.data.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["201", "403", "202"]);
  });

  it("authorizes a TCP port once per connection at L4 and closes a denied one", async () => {
    const echoed = await rawExchange(mesh.tcpPort, "ping");
    assert.equal(echoed.data, "ping");
    mesh.setPolicies(STRICT, DENY_ALL);
    const closed = await rawExchange(mesh.tcpPort, "ping");
    assert.equal(closed.data, "");
    const rec = mesh.serverLog.records.filter((r) => r.protocol === "tcp").at(-1);
    assert.equal(rec?.outcome, "tcp-closed");
    mesh.setPolicies(STRICT);
  });

  it("relays a protocol whose server speaks first, and megabytes both ways intact", async () => {
    const banner = (s: net.Socket) => s.write("220 ready\n");
    mesh.echo.server.prependListener("connection", banner);
    try {
      const socket = netConnect({ host: "127.0.0.1", port: mesh.tcpPort });
      const first = await new Promise<string>((resolve, reject) => {
        socket.once("data", (d: Buffer) => resolve(d.toString("latin1")));
        socket.once("error", reject);
      });
      assert.equal(first, "220 ready\n", "the banner arrives before the client sends anything");
      // 4 MiB each way through both sidecars: backpressure and the shared read area must not mix bytes up.
      const payload = randomBytes(4 * 1024 * 1024);
      const received: Buffer[] = [];
      const done = new Promise<void>((resolve, reject) => {
        socket.on("data", (d: Buffer) => received.push(d));
        socket.once("end", () => resolve());
        socket.once("error", reject);
      });
      socket.end(payload);
      await done;
      const echoed = Buffer.concat(received);
      assert.equal(echoed.length, payload.length);
      assert.ok(echoed.equals(payload), "the echo is byte for byte what was sent");
      socket.destroy();
    } finally {
      mesh.echo.server.off("connection", banner);
    }
    await new Promise((r) => setTimeout(r, 50));
    const out = mesh.clientLog.records.filter((r) => r.direction === "outbound" && r.port === 9000).at(-1);
    assert.equal(out?.bytesIn, 4 * 1024 * 1024 + "220 ready\n".length);
    assert.equal(out?.bytesOut, 4 * 1024 * 1024);
  });

  it("answers a request whose client half-closed right after sending it", async () => {
    const socket = netConnect({ host: "127.0.0.1", port: mesh.httpPort });
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      socket.on("data", (d: Buffer) => chunks.push(d));
      socket.once("end", () => resolve());
      socket.once("error", reject);
    });
    socket.end("GET /half HTTP/1.1\r\nHost: httpbin\r\n\r\n");
    await done;
    assert.match(Buffer.concat(chunks).toString("latin1"), /^HTTP\/1\.1 200 /);
    socket.destroy();
  });

  it("closes both sides at once when a client's FIN cuts a request body short", {
    timeout: 10_000,
  }, async () => {
    const socket = netConnect({ host: "127.0.0.1", port: mesh.httpPort });
    socket.on("data", () => undefined);
    const started = performance.now();
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    socket.end(`POST /upload HTTP/1.1\r\nHost: httpbin\r\nContent-Length: 100\r\n\r\n${"x".repeat(50)}`);
    await closed;
    assert.ok(performance.now() - started < 2000, "closed without waiting for an idle timeout");
  });

  for (const when of ["after", "before"] as const) {
    it(`passes a tunnel's FIN on to the app (sent ${when} the 101) and brings its last words back`, {
      timeout: 10_000,
    }, async () => {
      const onUpgrade = (_req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
        const got: Buffer[] = [head];
        socket.on("data", (d: Buffer) => got.push(d));
        socket.on("end", () => socket.end(`echo:${Buffer.concat(got).toString("latin1")}`));
      };
      mesh.app.server.on("upgrade", onUpgrade);
      try {
        const socket = netConnect({ host: "127.0.0.1", port: mesh.httpPort });
        let data = "";
        const ended = new Promise<void>((resolve, reject) => {
          socket.on("end", () => resolve());
          socket.on("error", reject);
        });
        const switched = new Promise<void>((resolve) =>
          socket.on("data", (d: Buffer) => {
            data += d.toString("latin1");
            if (data.includes("\r\n\r\n")) resolve();
          }),
        );
        socket.write("GET /tunnel HTTP/1.1\r\nHost: httpbin\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
        if (when === "after") await switched;
        socket.end("hello");
        await ended;
        assert.match(data, /^HTTP\/1\.1 101 /);
        assert.ok(data.endsWith("echo:hello"), JSON.stringify(data));
        socket.destroy();
      } finally {
        mesh.app.server.off("upgrade", onUpgrade);
      }
    });
  }

  it("answers 503 when the app is down, without hanging", async () => {
    const port = (mesh.app.server.address() as net.AddressInfo).port;
    mesh.app.server.closeAllConnections();
    await new Promise((r) => mesh.app.server.close(r));
    try {
      const r = await request(mesh.httpPort);
      assert.equal(r.status, 503);
      assert.match(r.body, /upstream connect error/);
    } finally {
      await new Promise<void>((r) => mesh.app.server.listen(port, "127.0.0.1", r));
    }
    assert.equal((await request(mesh.httpPort)).status, 200);
  });

  it("refuses a server that presents another workload's identity", async () => {
    const impostor = toSvid(await mesh.ca.issueSvid("spiffe://cluster.local/ns/default/sa/impostor"));
    const good = mesh.serverSource.getX509Svid();
    mesh.serverSource.rotate(impostor);
    try {
      await assert.rejects(request(mesh.httpPort), /socket hang up|ECONNRESET/);
      const warn = mesh.clientLog.messages.find((m) => m.level === "warn" && /presented/.test(m.message));
      assert.match(
        warn?.message ?? "",
        /presented spiffe:\/\/cluster\.local\/ns\/default\/sa\/impostor, expected spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin/,
      );
      const text = await mesh.client.metrics.render();
      assert.match(text, /tessera_proxy_handshake_failures_total\{[^}]*reason="identity-mismatch"[^}]*\} 1/);
    } finally {
      mesh.serverSource.rotate(good);
    }
  });

  it("rotates its SVID under load without dropping a request", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (!stop) {
        try {
          const r = await request(mesh.httpPort, { agent });
          if (r.status === 200) ok++;
          else failures.push(String(r.status));
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 60));
      mesh.serverSource.rotate(toSvid(await mesh.ca.issueSvid(HTTPBIN_ID)));
      mesh.clientSource.rotate(toSvid(await mesh.ca.issueSvid(SLEEP_ID)));
    }
    await new Promise((r) => setTimeout(r, 60));
    stop = true;
    await Promise.all(workers);
    agent.destroy();
    assert.deepEqual(failures, []);
    assert.ok(ok > 20, `requests completed during rotation: ${ok}`);
  });

  it("serves the status port: readiness, rewritten probes under STRICT, and metrics by policy", async () => {
    const status = mesh.serverAddresses.status?.port as number;
    const get = (path: string) => request(status, { path });
    assert.equal((await get("/healthz/ready")).status, 200);
    assert.equal((await get("/app-health/httpbin/readyz")).status, 200);
    assert.equal((await get("/app-health/httpbin/livez")).status, 200);
    mesh.setPolicies(STRICT, DENY_POST);
    assert.equal((await request(mesh.httpPort, { method: "POST", path: "/post", body: "" })).status, 403);
    mesh.setPolicies(STRICT);
    const metrics = (await get("/stats/prometheus")).body;
    assert.match(
      metrics,
      /tessera_proxy_requests_total\{[^}]*outcome="http-403"[^}]*policy="default\/deny-post"/,
    );
    assert.match(metrics, /tessera_proxy_denials_total\{[^}]*policy="default\/deny-post"/);
    assert.match(metrics, /tessera_proxy_handshake_failures_total\{[^}]*reason="plaintext-refused"/);
  });

  it("serves HTTP/2 (ALPN h2) with per-stream authorization and gRPC PermissionDenied", async () => {
    const port = mesh.serverAddresses.inbound[0]?.port as number;
    const svid = mesh.clientSource.getX509Svid().marshal();
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      key: svid.privateKey,
      cert: svid.certificates,
      ca: mesh.ca.authorities.map((c) => c.toString()),
      rejectUnauthorized: false,
    });
    const call = (headers: http2.OutgoingHttpHeaders) =>
      new Promise<{ status: number; grpc?: string; body: string }>((resolve, reject) => {
        const s = session.request(headers);
        let body = "";
        let status = 0;
        let grpc: string | undefined;
        s.on("response", (h) => {
          status = Number(h[":status"]);
          grpc = h["grpc-status"] as string | undefined;
        });
        s.on("trailers", (t) => {
          grpc ??= t["grpc-status"] as string | undefined;
        });
        s.setEncoding("utf8");
        s.on("data", (d: string) => {
          body += d;
        });
        s.on("end", () => resolve({ status, body, ...(grpc ? { grpc } : {}) }));
        s.on("error", reject);
        s.end();
      });
    try {
      assert.equal((await call({ ":path": "/headers" })).status, 200);
      mesh.setPolicies(STRICT, DENY_ALL, ALLOW_SLEEP_GET);
      assert.equal((await call({ ":path": "/headers" })).status, 200);
      const denied = await call({ ":path": "/post", ":method": "POST" });
      assert.equal(denied.status, 403);
      assert.equal(denied.body, "RBAC: access denied");
      const rec = mesh.serverLog.records.filter((r) => r.protocol === "http2").at(-1);
      assert.equal(rec?.outcome, "http-403");
      assert.equal(rec?.method, "POST");
      assert.equal(rec?.path, "/post");
      assert.equal(rec?.sourceIdentity, SLEEP_ID);
      assert.equal(rec?.destinationIdentity, HTTPBIN_ID);
      const grpc = await call({
        ":path": "/pkg.Svc/Method",
        ":method": "POST",
        "content-type": "application/grpc",
      });
      assert.equal(grpc.grpc, "7");
    } finally {
      session.close();
      mesh.setPolicies(STRICT);
    }
  });

  it("is an HTTP proxy for http_proxy (absolute-form requests)", async () => {
    const port = mesh.clientAddresses.outboundHttp?.port as number;
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          path: "http://httpbin.default.svc.cluster.local:8000/headers",
          // As curl sends it through http_proxy: the Host header names the target, not the proxy.
          headers: { host: "httpbin.default.svc.cluster.local:8000" },
          agent: false,
        },
        (res) => {
          let body = "";
          res.on("data", (d: Buffer) => {
            body += d.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.end();
    });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).url, "/headers");
    assert.match(
      JSON.parse(r.body).headers["x-forwarded-client-cert"],
      /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/,
    );
  });
});

describe("PERMISSIVE: TLS or plaintext told apart by the first bytes", () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh({ policies: [PERMISSIVE] });
  });
  after(async () => {
    await mesh.close();
  });

  it("accepts plaintext without an identity, and mTLS with one", async () => {
    const port = mesh.serverAddresses.inbound[0]?.port as number;
    const plain = await request(port, {
      headers: { "x-forwarded-client-cert": "URI=spiffe://cluster.local/ns/default/sa/sleep" },
    });
    assert.equal(plain.status, 200);
    assert.equal(
      JSON.parse(plain.body).headers["x-forwarded-client-cert"],
      undefined,
      "a plaintext peer's XFCC is dropped",
    );
    assert.equal(mesh.serverLog.records.at(-1)?.sourceIdentity, undefined);
    const viaSidecar = await request(mesh.httpPort);
    assert.equal(viaSidecar.status, 200);
    assert.equal(mesh.serverLog.records.at(-1)?.sourceIdentity, SLEEP_ID);
  });

  it("lets a plaintext caller through a principal-based policy only when it matches nothing principal-bound", async () => {
    mesh.setPolicies(PERMISSIVE, ALLOW_SLEEP_GET);
    const port = mesh.serverAddresses.inbound[0]?.port as number;
    assert.equal((await request(port)).status, 403, "no identity, no principal match");
    assert.equal((await request(mesh.httpPort)).status, 200);
    mesh.setPolicies(PERMISSIVE);
  });
});
