import net from "node:net";
import tls from "node:tls";
import { peerChain } from "../../spiffe/tls.js";
import { appReads } from "./app-read.js";
import type { HostPort, SidecarContext } from "./context.js";
import { HandshakeFailure } from "./identity.js";
import type { OutboundDestination } from "./workload-policy.js";

/** Where a Service is reached when its pods have no addresses in the manifests (bare metal). */
export type RouteTable = ReadonlyMap<string, HostPort>;

/**
 * Where a dialed connection's bytes go instead of 'data' events (see dialDestination), for a
 * relay: the connection is half-open capable then (its end of input does not end its output).
 */
export interface DialReads {
  onData(chunk: Buffer, socket: net.Socket): void;
}

export class DialError extends Error {
  constructor(
    readonly outcome: "no-route" | "upstream-unavailable" | "handshake-failed",
    message: string,
    readonly failure?: HandshakeFailure,
  ) {
    super(message);
  }
}

/**
 * Opens a connection to a destination as the workload's sidecar: mTLS with the workload's SVID
 * when the destination is in the mesh, and only after the server proved the SPIFFE ID that the
 * destination's ServiceAccount should have; plaintext only to destinations outside the mesh (or
 * whose port is DISABLE). No byte of the caller's is written before that check.
 */
export function dialDestination(
  ctx: SidecarContext,
  destination: OutboundDestination,
  routes: RouteTable,
  reads?: DialReads,
): Promise<net.Socket> {
  const target = routes.get(destination.name) ?? destination.dial;
  if (!target) {
    return Promise.reject(
      new DialError(
        "no-route",
        `no address for ${destination.name}: its pods have no IP in the manifests; give one with --route ${destination.name}=HOST:PORT`,
      ),
    );
  }
  const timeoutMs = ctx.limits.connectTimeoutMs;
  // With `reads`, the destination's bytes are read into a shared area and handed over as copies;
  // those that come before the server's identity was checked wait for it (and die with a refusal).
  let accepted: net.Socket | undefined;
  const early: Buffer[] = [];
  const onread = reads
    ? appReads((chunk) => {
        if (accepted) reads.onData(chunk, accepted);
        else early.push(chunk);
      })
    : undefined;
  const accept = (socket: net.Socket): net.Socket => {
    accepted = socket;
    for (const chunk of early.splice(0)) reads?.onData(chunk, socket);
    return socket;
  };
  if (destination.plaintext || destination.expectedId === undefined) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: target.host,
        port: target.port,
        noDelay: true,
        ...(onread ? { onread, allowHalfOpen: true } : {}),
      });
      const timer = setTimeout(
        () => socket.destroy(new Error(`no connection within ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        resolve(accept(socket));
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(
          new DialError(
            "upstream-unavailable",
            `${destination.name} at ${target.host}:${target.port}: ${err.message}`,
          ),
        );
      };
      socket.once("error", onError);
    });
  }
  const expected = destination.expectedId;
  return new Promise((resolve, reject) => {
    let secureContext: tls.SecureContext;
    try {
      secureContext = ctx.identity.secureContext;
    } catch (err) {
      reject(new DialError("handshake-failed", (err as Error).message));
      return;
    }
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      secureContext,
      // The SPIFFE check (per trust domain, then the exact ID) is ours, before any data is sent.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
      ...(onread ? { onread, allowHalfOpen: true } : {}),
    });
    socket.setNoDelay(true);
    const timer = setTimeout(
      () => socket.destroy(new Error(`no TLS session within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const fail = (err: DialError) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once("error", (err: Error) =>
      fail(
        new DialError(
          "upstream-unavailable",
          `${destination.name} at ${target.host}:${target.port}: ${err.message}`,
        ),
      ),
    );
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      let presented: string;
      try {
        presented = ctx.identity.verifyChain(peerChain(socket.getPeerCertificate(true)));
      } catch (err) {
        const failure =
          err instanceof HandshakeFailure ? err : new HandshakeFailure("invalid-certificate", String(err));
        fail(
          new DialError(
            "handshake-failed",
            `${destination.name}: the server's certificate was refused: ${failure.message}`,
            failure,
          ),
        );
        return;
      }
      if (presented !== expected) {
        const failure = new HandshakeFailure(
          "identity-mismatch",
          `${destination.name}: the server presented ${presented}, expected ${expected} (the ServiceAccount of ${destination.pod.namespace}/${destination.pod.name}); refused`,
        );
        fail(new DialError("handshake-failed", failure.message, failure));
        return;
      }
      socket.removeAllListeners("error");
      resolve(accept(socket));
    });
  });
}
