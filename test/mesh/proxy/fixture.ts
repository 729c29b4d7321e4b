import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { MemoryAccessLog } from "../../../src/mesh/proxy/access-log.js";
import type { HostPort, ProxyLimits } from "../../../src/mesh/proxy/context.js";
import { PolicySource } from "../../../src/mesh/proxy/policy-source.js";
import { Sidecar, type SidecarAddresses } from "../../../src/mesh/proxy/sidecar.js";
import { X509Bundle } from "../../../src/spiffe/bundle/x509bundle.js";
import { TrustDomain } from "../../../src/spiffe/id.js";
import { ManualSource, toSvid } from "../../spiffe/manual-source.js";
import { TestCa } from "../../spiffe/testca.js";

export { ManualSource, toSvid };

export const SLEEP_ID = "spiffe://cluster.local/ns/default/sa/sleep";
export const HTTPBIN_ID = "spiffe://cluster.local/ns/default/sa/httpbin";

/** The lab's workloads: sleep calls httpbin (Service port 8000 → 80) and a TCP echo (Service 9000, appProtocol tcp). */
export const WORKLOADS = `
apiVersion: v1
kind: Namespace
metadata: { name: default, labels: { istio-injection: enabled } }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: sleep, namespace: default }
spec:
  selector: { matchLabels: { app: sleep } }
  template:
    metadata: { labels: { app: sleep } }
    spec:
      serviceAccountName: sleep
      containers: [{ name: sleep, image: curlimages/curl, command: ["/bin/sleep", "3650d"] }]
---
apiVersion: v1
kind: Service
metadata: { name: httpbin, namespace: default }
spec:
  selector: { app: httpbin }
  ports:
    - { name: http, port: 8000, targetPort: 80 }
    - { name: tcp-echo, port: 9000, targetPort: 9000, appProtocol: tcp }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: httpbin, namespace: default }
spec:
  selector: { matchLabels: { app: httpbin } }
  template:
    metadata: { labels: { app: httpbin } }
    spec:
      serviceAccountName: httpbin
      containers:
        - name: httpbin
          image: docker.io/kennethreitz/httpbin
          ports: [{ containerPort: 80 }, { containerPort: 9000 }]
          readinessProbe: { httpGet: { path: /status/200, port: 80 } }
          livenessProbe: { tcpSocket: { port: 80 } }
`;

export const STRICT = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: default }
spec: { mtls: { mode: STRICT } }
`;

export const DENY_ALL = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-nothing, namespace: default }
spec: {}
`;

export const ALLOW_SLEEP_GET = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-sleep-to-httpbin, namespace: default }
spec:
  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
      to: [{ operation: { methods: ["GET"] } }]
