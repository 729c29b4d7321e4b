/**
 * The sidecar's status port, like Istio pilot-agent's: readiness and liveness of the sidecar
 * itself, the app's rewritten probes, and the Prometheus metrics.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Pod } from "../../kube/objects.js";
import type { ProxyMetrics } from "./metrics.js";
import { type AppAddressOf, type RewrittenProbe, rewrittenProbes, runProbe } from "./probes.js";

export interface Readiness {
  readonly ready: boolean;
  /** Why not ready, e.g. "no identity from the Workload API yet", "no policies loaded". */
  readonly reasons: readonly string[];
}

export interface StatusServerOptions {
  readonly pod: Pod;
  readonly appAddressOf: AppAddressOf;
  readonly metrics: ProxyMetrics;
  readonly readiness: () => Readiness;
  readonly log?: (line: string) => void;
}

/** Istio's readiness path, which the injected sidecar's own readinessProbe targets. */
export const READINESS_PATH = "/healthz/ready";
export const LIVENESS_PATH = "/healthz/live";
const APP_HEALTH_PREFIX = "/app-health/";
const METRICS_PATHS: ReadonlySet<string> = new Set(["/stats/prometheus", "/metrics"]);

export class StatusServer {
  private readonly probesByPath: ReadonlyMap<string, RewrittenProbe>;
  private readonly options: StatusServerOptions;
  private server: http.Server | undefined;

  /** Throws InputError when a probe names a port the pod does not declare. */
  constructor(options: StatusServerOptions) {
    this.options = options;
    this.probesByPath = new Map(rewrittenProbes(options.pod).map((p) => [p.path, p]));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    if (this.server !== undefined) {
      return Promise.reject(new Error("the status server is already listening"));
    }
    const server = http.createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        this.log(
          `status server: ${request.url ?? ""}: ${error instanceof Error ? error.message : String(error)}`,
        );
        if (!response.headersSent) reply(response, 500, "internal error\n");
        else response.destroy();
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => {
        this.server = undefined;
        reject(
          new Error(`status server cannot listen on ${host}:${port}: ${error.message}`, { cause: error }),
        );
      };
      server.once("error", onError);
      server.listen(port, host, () => {
        server.off("error", onError);
        server.on("error", (error) => this.log(`status server: ${error.message}`));
        resolve(server.address() as AddressInfo);
      });
    });
  }

  /** Stops listening and drops open connections (kubelet probes are short; nothing to drain). */
  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined || !server.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      server.close((error) => (error ? reject(error) : resolve()));
      server.closeAllConnections();
    });
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    if (request.method !== "GET") {
      response.setHeader("Allow", "GET");
      reply(response, 405, "method not allowed\n");
      return;
    }
    // Exact paths, no normalization: "/app-health/../metrics" is not a route.
    const url = request.url ?? "";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    if (path === READINESS_PATH) this.ready(response);
    else if (path === LIVENESS_PATH) reply(response, 200, "live\n");
    else if (METRICS_PATHS.has(path)) await this.renderMetrics(response);
    else if (path.startsWith(APP_HEALTH_PREFIX)) await this.appHealth(path, request, response);
    else reply(response, 404, "not found\n");
  }

  private ready(response: http.ServerResponse): void {
    let readiness: Readiness;
    try {
      readiness = this.options.readiness();
    } catch (error) {
      // Fails closed: a sidecar that cannot tell whether it is ready must not receive traffic.
      readiness = {
        ready: false,
        reasons: [`readiness check failed: ${error instanceof Error ? error.message : String(error)}`],
      };
    }
    if (readiness.ready) {
      reply(response, 200, "ready\n");
    } else {
      const reasons = readiness.reasons.length > 0 ? readiness.reasons : ["not ready"];
      reply(response, 503, `not ready:\n${reasons.map((r) => `- ${r}\n`).join("")}`);
    }
  }

  private async renderMetrics(response: http.ServerResponse): Promise<void> {
    const text = await this.options.metrics.render();
    reply(response, 200, text, this.options.metrics.contentType);
  }

  private async appHealth(
    path: string,
    request: http.IncomingMessage,
    response: http.ServerResponse,
  ): Promise<void> {
    const rewritten = this.probesByPath.get(path);
    const action = rewritten?.probe.action;
    // rewrittenProbes leaves only numeric ports on http/tcp/grpc probes.
    const containerPort = action === undefined || action.kind === "exec" ? undefined : action.port;
    if (rewritten === undefined || typeof containerPort !== "number") {
      reply(response, 404, `no such probe: ${path}\n`);
      return;
    }
    const address = this.options.appAddressOf(containerPort) ?? { host: "127.0.0.1", port: containerPort };
    const userAgent = request.headers["user-agent"];
    const result = await runProbe(rewritten.probe, address, userAgent ? { userAgent } : {});
    if (!result.ok) this.log(`probe ${path} failed: ${result.detail}`);
    reply(response, result.status, `${result.detail}\n`);
  }

  private log(line: string): void {
    this.options.log?.(line);
  }
}

function reply(
  response: http.ServerResponse,
  status: number,
  body: string,
  contentType = "text/plain; charset=utf-8",
): void {
  response.writeHead(status, {
    "Content-Type": contentType,
    "Content-Length": Buffer.byteLength(body),
    "Cache-Control": "no-store",
  });
  response.end(body);
}
