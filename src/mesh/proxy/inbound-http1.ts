import net from "node:net";
import type { RequestFields } from "./access-line.js";
import { appReads } from "./app-read.js";
import { HttpHeadError } from "./http1/errors.js";
import { HeaderLines, rewriteHead, simpleResponse } from "./http1/head-rewrite.js";
import { type ParseEvent, type RequestHead, RequestParser } from "./http1/request-parser.js";
import { ResponseFramer } from "./http1/response-framer.js";
import type { InboundConnection } from "./inbound.js";
import { XFCC_HEADER } from "./xfcc.js";

const DROP_ON_FORWARD: ReadonlySet<string> = new Set([XFCC_HEADER]);
export const RBAC_DENIED_BODY = "RBAC: access denied";
/** Envoy's words when the app cannot be reached, so operators recognise them. */
export const UPSTREAM_UNAVAILABLE_BODY =
  "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

export function serveHttp1(conn: InboundConnection): void {
  new Http1Session(conn).start();
}

/** A request sent to the app and not yet answered: what its access-log line will say. */
interface Pending {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** The deciding policy (`ns/name`), "" when a default decided. */
  readonly policy: string;
  readonly rule: number | undefined;
  readonly started: number;
}

/** The lower-case header map the engine matches on. */
function headerMap(head: RequestHead): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of head.headers) {
    const key = name.toLowerCase();
    out[key] = key in out ? `${out[key]},${value}` : value;
  }
  return out;
}

/**
 * HTTP/1.1 on one inbound connection: request heads are parsed straight off the socket and
 * authorized one by one; allowed heads go to the app rewritten (the client's
 * X-Forwarded-Client-Cert replaced by the sidecar's), bodies and responses are piped
 * untouched. A denied request is answered `403 RBAC: access denied` after any response still in
 * flight, so answers stay in order on a pipelined connection.
 */
class Http1Session {
  private readonly parser: RequestParser;
  private framer = new ResponseFramer();
  private upstream: net.Socket | undefined;
  private upstreamEverConnected = false;
  /** What the current request's body does: forwarded, or discarded after a refusal. */
  private forwarding = false;
  /** Requests forwarded and not yet answered, oldest first. */
  private readonly inflight: Pending[] = [];
  /** A local answer waiting for in-flight responses to finish, and what was parsed after it. */
  private waiting: { response: Buffer; close: boolean } | undefined;
  private backlog: ParseEvent[] = [];
  private partialResponse = false;
  private closeWhenAnswered = false;
  private headTimer: NodeJS.Timeout | undefined;
  private tunnel = false;
  /** The client's FIN came before the app switched protocols: passed on once it did. */
  private finAfterSwitch = false;
  /** Client bytes after an upgrade request, held until the app switches protocols. */
  private held: Buffer[] = [];
  /** The headers added to every request forwarded (the connection's XFCC), checked once. */
  private addedLines: HeaderLines | undefined;
  /** Writes this connection's access-log lines (made at the first request). */
  private logRequest: ((record: RequestFields) => void) | undefined;
  /** A malformed request waiting for the answers before it. */
  private parserDead: unknown;

  constructor(private readonly conn: InboundConnection) {
    this.parser = new RequestParser({
      maxHeadBytes: conn.ctx.limits.maxHeadBytes,
      maxHeaders: conn.ctx.limits.maxHeaders,
    });
  }

