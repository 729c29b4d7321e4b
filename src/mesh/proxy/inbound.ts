import net from "node:net";
import tls from "node:tls";
import { parseIPv4 } from "../../kube/ip.js";
import type { HttpRequest } from "../../policy/model.js";
import type { HostPort, SidecarContext } from "./context.js";
import { HandshakeFailure } from "./identity.js";
import { serveHttp1 } from "./inbound-http1.js";
import { serveHttp2 } from "./inbound-http2.js";
import { serveTcp } from "./inbound-tcp.js";
import type { ProxyDecision, WorkloadPolicy } from "./workload-policy.js";
import { xfccOf } from "./xfcc.js";

/** One inbound port: the container port policies name, where the sidecar listens, and the app. */
export interface InboundMapping {
  readonly containerPort: number;
  readonly listen: HostPort;
  readonly app: HostPort;
  /**
   * Packet redirection sends every inbound port here (Istio's 15006): the container port is the
   * connection's original destination port, and the app listens on it on loopback.
   */
  readonly captured?: (socket: net.Socket) => HostPort;
}

/** What an admitted connection carries into the protocol handlers. */
export interface InboundConnection {
  readonly ctx: SidecarContext;
  readonly mapping: InboundMapping;
  readonly policy: WorkloadPolicy;
  /** The stream to read and write: the TLS socket, or the raw socket for plaintext. */
  readonly socket: net.Socket;
  /** The TCP socket underneath (for resets and addresses). */
  readonly raw: net.Socket;
  /** The peer's IPv4 as a number, parsed once per connection for every decision on it (0 if not IPv4). */
  readonly peerAddress: number;
  readonly peer: string;
  /** The peer's SPIFFE ID from its verified certificate; undefined for plaintext. */
  readonly peerId: string | undefined;
  /** The X-Forwarded-Client-Cert value to set (mTLS only). */
  readonly xfcc: string | undefined;
  /** Bytes already read from `socket` that the handler must process first. */
  readonly first: Buffer | undefined;
  /**
   * Authorizes one request (HTTP) or the connection (no request) under the current policies: an
   * update applies from the next request on.
   */
  readonly authorize: (http?: HttpRequest) => ProxyDecision;
}

/** InboundConnection.authorize: the engine's per-connection work redone only when the policies change. */
function connectionAuthorizer(
  conn: Pick<InboundConnection, "ctx" | "mapping" | "policy" | "peerAddress" | "peerId">,
): (http?: HttpRequest) => ProxyDecision {
  let policy: WorkloadPolicy | undefined;
  let authorize: ((http?: HttpRequest) => ProxyDecision) | undefined;
  return (http) => {
    const current = conn.ctx.policy() ?? conn.policy;
    if (current !== policy || authorize === undefined) {
      policy = current;
      authorize = current.connectionAuthorizer(conn.peerAddress, conn.mapping.containerPort, conn.peerId);
    }
    return authorize(http);
  };
}

const TLS_HANDSHAKE = 0x16;
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** Request methods that start an HTTP/1 request, for protocol sniffing on undeclared ports. */
const HTTP1_START = /^[A-Z]{3,10} /;

/**
 * The inbound side of a sidecar: terminates mTLS (or accepts plaintext, as the port's
 * PeerAuthentication mode says), identifies the peer from its verified certificate, then hands
 * the connection to the HTTP/1.1, HTTP/2 or TCP handler, which ask the engine per request or per
 * connection. Fails closed: without an identity or policies, every connection is reset.
 */
export class InboundListener {
  readonly server: net.Server;

