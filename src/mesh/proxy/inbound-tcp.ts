import net from "node:net";
import { appReads } from "./app-read.js";
import type { InboundConnection } from "./inbound.js";
import { forward, relay } from "./relay.js";

/**
 * An opaque TCP port: authorized once per connection at L4 (principal, source, port), then
 * piped to the app. A denied connection is closed, as Envoy's RBAC network filter does.
 */
export function serveTcp(conn: InboundConnection): void {
  const { ctx, mapping, socket, peer, peerId } = conn;
  const started = performance.now();
  const decision = conn.authorize();
  const record = {
    direction: "inbound" as const,
    protocol: "tcp" as const,
    source: peer,
    sourceIdentity: peerId,
    destination: ctx.workload,
    destinationIdentity: ctx.identity.id,
    port: mapping.containerPort,
    policy: decision.policy,
    rule: decision.rule,
  };
  if (!decision.allowed) {
    ctx.metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome: "tcp-closed",
      policy: decision.policy ?? "",
    });
    ctx.log.write({ ...record, outcome: "tcp-closed", detail: decision.detail });
    socket.destroy();
    return;
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let outcome = "forwarded";
  // Each direction ends on its own (a client that has said everything may still be reading):
  // a FIN is passed on, not answered with one.
  socket.allowHalfOpen = true;
  const app: net.Socket = net.connect({
    host: mapping.app.host,
    port: mapping.app.port,
    noDelay: true,
    allowHalfOpen: true,
    onread: appReads((chunk) => {
      bytesOut += chunk.length;
      forward(chunk, app, socket);
    }),
  });
  const connectTimer = setTimeout(() => {
    outcome = "upstream-unavailable";
    app.destroy();
  }, ctx.limits.connectTimeoutMs);
  app.once("connect", () => clearTimeout(connectTimer));
  if (conn.first) {
    bytesIn += conn.first.length;
    app.write(conn.first);
  }
  relay(socket, app, (n) => {
    bytesIn += n;
  });
  app.once("end", () => socket.end());
  socket.resume();
  app.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "ECONNREFUSED" || err.code === "ETIMEDOUT") outcome = "upstream-unavailable";
    socket.destroy();
  });
  socket.on("error", () => app.destroy());
  socket.on("close", () => app.destroy());
  app.on("close", () => {
    clearTimeout(connectTimer);
    socket.destroy();
  });
  let logged = false;
  socket.once("close", () => {
    if (logged) return;
    logged = true;
    ctx.metrics.recordRequest({
      direction: "inbound",
      protocol: "tcp",
      outcome,
      policy: decision.policy ?? "",
    });
    ctx.log.write({
      ...record,
      outcome,
      detail: decision.detail,
      bytesIn,
      bytesOut,
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
    });
  });
}