  start(): void {
    const { socket } = this.conn;
    // A client that half-closes after its requests still gets their answers (see "end" below).
    socket.allowHalfOpen = true;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => this.shutdown());
    socket.on("close", () => this.shutdown());
    socket.on("end", () => this.onClientEnd());
    if (this.conn.first) this.onData(this.conn.first);
    socket.resume();
  }

  /** The client sent its FIN. */
  private onClientEnd(): void {
    const { socket } = this.conn;
    if (this.tunnel) {
      // A tunnel is a TCP relay: the FIN goes on to the app (once it switched protocols), whose
      // own end then ends the client's side.
      if (this.framer.switched) this.upstream?.end();
      else this.finAfterSwitch = true;
      return;
    }
    if (this.forwarding) {
      // The FIN cut a request body short: the app would wait for the rest, the client for an answer.
      this.upstream?.destroy();
      socket.destroy();
      return;
    }
    if (this.inflight.length === 0) socket.end();
    else this.closeWhenAnswered = true;
  }

  private onData(chunk: Buffer): void {
    let events: ParseEvent[];
    try {
      events = this.parser.feed(chunk);
    } catch (err) {
      // Complete requests before the bad bytes are served first; the 400 follows their answers.
      if (err instanceof HttpHeadError && err.preceding.length > 0) this.process(err.preceding);
      this.badRequest(err);
      return;
    }
    this.process(events);
    this.armHeadTimer();
  }

  private process(events: readonly ParseEvent[]): void {
    for (let i = 0; i < events.length; i++) {
      if (this.waiting) {
        this.backlog.push(...events.slice(i));
        this.conn.socket.pause();
        return;
      }
      const ev = events[i] as ParseEvent;
      if (ev.kind === "head") this.onHead(ev.head);
      else if (ev.kind === "body") {
        if (!this.forwarding) continue;
        // After an upgrade request nothing more is forwarded until the app agreed to switch
        // protocols: if it refuses, the bytes that follow are requests nobody authorized.
        if (this.tunnel && !this.framer.switched) this.held.push(ev.data);
        else this.toUpstream(ev.data);
      } else if (!this.tunnel) this.forwarding = false;
    }
  }

  private onHead(head: RequestHead): void {
    const { ctx, xfcc } = this.conn;
    const started = performance.now();
    // What the app will act on: the path and authority of the target (an absolute-form target's
    // own path, not its text), so `GET http://x/admin` is matched as `/admin`.
    const decision = this.conn.authorize({
      method: head.method,
      path: head.path,
      host: head.authority ?? head.host ?? "",
      headers: headerMap(head),
    });
    const pending: Pending = {
      method: head.method,
      path: head.path,
      authority: head.authority ?? head.host ?? "",
      policy: decision.policy ?? "",
      rule: decision.rule,
      started,
    };
    if (!head.keepAlive) this.closeWhenAnswered = true;
    if (!decision.allowed) {
      this.forwarding = false;
      ctx.metrics.recordRequest({
        direction: "inbound",
        protocol: "http",
        outcome: "http-403",
        policy: pending.policy,
        durationSeconds: (performance.now() - started) / 1000,
      });
      this.logAccess(pending, "http-403", 403, undefined, decision.detail);
      // A client waiting for 100-continue never sends the body: the connection cannot be reused.
      const close = !head.keepAlive || head.expectContinue || head.upgrade || head.method === "CONNECT";
      this.answerLocally(simpleResponse(403, RBAC_DENIED_BODY, { close }), close);
      return;
    }
    this.forwarding = true;
    if (head.upgrade || head.method === "CONNECT") this.tunnel = true;
    const upstream = this.ensureUpstream();
    this.framer.expect(head.method);
    this.inflight.push(pending);
    this.addedLines ??= new HeaderLines(xfcc ? [[XFCC_HEADER, xfcc]] : []);
    upstream.write(rewriteHead(head, DROP_ON_FORWARD, this.addedLines));
  }

  private toUpstream(data: Buffer): void {
    const upstream = this.upstream;
    if (!upstream || upstream.destroyed) return;
    if (!upstream.write(data)) {
      this.conn.socket.pause();
      upstream.once("drain", () => {
        if (!this.waiting) this.conn.socket.resume();
      });
    }
  }

  private ensureUpstream(): net.Socket {
    if (this.upstream && !this.upstream.destroyed) return this.upstream;
    const { app } = this.conn.mapping;
    const upstream: net.Socket = net.connect({
      host: app.host,
      port: app.port,
      noDelay: true,
      onread: appReads((chunk) => {
        if (this.upstream === upstream) this.onUpstreamData(chunk);
      }),
    });
    this.upstream = upstream;
    this.framer = new ResponseFramer();
    this.upstreamEverConnected = false;
    const timer = setTimeout(
      () => upstream.destroy(new Error("connect timeout")),
      this.conn.ctx.limits.connectTimeoutMs,
    );
    upstream.once("connect", () => {
      clearTimeout(timer);
      this.upstreamEverConnected = true;
    });
    upstream.on("error", () => undefined);
    upstream.on("close", () => {
      clearTimeout(timer);
      if (this.upstream === upstream) this.onUpstreamClosed();
    });
    return upstream;
  }

  private onUpstreamData(chunk: Buffer): void {
    const { socket } = this.conn;
    let done: number;
    if (this.tunnel && this.framer.switched) done = 0;
    else {
      try {
        done = this.framer.feed(chunk);
      } catch {
        this.conn.ctx.log.warn("the app sent a malformed HTTP response; both connections closed", {
          workload: this.conn.ctx.workload,
        });
        this.upstream?.destroy();
        socket.destroy();
        return;
      }
    }
    this.partialResponse = true;
    if (!socket.write(chunk)) {
      this.upstream?.pause();
      socket.once("drain", () => this.upstream?.resume());
    }
    if (done > 0) this.completed(done, this.framer.lastStatus);
    if (this.tunnel) {
      if (this.framer.switched) {
        for (const b of this.held.splice(0)) this.toUpstream(b);
        if (this.finAfterSwitch) {
          this.finAfterSwitch = false;
          this.upstream?.end();
        }
      } else if (this.framer.outstanding === 0) {
        // The app answered the upgrade without switching: the connection cannot carry on safely.
        this.held = [];
        socket.end();
        this.upstream?.end();
      }
    }
  }

  private completed(count: number, status: number | undefined): void {
    const { ctx } = this.conn;
    for (let i = 0; i < count; i++) {
      const p = this.inflight.shift();
      if (!p) break;
      const durationSeconds = (performance.now() - p.started) / 1000;
      ctx.metrics.recordRequest({
        direction: "inbound",
        protocol: "http",
        outcome: "forwarded",
        policy: p.policy,
        durationSeconds,
      });
      this.logAccess(p, "forwarded", status, Math.round(durationSeconds * 1e6) / 1000, undefined);
    }
    if (this.framer.outstanding === 0) {
      this.partialResponse = false;
      this.flushWaiting();
      if (this.parserDead !== undefined && !this.waiting && this.inflight.length === 0) {
        const err = this.parserDead;
        this.parserDead = undefined;
        this.badRequest(err);
        return;
      }
      if (this.inflight.length === 0 && this.closeWhenAnswered && !this.waiting) this.conn.socket.end();
    }
  }

  private onUpstreamClosed(): void {
    const completed = this.framer.end();
    if (completed > 0) this.completed(completed, this.framer.lastStatus);
    this.upstream = undefined;
    if (this.tunnel) {
      this.conn.socket.end();
      return;
    }
    if (this.inflight.length === 0) return;
    const { ctx } = this.conn;
    if (this.partialResponse) {
      // Part of a response went out: the client must see the truncation, not a second status.
      this.conn.socket.destroy();
      return;
    }
    const outcome = "upstream-unavailable";
    for (const p of this.inflight.splice(0)) {
      ctx.metrics.recordRequest({ direction: "inbound", protocol: "http", outcome, policy: p.policy });
      const detail = this.upstreamEverConnected
        ? "the app closed the connection before answering"
        : `the app at ${this.conn.mapping.app.host}:${this.conn.mapping.app.port} refused or did not accept the connection`;
      this.logAccess(p, outcome, 503, undefined, detail);
    }
    this.forwarding = false;
    this.answerLocally(simpleResponse(503, UPSTREAM_UNAVAILABLE_BODY, { close: true }), true);
  }

  private logAccess(
    p: Pending,
    outcome: string,
    status: number | undefined,
    durationMs: number | undefined,
    detail: string | undefined,
  ): void {
    this.logRequest ??= inboundRequestLog(this.conn, "http");
    this.logRequest({
      method: p.method,
      path: p.path,
      authority: p.authority,
      status,
      outcome,
      policy: p.policy === "" ? undefined : p.policy,
      rule: p.rule,
      detail,
      durationMs,
    });
  }

  /** Sends a locally made response now, or once every forwarded request has been answered. */
  private answerLocally(response: Buffer, close: boolean): void {
    if (this.inflight.length > 0 && this.upstream) {
      this.waiting = { response, close };
      this.conn.socket.pause();
      return;
    }
    this.conn.socket.write(response);
    if (close) this.conn.socket.end();
  }

  private flushWaiting(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    this.waiting = undefined;
    this.conn.socket.write(waiting.response);
    if (waiting.close) {
      this.conn.socket.end();
      return;
    }
    const backlog = this.backlog;
    this.backlog = [];
    this.process(backlog);
    if (!this.waiting) this.conn.socket.resume();
  }

  private badRequest(err: unknown): void {
    const { ctx, socket } = this.conn;
    if (this.waiting || this.inflight.length > 0) {
      // Answers to the requests before the bad one go first; the 400 closes the connection after them.
      this.parserDead = err;
      this.conn.socket.pause();
      return;
    }
    const status = err instanceof HttpHeadError ? err.status : 400;
    const reason = err instanceof HttpHeadError ? err.reason : String(err);
    ctx.metrics.recordRequest({ direction: "inbound", protocol: "http", outcome: "bad-request", policy: "" });
    this.logRequest ??= inboundRequestLog(this.conn, "http");
    this.logRequest({ status, outcome: "bad-request", detail: `refused a malformed request: ${reason}` });
    this.forwarding = false;
    this.inflight.length = 0;
    this.upstream?.destroy();
    socket.end(simpleResponse(status, statusText(status), { close: true }));
    socket.destroySoon?.();
  }

  private armHeadTimer(): void {
    if (this.parser.pendingHeadBytes > 0) {
      this.headTimer ??= setTimeout(() => {
        this.headTimer = undefined;
        this.badRequest(new HttpHeadError(408 as 400, "head-timeout"));
      }, this.conn.ctx.limits.headTimeoutMs);
    } else if (this.headTimer) {
      clearTimeout(this.headTimer);
      this.headTimer = undefined;
    }
  }

  private shutdown(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    this.headTimer = undefined;
    this.upstream?.destroy();
    this.upstream = undefined;
  }
}

/** The access-log writer for the requests of one inbound connection: its shared fields serialized once. */
export function inboundRequestLog(
  conn: InboundConnection,
  protocol: "http" | "http2",
): (record: RequestFields) => void {
  const { ctx, mapping, peer, peerId } = conn;
  return ctx.log.forConnection({
    direction: "inbound",
    protocol,
    source: peer,
    sourceIdentity: peerId,
    destination: ctx.workload,
    destinationIdentity: ctx.identity.id,
    port: mapping.containerPort,
  });
}

function statusText(status: number): string {
  switch (status) {
    case 408:
      return "request timeout";
    case 413:
      return "payload too large";
    case 431:
      return "request header fields too large";
    case 501:
      return "not implemented";
    case 505:
      return "HTTP version not supported";
    default:
      return "bad request";
  }
}
