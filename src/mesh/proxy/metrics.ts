import { Counter, Gauge, Registry } from "prom-client";
import { type HistogramTally, TallyHistogram } from "./tally-histogram.js";

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

/** A counter series counted as a plain number and handed to prom-client when scraped. */
interface Tally<L extends string> {
  readonly labels: Readonly<Record<L, string>>;
  count: number;
}

/** The series one request touches, looked up once per distinct label set. */
interface RequestSeries {
  readonly requests: Tally<"direction" | "protocol" | "outcome" | "policy">;
  /** Absent when the outcome is not a denial. */
  readonly denials: Tally<"direction" | "policy"> | undefined;
}

/** requestSeries slot of a direction, protocol and denial: 8 maps, outcome then policy inside. */
const slotOf = (direction: Direction, protocol: ProxyProtocol, denied: boolean): number =>
  (direction === "inbound" ? 0 : 4) + (protocol === "http" ? 0 : 2) + (denied ? 1 : 0);

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
  private readonly durations: TallyHistogram;
  private readonly identityRotations: Counter;
  // prom-client builds, validates and hashes the label values on every inc() and observe(), even
  // through a labelled child: the per-request series are plain numbers, handed over when scraped.
  private readonly requestSeries = Array.from(
    { length: 8 },
    () => new Map<string, Map<string, RequestSeries>>(),
  );
  private readonly requestTallies: Tally<"direction" | "protocol" | "outcome" | "policy">[] = [];
  private readonly denialSeries = new Map<string, Tally<"direction" | "policy">>();
  private readonly durationSeries = new Map<string, HistogramTally>();
  private readonly handshakeSeries = new Map<string, Increment>();

  constructor(labels: { workload: string }) {
    this.registry.setDefaultLabels({ workload: labels.workload });
    const registers = [this.registry];
    const requestTallies = this.requestTallies;
    this.requests = new Counter({
      name: "tessera_proxy_requests_total",
      help: "HTTP requests and TCP connections decided by the sidecar, by outcome and deciding policy.",
      labelNames: ["direction", "protocol", "outcome", "policy"],
      registers,
      collect() {
        this.reset();
        for (const t of requestTallies) this.inc(t.labels, t.count);
      },
    });
    const denialTallies = this.denialSeries;
    this.denials = new Counter({
      name: "tessera_proxy_denials_total",
      help: "Requests and connections refused by policy, by deciding policy.",
      labelNames: ["direction", "policy"],
      registers,
      collect() {
        this.reset();
        for (const t of denialTallies.values()) this.inc(t.labels, t.count);
      },
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
    this.durations = new TallyHistogram(
      "tessera_proxy_request_duration_seconds",
      "Time from a request's arrival to its completion.",
      DURATION_BUCKETS,
      this.registry,
    );
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
    const slot = this.requestSeries[slotOf(r.direction, r.protocol, denied)] as Map<
      string,
      Map<string, RequestSeries>
    >;
    let byPolicy = slot.get(r.outcome);
    if (byPolicy === undefined) {
      byPolicy = new Map();
      slot.set(r.outcome, byPolicy);
    }
    let series = byPolicy.get(policy);
    if (series === undefined) {
      series = {
        requests: this.requestTally(r, policy),
        denials: denied ? this.denialTally(r, policy) : undefined,
      };
      byPolicy.set(policy, series);
    }
    series.requests.count++;
    if (series.denials) series.denials.count++;
    if (r.durationSeconds !== undefined && Number.isFinite(r.durationSeconds) && r.durationSeconds >= 0) {
      this.durationOf(r.direction, r.protocol).observe(r.durationSeconds);
    }
  }

  private requestTally(r: RequestRecord, policy: string): RequestSeries["requests"] {
    // The same labels can come from two slots (a caller that overrides `denied`): one series.
    const labels = { direction: r.direction, protocol: r.protocol, outcome: r.outcome, policy };
    const known = this.requestTallies.find(
      (t) =>
        t.labels.direction === labels.direction &&
        t.labels.protocol === labels.protocol &&
        t.labels.outcome === labels.outcome &&
        t.labels.policy === labels.policy,
    );
    if (known) return known;
    const tally = { labels, count: 0 };
    this.requestTallies.push(tally);
    return tally;
  }

  private denialTally(r: RequestRecord, policy: string): Tally<"direction" | "policy"> {
    const key = `${r.direction} ${policy}`;
    let tally = this.denialSeries.get(key);
    if (tally === undefined) {
      tally = { labels: { direction: r.direction, policy }, count: 0 };
      this.denialSeries.set(key, tally);
    }
    return tally;
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

  private durationOf(direction: Direction, protocol: ProxyProtocol): HistogramTally {
    const key = `${direction} ${protocol}`;
    let series = this.durationSeries.get(key);
    if (series === undefined) {
      series = this.durations.tally({ direction, protocol });
      this.durationSeries.set(key, series);
    }
    return series;
  }
}
