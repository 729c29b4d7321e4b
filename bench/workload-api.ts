/**
 * Workload API server benchmark: Tessera's agent (WorkloadApiServer: own net.Server, SO_PEERCRED,
 * unix attestation with the PID-reuse guard, Connect gRPC on node:http2) next to a baseline in
 * the same run: a bare grpc-js server on the same kind of socket sending a fixed response, with
 * no peer credentials and no attestation (test/spiffe/fake-workload-api.ts).
 *
 *   node --expose-gc dist/bench/workload-api.js [--quick] [--streams 1000] [--first 300]
 *
 * Measured:
 *   - time to first SVID for a new connection: a new WorkloadApiClient, FetchX509SVID, first
 *     X509SVIDResponse parsed (the SVID is cached by the provider), client closed; sequential,
 *     from a separate process so the client's work does not share the server's event loop;
 *   - N concurrent FetchX509SVID streams (one connection each, like N workloads) held by client
 *     processes: time from the rotation being published (StaticIdentityProvider.rotate()'s change
 *     event; for the baseline, the push) until every stream has parsed the rotated SVID (the last
 *     client process's report arriving at the server process), over several rotations;
 *   - server memory per stream: (RSS, heap) after the streams are open minus before, after GC, / N.
 *
 * Targets: first SVID p99 ≤ 10 ms; all 1,000 streams updated within 1 s of a rotation.
 */
import { type ChildProcess, fork } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as os from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { StaticIdentityProvider } from "../src/identity/agent/identity-provider.js";
import { UnixAttestor } from "../src/identity/agent/unix-attestor.js";
import { WorkloadApiServer } from "../src/identity/agent/workload-api-server.js";
import { X509Bundle } from "../src/spiffe/bundle/x509bundle.js";
import { TrustDomain } from "../src/spiffe/id.js";
import { parseX509Context, WorkloadApiClient } from "../src/spiffe/workload/client.js";
import { X509Svid } from "../src/spiffe/x509svid.js";
import { FakeWorkloadApi } from "../test/spiffe/fake-workload-api.js";
import { TestCa } from "../test/spiffe/testca.js";
import { x509Response } from "../test/spiffe/workload-fixtures.js";
import { formatCount, formatMs, median, nowMs, quantileSorted, table } from "./stats.js";

const TARGET_FIRST_P99_MS = 10;
const TARGET_ROTATION_MS = 1000;

interface Options {
  quick: boolean;
  streams: number;
  first: number;
  warmup: number;
  rotations: number;
  clientProcesses: number;
}

