import { Counter, Gauge, Histogram, Registry } from "prom-client";

export type Direction = "inbound" | "outbound";
export type ProxyProtocol = "http" | "tcp";

/** One HTTP request or TCP connection decided by the sidecar. */
export interface RequestRecord {
  readonly direction: Direction;
  readonly protocol: ProxyProtocol;
  /** forwarded | http-403 | tcp-closed | connection-reset | upstream-unavailable | bad-request | ... */
  readonly outcome: string;
  /**
   * `ns/name` of the deciding policy; "" when a default decided. undefined (no policy was
   * consulted, e.g. a request refused before authorization) is exported as "" as well: Prometheus
   * treats an empty label value as an absent label, and the outcome tells the two apart.
   */
  readonly policy: string | undefined;
  readonly durationSeconds?: number;
  /** Overrides whether the outcome counts as a denial (default: DENIAL_OUTCOMES.has(outcome)). */
  readonly denied?: boolean;
}

/**
 * Outcomes that are a refusal by policy: an L7 deny (403 "RBAC: access denied"), an L4 deny
 * (the connection is closed), and a plaintext connection reset under STRICT mTLS (peer
 * authentication is a policy too). Upstream failures and malformed requests are not denials.
 */
export const DENIAL_OUTCOMES: ReadonlySet<string> = new Set(["http-403", "tcp-closed", "connection-reset"]);

/** Seconds; from sub-millisecond local forwarding up to a slow upstream. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Increment {
  inc(value?: number): void;
}

interface Observe {
  observe(value: number): void;
}

/** The label-bound series one request touches, looked up once per distinct label set. */
interface RequestSeries {
  readonly requests: Increment;
  /** Absent when the outcome is not a denial. */
  readonly denials: Increment | undefined;
}

/**
 * The sidecar's Prometheus metrics. Each instance owns its Registry, so several sidecars can live
 * in one process (tests, the local mesh). The workload is a registry default label: every series
 * carries `workload="<name>"` without every call passing it.
 */
export class ProxyMetrics {
  private readonly registry = new Registry();
  private readonly requests: Counter<"direction" | "protocol" | "outcome" | "policy">;
  private readonly denials: Counter<"direction" | "policy">;
  private readonly handshakeFailures: Counter<"reason">;
  private readonly activeConnections: Gauge<"direction">;
  private readonly durations: Histogram<"direction" | "protocol">;
  private readonly identityRotations: Counter;
  // prom-client builds a label object and validates it on every `labels()` call; the hot path
  // reuses the bound children instead.
  private readonly requestSeries = new Map<string, RequestSeries>();
  private readonly durationSeries = new Map<string, Observe>();
  private readonly handshakeSeries = new Map<string, Increment>();

  constructor(labels: { workload: string }) {
    this.registry.setDefaultLabels({ workload: labels.workload });
    const registers = [this.registry];
    this.requests = new Counter({
      name: "tessera_proxy_requests_total",
      help: "HTTP requests and TCP connections decided by the sidecar, by outcome and deciding policy.",
      labelNames: ["direction", "protocol", "outcome", "policy"],
      registers,
    });
    this.denials = new Counter({
      name: "tessera_proxy_denials_total",
      help: "Requests and connections refused by policy, by deciding policy.",
      labelNames: ["direction", "policy"],
      registers,
    });
    this.handshakeFailures = new Counter({
      name: "tessera_proxy_handshake_failures_total",
      help: "Inbound or outbound mTLS handshakes that failed, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.activeConnections = new Gauge({
      name: "tessera_proxy_active_connections",
      help: "Connections currently open through the sidecar.",
      labelNames: ["direction"],
      registers,
    });
    this.durations = new Histogram({
      name: "tessera_proxy_request_duration_seconds",
      help: "Time from a request's arrival to its completion.",
      labelNames: ["direction", "protocol"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.identityRotations = new Counter({
      name: "tessera_proxy_identity_rotations_total",
      help: "Times the sidecar's X.509-SVID was replaced by a newer one.",
      registers,
    });
    // Both directions are exported from the start: a missing series reads as "unknown", 0 does not.
    this.activeConnections.set({ direction: "inbound" }, 0);
    this.activeConnections.set({ direction: "outbound" }, 0);
  }

  recordRequest(r: RequestRecord): void {
    const policy = r.policy ?? "";
    const denied = r.denied ?? DENIAL_OUTCOMES.has(r.outcome);
    // The outcome's length makes the key unambiguous whatever characters outcome and policy hold.
    const key = `${r.direction} ${r.protocol} ${denied ? 1 : 0} ${r.outcome.length} ${r.outcome} ${policy}`;
    let series = this.requestSeries.get(key);
    if (series === undefined) {
      series = {
        requests: this.requests.labels(r.direction, r.protocol, r.outcome, policy),
        denials: denied ? this.denials.labels(r.direction, policy) : undefined,
      };
      this.requestSeries.set(key, series);
    }
    series.requests.inc();
    series.denials?.inc();
    if (r.durationSeconds !== undefined && Number.isFinite(r.durationSeconds) && r.durationSeconds >= 0) {
      this.durationOf(r.direction, r.protocol).observe(r.durationSeconds);
    }
  }

  recordHandshakeFailure(reason: string): void {
    let series = this.handshakeSeries.get(reason);
    if (series === undefined) {
      series = this.handshakeFailures.labels(reason);
      this.handshakeSeries.set(reason, series);
    }
    series.inc();
  }

  connectionOpened(direction: Direction): void {
    this.activeConnections.inc({ direction });
  }

  connectionClosed(direction: Direction): void {
    this.activeConnections.dec({ direction });
  }

  recordIdentityRotation(): void {
    this.identityRotations.inc();
  }

  /** The Prometheus text exposition of every series. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private durationOf(direction: Direction, protocol: ProxyProtocol): Observe {
    const key = `${direction} ${protocol}`;
    let series = this.durationSeries.get(key);
    if (series === undefined) {
      series = this.durations.labels(direction, protocol);
      this.durationSeries.set(key, series);
    }
    return series;
  }
}
