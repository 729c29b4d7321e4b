import assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { InputError } from "../../../src/kube/errors.js";
import { clusterFromText } from "../../../src/kube/index.js";
import type { Pod } from "../../../src/kube/objects.js";
import { ProxyMetrics } from "../../../src/mesh/proxy/metrics.js";
import type { AppAddress } from "../../../src/mesh/proxy/probes.js";
import { type Readiness, StatusServer } from "../../../src/mesh/proxy/status-server.js";

const LOOPBACK = "127.0.0.1";

function listenOn(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: http.Server | net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    if (server instanceof http.Server) server.closeAllConnections();
  });
}

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function request(
  port: number,
  path: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; agent?: http.Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: LOOPBACK,
        port,
        path,
        method: options.method ?? "GET",
        headers: options.headers,
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function podOf(yamlText: string): Pod {
  const pod = clusterFromText(yamlText).cluster.pods[0];
  assert.ok(pod, "the YAML holds a pod");
  return pod;
}

describe("StatusServer", () => {
  const appRequests: http.IncomingHttpHeaders[] = [];
  const app = http.createServer((req, res) => {
    appRequests.push(req.headers);
    res.writeHead(req.url === "/healthy" ? 200 : 500).end();
  });
  let appPort = 0;
  let closedPort = 0;
  let readiness: Readiness | (() => never) = {
    ready: false,
    reasons: ["no identity from the Workload API yet"],
  };
  const logged: string[] = [];
  const metrics = new ProxyMetrics({ workload: "shop/web" });
  let status: StatusServer;
  let port = 0;

  before(async () => {
    appPort = await listenOn(app);
    const closed = net.createServer();
    closedPort = await listenOn(closed);
    await closeServer(closed);
    const pod = podOf(`
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
  - name: app
    image: app
    ports: [{name: http, containerPort: 8080}]
    livenessProbe: {httpGet: {path: /sick, port: http}}
    readinessProbe: {httpGet: {path: /healthy, port: 8080}}
  - name: worker
    image: worker
    ports: [{name: jobs, containerPort: 9000}]
    startupProbe: {tcpSocket: {port: jobs}}
    livenessProbe: {exec: {command: ["true"]}}
  - name: direct
    image: direct
    readinessProbe: {httpGet: {path: /healthy, port: ${appPort}}}
`);
    const mapped = new Map<number, AppAddress>([
      [8080, { host: LOOPBACK, port: appPort }],
      [9000, { host: LOOPBACK, port: closedPort }],
    ]);
    status = new StatusServer({
      pod,
      appAddressOf: (containerPort) => mapped.get(containerPort),
      metrics,
      readiness: () => (typeof readiness === "function" ? readiness() : readiness),
      log: (line) => logged.push(line),
    });
    port = (await status.listen(LOOPBACK, 0)).port;
  });

  after(async () => {
    await status.close();
    await closeServer(app);
  });

  it("reports readiness as the callback says, with the reasons while not ready", async () => {
    readiness = { ready: false, reasons: ["no identity from the Workload API yet", "no policies loaded"] };
    let reply = await request(port, "/healthz/ready");
    assert.equal(reply.status, 503);
    assert.match(reply.body, /no identity from the Workload API yet/);
    assert.match(reply.body, /no policies loaded/);
    readiness = { ready: true, reasons: [] };
    reply = await request(port, "/healthz/ready");
    assert.equal(reply.status, 200);
    assert.equal(reply.body.trim(), "ready");
    readiness = { ready: false, reasons: ["identity expired"] };
    assert.equal((await request(port, "/healthz/ready?verbose=1")).status, 503);
  });

  it("is not ready when the readiness callback throws", async () => {
    readiness = () => {
      throw new Error("policy store unreachable");
    };
    const reply = await request(port, "/healthz/ready");
    assert.equal(reply.status, 503);
    assert.match(reply.body, /readiness check failed: policy store unreachable/);
  });

  it("is live while the process runs", async () => {
    const reply = await request(port, "/healthz/live");
    assert.equal(reply.status, 200);
  });

  it("runs a rewritten probe against the mapped app address and answers its status", async () => {
    assert.equal((await request(port, "/app-health/app/readyz")).status, 200);
    const sick = await request(port, "/app-health/app/livez");
    assert.equal(sick.status, 500);
    assert.match(sick.body, /HTTP 500/);
    assert.ok(logged.some((line) => line.includes("/app-health/app/livez") && line.includes("HTTP 500")));
  });

  it("forwards the kubelet's User-Agent to the app", async () => {
    await request(port, "/app-health/app/readyz", { headers: { "User-Agent": "kube-probe/1.30" } });
    assert.equal(appRequests.at(-1)?.["user-agent"], "kube-probe/1.30");
  });

  it("probes 127.0.0.1 at the container port itself when the port is not mapped", async () => {
    assert.equal((await request(port, "/app-health/direct/readyz")).status, 200);
  });

  it("answers 500 for a TCP probe whose app port is closed", async () => {
    const reply = await request(port, "/app-health/worker/startupz");
    assert.equal(reply.status, 500);
    assert.match(reply.body, /ECONNREFUSED/);
  });

  it("answers 404 for probes the pod does not have, exec probes included", async () => {
    for (const path of [
      "/app-health/app/startupz",
      "/app-health/worker/livez",
      "/app-health/nobody/livez",
      "/app-health/app/readyz/extra",
      "/app-health/../healthz/live",
    ]) {
      assert.equal((await request(port, path)).status, 404, path);
    }
  });

  it("serves the metrics on both Prometheus paths with the registry's content type", async () => {
    metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome: "http-403",
      policy: "shop/deny",
    });
    metrics.recordHandshakeFailure("plaintext-refused");
    for (const path of ["/stats/prometheus", "/metrics"]) {
      const reply = await request(port, path);
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["content-type"], metrics.contentType);
      const lines = reply.body.split("\n");
      assert.ok(
        lines.some(
          (l) =>
            l.startsWith("tessera_proxy_denials_total{") &&
            l.includes('policy="shop/deny"') &&
            l.includes('workload="shop/web"') &&
            l.endsWith(" 1"),
        ),
        reply.body,
      );
      assert.ok(
        lines.some(
          (l) => l.startsWith("tessera_proxy_handshake_failures_total{") && l.includes("plaintext-refused"),
        ),
      );
    }
  });

  it("answers 404 to unknown paths and 405 to other methods", async () => {
    assert.equal((await request(port, "/")).status, 404);
    assert.equal((await request(port, "/healthz")).status, 404);
    const post = await request(port, "/healthz/ready", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, "GET");
    assert.equal((await request(port, "/metrics", { method: "DELETE" })).status, 405);
  });

  it("rejects clearly when the port is taken", async () => {
    const other = new StatusServer({
      pod: podOf("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
      appAddressOf: () => undefined,
      metrics: new ProxyMetrics({ workload: "other" }),
      readiness: () => ({ ready: true, reasons: [] }),
    });
    await assert.rejects(
      other.listen(LOOPBACK, port),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
    await other.close();
  });

  it("refuses a pod whose probe names an undeclared port", () => {
    assert.throws(
      () =>
        new StatusServer({
          pod: podOf(`
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: n}
spec:
  containers:
  - name: app
    image: app
    livenessProbe: {httpGet: {path: /, port: admin}}
`),
          appAddressOf: () => undefined,
          metrics: new ProxyMetrics({ workload: "n/p" }),
          readiness: () => ({ ready: true, reasons: [] }),
        }),
      (error: unknown) =>
        error instanceof InputError && /container "app" livenessProbe: port "admin"/.test(error.message),
    );
  });

  it("closes even while a client holds a keep-alive connection", { timeout: 5000 }, async () => {
    const separate = new StatusServer({
      pod: podOf("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
      appAddressOf: () => undefined,
      metrics: new ProxyMetrics({ workload: "p" }),
      readiness: () => ({ ready: true, reasons: [] }),
    });
    const address = await separate.listen(LOOPBACK, 0);
    const agent = new http.Agent({ keepAlive: true });
    try {
      assert.equal((await request(address.port, "/healthz/live", { agent })).status, 200);
      await separate.close();
      await assert.rejects(request(address.port, "/healthz/live"), /ECONNREFUSED/);
    } finally {
      agent.destroy();
    }
  });
});
