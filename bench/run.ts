/**
 * Scale benchmark of the policy engine on synthetic clusters (bench/synthetic.ts).
 *
 *   npm run bench                       1k, 10k and 50k pods
 *   node --expose-gc dist/bench/run.js --sizes 1000,10000
 *   node --expose-gc dist/bench/run.js --quick     a fast smoke run (1k only)
 *
 * Each size runs in a fresh child process (this file forked with `--child <size>`), so peak
 * RSS is per size. For each size it measures loading, compiling and the full workload-level
 * connectivity (median of 3 runs; 1 run above 10k pods when a run takes over 20 s), decide latency on random
 * pod-to-pod flows, and the slow reference evaluator on the same flows and pairs, and prints
 * the figures next to the targets.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { clusterFromObjects } from "../src/kube/index.js";
import { parseObjects } from "../src/kube/load.js";
import type { Pod, Protocol } from "../src/kube/objects.js";
import { type ConnectivityResult, connectivity } from "../src/policy/connectivity.js";
import type { ConnectionSet } from "../src/policy/connset.js";
import { compile, type Engine } from "../src/policy/engine.js";
import type { Flow } from "../src/policy/model.js";
import { ReferenceNetpol } from "../src/policy/netpol/reference.js";
import {
  formatBytes,
  formatCount,
  formatMs,
  formatNs,
  formatRatio,
  formatShare,
  formatSize,
  gc,
  type LatencyFigures,
  median,
  medianOfRounds,
  nowMs,
  quantileSorted,
  type RoundLatency,
  table,
  timed,
  timeRound,
  timerOverheadNs,
} from "./stats.js";
import { mulberry32, pick, randInt, syntheticCluster } from "./synthetic.js";

const GiB = 1024 ** 3;
const TARGETS = {
  endToEnd10k: 2000,
  endToEnd50k: 15_000,
  rss10k: GiB,
  decideP50Ns: 5000,
};

interface Options {
  sizes: number[];
  quick: boolean;
  flows: number;
  /** Reference connectivity runs in full only when estimated under this (ms). */
  referenceBudgetMs: number;
  /** Time spent sampling reference pairs before extrapolating (ms). */
  referenceSampleMs: number;
  /** Time allowed for the reference decide on the flows (ms); fewer flows when slower. */
  referenceDecideMs: number;
}

interface SizeResult {
  size: number;
  pods: number;
  workloads: number;
  namespaces: number;
  policies: number;
  runs: number;
  warnings: Record<string, number>;
  generateMs: number;
  parseJsonMs: number;
  jsonBytes: number;
  loadMs: number;
  compileMs: number;
  connectivityMs: number;
  endToEndMs: number;
  endToEndRunsMs: number[];
  peers: number;
  workloadPeers: number;
  externalPeers: number;
  connections: number;
  classes: number;
  rssPipeline: number;
  rssEnd: number;
  heapAfterPipeline: number;
  decide: DecideStats;
  reference: {
    decideFlows: number;
    decideP50Ns: number;
    decideP99Ns: number;
    decideMeanNs: number;
    fastP50SameFlowsNs: number;
    decideMismatches: number;
    pairs: number;
    sampledPairs: number;
    sampleMs: number;
    connectivityMs: number;
    estimated: boolean;
    pairMismatches: number;
    checkedPairs: number;
  };
}

/** Figures: the median over rounds; perCall: the last round's. */
interface DecideStats extends LatencyFigures {
  flows: number;
  rounds: number;
  allowedShare: number;
  timerOverheadNs: number;
}

function parseArgs(argv: readonly string[]): Options {
  const quick = argv.includes("--quick");
  let sizes = quick ? [1000] : [1000, 10_000, 50_000];
  const at = argv.indexOf("--sizes");
  if (at >= 0) {
    const text = argv[at + 1] ?? "";
    sizes = text.split(",").map((s) => {
      const m = /^(\d+)(k?)$/i.exec(s.trim());
      if (!m) throw new Error(`--sizes: "${s}" is not a pod count (e.g. 1000,10000 or 1k,10k)`);
      return Number(m[1]) * (m[2] ? 1000 : 1);
    });
  }
  const flowsAt = argv.indexOf("--flows");
  const flows = flowsAt >= 0 ? Number(argv[flowsAt + 1]) : quick ? 50_000 : 200_000;
  return {
    sizes,
    quick,
    flows,
    referenceBudgetMs: quick ? 10_000 : 60_000,
    referenceSampleMs: quick ? 2000 : 8000,
    referenceDecideMs: quick ? 2000 : 8000,
  };
}

