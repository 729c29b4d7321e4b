import http from "node:http";
import http2 from "node:http2";
import { portProtocol } from "../../policy/istio/protocol.js";
import type { RequestFields } from "./access-line.js";
import type { InboundConnection } from "./inbound.js";
import { inboundRequestLog, RBAC_DENIED_BODY, UPSTREAM_UNAVAILABLE_BODY } from "./inbound-http1.js";
import { XFCC_HEADER } from "./xfcc.js";

const {
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_AUTHORITY,
  HTTP2_HEADER_STATUS,
  HTTP2_HEADER_SCHEME,
} = http2.constants;

/** Headers that belong to one hop (RFC 9113 §8.2.2) and are not forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "host",
  XFCC_HEADER,
]);

/** An inbound connection speaking HTTP/2, with the access-log writer its streams share. */
interface Http2Connection {
  readonly conn: InboundConnection;
  readonly log: (record: RequestFields) => void;
}

/** One HTTP/2 server shared by every connection of the process; each session finds its context. */
const sessions = new WeakMap<http2.Http2Session, Http2Connection>();
let server: http2.Http2Server | undefined;

function sharedServer(): http2.Http2Server {
  if (server) return server;
  server = http2.createServer({ maxSessionMemory: 64 });
  server.on("stream", (stream, headers) => {
    const session = stream.session ? sessions.get(stream.session) : undefined;
    if (!session) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    onStream(session, stream, headers);
  });
  return server;
}

/**
 * HTTP/2 on one inbound connection (ALPN `h2`, or the prior-knowledge preface in plaintext):
 * every stream is authorized on its own; a denied gRPC call ends with grpc-status 7
 * (PERMISSION_DENIED), any other denied request with `403 RBAC: access denied`. Allowed streams go
 * to the app over HTTP/2 when its port speaks gRPC or HTTP/2, else over HTTP/1.1.
 */
export function serveHttp2(conn: InboundConnection): void {
  const h2 = sharedServer();
  h2.once("session", (session: http2.ServerHttp2Session) => {
    sessions.set(session, { conn, log: inboundRequestLog(conn, "http2") });
    session.on("error", () => session.destroy());
    session.on("close", () => upstreamSessions.get(session)?.close());
    // The session reads its socket itself (the socket's byte counts stay still): its own timer
    // tells an idle connection, counting frames.
    session.setTimeout(conn.ctx.limits.idleTimeoutMs, () => session.destroy());
  });
  if (conn.first) conn.socket.unshift(conn.first);
  // A server-side TLSSocket made by hand keeps `secureConnecting` after its handshake (only
  // tls.Server clears it), and the HTTP/2 session would wait for a 'secureConnect' that never comes.
  const tlsSocket = conn.socket as { secureConnecting?: boolean };
  if (tlsSocket.secureConnecting) tlsSocket.secureConnecting = false;
  h2.emit("connection", conn.socket);
}

const upstreamSessions = new WeakMap<http2.Http2Session, http2.ClientHttp2Session>();

function appSession(conn: InboundConnection, session: http2.Http2Session): http2.ClientHttp2Session {
  let up = upstreamSessions.get(session);
  if (!up || up.closed || up.destroyed) {
    up = http2.connect(`http://${conn.mapping.app.host}:${conn.mapping.app.port}`);
    up.on("error", () => undefined);
    upstreamSessions.set(session, up);
  }
  return up;
}