`;

/** An app like httpbin: echoes the request's headers as JSON, `/status/N` answers N. */
export async function startEchoApp(): Promise<{
  server: http.Server;
  address: HostPort;
  seen: http.IncomingHttpHeaders[];
}> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    const status = /^\/status\/(\d{3})/.exec(req.url ?? "");
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      res.writeHead(status ? Number(status[1]) : 200, { "content-type": "application/json" });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, address: { host: "127.0.0.1", port: (server.address() as net.AddressInfo).port }, seen };
}

export async function startTcpEcho(): Promise<{ server: net.Server; address: HostPort }> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, address: { host: "127.0.0.1", port: (server.address() as net.AddressInfo).port } };
}

export interface Mesh {
  readonly ca: TestCa;
  readonly dir: string;
  readonly server: Sidecar;
  readonly client: Sidecar;
  readonly serverSource: ManualSource;
  readonly clientSource: ManualSource;
  readonly serverAddresses: SidecarAddresses;
  readonly clientAddresses: SidecarAddresses;
  readonly serverLog: MemoryAccessLog;
  readonly clientLog: MemoryAccessLog;
  readonly app: Awaited<ReturnType<typeof startEchoApp>>;
  readonly echo: Awaited<ReturnType<typeof startTcpEcho>>;
  readonly serverPolicies: PolicySource;
  /** Rewrites the policy file and reloads both sidecars' policies now. */
  setPolicies(...docs: string[]): void;
  /** The client sidecar's plaintext port mapped to httpbin.default:8000. */
  readonly httpPort: number;
  /** The client sidecar's port mapped to httpbin.default:9000 (TCP). */
  readonly tcpPort: number;
  close(): Promise<void>;
}

/**
 * Two sidecars on loopback as on two hosts: the client's (sleep) maps local ports to httpbin's
 * Service ports and dials the server's (httpbin) inbound listeners with mTLS.
 */
export async function startMesh(
  options: { policies?: string[]; limits?: Partial<ProxyLimits> } = {},
): Promise<Mesh> {
  const ca = await TestCa.create("cluster.local");
  const bundle = X509Bundle.fromCertificates(TrustDomain.parse("cluster.local"), ca.authorities);
  const serverSource = new ManualSource(toSvid(await ca.issueSvid(HTTPBIN_ID)), [bundle]);
  const clientSource = new ManualSource(toSvid(await ca.issueSvid(SLEEP_ID)), [bundle]);
  const dir = mkdtempSync(join(tmpdir(), "tessera-proxy-"));
  writeFileSync(join(dir, "workloads.yaml"), WORKLOADS);
  const policyFile = join(dir, "policies.yaml");
  const write = (docs: string[]) =>
    writeFileSync(policyFile, docs.length ? docs.join("\n---\n") : "# none\n");
  write(options.policies ?? [STRICT]);
  const app = await startEchoApp();
  const echo = await startTcpEcho();
  const serverLog = new MemoryAccessLog();
  const clientLog = new MemoryAccessLog();
  const serverPolicies = new PolicySource([dir], "default/httpbin");
  const server = new Sidecar({
    policies: serverPolicies,
    inbound: [
      { containerPort: 80, listen: { host: "127.0.0.1", port: 0 }, app: app.address },
      { containerPort: 9000, listen: { host: "127.0.0.1", port: 0 }, app: echo.address },
    ],
    status: { host: "127.0.0.1", port: 0 },
    log: serverLog,
    identity: { source: serverSource },
    reloadIntervalMs: 60_000,
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const serverAddresses = await server.start();
  const [http80, tcp9000] = serverAddresses.inbound as [net.AddressInfo, net.AddressInfo];
  const clientPolicies = new PolicySource([dir], "default/sleep");
  const client = new Sidecar({
    policies: clientPolicies,
    inbound: [],
    outboundTcp: [
      {
        listen: { host: "127.0.0.1", port: 0 },
        target: { kind: "mapped", host: "httpbin.default", port: 8000 },
      },
      {
        listen: { host: "127.0.0.1", port: 0 },
        target: { kind: "mapped", host: "httpbin.default", port: 9000 },
      },
    ],
    outboundHttp: { host: "127.0.0.1", port: 0 },
    routes: new Map([
      ["httpbin.default:8000", { host: "127.0.0.1", port: http80.port }],
      ["httpbin.default:9000", { host: "127.0.0.1", port: tcp9000.port }],
    ]),
    log: clientLog,
    identity: { source: clientSource },
    reloadIntervalMs: 60_000,
  });
  const clientAddresses = await client.start();
  const [httpOut, tcpOut] = clientAddresses.outboundTcp as [net.AddressInfo, net.AddressInfo];
  return {
    ca,
    dir,
    server,
    client,
    serverSource,
    clientSource,
    serverAddresses,
    clientAddresses,
    serverLog,
    clientLog,
    app,
    echo,
    serverPolicies,
    setPolicies(...docs: string[]) {
      write(docs);
      serverPolicies.reload(true);
      clientPolicies.reload(true);
    },
    httpPort: httpOut.port,
    tcpPort: tcpOut.port,
    async close() {
      await Promise.all([server.close(), client.close()]);
      app.server.closeAllConnections();
      await new Promise((r) => app.server.close(r));
      await new Promise((r) => echo.server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One HTTP/1.1 request over a fresh connection; resolves with status, headers and body. */
export function request(
  port: number,
  options: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
    agent?: http.Agent;
  } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path ?? "/headers",
        headers: { host: "httpbin.default.svc.cluster.local:8000", ...options.headers },
        agent: options.agent ?? false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Raw bytes to a port and everything that comes back until the peer closes (or an error). */
export function rawExchange(
  port: number,
  bytes: string | Buffer,
  options: { tls?: tls.ConnectionOptions; waitMs?: number } = {},
): Promise<{ data: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const socket = options.tls
      ? tls.connect({ host: "127.0.0.1", port, ...options.tls })
      : net.connect({ host: "127.0.0.1", port });
    let data = "";
    let done = false;
    const finish = (error?: NodeJS.ErrnoException) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data, ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => finish(), options.waitMs ?? 3000);
    socket.on(options.tls ? "secureConnect" : "connect", () => socket.write(bytes));
    socket.on("data", (d: Buffer) => {
      data += d.toString("latin1");
    });
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    socket.on("error", (e: NodeJS.ErrnoException) => finish(e));
  });
}