function maxRssBytes(): number {
  // resourceUsage().maxRSS is in kilobytes.
  return process.resourceUsage().maxRSS * 1024;
}

function log(size: number, message: string): void {
  process.stderr.write(`  [${formatSize(size)}] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Flows

const COMMON_TCP = [80, 443, 5432, 6379, 8080, 8081, 8443, 9090, 50051, 7050, 31000];

/**
 * Random pod-to-pod flows: half between two pods of one namespace (where most traffic and most
 * allow rules are), half between any two pods; mostly to a container port of the destination,
 * some to DNS and other common or random ports.
 */
function randomFlows(pods: readonly Pod[], count: number, seed: number): Flow[] {
  const rng = mulberry32(seed);
  const byNamespace = new Map<string, Pod[]>();
  for (const pod of pods) {
    const list = byNamespace.get(pod.namespace);
    if (list) list.push(pod);
    else byNamespace.set(pod.namespace, [pod]);
  }
  const flows: Flow[] = [];
  for (let i = 0; i < count; i++) {
    const src = pods[randInt(rng, pods.length)] as Pod;
    const dst =
      rng() < 0.5
        ? pick(rng, byNamespace.get(src.namespace) as Pod[])
        : (pods[randInt(rng, pods.length)] as Pod);
    const r = rng();
    let protocol: Protocol = "TCP";
    let port: number;
    if (r < 0.7 && dst.ports.length > 0) {
      const cp = pick(rng, dst.ports);
      protocol = cp.protocol;
      port = cp.port;
    } else if (r < 0.8) {
      protocol = rng() < 0.5 ? "UDP" : "TCP";
      port = 53;
    } else if (r < 0.95) {
      port = pick(rng, COMMON_TCP);
    } else {
      port = 1 + randInt(rng, 65535);
    }
    flows.push({ src: { kind: "pod", pod: src }, dst: { kind: "pod", pod: dst }, protocol, port });
  }
  return flows;
}

/**
 * decide latency: every call timed on its own (hrtime before and after, the timer's own
 * median cost subtracted), and separately batches of 1000 calls timed as a whole (no per-call
 * timer at all). One warm-up round, then `rounds` rounds; each figure is the median of rounds.
 */
function measureDecide(decide: (f: Flow) => boolean, flows: readonly Flow[], rounds: number): DecideStats {
  const n = flows.length;
  const overhead = timerOverheadNs();
  let allowed = 0;
  for (let i = 0; i < n; i++) if (decide(flows[i] as Flow)) allowed++;
  const results: RoundLatency[] = [];
  for (let round = 0; round < rounds; round++) {
    gc();
    const r = timeRound(n, n, (i) => decide(flows[i] as Flow), overhead);
    if (r.trueCount !== allowed) throw new Error("decide is not deterministic");
    results.push(r);
  }
  return {
    flows: n,
    rounds,
    allowedShare: allowed / n,
    timerOverheadNs: overhead,
    ...medianOfRounds(results),
  };
}

// ---------------------------------------------------------------------------------------------
// One size, in a child process

interface Pipeline {
  loadMs: number;
  compileMs: number;
  connectivityMs: number;
  result: ConnectivityResult;
  engine: Engine;
  compiled: ReturnType<typeof compile>;
  cluster: ReturnType<typeof clusterFromObjects>["cluster"];
  warnings: Record<string, number>;
}

function pipeline(objects: readonly object[]): Pipeline {
  const load = timed(() => clusterFromObjects(objects));
  const { cluster, diagnostics } = load.value;
  const comp = timed(() => compile(cluster, diagnostics));
  const conn = timed(() => connectivity(cluster, comp.value.engine, {}, diagnostics));
  const warnings: Record<string, number> = {};
  for (const w of diagnostics.warnings) warnings[w.code] = (warnings[w.code] ?? 0) + 1;
  return {
    loadMs: load.ms,
    compileMs: comp.ms,
    connectivityMs: conn.ms,
    result: conn.value,
    engine: comp.value.engine,
    compiled: comp.value,
    cluster,
    warnings,
  };
}

function runSize(size: number, opts: Options): SizeResult {
  const gen = timed(() => syntheticCluster({ pods: size, seed: 20240601 + size }));
  const synth = gen.value;
  log(size, `generated ${formatCount(synth.objects.length)} objects in ${formatMs(gen.ms)} (not counted)`);

  // Reading the same cluster as `kubectl get -o json` prints it: one List, parsed with positions.
  const jsonText = JSON.stringify({ apiVersion: "v1", kind: "List", items: synth.objects }, null, 2);
  const parses: number[] = [];
  for (let r = 0; r < 3; r++)
    parses.push(timed(() => parseObjects({ name: "cluster.json", text: jsonText })).ms);
  log(size, `parsed ${formatBytes(jsonText.length)} of JSON in ${formatMs(median(parses))}`);

  // load + compile + connectivity: median of 3 runs where cheap (up to 10k pods, or when the
  // first run took under 20 s).
  let runs = size <= 10_000 ? 3 : 1;
  const loads: number[] = [];
  const compiles: number[] = [];
  const conns: number[] = [];
  const totals: number[] = [];
  let last: Pipeline | undefined;
  for (let r = 0; r < runs; r++) {
    last = undefined;
    gc();
    const p = pipeline(synth.objects);
    loads.push(p.loadMs);
    compiles.push(p.compileMs);
    conns.push(p.connectivityMs);
    totals.push(p.loadMs + p.compileMs + p.connectivityMs);
    log(
      size,
      `run ${r + 1}/${runs}: load ${formatMs(p.loadMs)}, compile ${formatMs(p.compileMs)}, connectivity ${formatMs(p.connectivityMs)}`,
    );
    last = p;
    if (r === 0 && runs === 1 && totals[0] !== undefined && totals[0] < 20_000) runs = 3;
  }
  const p = last as Pipeline;
  const rssPipeline = maxRssBytes();
  gc();
  const heapAfterPipeline = process.memoryUsage().heapUsed;
  const workloadPeers = p.result.peers.filter((x) => x.kind === "workload");

  // decide latency on random pod-to-pod flows.
  const flows = randomFlows(p.cluster.pods, opts.flows, 7 + size);
  const engine = p.engine;
  const fastDecide = (f: Flow) => engine.decide(f).allowed;
  const decide = measureDecide(fastDecide, flows, opts.quick ? 3 : 5);
  log(
    size,
    `decide: p50 ${formatNs(decide.p50Ns)}, p99 ${formatNs(decide.p99Ns)}, batch mean ${formatNs(decide.batchMeanNs)} (timer overhead ${decide.timerOverheadNs} ns subtracted)`,
  );

  // Reference evaluator: decide on (a prefix of) the same flows.
  const reference = new ReferenceNetpol(p.cluster, p.compiled.networkPolicies);
  const refDecide = (f: Flow) => reference.decide(f);
  const probe = timed(() => {
    for (let i = 0; i < 200; i++) refDecide(flows[i % flows.length] as Flow);
  });
  const perRef = probe.ms / 200;
  const refFlows = Math.max(1000, Math.min(flows.length, Math.floor(opts.referenceDecideMs / perRef)));
  const refLat = new Float64Array(refFlows);
  const overhead = decide.timerOverheadNs;
  let decideMismatches = 0;
  for (let i = 0; i < refFlows; i++) {
    const f = flows[i] as Flow;
    const t0 = process.hrtime.bigint();
    const ok = refDecide(f);
    const t1 = process.hrtime.bigint();
    const d = Number(t1 - t0) - overhead;
    refLat[i] = Math.max(d, 0);
    if (ok !== fastDecide(f)) decideMismatches++;
  }
  const refMean = refLat.reduce((a, b) => a + b, 0) / refFlows;
  refLat.sort();
  const fastSame = decide.perCall.slice(0, refFlows).sort();
  log(
    size,
    `reference decide on ${formatCount(refFlows)} flows: p50 ${formatNs(quantileSorted(refLat, 0.5))}, ${decideMismatches} disagreement(s)`,
  );

  // Reference connectivity over every ordered pair of workload representatives.
  const W = workloadPeers.length;
  const pairs = W * (W - 1);
  const fastConn = new Map<string, ConnectionSet>();
  for (const c of p.result.connections) {
    if (c.src.kind === "workload" && c.dst.kind === "workload")
      fastConn.set(`${c.src.id}\0${c.dst.id}`, c.conn);
  }
  const rng = mulberry32(99 + size);
  const sample: Array<[number, number]> = [];
  const sampleAnswers: ConnectionSet[] = [];
  const sampleStart = nowMs();
  let sampleMs = 0;
  while (sample.length < pairs && (sampleMs < opts.referenceSampleMs || sample.length < 20)) {
    const i = randInt(rng, W);
    let j = randInt(rng, W - 1);
    if (j >= i) j++;
    const src = workloadPeers[i] as (typeof workloadPeers)[number];
    const dst = workloadPeers[j] as (typeof workloadPeers)[number];
    sample.push([i, j]);
    sampleAnswers.push(reference.allowed(src.endpoint, dst.endpoint));
    if (sample.length % 16 === 0) sampleMs = nowMs() - sampleStart;
    if (sample.length >= 20_000) break;
  }
  sampleMs = nowMs() - sampleStart;
  let pairMismatches = 0;
  sample.forEach(([i, j], k) => {
    const src = workloadPeers[i] as (typeof workloadPeers)[number];
    const dst = workloadPeers[j] as (typeof workloadPeers)[number];
    const fast = fastConn.get(`${src.id}\0${dst.id}`);
    const ref = sampleAnswers[k] as ConnectionSet;
    if (fast ? !fast.equals(ref) : !ref.isEmpty()) pairMismatches++;
  });
  const estimateMs = sample.length > 0 ? (sampleMs / sample.length) * pairs : 0;
  let referenceConnMs = estimateMs;
  let estimated = true;
  if (estimateMs <= opts.referenceBudgetMs) {
    const times: number[] = [];
    const repeat = estimateMs * 3 <= opts.referenceBudgetMs / 2 ? 3 : 1;
    for (let r = 0; r < repeat; r++) {
      const t = timed(() => {
        let n = 0;
        for (const src of workloadPeers) {
          for (const dst of workloadPeers) {
            if (src === dst) continue;
            if (!reference.allowed(src.endpoint, dst.endpoint).isEmpty()) n++;
          }
        }
        return n;
      });
      times.push(t.ms);
    }
    referenceConnMs = median(times);
    estimated = false;
  }
  log(
    size,
    `reference connectivity over ${formatCount(pairs)} pairs: ${formatMs(referenceConnMs)}${estimated ? ` (estimated from ${sample.length} sampled pairs)` : ""}, ${pairMismatches} disagreement(s) on ${sample.length} sampled pairs`,
  );

  return {
    size,
    pods: p.cluster.pods.length,
    workloads: p.cluster.workloads.length,
    namespaces: p.cluster.namespaces.size,
    policies: p.compiled.networkPolicies.length,
    runs,
    warnings: p.warnings,
    generateMs: gen.ms,
    parseJsonMs: median(parses),
    jsonBytes: jsonText.length,
    loadMs: median(loads),
    compileMs: median(compiles),
    connectivityMs: median(conns),
    endToEndMs: median(totals),
    endToEndRunsMs: totals,
    peers: p.result.peers.length,
    workloadPeers: W,
    externalPeers: p.result.peers.length - W,
    connections: p.result.connections.length,
    classes: p.compiled.netpol.classCount,
    rssPipeline,
    rssEnd: maxRssBytes(),
    heapAfterPipeline,
    decide: { ...decide, perCall: new Float64Array(0) },
    reference: {
      decideFlows: refFlows,
      decideP50Ns: quantileSorted(refLat, 0.5),
      decideP99Ns: quantileSorted(refLat, 0.99),
      decideMeanNs: refMean,
      fastP50SameFlowsNs: quantileSorted(fastSame, 0.5),
      decideMismatches,
      pairs,
      sampledPairs: sample.length,
      sampleMs,
      connectivityMs: referenceConnMs,
      estimated,
      pairMismatches,
      checkedPairs: sample.length,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Parent: fork one child per size, then print the table

function runChild(size: number, argv: readonly string[]): Promise<SizeResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [...argv, "--child", String(size)], {
      execArgv: process.execArgv,
      stdio: ["inherit", "inherit", "inherit", "ipc"],
    });
    let result: SizeResult | undefined;
    child.on("message", (m) => {
      result = m as SizeResult;
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (result && code === 0) resolve(result);
      else reject(new Error(`benchmark for ${size} pods failed (exit ${code ?? signal})`));
    });
  });
}

function mark(ok: boolean): string {
  return ok ? "ok" : "MISSED";
}

function report(results: readonly SizeResult[], opts: Options): string {
  const header = ["", ...results.map((r) => `${formatSize(r.size)} pods`), "target"];
  const row = (name: string, f: (r: SizeResult) => string, target = ""): string[] => [
    name,
    ...results.map(f),
    target,
  ];
  const blank = (name: string): string[] => [name, ...results.map(() => ""), ""];
  const rows: string[][] = [
    row("pods / workloads / namespaces", (r) => `${r.pods} / ${r.workloads} / ${r.namespaces}`),
    row("NetworkPolicies", (r) => formatCount(r.policies)),
    row("runs (median of)", (r) => String(r.runs)),
    row("generate objects (not counted)", (r) => formatMs(r.generateMs)),
    row(
      "parse as kubectl -o json text (not counted)",
      (r) => `${formatMs(r.parseJsonMs)} / ${formatBytes(r.jsonBytes)}`,
    ),
    blank("pipeline"),
    row("  load (clusterFromObjects)", (r) => formatMs(r.loadMs)),
    row("  compile", (r) => formatMs(r.compileMs)),
    row("  connectivity (workload level)", (r) => formatMs(r.connectivityMs)),
    row("  load+compile+connectivity", (r) => formatMs(r.endToEndMs), "≤ 2 s @10k, ≤ 15 s @50k"),
    row("  peers (workloads + external)", (r) => `${r.workloadPeers} + ${r.externalPeers}`),
    row("  allowed connections", (r) => formatCount(r.connections)),
    row("  pod classes (NetworkPolicy layer)", (r) => formatCount(r.classes)),
    row("  peak RSS after pipeline", (r) => formatBytes(r.rssPipeline), "≤ 1 GiB @10k"),
    row("  peak RSS, whole child", (r) => formatBytes(r.rssEnd)),
    blank("decide (random pod→pod flows)"),
    row("  flows × rounds", (r) => `${formatCount(r.decide.flows)} × ${r.decide.rounds}`),
    row("  allowed share", (r) => formatShare(r.decide.allowedShare)),
    row("  timer overhead (subtracted)", (r) => `${r.decide.timerOverheadNs} ns`),
    row("  p50 per call", (r) => formatNs(r.decide.p50Ns), "≤ 5 µs"),
    row("  p90 per call", (r) => formatNs(r.decide.p90Ns)),
    row("  p99 per call", (r) => formatNs(r.decide.p99Ns)),
    row("  mean, batches of 1000 (no timer)", (r) => formatNs(r.decide.batchMeanNs)),
    blank("reference evaluator (same flows / pairs)"),
    row("  decide flows", (r) => formatCount(r.reference.decideFlows)),
    row("  decide p50", (r) => formatNs(r.reference.decideP50Ns)),
    row("  decide p99", (r) => formatNs(r.reference.decideP99Ns)),
    row("  decide ratio ref/fast (p50, same flows)", (r) =>
      formatRatio(r.reference.decideP50Ns / Math.max(1, r.reference.fastP50SameFlowsNs)),
    ),
    row("  decide disagreements", (r) => `${r.reference.decideMismatches}`),
    row("  workload pairs", (r) => formatCount(r.reference.pairs)),
    row(
      "  connectivity (reference.allowed)",
      (r) => `${r.reference.estimated ? "~" : ""}${formatMs(r.reference.connectivityMs)}`,
    ),
    row(
      "  connectivity ratio ref/fast",
      (r) =>
        `${r.reference.estimated ? "~" : ""}${formatRatio(r.reference.connectivityMs / r.connectivityMs)}`,
    ),
    row(
      "  pair disagreements (sampled pairs)",
      (r) => `${r.reference.pairMismatches} / ${r.reference.checkedPairs}`,
    ),
  ];
  const lines = [
    table(header, rows),
    "",
    "notes: decide p50/p90/p99 time each call with hrtime (the median cost of an empty timer pair is",
    "subtracted); the batch mean times 1000 calls at once with no per-call timer. Flows: random pod pairs,",
    "half within one namespace. Reference connectivity covers workload→workload pairs only, while the fast",
    "figure also includes workload↔external ranges, so the connectivity ratio understates the speed-up.",
    "Peak RSS includes the generated input objects. Each size runs in its own child process.",
    "",
  ];
  for (const r of results) {
    if (r.reference.estimated) {
      lines.push(
        `~ ${formatSize(r.size)}: reference connectivity estimated from ${r.reference.sampledPairs} sampled pairs (${formatMs(r.reference.sampleMs)}), over the ${opts.referenceBudgetMs / 1000} s budget`,
      );
    }
    const warnings = Object.entries(r.warnings)
      .map(([k, v]) => `${k} ×${v}`)
      .join(", ");
    if (warnings) lines.push(`  ${formatSize(r.size)} warnings: ${warnings}`);
  }
  lines.push("", "targets:");
  for (const r of results) {
    if (r.size === 10_000) {
      lines.push(
        `  10k pods end to end ≤ 2 s: ${formatMs(r.endToEndMs)}  ${mark(r.endToEndMs <= TARGETS.endToEnd10k)}`,
      );
      lines.push(
        `  10k pods peak RSS ≤ 1 GiB: ${formatBytes(r.rssPipeline)}  ${mark(r.rssPipeline <= TARGETS.rss10k)}`,
      );
    }
    if (r.size === 50_000) {
      lines.push(
        `  50k pods end to end ≤ 15 s: ${formatMs(r.endToEndMs)}  ${mark(r.endToEndMs <= TARGETS.endToEnd50k)}`,
      );
    }
    lines.push(
      `  ${formatSize(r.size)} decide p50 ≤ 5 µs: ${formatNs(r.decide.p50Ns)}  ${mark(r.decide.p50Ns <= TARGETS.decideP50Ns)}`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  const childAt = argv.indexOf("--child");
  if (childAt >= 0) {
    const result = runSize(Number(argv[childAt + 1]), opts);
    await new Promise<void>((resolve) => process.send?.(result, () => resolve()) ?? resolve());
    return;
  }
  if (!(globalThis as { gc?: unknown }).gc) {
    process.stderr.write("note: run with node --expose-gc for steadier figures (npm run bench does)\n");
  }
  const passOn = argv.filter((a, i) => a !== "--sizes" && argv[i - 1] !== "--sizes");
  const started = nowMs();
  process.stderr.write(
    `Tessera scale benchmark: ${opts.sizes.map(formatSize).join(", ")} pods, node ${process.version}, ${opts.flows} flows\n`,
  );
  const results: SizeResult[] = [];
  for (const size of opts.sizes) {
    const t0 = nowMs();
    results.push(await runChild(size, passOn));
    process.stderr.write(`  [${formatSize(size)}] done in ${formatMs(nowMs() - t0)}\n`);
  }
  console.log(`\n${report(results, opts)}`);
  console.log(`\ntotal benchmark time ${formatMs(nowMs() - started)}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