  constructor(
    private readonly ctx: SidecarContext,
    readonly mapping: InboundMapping,
  ) {
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server.maxConnections = ctx.limits.maxConnections;
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.mapping.listen.port, this.mapping.listen.host, () => {
        this.server.off("error", reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(raw: net.Socket): void {
    const { ctx } = this;
    let mapping = this.mapping;
    if (mapping.captured) {
      try {
        const original = mapping.captured(raw);
        mapping = {
          ...mapping,
          containerPort: original.port,
          app: { host: "127.0.0.1", port: original.port },
        };
      } catch (err) {
        ctx.log.warn(`inbound: cannot tell which port a connection was for: ${(err as Error).message}`);
        raw.destroy();
        return;
      }
    }
    const peerIp = (raw.remoteAddress ?? "").replace(/^::ffff:/, "");
    const peer = `${peerIp}:${raw.remotePort ?? 0}`;
    raw.on("error", () => raw.destroy());
    const policy = ctx.policy();
    if (!policy || !ctx.identity.ready) {
      const why = !policy ? "no policies loaded" : "no identity from the Workload API";
      this.refuse(raw, peer, mapping.containerPort, `the sidecar is not ready (${why}): connection refused`);
      return;
    }
    ctx.metrics.connectionOpened("inbound");
    raw.once("close", () => ctx.metrics.connectionClosed("inbound"));
    const { mode, policy: modePolicy } = policy.mtlsMode(mapping.containerPort);
    const deadline = setTimeout(() => raw.destroy(), ctx.limits.handshakeTimeoutMs);
    raw.once("close", () => clearTimeout(deadline));
    const base = { ctx, mapping, policy, raw, peerAddress: parseIPv4(peerIp) ?? 0, peer };
    if (mode === "STRICT") {
      // No peeking: the TLS layer gets the native socket (the fast path); a plaintext peer shows
      // up as a handshake error and is reset.
      this.startTls(base, deadline, modePolicy);
      return;
    }
    raw.once("data", (first: Buffer) => {
      if (mode === "PERMISSIVE" && first[0] === TLS_HANDSHAKE) {
        raw.pause();
        raw.unshift(first);
        this.startTls(base, deadline, modePolicy);
        return;
      }
      clearTimeout(deadline);
      this.dispatch({ ...base, socket: raw, peerId: undefined, xfcc: undefined, first });
    });
  }

  private startTls(
    base: Pick<InboundConnection, "ctx" | "mapping" | "policy" | "raw" | "peerAddress" | "peer">,
    deadline: NodeJS.Timeout,
    modePolicy: string | undefined,
  ): void {
    const { ctx, raw, peer } = base;
    let secureContext: tls.SecureContext;
    try {
      secureContext = ctx.identity.secureContext;
    } catch {
      this.refuse(raw, peer, base.mapping.containerPort, "the sidecar has no identity: connection refused");
      return;
    }
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext,
      requestCert: true,
      // The SPIFFE check (per trust domain, with reasons) is ours, right after the handshake.
      rejectUnauthorized: false,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (socket.encrypted && (socket as { _secureEstablished?: boolean })._secureEstablished) {
        socket.destroy();
        return;
      }
      const plaintext = /wrong version number|http request|packet length too long|unknown protocol/i.test(
        `${err.code ?? ""} ${err.message}`,
      );
      const failure = plaintext
        ? new HandshakeFailure(
            "plaintext-refused",
            `plaintext refused: mTLS mode STRICT${modePolicy ? ` (${modePolicy})` : ""} requires a client certificate`,
          )
        : new HandshakeFailure("tls-error", err.message);
      this.handshakeFailed(base, failure);
    });
    socket.once("secure", () => {
      clearTimeout(deadline);
      let peerId: string;
      try {
        peerId = ctx.identity.verify(socket);
      } catch (err) {
        const failure =
          err instanceof HandshakeFailure ? err : new HandshakeFailure("invalid-certificate", String(err));
        this.handshakeFailed(base, failure);
        return;
      }
      const ownId = ctx.identity.id ?? base.policy.spiffeId;
      this.dispatch({
        ...base,
        socket,
        peerId,
        xfcc: xfccOf(socket, ownId, peerId),
        first: undefined,
        alpn: socket.alpnProtocol,
      });
    });
  }

  private dispatch(
    connection: Omit<InboundConnection, "authorize"> & { alpn?: string | false | null },
  ): void {
    const conn: InboundConnection & { alpn?: string | false | null } = {
      ...connection,
      authorize: connectionAuthorizer(connection),
    };
    const declared = conn.policy.portProtocol(conn.mapping.containerPort);
    // HTTP/2 sessions time out on their own frames (serveHttp2); the rest by their byte counts.
    const watched = <C extends InboundConnection>(c: C): C => {
      c.ctx.idle.watch(c.socket);
      return c;
    };
    if (conn.alpn === "h2") {
      serveHttp2(conn);
      return;
    }
    if (declared === "tcp") {
      serveTcp(watched(conn));
      return;
    }
    if (declared === "http") {
      if (conn.first?.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) serveHttp2(conn);
      else serveHttp1(watched(conn));
      return;
    }
    // Undeclared: sniff the first bytes, as Istio's protocol detection does. Until they come the
    // connection is watched too (a peer that never speaks is idle).
    conn.ctx.idle.watch(conn.socket);
    const sniff = (first: Buffer) => {
      const conn2 = { ...conn, first };
      if (first.subarray(0, H2_PREFACE.length).equals(H2_PREFACE.subarray(0, Math.min(first.length, 24)))) {
        conn.ctx.idle.unwatch(conn.socket);
        serveHttp2(conn2);
      } else if (HTTP1_START.test(first.subarray(0, 12).toString("latin1"))) serveHttp1(conn2);
      else serveTcp(conn2);
    };
    if (conn.first) sniff(conn.first);
    else conn.socket.once("data", sniff);
  }

  private handshakeFailed(
    base: Pick<InboundConnection, "ctx" | "mapping" | "raw" | "peer">,
    failure: HandshakeFailure,
  ): void {
    const { ctx, mapping, raw, peer } = base;
    ctx.metrics.recordHandshakeFailure(failure.reason);
    const hint = failure.clockSkewHint;
    ctx.log.write({
      direction: "inbound",
      protocol: "tcp",
      source: peer,
      destination: ctx.workload,
      port: mapping.containerPort,
      outcome: failure.reason === "plaintext-refused" ? "connection-reset" : "handshake-failed",
      detail: hint ? `${failure.message}; ${hint}` : failure.message,
    });
    if (hint) {
      ctx.log.warn(hint, { peer, reason: failure.reason, offsetMs: failure.clockOffsetMs });
    }
    ctx.metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome: failure.reason === "plaintext-refused" ? "connection-reset" : "handshake-failed",
      policy: undefined,
    });
    raw.resetAndDestroy();
  }

  private refuse(raw: net.Socket, peer: string, port: number, detail: string): void {
    this.ctx.metrics.recordHandshakeFailure("not-ready");
    this.ctx.log.write({
      direction: "inbound",
      protocol: "tcp",
      source: peer,
      destination: this.ctx.workload,
      port,
      outcome: "connection-reset",
      detail,
    });
    raw.resetAndDestroy();
  }
}
