import type net from "node:net";
import type { TlsSource } from "../../spiffe/tls.js";
import { X509Source } from "../../spiffe/workload/x509source.js";
import type { AccessLog } from "./access-log.js";
import { DEFAULT_LIMITS, type HostPort, type ProxyLimits, type SidecarContext } from "./context.js";
import type { RouteTable } from "./dial.js";
import { ProxyIdentity } from "./identity.js";
import { IdleSweeper } from "./idle.js";
import { InboundListener, type InboundMapping } from "./inbound.js";
import { ProxyMetrics } from "./metrics.js";
import { type OutboundTarget, OutboundTcpListener } from "./outbound.js";
import { OutboundHttpProxy } from "./outbound-http.js";
import type { PolicySource } from "./policy-source.js";
import { type Readiness, StatusServer } from "./status-server.js";
import type { WorkloadPolicy } from "./workload-policy.js";

export interface SidecarOptions {
  readonly policies: PolicySource;
  readonly inbound: readonly InboundMapping[];
  readonly outboundHttp?: HostPort;
  readonly outboundTcp?: readonly { readonly listen: HostPort; readonly target: OutboundTarget }[];
  readonly routes?: RouteTable;
  readonly status?: HostPort;
  readonly log: AccessLog;
  readonly limits?: Partial<ProxyLimits>;
  /** Where the SVID comes from: a source to follow (tests), or a Workload API address. */
  readonly identity: { readonly source: TlsSource } | { readonly workloadApi: string | undefined };
  /** How often the policy files are checked for changes. */
  readonly reloadIntervalMs?: number;
}

export interface SidecarAddresses {
  readonly inbound: readonly net.AddressInfo[];
  readonly outboundHttp?: net.AddressInfo;
  readonly outboundTcp: readonly net.AddressInfo[];
  readonly status?: net.AddressInfo;
}

/**
 * One workload's sidecar: inbound listeners in front of the app, outbound listeners for the
 * app's calls, a status port, an identity that follows the Workload API, and policies that
 * follow their files. It refuses traffic until it has both an identity and policies.
 */
export class Sidecar {
  readonly identity = new ProxyIdentity();
  readonly metrics: ProxyMetrics;
  readonly ctx: SidecarContext;
  private readonly inbound: InboundListener[];
  private readonly outbound: (OutboundTcpListener | OutboundHttpProxy)[] = [];
  private status: StatusServer | undefined;
  private ownSource: X509Source | undefined;
  private closed = false;

  constructor(private readonly options: SidecarOptions) {
    const policy = options.policies.current ?? options.policies.load();
    const workload = `${policy.pod.namespace}/${policy.pod.workload?.name ?? policy.pod.name}`;
    this.metrics = new ProxyMetrics({ workload });
    const limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.ctx = {
      workload,
      identity: this.identity,
      metrics: this.metrics,
      log: options.log,
      limits,
      idle: new IdleSweeper(limits.idleTimeoutMs),
      policy: () => options.policies.current,
    };
    this.inbound = options.inbound.map((m) => new InboundListener(this.ctx, m));
    const routes = options.routes ?? new Map();
    for (const o of options.outboundTcp ?? [])
      this.outbound.push(new OutboundTcpListener(this.ctx, o.listen, o.target, routes));
    if (options.outboundHttp)
      this.outbound.push(new OutboundHttpProxy(this.ctx, options.outboundHttp, routes));
    options.policies.on("update", (p: WorkloadPolicy) => {
      options.log.info("policies reloaded", { workload, policies: p.cluster.policies.length });
    });
    options.policies.on("error", (err: Error & { describe?: () => string }) => {
      options.log.warn(
        `policies not reloaded, the last good ones stay in force: ${err.describe?.() ?? err.message}`,
        { workload },
      );
    });
    this.identity.on("rotated", (e: { id: string; previous?: string; notAfter: Date }) => {
      this.metrics.recordIdentityRotation();
      options.log.info(e.previous ? "identity rotated" : "identity received", {
        workload,
        id: e.id,
        notAfter: e.notAfter.toISOString(),
      });
    });
    this.identity.on("withdrawn", (err: Error) => {
      options.log.warn(`identity withdrawn, traffic refused until a new one arrives: ${err.message}`, {
        workload,
      });
    });
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.identity.ready) reasons.push("no identity from the Workload API yet");
    if (!this.options.policies.current) reasons.push("no policies loaded");
    return { ready: reasons.length === 0, reasons };
  }

  /** Starts every listener; the identity arrives in the background (traffic waits for it). */
  async start(): Promise<SidecarAddresses> {
    const policy = this.options.policies.current ?? this.options.policies.load();
    const appAddressOf = (port: number) => this.options.inbound.find((m) => m.containerPort === port)?.app;
    const inbound = await Promise.all(this.inbound.map((l) => l.listen()));
    const outboundTcp: net.AddressInfo[] = [];
    let outboundHttp: net.AddressInfo | undefined;
    for (const o of this.outbound) {
      const address = await o.listen();
      if (o instanceof OutboundHttpProxy) outboundHttp = address;
      else outboundTcp.push(address);
    }
    let status: net.AddressInfo | undefined;
    if (this.options.status) {
      this.status = new StatusServer({
        pod: policy.pod,
        appAddressOf,
        metrics: this.metrics,
        readiness: () => this.readiness(),
      });
      status = await this.status.listen(this.options.status.host, this.options.status.port);
    }
    this.options.policies.watch(this.options.reloadIntervalMs ?? 2000);
    const identity = this.options.identity;
    if ("source" in identity) this.identity.attach(identity.source);
    else void this.connectWorkloadApi(identity.workloadApi);
    return { inbound, outboundTcp, ...(outboundHttp ? { outboundHttp } : {}), ...(status ? { status } : {}) };
  }

  /** Keeps trying until the Workload API gives this sidecar an identity (fail closed meanwhile). */
  private async connectWorkloadApi(address: string | undefined): Promise<void> {
    let delay = 200;
    while (!this.closed) {
      try {
        const source = await X509Source.create({ ...(address ? { address } : {}), timeoutMs: 10_000 });
        if (this.closed) {
          await source.close();
          return;
        }
        this.ownSource = source;
        this.identity.attach(source);
        return;
      } catch (err) {
        this.options.log.warn(`no identity from the Workload API yet: ${(err as Error).message}`, {
          workload: this.ctx.workload,
        });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.options.policies.close();
    await Promise.all([...this.inbound, ...this.outbound].map((l) => l.close()));
    await this.status?.close();
    this.ctx.idle.stop();
    this.identity.detach();
    await this.ownSource?.close();
    await this.options.log.flush();
  }
}
