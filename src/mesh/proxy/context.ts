import type { AccessLog } from "./access-log.js";
import type { ProxyIdentity } from "./identity.js";
import type { IdleSweeper } from "./idle.js";
import type { ProxyMetrics } from "./metrics.js";
import type { WorkloadPolicy } from "./workload-policy.js";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Bounds that keep slow, stalled or hostile clients from exhausting the sidecar. */
export interface ProxyLimits {
  /** Open connections per listener; more are refused. */
  readonly maxConnections: number;
  /** Time for a TLS handshake (or a plaintext peer's first bytes). */
  readonly handshakeTimeoutMs: number;
  /** Time for a whole request head once its first byte arrived (slowloris). */
  readonly headTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Time to connect to the app or to another sidecar. */
  readonly connectTimeoutMs: number;
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxConnections: 10_000,
  handshakeTimeoutMs: 10_000,
  headTimeoutMs: 10_000,
  // Envoy's default for HTTP and TCP alike: pooled database or broker connections sit idle for long.
  idleTimeoutMs: 3_600_000,
  connectTimeoutMs: 5_000,
  maxHeadBytes: 64 * 1024,
  maxHeaders: 100,
};

/**
 * What every listener of one sidecar shares. `policy` is swapped whole on updates; a listener
 * reads it once per connection (and per request), so a change applies to the next decision.
 */
export interface SidecarContext {
  /** `ns/name` of the workload, for logs. */
  readonly workload: string;
  readonly identity: ProxyIdentity;
  readonly metrics: ProxyMetrics;
  readonly log: AccessLog;
  readonly limits: ProxyLimits;
  /** Closes connections idle for limits.idleTimeoutMs. */
  readonly idle: IdleSweeper;
  /** The current policies; undefined until the first load succeeded (traffic is refused then). */
  policy(): WorkloadPolicy | undefined;
}