const agents = new Map<string, http.Agent>();
function agentFor(host: string, port: number): http.Agent {
  const key = `${host}:${port}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    agents.set(key, agent);
  }
  return agent;
}

function onStream(
  { conn, log }: Http2Connection,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
): void {
  const { ctx, mapping, xfcc } = conn;
  const started = performance.now();
  const method = String(headers[HTTP2_HEADER_METHOD] ?? "GET");
  const path = String(headers[HTTP2_HEADER_PATH] ?? "/");
  const authority = String(headers[HTTP2_HEADER_AUTHORITY] ?? "");
  const plain: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    plain[name] = Array.isArray(value) ? value.join(",") : String(value);
  }
  const grpc = (plain["content-type"] ?? "").startsWith("application/grpc");
  const decision = conn.authorize({
    method,
    path,
    host: authority,
    headers: plain,
  });
  stream.on("error", () => undefined);
  const finish = (outcome: string, status: number, detail?: string) => {
    const durationSeconds = (performance.now() - started) / 1000;
    ctx.metrics.recordRequest({
      direction: "inbound",
      protocol: "http",
      outcome,
      policy: decision.policy ?? "",
      durationSeconds,
    });
    log({
      method,
      path,
      authority,
      status,
      outcome,
      policy: decision.policy,
      rule: decision.rule,
      detail: detail || undefined,
      durationMs: Math.round(durationSeconds * 1e6) / 1000,
    });
  };
  if (!decision.allowed) {
    if (grpc) {
      stream.respond(
        {
          [HTTP2_HEADER_STATUS]: 200,
          "content-type": "application/grpc",
          "grpc-status": "7",
          "grpc-message": RBAC_DENIED_BODY,
        },
        { endStream: true },
      );
      finish("grpc-permission-denied", 200, decision.detail);
    } else {
      stream.respond({ [HTTP2_HEADER_STATUS]: 403, "content-type": "text/plain", server: "tessera" });
      stream.end(RBAC_DENIED_BODY);
      finish("http-403", 403, decision.detail);
    }
    return;
  }
  const forwarded: Record<string, string> = {};
  for (const [name, value] of Object.entries(plain)) if (!HOP_BY_HOP.has(name)) forwarded[name] = value;
  if (xfcc) forwarded[XFCC_HEADER] = xfcc;
  // gRPC needs HTTP/2 end to end; other requests reach the app as HTTP/1.1, as Envoy does for
  // a port declared `http`.
  const policy = ctx.policy() ?? conn.policy;
  const http2Upstream =
    grpc || portProtocol(policy.cluster, policy.pod, mapping.containerPort, true) === "grpc";
  const unavailable = () => {
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    } else if (grpc) {
      stream.respond(
        {
          [HTTP2_HEADER_STATUS]: 200,
          "content-type": "application/grpc",
          "grpc-status": "14",
          "grpc-message": "upstream unavailable",
        },
        { endStream: true },
      );
    } else {
      stream.respond({ [HTTP2_HEADER_STATUS]: 503, "content-type": "text/plain", server: "tessera" });
      stream.end(UPSTREAM_UNAVAILABLE_BODY);
    }
    finish("upstream-unavailable", 503);
  };
  if (http2Upstream && stream.session) {
    const up = appSession(conn, stream.session);
    const req = up.request({
      ...forwarded,
      [HTTP2_HEADER_METHOD]: method,
      [HTTP2_HEADER_PATH]: path,
      [HTTP2_HEADER_AUTHORITY]: authority,
      [HTTP2_HEADER_SCHEME]: "http",
    });
    let trailers: http2.OutgoingHttpHeaders = {};
    req.on("trailers", (t) => {
      trailers = {};
      for (const [k, v] of Object.entries(t))
        if (v !== undefined) trailers[k] = v as import("node:http").OutgoingHttpHeader;
    });
    req.on("response", (resHeaders) => {
      const out: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(resHeaders))
        if (!HOP_BY_HOP.has(k) && v !== undefined && v !== null)
          out[k] = v as import("node:http").OutgoingHttpHeader;
      stream.respond(out, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers(trailers));
      req.pipe(stream);
      req.on("end", () => finish("forwarded", Number(resHeaders[HTTP2_HEADER_STATUS] ?? 200)));
    });
    req.on("error", unavailable);
    stream.pipe(req);
    return;
  }
  const req = http.request(
    {
      host: mapping.app.host,
      port: mapping.app.port,
      method,
      path,
      headers: { ...forwarded, host: authority },
      agent: agentFor(mapping.app.host, mapping.app.port),
    },
    (res) => {
      const out: http2.OutgoingHttpHeaders = { [HTTP2_HEADER_STATUS]: res.statusCode ?? 502 };
      for (const [k, v] of Object.entries(res.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      stream.respond(out);
      res.pipe(stream);
      res.on("end", () => finish("forwarded", res.statusCode ?? 502));
    },
  );
  req.on("error", unavailable);
  stream.pipe(req);
}
