import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import { MemoryAccessLog } from "../../../src/mesh/proxy/access-log.js";
import { PolicySource } from "../../../src/mesh/proxy/policy-source.js";
import { Sidecar } from "../../../src/mesh/proxy/sidecar.js";
import { TestCa } from "../../spiffe/testca.js";
import { ManualSource, type Mesh, rawExchange, request, SLEEP_ID, startMesh, toSvid } from "./fixture.js";

const HOUR = 3600_000;

describe("sidecar reliability: certificates, hostile clients, malformed input", () => {
  let mesh: Mesh;
  let inbound: number;
  before(async () => {
    mesh = await startMesh({ limits: { headTimeoutMs: 300, maxHeadBytes: 8 * 1024, maxConnections: 50 } });
    inbound = mesh.serverAddresses.inbound[0]?.port as number;
  });
  after(async () => {
    await mesh.close();
  });

  /** A TLS client with the given certificate chain and key; resolves with what the server did. */
  async function tryCert(
    certPem: string,
    keyPem: string,
  ): Promise<{ data: string; error?: NodeJS.ErrnoException }> {
    return rawExchange(inbound, "GET /headers HTTP/1.1\r\nHost: h\r\n\r\n", {
      tls: { cert: certPem, key: keyPem, rejectUnauthorized: false },
      waitMs: 2000,
    });
  }

  const handshakeFailures = async (reason: string) => {
    const text = await mesh.server.metrics.render();
    const m = new RegExp(
      `tessera_proxy_handshake_failures_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`,
    ).exec(text);
    return m ? Number(m[1]) : 0;
  };

  it("refuses an expired client certificate and hints at clock skew with the offset", async () => {
    const svid = await mesh.ca.issueSvid(SLEEP_ID, {
      notBefore: new Date(Date.now() - 3 * HOUR),
      notAfter: new Date(Date.now() - 2 * HOUR),
    });
    const r = await tryCert(svid.certificatesPem, svid.privateKeyPem);
    assert.ok(!r.data.startsWith("HTTP/1.1 200"), "no answer from the app");
    assert.equal(await handshakeFailures("expired"), 1);
    const hint = mesh.serverLog.messages.find((m) => /clock skew/.test(m.message));
    assert.match(hint?.message ?? "", /expired 7\d{3}\.\d s before this host's clock/);
    assert.ok(typeof hint?.fields?.offsetMs === "number" && hint.fields.offsetMs >= 2 * HOUR);
  });

  it("refuses a not-yet-valid client certificate", async () => {
    const svid = await mesh.ca.issueSvid(SLEEP_ID, {
      notBefore: new Date(Date.now() + HOUR),
      notAfter: new Date(Date.now() + 2 * HOUR),
    });
    const r = await tryCert(svid.certificatesPem, svid.privateKeyPem);
    assert.equal(r.data, "");
    assert.equal(await handshakeFailures("not-yet-valid"), 1);
    assert.ok(mesh.serverLog.messages.some((m) => /becomes valid 3\d{3}\.\d s after/.test(m.message)));
  });

  it("refuses a certificate of another trust domain, and one without a certificate", async () => {
    const other = await TestCa.create("evil.example");
    const svid = await other.issueSvid("spiffe://evil.example/ns/default/sa/sleep");
    assert.equal((await tryCert(svid.certificatesPem, svid.privateKeyPem)).data, "");
    assert.equal(await handshakeFailures("untrusted-trust-domain"), 1);
    const none = await rawExchange(inbound, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", {
      tls: { rejectUnauthorized: false },
      waitMs: 2000,
    });
    assert.equal(none.data, "");
    assert.equal(await handshakeFailures("no-client-certificate"), 1);
  });

  it("refuses a certificate of a rogue CA that claims the trust domain", async () => {
    const rogue = await TestCa.create("cluster.local");
    const svid = await rogue.issueSvid(SLEEP_ID);
    assert.equal((await tryCert(svid.certificatesPem, svid.privateKeyPem)).data, "");
    assert.ok(
      (await handshakeFailures("unknown-authority")) + (await handshakeFailures("invalid-certificate")) >= 1,
    );
  });

  it("refuses oversized and malformed heads with 400/431 and logs them", async () => {
    const big = await rawExchange(
      mesh.httpPort,
      `GET / HTTP/1.1\r\nHost: h\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    );
    assert.match(big.data, /^HTTP\/1\.1 431 /);
    const bad = await rawExchange(mesh.httpPort, "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert.match(bad.data, /^HTTP\/1\.1 400 /);
    const folded = await rawExchange(mesh.httpPort, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n");
    assert.match(folded.data, /^HTTP\/1\.1 400 /);
    const logged = mesh.serverLog.records.filter((r) => r.outcome === "bad-request");
    assert.ok(logged.length >= 3);
    assert.ok(logged.every((r) => r.sourceIdentity === SLEEP_ID && /malformed/.test(r.detail ?? "")));
  });

  it("refuses request smuggling: Content-Length with Transfer-Encoding, conflicting lengths, obfuscated TE", async () => {
    const before = mesh.app.seen.length;
    for (const head of [
      "POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
      "POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
      "POST /post HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
      "POST /post HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ]) {
      const r = await rawExchange(mesh.httpPort, head);
      assert.match(r.data, /^HTTP\/1\.1 (400|501) /, head);
      assert.doesNotMatch(r.data, /admin/);
    }
    assert.equal(mesh.app.seen.length, before, "nothing reached the app");
  });

  it("closes a client that sends a head too slowly (slowloris) with 408", async () => {
    const socket = net.connect(mesh.httpPort, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    socket.write("GET /headers HTTP/1.1\r\nHost: h\r\n");
    const started = Date.now();
    const reply = await new Promise<string>((resolve) => {
      let data = "";
      socket.on("data", (d: Buffer) => {
        data += d.toString();
      });
      socket.on("close", () => resolve(data));
      const drip = setInterval(() => socket.write("X-Drip: 1\r\n"), 50);
      socket.on("close", () => clearInterval(drip));
    });
    assert.match(reply, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - started < 5000);
  });

  it("bounds the number of connections and still serves after they go", async () => {
    const sockets: tls.TLSSocket[] = [];
    const svid = mesh.clientSource.getX509Svid().marshal();
    for (let i = 0; i < 60; i++) {
      sockets.push(
        tls.connect({
          host: "127.0.0.1",
          port: inbound,
          cert: svid.certificates,
          key: svid.privateKey,
          rejectUnauthorized: false,
        }),
      );
      sockets.at(-1)?.on("error", () => undefined);
    }
    await new Promise((r) => setTimeout(r, 500));
    const open = sockets.filter(
      (s) => !s.destroyed && s.encrypted && (s as { _secureEstablished?: boolean })._secureEstablished,
    ).length;
    assert.ok(open > 0 && open <= 50, `open: ${open}`);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await request(mesh.httpPort)).status, 200);
  });
});

describe("a sidecar fails closed until it has an identity and policies", () => {
  it("resets connections and reports not ready until the SVID arrives", async () => {
    const mesh = await startMesh();
    try {
      const log = new MemoryAccessLog();
      const policies = new PolicySource([mesh.dir], "default/httpbin");
      const sidecar = new Sidecar({
        policies,
        inbound: [{ containerPort: 80, listen: { host: "127.0.0.1", port: 0 }, app: mesh.app.address }],
        status: { host: "127.0.0.1", port: 0 },
        log,
        // An unreachable Workload API: the identity never comes.
        identity: { workloadApi: "unix:///nonexistent/tessera-test.sock" },
      });
      const addresses = await sidecar.start();
      const port = addresses.inbound[0]?.port as number;
      const ready = await request(addresses.status?.port as number, { path: "/healthz/ready" });
      assert.equal(ready.status, 503);
      assert.match(ready.body, /no identity/);
      const r = await rawExchange(port, "\x16\x03\x01");
      assert.equal(r.error?.code, "ECONNRESET");
      assert.equal(log.records.at(-1)?.outcome, "connection-reset");
      sidecar.identity.attach(
        new ManualSource(
          toSvid(await mesh.ca.issueSvid(SLEEP_ID)),
          mesh.serverSource.getX509Bundles() as never,
        ),
      );
      assert.equal((await request(addresses.status?.port as number, { path: "/healthz/ready" })).status, 200);
      await sidecar.close();
    } finally {
      await mesh.close();
    }
  });

  it("keeps the last good policies when a change does not load", async () => {
    const mesh = await startMesh();
    try {
      const { writeFileSync } = await import("node:fs");
      const { join } = await import("node:path");
      const errors: string[] = [];
      mesh.serverPolicies.on("error", (e: Error & { describe?: () => string }) =>
        errors.push(e.describe?.() ?? e.message),
      );
      writeFileSync(join(mesh.dir, "policies.yaml"), "kind: AuthorizationPolicy\nmetadata: { name: x\n");
      assert.equal(mesh.serverPolicies.reload(), false);
      assert.equal(errors.length, 1);
      assert.match(errors[0] ?? "", /policies\.yaml:\d+/, "the error names the file and line");
      assert.equal((await request(mesh.httpPort)).status, 200);
    } finally {
      await mesh.close();
    }
  });
});

describe("idle connections are closed, busy ones kept", () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh({ limits: { idleTimeoutMs: 400 } });
  });
  after(async () => {
    await mesh.close();
  });

  /** Opens a connection through the pair's TCP port and says when it closed (ms after opening). */
  function openThroughPair(): { socket: net.Socket; closedAfter: Promise<number> } {
    const started = performance.now();
    const socket = net.connect({ host: "127.0.0.1", port: mesh.tcpPort });
    socket.on("data", () => undefined);
    socket.on("error", () => undefined);
    const closedAfter = new Promise<number>((resolve) =>
      socket.once("close", () => resolve(performance.now() - started)),
    );
    return { socket, closedAfter };
  }

  it("closes a connection that carries nothing for the idle timeout, keeps one that talks", async () => {
    const idle = openThroughPair();
    const busy = openThroughPair();
    let busyClosed = false;
    void busy.closedAfter.then(() => {
      busyClosed = true;
    });
    // The busy one sends a byte every 100 ms for 1.2 s: three idle timeouts.
    for (let i = 0; i < 12; i++) {
      busy.socket.write("x");
      await new Promise((r) => setTimeout(r, 100));
    }
    const idleMs = await idle.closedAfter;
    assert.ok(idleMs >= 400 && idleMs < 1200, `the idle connection closed after ${Math.round(idleMs)} ms`);
    assert.equal(busyClosed, false, "the busy connection is still open");
    busy.socket.destroy();
    await busy.closedAfter;
  });
});
