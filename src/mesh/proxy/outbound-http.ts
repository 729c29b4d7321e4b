import net from "node:net";
import type { HostPort, SidecarContext } from "./context.js";
import { DialError, dialDestination, type RouteTable } from "./dial.js";
import { HttpHeadError } from "./http1/errors.js";
import { rewriteHead, simpleResponse } from "./http1/head-rewrite.js";
import { type ParseEvent, type RequestHead, RequestParser } from "./http1/request-parser.js";
import { ResponseFramer } from "./http1/response-framer.js";
import { listenOn } from "./outbound.js";
import type { OutboundDestination } from "./workload-policy.js";

/** Headers meant for the proxy itself, never forwarded. */
const PROXY_AND_HOST: ReadonlySet<string> = new Set(["proxy-connection", "proxy-authorization", "host"]);

/** `http://host[:port]/path` → its parts; origin-form requests use the Host header (port 80). */
export function requestDestination(
  head: RequestHead,
): { host: string; port: number; path: string } | undefined {
  if (head.method === "CONNECT") {
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(head.target);
    return m ? { host: (m[1] as string).toLowerCase(), port: Number(m[2]), path: "" } : undefined;
  }
  let authority: string;
  let path: string;
  if (head.target.startsWith("/")) {
    if (!head.host) return undefined;
    authority = head.host;
    path = head.target;
  } else {
    const m = /^http:\/\/([^/?#]+)([^#]*)$/i.exec(head.target);
    if (!m) return undefined;
    authority = m[1] as string;
    path = m[2] || "/";
    if (!path.startsWith("/")) path = `/${path}`;
  }
  const at = /^([^:]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!at) return undefined;
  return { host: (at[1] as string).toLowerCase(), port: at[2] ? Number(at[2]) : 80, path };
}

interface Upstream {
  readonly key: string;
  readonly socket: net.Socket;
  readonly framer: ResponseFramer;
  readonly destination: OutboundDestination;
}

/**
 * The sidecar as the HTTP proxy an app's `http_proxy` points at: each request names its
 * destination (absolute-form, or CONNECT for a tunnel), which is resolved to a Service of the
 * manifests and reached over mTLS with the destination's identity checked. Requests on one
 * connection are handled in order; a request to another destination waits until the previous
 * response is complete.
 */
export class OutboundHttpProxy {
  readonly server: net.Server;

  constructor(
    readonly ctx: SidecarContext,
    readonly listenAt: HostPort,
    readonly routes: RouteTable,
  ) {
    this.server = net.createServer({ noDelay: true }, (socket) =>
      new ProxySession(ctx, socket, routes).start(),
    );
    this.server.maxConnections = ctx.limits.maxConnections;
  }

  listen(): Promise<net.AddressInfo> {
    return listenOn(this.server, this.listenAt);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

class ProxySession {
  private readonly parser: RequestParser;
  private readonly queue: ParseEvent[] = [];
  private pumping = false;
  private upstream: Upstream | undefined;
  private forwarding = false;
  private tunnel = false;
  private readonly source: string;

  constructor(
    private readonly ctx: SidecarContext,
    private readonly socket: net.Socket,
    private readonly routes: RouteTable,
  ) {
    this.parser = new RequestParser({
      maxHeadBytes: ctx.limits.maxHeadBytes,
      maxHeaders: ctx.limits.maxHeaders,
    });
    this.source = `${(socket.remoteAddress ?? "").replace(/^::ffff:/, "")}:${socket.remotePort ?? 0}`;
  }

  start(): void {
    this.socket.on("error", () => this.socket.destroy());
    this.socket.on("close", () => this.upstream?.socket.destroy());
    this.ctx.idle.watch(this.socket);
    this.socket.on("data", (chunk: Buffer) => {
      try {
        this.queue.push(...this.parser.feed(chunk));
      } catch (err) {
        const status = err instanceof HttpHeadError ? err.status : 400;
        this.log("bad-request", "-", 0, `refused a malformed request: ${(err as Error).message}`, status);
        this.socket.end(simpleResponse(status, "bad request", { close: true }));
        return;
      }
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.socket.destroyed) {
        const ev = this.queue.shift() as ParseEvent;
        if (ev.kind === "head") await this.onHead(ev.head);
        else if (ev.kind === "body") {
          if (this.forwarding && this.upstream) this.upstream.socket.write(ev.data);
        } else if (!this.tunnel) this.forwarding = false;
      }
    } finally {
      this.pumping = false;
    }
  }

  private async onHead(head: RequestHead): Promise<void> {
    const { ctx } = this;
    this.forwarding = false;
    const policy = ctx.policy();
    if (!policy || !ctx.identity.ready) {
      this.log("not-ready", head.target, 0, "the sidecar is not ready", 503);
      this.socket.end(simpleResponse(503, "the sidecar is not ready", { close: true }));
      return;
    }
    const where = requestDestination(head);
    const destination = where ? policy.resolve(where.host, where.port) : undefined;
    if (!where || !destination) {
      const what = where ? `${where.host}:${where.port}` : head.target;
      this.log("no-route", what, where?.port ?? 0, `no Service or pod answers to ${what}`, 502);
      this.socket.write(simpleResponse(502, `no Service or pod answers to ${what}`));
      return;
    }
    const key = destination.name;
    if (this.upstream && (this.upstream.key !== key || this.upstream.socket.destroyed)) {
      await this.drained();
      this.upstream.socket.destroy();
      this.upstream = undefined;
    }
    if (!this.upstream) {
      try {
        const socket = await dialDestination(ctx, destination, this.routes);
        this.upstream = this.attach(key, socket, destination);
      } catch (err) {
        const dial = err instanceof DialError ? err : new DialError("upstream-unavailable", String(err));
        if (dial.failure) {
          ctx.metrics.recordHandshakeFailure(dial.failure.reason);
          ctx.log.warn(dial.message, { reason: dial.failure.reason });
        }
        this.log(dial.outcome, destination.name, where.port, dial.message, 503);
        this.socket.write(simpleResponse(503, dial.message, { close: head.method === "CONNECT" }));
        if (head.method === "CONNECT") this.socket.end();
        return;
      }
    }
    const upstream = this.upstream;
    this.forwarding = true;
    this.log(
      "forwarded",
      destination.name,
      where.port,
      destination.plaintext ? "plaintext" : "mTLS",
      undefined,
      head,
    );
    if (head.method === "CONNECT") {
      this.tunnel = true;
      this.socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.socket.removeAllListeners("data");
      upstream.socket.pipe(this.socket);
      return;
    }
    if (head.upgrade) this.tunnel = true;
    upstream.framer.expect(head.method);
    // An absolute-form target names the destination; the Host header the app sees must agree.
    const authority = head.authority ?? head.host ?? `${where.host}:${where.port}`;
    upstream.socket.write(rewriteHead(head, PROXY_AND_HOST, [["host", authority]], where.path));
  }

  private attach(key: string, socket: net.Socket, destination: OutboundDestination): Upstream {
    const upstream: Upstream = { key, socket, framer: new ResponseFramer(), destination };
    socket.on("data", (chunk: Buffer) => {
      if (!this.tunnel) {
        try {
          upstream.framer.feed(chunk);
        } catch {
          socket.destroy();
          this.socket.destroy();
          return;
        }
      }
      this.socket.write(chunk);
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      upstream.framer.end();
      if (this.upstream === upstream) this.upstream = undefined;
      if (this.tunnel || upstream.framer.outstanding > 0) this.socket.destroy();
    });
    return upstream;
  }

  /** Resolves once every request sent upstream has its response. */
  private drained(): Promise<void> {
    const upstream = this.upstream;
    if (!upstream || upstream.framer.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (upstream.framer.outstanding === 0 || upstream.socket.destroyed) {
          upstream.socket.off("data", check);
          upstream.socket.off("close", check);
          resolve();
        }
      };
      upstream.socket.on("data", check);
      upstream.socket.on("close", check);
    });
  }

  private log(
    outcome: string,
    destination: string,
    port: number,
    detail: string,
    status?: number,
    head?: RequestHead,
  ): void {
    this.ctx.metrics.recordRequest({ direction: "outbound", protocol: "http", outcome, policy: "" });
    this.ctx.log.write({
      direction: "outbound",
      protocol: "http",
      source: this.source,
      destination,
      ...(this.upstream?.destination.expectedId
        ? { destinationIdentity: this.upstream.destination.expectedId }
        : {}),
      port,
      ...(head ? { method: head.method, path: head.target, authority: head.host ?? "" } : {}),
      ...(status === undefined ? {} : { status }),
      outcome,
      detail,
    });
  }
}