function parseArgs(argv: readonly string[]): Options {
  const quick = argv.includes("--quick");
  const num = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag);
    if (i < 0) return dflt;
    const v = Number(argv[i + 1]);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${flag} needs a positive integer`);
    return v;
  };
  return {
    quick,
    streams: num("--streams", 1000),
    first: num("--first", quick ? 100 : 300),
    warmup: 20,
    rotations: quick ? 2 : 3,
    clientProcesses: 2,
  };
}

// ---------------------------------------------------------------------------------------------
// Client processes

type ToChild = { type: "close" };
type FromChild =
  | { type: "first"; samples: number[] }
  | { type: "ready" }
  | { type: "rotated"; round: number }
  | { type: "error"; message: string };

function send(msg: FromChild): void {
  process.send?.(msg);
}

/** Sequential new connections: time until the first X.509 context is parsed. */
async function childFirst(address: string, n: number, warmup: number): Promise<void> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = nowMs();
    const client = new WorkloadApiClient({ address });
    await client.fetchX509Context();
    const ms = nowMs() - t0;
    await client.close();
    if (i >= warmup) samples.push(ms);
  }
  send({ type: "first", samples });
}

/**
 * The server's share: a bare node:http2 client (no gRPC library) sends FetchX509SVID on a new
 * connection and waits for the first response bytes.
 */
async function childFirstRaw(address: string, n: number, warmup: number): Promise<void> {
  const path = address.replace(/^unix:\/\//, "");
  const frame = Buffer.from([0, 0, 0, 0, 0]);
  const samples: number[] = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = nowMs();
    await new Promise<void>((resolve, reject) => {
      const session = http2.connect("http://localhost", { createConnection: () => net.connect(path) });
      session.on("error", reject);
      const req = session.request({
        ":method": "POST",
        ":path": "/SpiffeWorkloadAPI/FetchX509SVID",
        "content-type": "application/grpc",
        te: "trailers",
        "workload.spiffe.io": "true",
      });
      req.on("error", reject);
      req.once("data", () => {
        if (i >= warmup) samples.push(nowMs() - t0);
        req.close();
        session.close();
        resolve();
      });
      req.end(frame);
    });
  }
  send({ type: "first", samples });
}

/** `count` streams, one client (connection) each; reports when every stream saw round k's SVID. */
async function childStreams(address: string, count: number): Promise<void> {
  const clients: WorkloadApiClient[] = [];
  let closing = false;
  /** Per stream: the serials seen, in order. */
  const seen: string[][] = Array.from({ length: count }, () => []);
  let reported = -1;
  const minRounds = () => {
    let min = Number.POSITIVE_INFINITY;
    for (const s of seen) if (s.length < min) min = s.length;
    return min;
  };
  const check = () => {
    const rounds = minRounds() - 1;
    while (reported < rounds) {
      reported++;
      send(reported === 0 ? { type: "ready" } : { type: "rotated", round: reported });
    }
  };
  for (let i = 0; i < count; i++) {
    const client = new WorkloadApiClient({ address, backoff: { initialMs: 50, maxMs: 500 } });
    clients.push(client);
    const mine = seen[i] as string[];
    void client.watchX509Context({
      onUpdate: (ctx) => {
        const serial = ctx.svids[0]?.leaf.serialNumber ?? "";
        if (mine[mine.length - 1] !== serial) {
          mine.push(serial);
          check();
        }
      },
      onError: (err) => {
        if (!closing) send({ type: "error", message: err.message });
      },
    });
  }
  await new Promise<void>((resolve) => {
    process.on("message", (m: ToChild) => {
      if (m.type === "close") resolve();
    });
  });
  closing = true;
  await Promise.all(clients.map((c) => c.close()));
}

/**
 * `count` FetchX509SVID streams over bare node:http2 sessions (one each): counts whole gRPC
 * messages per stream, no parsing. Measures what the server alone takes to reach every stream.
 */
async function childStreamsRaw(address: string, count: number): Promise<void> {
  const path = address.replace(/^unix:\/\//, "");
  const messages = new Array<number>(count).fill(0);
  const sessions: http2.ClientHttp2Session[] = [];
  let reported = -1;
  const check = () => {
    let min = Number.POSITIVE_INFINITY;
    for (const n of messages) if (n < min) min = n;
    while (reported < min - 1) {
      reported++;
      send(reported === 0 ? { type: "ready" } : { type: "rotated", round: reported });
    }
  };
  for (let i = 0; i < count; i++) {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(path) });
    session.on("error", (err) => send({ type: "error", message: err.message }));
    sessions.push(session);
    const req = session.request({
      ":method": "POST",
      ":path": "/SpiffeWorkloadAPI/FetchX509SVID",
      "content-type": "application/grpc",
      te: "trailers",
      "workload.spiffe.io": "true",
    });
    req.on("error", () => undefined);
    let pending: Buffer = Buffer.alloc(0);
    req.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let got = 0;
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1);
        if (pending.length < 5 + len) break;
        pending = pending.subarray(5 + len);
        got++;
      }
      if (got > 0) {
        messages[i] = (messages[i] ?? 0) + got;
        check();
      }
    });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  }
  await new Promise<void>((resolve) => {
    process.on("message", (m: ToChild) => {
      if (m.type === "close") resolve();
    });
  });
  for (const s of sessions) s.destroy();
}

// ---------------------------------------------------------------------------------------------
// Parent

function spawnChild(args: string[]): ChildProcess {
  return fork(fileURLToPath(import.meta.url), ["--child", ...args], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function firstSvid(address: string, opts: Options, kind: "first" | "first-raw"): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawnChild([kind, address, String(opts.first), String(opts.warmup)]);
    child.on("message", (m: FromChild) => {
      if (m.type === "first") resolve(m.samples);
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) reject(new Error(`first-SVID client exited with ${code}`));
    });
  });
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

interface StreamResult {
  rotationMs: number[];
  rssPerStream: number;
  heapPerStream: number;
  errors: number;
}

/**
 * Opens the streams from client processes, then rotates `rounds` times; `rotate` publishes a
 * new SVID and returns the moment (nowMs) it was published.
 */
async function streams(
  address: string,
  opts: Options,
  rotate: () => Promise<number>,
  openStreams: () => number,
  kind: "streams" | "streams-raw",
): Promise<StreamResult> {
  gc();
  const before = process.memoryUsage();
  const per = Math.ceil(opts.streams / opts.clientProcesses);
  const children: ChildProcess[] = [];
  let errors = 0;
  const arrivals = new Map<number, number[]>();
  let notify: (() => void) | undefined;
  for (let i = 0; i < opts.clientProcesses; i++) {
    const count = Math.min(per, opts.streams - i * per);
    const child = spawnChild([kind, address, String(count)]);
    child.on("message", (m: FromChild) => {
      const t = nowMs();
      if (m.type === "error") errors++;
      const round = m.type === "ready" ? 0 : m.type === "rotated" ? m.round : -1;
      if (round < 0) return;
      const list = arrivals.get(round) ?? [];
      list.push(t);
      arrivals.set(round, list);
      notify?.();
    });
    children.push(child);
  }
  const all = (round: number) =>
    new Promise<number>((resolve, reject) => {
      const timeout = setTimeout(
        () => reject(new Error(`round ${round}: not every stream updated in 60 s`)),
        60_000,
      );
      const test = () => {
        const list = arrivals.get(round) ?? [];
        if (list.length === children.length) {
          clearTimeout(timeout);
          notify = undefined;
          resolve(Math.max(...list));
        }
      };
      notify = test;
      test();
    });
  await all(0);
  if (openStreams() < opts.streams) throw new Error(`only ${openStreams()} streams open`);
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const after = process.memoryUsage();
  const rotationMs: number[] = [];
  for (let round = 1; round <= opts.rotations; round++) {
    const done = all(round);
    const published = await rotate();
    rotationMs.push((await done) - published);
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const c of children) c.send({ type: "close" } satisfies ToChild);
  await Promise.all(children.map((c) => new Promise((r) => c.once("exit", r))));
  return {
    rotationMs,
    rssPerStream: (after.rss - before.rss) / opts.streams,
    heapPerStream: (after.heapUsed - before.heapUsed) / opts.streams,
    errors,
  };
}

/** Median time of parseX509Context on one response: the client's work per update. */
function measureParse(res: Parameters<typeof parseX509Context>[0], n = 200): number {
  for (let i = 0; i < 20; i++) parseX509Context(res);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = nowMs();
    parseX509Context(res);
    times.push(nowMs() - t);
  }
  return median(times);
}

function formatKiB(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const childAt = argv.indexOf("--child");
  if (childAt >= 0) {
    const [kind, address, a, b] = argv.slice(childAt + 1);
    if (kind === "first") await childFirst(address as string, Number(a), Number(b));
    else if (kind === "first-raw") await childFirstRaw(address as string, Number(a), Number(b));
    else if (kind === "streams-raw") await childStreamsRaw(address as string, Number(a));
    else await childStreams(address as string, Number(a));
    process.disconnect?.();
    return;
  }
  const opts = parseArgs(argv);
  if (!(globalThis as { gc?: unknown }).gc) {
    process.stderr.write(
      "note: run with node --expose-gc for steadier memory figures (npm run bench does)\n",
    );
  }
  const started = nowMs();
  const uid = process.geteuid?.() ?? 0;
  const td = TrustDomain.parse("example.org");
  const ca = await TestCa.create("example.org");
  const issue = async (id: { toString(): string }) => {
    const s = await ca.issueSvid(id.toString());
    return X509Svid.parseRaw(s.certificatesDer, s.privateKeyDer);
  };
  const provider = await StaticIdentityProvider.create({
    bundle: X509Bundle.fromCertificates(td, ca.authorities),
    issueX509Svid: issue,
    jwtSigner: { key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, kid: "k1" },
    entries: [{ spiffeId: "spiffe://example.org/bench", selectors: [`unix:uid:${uid}`] }],
  });
  // Registered before the server's own listener: it records the moment the change is published.
  let publishedAt = 0;
  provider.onChange(() => {
    publishedAt = nowMs();
  });
  const dir = await mkdtemp(join(tmpdir(), "tessera-bench-wlapi-"));
  const warnings: string[] = [];
  const server = new WorkloadApiServer({
    socketPath: join(dir, "agent.sock"),
    attestors: [new UnixAttestor({ warn: (w) => warnings.push(w) })],
    identities: provider,
  });
  await server.start();

  // The baseline: grpc-js, fixed response, no attestation.
  const fake = await FakeWorkloadApi.start();
  const fakeSvid = async () => {
    const s = await ca.issueSvid("spiffe://example.org/bench");
    return x509Response([
      {
        svid: { id: s.id, chainDer: s.certificatesDer, keyDer: s.privateKeyDer, leafDer: s.leaf.raw },
        bundle: Buffer.concat(ca.authorities.map((c) => c.raw)),
      },
    ]);
  };
  fake.x509.push(await fakeSvid());
  const parseMs = measureParse(await fakeSvid());

  process.stderr.write(
    `Workload API benchmark: node ${process.version}, ${opts.first} new connections, ${formatCount(opts.streams)} streams in ${opts.clientProcesses} client processes, ${opts.rotations} rotations\n`,
  );
  const firstOurs = Float64Array.from(await firstSvid(server.address, opts, "first")).sort();
  const firstBase = Float64Array.from(await firstSvid(fake.address, opts, "first")).sort();
  const rawOurs = Float64Array.from(await firstSvid(server.address, opts, "first-raw")).sort();
  const rawBase = Float64Array.from(await firstSvid(fake.address, opts, "first-raw")).sort();
  process.stderr.write("  [first SVID] done\n");

  const rotateOurs = async () => {
    await provider.rotate();
    return publishedAt;
  };
  const rotateBase = async () => {
    const next = await fakeSvid();
    const t = nowMs();
    fake.x509.push(next);
    return t;
  };
  const ours = await streams(server.address, opts, rotateOurs, () => server.openStreams, "streams");
  const base = await streams(fake.address, opts, rotateBase, () => fake.x509.active.size, "streams");
  process.stderr.write("  [streams, WorkloadApiClient] done\n");
  const oursRaw = await streams(server.address, opts, rotateOurs, () => server.openStreams, "streams-raw");
  const baseRaw = await streams(fake.address, opts, rotateBase, () => fake.x509.active.size, "streams-raw");
  process.stderr.write("  [streams, bare http2] done\n");
  await server.close();
  await fake.dispose();
  await rm(dir, { recursive: true, force: true });

  const q = (s: Float64Array, p: number) => quantileSorted(s, p);
  const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
  const rows: string[][] = [
    [
      "first SVID, new connection: p50",
      formatMs(q(firstOurs, 0.5)),
      formatMs(q(firstBase, 0.5)),
      ratio(q(firstOurs, 0.5), q(firstBase, 0.5)),
      "",
    ],
    [
      "first SVID, new connection: p99",
      formatMs(q(firstOurs, 0.99)),
      formatMs(q(firstBase, 0.99)),
      ratio(q(firstOurs, 0.99), q(firstBase, 0.99)),
      `≤ ${TARGET_FIRST_P99_MS} ms`,
    ],
    ["first SVID, new connection: max", formatMs(q(firstOurs, 1)), formatMs(q(firstBase, 1)), "", ""],
    [
      "  server's share (bare http2 client): p50",
      formatMs(q(rawOurs, 0.5)),
      formatMs(q(rawBase, 0.5)),
      ratio(q(rawOurs, 0.5), q(rawBase, 0.5)),
      "",
    ],
    [
      "  server's share (bare http2 client): p99",
      formatMs(q(rawOurs, 0.99)),
      formatMs(q(rawBase, 0.99)),
      ratio(q(rawOurs, 0.99), q(rawBase, 0.99)),
      "",
    ],
    [
      `${formatCount(opts.streams)} streams (WorkloadApiClient): all rotated, median`,
      formatMs(median(ours.rotationMs)),
      formatMs(median(base.rotationMs)),
      ratio(median(ours.rotationMs), median(base.rotationMs)),
      "",
    ],
    [
      `${formatCount(opts.streams)} streams (WorkloadApiClient): all rotated, worst`,
      formatMs(Math.max(...ours.rotationMs)),
      formatMs(Math.max(...base.rotationMs)),
      ratio(Math.max(...ours.rotationMs), Math.max(...base.rotationMs)),
      `≤ ${TARGET_ROTATION_MS} ms`,
    ],
    [
      "  each rotation",
      ours.rotationMs.map((m) => formatMs(m)).join(", "),
      base.rotationMs.map((m) => formatMs(m)).join(", "),
      "",
      "",
    ],
    [
      `${formatCount(opts.streams)} streams (bare http2): all received, median`,
      formatMs(median(oursRaw.rotationMs)),
      formatMs(median(baseRaw.rotationMs)),
      ratio(median(oursRaw.rotationMs), median(baseRaw.rotationMs)),
      "",
    ],
    [
      `${formatCount(opts.streams)} streams (bare http2): all received, worst`,
      formatMs(Math.max(...oursRaw.rotationMs)),
      formatMs(Math.max(...baseRaw.rotationMs)),
      ratio(Math.max(...oursRaw.rotationMs), Math.max(...baseRaw.rotationMs)),
      "",
    ],
    [
      "server RSS per stream (client run)",
      formatKiB(ours.rssPerStream),
      formatKiB(base.rssPerStream),
      "",
      "",
    ],
    [
      "server heap per stream (client run)",
      formatKiB(ours.heapPerStream),
      formatKiB(base.heapPerStream),
      "",
      "",
    ],
    [
      "server RSS per stream (bare run)",
      formatKiB(oursRaw.rssPerStream),
      formatKiB(baseRaw.rssPerStream),
      "",
      "",
    ],
    [
      "server heap per stream (bare run)",
      formatKiB(oursRaw.heapPerStream),
      formatKiB(baseRaw.heapPerStream),
      "",
      "",
    ],
    [
      "stream errors reported",
      String(ours.errors + oursRaw.errors),
      String(base.errors + baseRaw.errors),
      "",
      "",
    ],
  ];
  const firstOk = q(firstOurs, 0.99) <= TARGET_FIRST_P99_MS;
  const rotOk = Math.max(...ours.rotationMs) <= TARGET_ROTATION_MS;
  const lines = [
    "",
    table(["", "Tessera agent", "baseline grpc-js", "ratio", "target"], rows),
    "",
    "notes: Tessera = WorkloadApiServer with SO_PEERCRED, the unix attestor (uid/gid/names/path; the",
    "sha256 is cached per executable) and the PID-reuse guard on every call; baseline = grpc-js with a",
    "fixed response, no attestation. First SVID: a new client (channel, connection, HTTP/2 handshake,",
    `call, parse) each time, ${opts.first} after ${opts.warmup} warm-up, from one client process;`,
    "the server's share: the same with a bare node:http2 client, until the first response bytes.",
    "Rotation: from the change being published to the last client process reporting that all its",
    "streams have the new SVID (plus IPC). WorkloadApiClient parses each update (measured here:",
    `${formatMs(parseMs)} per X509SVIDResponse, median: PKCS#8 import, certificates, bundle), and all N clients share`,
    `${opts.clientProcesses} processes on the same ${os.availableParallelism()} CPU(s) as the server; "bare http2" counts whole`,
    "gRPC messages without parsing: the server's own push time. Memory: server process only, after GC,",
    "one connection per stream.",
    ...warnings.map((w) => `warning during the run: ${w}`),
    "",
    "targets:",
    `  first SVID p99 ≤ ${TARGET_FIRST_P99_MS} ms: ${formatMs(q(firstOurs, 0.99))}  ${firstOk ? "ok" : "MISSED"}`,
    `  all ${formatCount(opts.streams)} streams rotated ≤ ${TARGET_ROTATION_MS} ms: ${formatMs(Math.max(...ours.rotationMs))}  ${rotOk ? "ok" : "MISSED"}`,
    "",
    `total Workload API benchmark time ${formatMs(nowMs() - started)}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
