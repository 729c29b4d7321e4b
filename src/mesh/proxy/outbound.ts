import net from "node:net";
import type { AccessRecord } from "./access-log.js";
import type { HostPort, SidecarContext } from "./context.js";
import { DialError, dialDestination, type RouteTable } from "./dial.js";
import { simpleResponse } from "./http1/head-rewrite.js";
import { forward, relay } from "./relay.js";
import type { OutboundDestination } from "./workload-policy.js";

/** How the app's connection reached the sidecar, which says where it was going. */
export type OutboundTarget =
  /** A fixed mapping: every connection to this listener goes to one Service port. */
  | { readonly kind: "mapped"; readonly host: string; readonly port: number }
  /** Captured by packet redirection: the original destination is read off the socket. */
  | { readonly kind: "captured"; readonly originalDestination: (socket: net.Socket) => HostPort };

/**
 * An outbound TCP listener of the sidecar (a port mapping, or the capture port that packet
 * redirection sends the app's connections to). Each connection is resolved to a Service or pod
 * of the manifests, dialed with mTLS (identity checked) or plaintext when the destination is
 * outside the mesh, and piped. Addresses that no Service or pod answers to pass through in
 * plaintext when captured (Istio's ALLOW_ANY), and are refused when mapped.
 */
export class OutboundTcpListener {
  readonly server: net.Server;

  constructor(
    private readonly ctx: SidecarContext,
    readonly listenOn: HostPort,
    readonly target: OutboundTarget,
    private readonly routes: RouteTable,
  ) {
    // allowHalfOpen: each direction ends on its own; the relay passes a FIN on.
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true, allowHalfOpen: true }, (socket) =>
      this.accept(socket),
    );
    this.server.maxConnections = ctx.limits.maxConnections;
  }

  listen(): Promise<net.AddressInfo> {
    return listenOn(this.server, this.listenOn);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(app: net.Socket): void {
    const { ctx } = this;
    app.on("error", () => app.destroy());
    const source = `${(app.remoteAddress ?? "").replace(/^::ffff:/, "")}:${app.remotePort ?? 0}`;
    let host: string;
    let port: number;
    try {
      ({ host, port } = this.target.kind === "mapped" ? this.target : this.target.originalDestination(app));
    } catch (err) {
      ctx.log.warn(`outbound: cannot tell where a connection was going: ${(err as Error).message}`);
      app.destroy();
      return;
    }
    const policy = ctx.policy();
    if (!policy || !ctx.identity.ready) {
      this.logged({
        source,
        destination: `${host}:${port}`,
        port,
        outcome: "not-ready",
        detail: "the sidecar is not ready",
      });
      app.resetAndDestroy();
      return;
    }
    const resolved = policy.resolve(host, port);
    const destination: OutboundDestination | undefined =
      resolved ??
      (this.target.kind === "captured"
        ? {
            name: `${host}:${port}`,
            service: undefined,
            pod: policy.pod,
            dial: { host, port },
            expectedId: undefined,
            plaintext: true,
          }
        : undefined);
    if (!destination) {
      this.logged({
        source,
        destination: `${host}:${port}`,
        port,
        outcome: "no-route",
        detail: `no Service or pod answers to ${host}:${port}`,
      });
      app.destroy();
      return;
    }
    const started = performance.now();
    ctx.metrics.connectionOpened("outbound");
    app.once("close", () => ctx.metrics.connectionClosed("outbound"));
    let bytesOut = 0;
    let bytesIn = 0;
    const reads = {
      onData: (chunk: Buffer, upstream: net.Socket) => {
        bytesIn += chunk.length;
        forward(chunk, upstream, app);
      },
    };
    dialDestination(ctx, destination, this.routes, reads).then(
      (upstream) => {
        relay(app, upstream, (n) => {
          bytesOut += n;
        });
        ctx.idle.watch(app);
        // The destination may have ended before this ran (its FIN right behind the handshake).
        if (upstream.readableEnded) app.end();
        else upstream.once("end", () => app.end());
        app.resume();
        upstream.on("error", () => app.destroy());
        upstream.on("close", () => app.destroy());
        app.on("close", () => {
          upstream.destroy();
          this.logged({
            source,
            destination: destination.name,
            destinationIdentity: destination.expectedId,
            port,
            outcome: "forwarded",
            detail: destination.plaintext ? "plaintext: the destination is outside the mesh" : "mTLS",
            bytesIn,
            bytesOut,
            durationMs: Math.round((performance.now() - started) * 1000) / 1000,
          });
        });
      },
      (err: unknown) => {
        const dial = err instanceof DialError ? err : new DialError("upstream-unavailable", String(err));
        if (dial.failure) ctx.metrics.recordHandshakeFailure(dial.failure.reason);
        this.logged({
          source,
          destination: destination.name,
          destinationIdentity: destination.expectedId,
          port,
          outcome: dial.outcome,
          detail: dial.message,
        });
        if (dial.failure) ctx.log.warn(dial.message, { reason: dial.failure.reason });
        app.resetAndDestroy();
      },
    );
  }

  private logged(r: Omit<AccessRecord, "direction" | "protocol">): void {
    this.ctx.metrics.recordRequest({
      direction: "outbound",
      protocol: "tcp",
      outcome: r.outcome,
      policy: "",
    });
    this.ctx.log.write({ direction: "outbound", protocol: "tcp", ...r });
  }
}

export function listenOn(server: net.Server, at: HostPort): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

/** A local answer for the HTTP proxy: 502 with a reason the app's logs can show. */
export function badGateway(reason: string): Buffer {
  return simpleResponse(502, reason, { close: true });
}
