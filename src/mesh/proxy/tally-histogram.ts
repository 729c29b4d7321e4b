import type { Metric, Registry } from "prom-client";

/** One label set's buckets: plain numbers, counted on the request path. */
export class HistogramTally {
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

interface ExportedValue {
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
  value: number;
  metricName: string;
}

/**
 * A Prometheus histogram whose observations are plain additions, exported in the shape
 * prom-client's own Histogram exports (so the registry formats both alike). prom-client builds,
 * validates and hashes the label values on every observe(), even through a labelled child; a
 * sidecar observes once per request.
 */
export class TallyHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly tallies: HistogramTally[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    // The registry needs a name, help, type and get(): what this class has.
    registry.registerMetric(this as unknown as Metric);
  }

  /** The tally of one label set; each call makes a new series, so callers keep theirs. */
  tally(labels: Readonly<Record<string, string>>): HistogramTally {
    const t = new HistogramTally(labels, this.bounds);
    this.tallies.push(t);
    return t;
  }

  async getForPromString(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: ExportedValue[];
  }> {
    const values: ExportedValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const t of this.tallies) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += t.counts[i] as number;
        values.push({ labels: { le }, sharedLabels: { ...t.labels }, value: cumulative, metricName: bucket });
      });
      values.push(
        { labels: { le: "+Inf" }, sharedLabels: { ...t.labels }, value: t.count, metricName: bucket },
        { labels: {}, sharedLabels: { ...t.labels }, value: t.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: { ...t.labels }, value: t.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** As prom-client's get(): every value with its own and its series' labels together. */
  async get(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: unknown[];
  }> {
    const data = await this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ labels, sharedLabels, ...rest }) => ({
        ...rest,
        labels: { ...labels, ...sharedLabels },
      })),
    };
  }

  reset(): void {
    for (const t of this.tallies) {
      t.counts.fill(0);
      t.sum = 0;
      t.count = 0;
    }
  }
}
