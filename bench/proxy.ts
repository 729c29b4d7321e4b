/**
 * The mTLS sidecar pair under load, next to a reference proxy measured in the same run.
 *
 *   node dist/bench/proxy.js [--quick] [--duration S] [--reps N] [--only a,b,c,...] [--profile DIR]
 *
 * Everything runs on loopback on this machine, the load generator included. Tools: Debian's
 * `wrk` (HTTP/1.1 load, `-t1`, keep-alive, latency percentiles from `--latency`) and `haproxy`
 * (the app and the reference pair). When either is missing the benchmark runs
 * .ci/install-bench-tools as root, and otherwise stops and names that command.
 *
 * The app, the same for every row: one haproxy process (one thread) answering every request
 * itself (`http-request return status 200 ... string ok`), on an HTTP/1.1 port and an h2c port.
 * It does far more requests per second than any pair, so it is never the bottleneck.
 *
 * Rows (32 connections, then 1 connection for the added latency):
 *   (a)     wrk → app directly: the floor.
 *   (b)     wrk → haproxy → mTLS → haproxy → app, both `mode http`, one thread each, chain
 *           verification both ways (`verify required`), the server side refusing all but GET per
 *           request (its nearest equivalent of an authorization check). No access log.
 *   (b-tcp) the same pair in `mode tcp`, for reference.
 *   (c)     wrk → Tessera sidecar (sleep) → mTLS → Tessera sidecar (httpbin) → app: STRICT
 *           PeerAuthentication and an ALLOW policy for sleep's principal and GET, decided per
 *           HTTP/1.1 request; SPIFFE IDs checked both ways; JSON access log to a file, one line
 *           per request. Each sidecar is its own node process, as two real sidecars are.
 *   (d)     the same pair on a Service port with `appProtocol: tcp`: L4 authorization once per
 *           connection.
 *   (e)     HTTP/2 (no h2load here): a node:http2 client in this process keeps 4 connections ×
 *           8 concurrent streams busy (then 1 × 1), to the app's h2c port directly, with mTLS
 *           (ALPN h2) to the server-side haproxy, and with mTLS to the httpbin sidecar's inbound
 *           listener. Both proxies reach the app over HTTP/1.1. The node client may well be the
 *           ceiling of the direct row; compare the proxied rows with each other.
 *
 * Each figure is the median over the repetitions (3; quick: 1) of a run of a few seconds
 * (3 s; quick: 1 s), after a 1 s warm-up of every row; the rows take turns within each
 * repetition so that other work on the machine hits them alike. Next to requests per second: the
 * CPU time (user + system, from /proc) each proxy process spent per request, which depends far
 * less on what else the machine runs. Targets, printed and never asserted: rps (c)/(b) ≥ 0.6,
 * (d)/(b) ≥ 0.8, p50 added over (a) at one connection ≤ 0.25 ms for (c) and (d).
 *
 * `--profile DIR` runs both sidecars with `node --cpu-prof`, keeps the profiles in DIR and prints
 * where their time went. `--role server|client` is this file's own sidecar runner (internal).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { jsonAccessLog } from "../src/mesh/proxy/access-log.js";
import type { HostPort } from "../src/mesh/proxy/context.js";
import { PolicySource } from "../src/mesh/proxy/policy-source.js";
import { Sidecar } from "../src/mesh/proxy/sidecar.js";
import { X509Bundle } from "../src/spiffe/bundle/x509bundle.js";
import { TrustDomain } from "../src/spiffe/id.js";
import { X509Svid } from "../src/spiffe/x509svid.js";
import {
  ALLOW_SLEEP_GET,
  HTTPBIN_ID,
  ManualSource,
  SLEEP_ID,
  STRICT,
  WORKLOADS,
} from "../test/mesh/proxy/fixture.js";
import { TestCa } from "../test/spiffe/testca.js";
import { formatCount, formatRatio, median, quantileSorted, table } from "./stats.js";

const execFileAsync = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(here, "..", "..");
const INSTALL_SCRIPT = join(REPO_ROOT, ".ci", "install-bench-tools");
const TRUST_DOMAIN = "cluster.local";

const TARGET_HTTP_RATIO = 0.6;
const TARGET_TCP_RATIO = 0.8;
const TARGET_ADDED_P50_MS = 0.25;

/** The L4 rule for the TCP port: the GET rule names an HTTP-only field, which a TCP port never matches. */
const ALLOW_SLEEP_TCP = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-sleep-to-tcp-echo, namespace: default }
spec:
  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
      to: [{ operation: { ports: ["9000"] } }]
`;

// ---------------------------------------------------------------------------------------------
// wrk's output

/** What one wrk run reports; times in milliseconds. */
export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly socketErrors: number;
}

export class WrkOutputError extends Error {
  constructor(problem: string, output: string) {
    super(`unexpected wrk output (${problem}):\n${output.split("\n").slice(0, 20).join("\n")}`);
  }
}

const TIME_UNIT_MS: Readonly<Record<string, number>> = { us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function timeMs(value: string, unit: string): number {
  const scale = TIME_UNIT_MS[unit];
  const n = Number(value);
  return scale === undefined || !Number.isFinite(n) ? Number.NaN : n * scale;
}

/**
 * Parses the report of `wrk --latency`. Throws WrkOutputError, quoting the output, when a figure
 * the benchmark needs is missing or not a number: a changed wrk must not print made-up figures.
 */
export function parseWrkOutput(output: string): WrkResult {
  const percentiles = new Map<number, number>();
  for (const m of output.matchAll(/^\s*(\d{2,3}(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)(us|ms|s|m|h)\s*$/gm))
    percentiles.set(Number(m[1]), timeMs(m[2] as string, m[3] as string));
  const total = /^\s*(\d+) requests in (\d+(?:\.\d+)?)(us|ms|s|m|h),/m.exec(output);
  const rate = /^Requests\/sec:\s+(\d+(?:\.\d+)?)\s*$/m.exec(output);
  const p50Ms = percentiles.get(50);
  const p99Ms = percentiles.get(99);
  if (p50Ms === undefined || p99Ms === undefined)
    throw new WrkOutputError("no 50% and 99% latency lines: was --latency given?", output);
  if (!total) throw new WrkOutputError("no 'N requests in T' line", output);
  if (!rate) throw new WrkOutputError("no 'Requests/sec:' line", output);
  const seconds = timeMs(total[2] as string, total[3] as string) / 1000;
  const result = {
    requests: Number(total[1]),
    seconds,
    rps: Number(rate[1]),
    p50Ms,
    p99Ms,
    non2xx: Number(/^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$/m.exec(output)?.[1] ?? 0),
    socketErrors: 0,
  };
  const errors = /^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$/m.exec(output);
  if (errors) result.socketErrors = errors.slice(1).reduce((sum, n) => sum + Number(n), 0);
  for (const [name, value] of Object.entries(result))
    if (!Number.isFinite(value)) throw new WrkOutputError(`${name} is not a number`, output);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Child processes and the temporary directory, removed on every way out

const children = new Set<ChildProcess>();
/** The long-running children by role, for their CPU time. */
const named = new Map<string, ChildProcess>();
let workDir: string | undefined;

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Asks a child to stop, and kills it when it has not after `graceMs`. */
async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Stops every child (the sidecars flush their access logs on SIGTERM). */
async function stopChildren(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

async function cleanUp(): Promise<void> {
  await stopChildren();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}

/** The last resort: nothing may outlive the benchmark, even after an uncaught error. */
function cleanUpNow(): void {
  for (const c of children) c.kill("SIGKILL");
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}

// ---------------------------------------------------------------------------------------------
// Tools

async function onPath(tool: string): Promise<boolean> {
  try {
    await execFileAsync("sh", ["-c", `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of ["wrk", "haproxy"]) if (!(await onPath(tool))) missing.push(tool);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${missing.join(" and ")} not found: install them with 'sudo ${INSTALL_SCRIPT}' (Debian packages wrk, haproxy)`,
    );
  }
  process.stdout.write(`installing ${missing.join(", ")} with ${INSTALL_SCRIPT}\n`);
  await execFileAsync(INSTALL_SCRIPT, [], { timeout: 600_000 });
}

// ---------------------------------------------------------------------------------------------
// Ports, haproxy and the sidecar processes

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolvePromise(true);
    });
    socket.once("error", () => resolvePromise(false));
  });
}

/** Starts `haproxy -f cfg -db` and waits until every port of `ports` accepts connections. */
async function startHaproxy(name: string, config: string, ports: readonly number[]): Promise<void> {
  const dir = workDir as string;
  const file = join(dir, `haproxy-${name}.cfg`);
  writeFileSync(file, config);
  const child = track(spawn("haproxy", ["-f", file, "-db"], { stdio: ["ignore", "ignore", "pipe"] }));
  named.set(`haproxy-${name}`, child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const deadline = Date.now() + 10_000;
  for (const port of ports) {
    while (!(await connects(port))) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`haproxy (${name}) did not start listening on ${port}:\n${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const HAPROXY_COMMON = `global
  nbthread 1
  maxconn 4000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;

interface HaproxyPorts {
  appHttp: number;
  appH2c: number;
  /** Client-side plaintext entries. */
  pairHttp: number;
  pairTcp: number;
  /** Server-side mTLS listeners. */
  inboundHttp: number;
  inboundTcp: number;
}

function appConfig(p: HaproxyPorts): string {
  return `${HAPROXY_COMMON}
frontend app
  mode http
  bind 127.0.0.1:${p.appHttp}
  bind 127.0.0.1:${p.appH2c} proto h2
  http-request return status 200 content-type text/plain string ok
`;
}

function clientSideConfig(p: HaproxyPorts, dir: string): string {
  const tlsToServer = `ssl crt ${join(dir, "client.pem")} ca-file ${join(dir, "ca.pem")} verify required`;
  return `${HAPROXY_COMMON}
frontend out_http
  mode http
  bind 127.0.0.1:${p.pairHttp}
  default_backend to_server_http
backend to_server_http
  mode http
  server s 127.0.0.1:${p.inboundHttp} ${tlsToServer}
frontend out_tcp
  mode tcp
  bind 127.0.0.1:${p.pairTcp}
  default_backend to_server_tcp
backend to_server_tcp
  mode tcp
  server s 127.0.0.1:${p.inboundTcp} ${tlsToServer}
`;
}

function serverSideConfig(p: HaproxyPorts, dir: string): string {
  const tlsFromClient = `ssl crt ${join(dir, "server.pem")} ca-file ${join(dir, "ca.pem")} verify required`;
  return `${HAPROXY_COMMON}
frontend in_http
  mode http
  bind 127.0.0.1:${p.inboundHttp} ${tlsFromClient} alpn h2,http/1.1
  http-request deny unless METH_GET
  default_backend app_http
backend app_http
  mode http
  server app 127.0.0.1:${p.appHttp}
frontend in_tcp
  mode tcp
  bind 127.0.0.1:${p.inboundTcp} ${tlsFromClient}
  default_backend app_tcp
backend app_tcp
  mode tcp
  server app 127.0.0.1:${p.appHttp}
`;
}

/** Where a sidecar process listens, as it reports on its first line of output. */
interface SidecarPorts {
  readonly inbound: readonly number[];
  readonly outboundTcp: readonly number[];
}

async function startSidecarProcess(
  role: "server" | "client",
  args: readonly string[],
  profileDir: string | undefined,
): Promise<SidecarPorts> {
  const nodeFlags = profileDir
    ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${role}-sidecar.cpuprofile`]
    : [];
  const child = track(
    spawn(process.execPath, [...nodeFlags, fileURLToPath(import.meta.url), "--role", role, ...args], {
      // stdin stays open for the child's lifetime: its end tells the sidecar the benchmark is gone.
      stdio: ["pipe", "pipe", "pipe"],
    }),
  );
  named.set(`sidecar-${role}`, child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolvePromise, reject) => {
    let stdout = "";
    const timer = setTimeout(() => fail("no ready line within 15 s"), 15_000);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`the ${role} sidecar did not start (${why}):\n${stderr.trim()}`));
    };
    child.once("exit", (code) => fail(`exited with ${code}`));
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
      const nl = stdout.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      child.once("exit", () => children.delete(child));
      try {
        resolvePromise(JSON.parse(stdout.slice(0, nl)) as SidecarPorts);
      } catch {
        reject(new Error(`the ${role} sidecar reported ${JSON.stringify(stdout.slice(0, nl))}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The sidecar runner (`--role server|client`): one sidecar per process, as in production

function flag(args: readonly string[], name: string): string {
  const i = args.indexOf(name);
  const value = i >= 0 ? args[i + 1] : undefined;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
}

function loopback(port: number): HostPort {
  return { host: "127.0.0.1", port };
}

async function runSidecar(role: string, args: readonly string[]): Promise<void> {
  if (role !== "server" && role !== "client") throw new Error(`--role ${role}: expected server or client`);
  const dir = flag(args, "--dir");
  const bundle = X509Bundle.parse(TrustDomain.parse(TRUST_DOMAIN), readFileSync(join(dir, "ca.pem")));
  const pem = readFileSync(join(dir, `${role}.pem`));
  const source = new ManualSource(X509Svid.parse(pem, pem), [bundle]);
  const log = jsonAccessLog(join(dir, `${role}-access.log`));
  const manifests = join(dir, "manifests");
  const any = loopback(0);
  const sidecar =
    role === "server"
      ? new Sidecar({
          policies: new PolicySource([manifests], "default/httpbin"),
          inbound: [
            { containerPort: 80, listen: any, app: loopback(Number(flag(args, "--app-port"))) },
            { containerPort: 9000, listen: any, app: loopback(Number(flag(args, "--app-port"))) },
          ],
          log,
          identity: { source },
          reloadIntervalMs: 60_000,
        })
      : new Sidecar({
          policies: new PolicySource([manifests], "default/sleep"),
          inbound: [],
          outboundTcp: [
            { listen: any, target: { kind: "mapped", host: "httpbin.default", port: 8000 } },
            { listen: any, target: { kind: "mapped", host: "httpbin.default", port: 9000 } },
          ],
          routes: new Map([
            ["httpbin.default:8000", loopback(Number(flag(args, "--http-route")))],
            ["httpbin.default:9000", loopback(Number(flag(args, "--tcp-route")))],
          ]),
          log,
          identity: { source },
          reloadIntervalMs: 60_000,
        });
  const addresses = await sidecar.start();
  const ports: SidecarPorts = {
    inbound: addresses.inbound.map((a) => a.port),
    outboundTcp: addresses.outboundTcp.map((a) => a.port),
  };
  process.stdout.write(`${JSON.stringify(ports)}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Listeners close once their connections are gone; a stuck one must not keep the log unwritten.
    void Promise.race([sidecar.close(), new Promise((r) => setTimeout(r, 3000))])
      .then(() => log.flush())
      .finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.stdin.once("end", stop);
  process.stdin.once("error", stop);
  process.stdin.resume();
}

// ---------------------------------------------------------------------------------------------
// CPU time of the proxies

/** User and system CPU time of a process so far, in ms; undefined where /proc is not there. */
interface CpuTime {
  readonly userMs: number;
  readonly sysMs: number;
}

/** Linux reports these times in USER_HZ ticks, 100 per second on every architecture node runs on. */
const MS_PER_TICK = 10;

function cpuTime(pid: number | undefined): CpuTime | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const user = Number(fields[11]);
    const sys = Number(fields[12]);
    if (!Number.isFinite(user) || !Number.isFinite(sys)) return undefined;
    return { userMs: user * MS_PER_TICK, sysMs: sys * MS_PER_TICK };
  } catch {
    return undefined;
  }
}

/** The CPU each named process spent while `run` ran (undefined for one that cannot be read). */
async function withCpu<T>(
  names: readonly string[],
  run: () => Promise<T>,
): Promise<{ value: T; cpu: (CpuTime | undefined)[] }> {
  const pids = names.map((n) => named.get(n)?.pid);
  const before = pids.map(cpuTime);
  const value = await run();
  const after = pids.map(cpuTime);
  const cpu = pids.map((_, i) => {
    const b = before[i];
    const a = after[i];
    return a && b ? { userMs: a.userMs - b.userMs, sysMs: a.sysMs - b.sysMs } : undefined;
  });
  return { value, cpu };
}

// ---------------------------------------------------------------------------------------------
// Load

async function wrk(port: number, connections: number, seconds: number): Promise<WrkResult> {
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", `http://127.0.0.1:${port}/get`];
  const stdout = await new Promise<string>((resolvePromise, reject) => {
    // Tracked like the other children, so an interrupted benchmark leaves no load behind.
    track(
      execFile("wrk", args, { timeout: (seconds + 30) * 1000 }, (err, out, errOut) => {
        if (err) reject(new Error(`wrk ${args.join(" ")} failed: ${err.message}\n${errOut}`));
        else resolvePromise(out);
      }),
    );
  });
  return parseWrkOutput(stdout);
}

/** One measurement: wrk's or the HTTP/2 loop's. */
interface LoadResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Responses that were not 200 plus socket errors. */
  readonly errors: number;
}

interface H2Target {
  readonly url: string;
  readonly tls?: http2.SecureClientSessionOptions;
}

function openSession(target: H2Target): Promise<http2.ClientHttp2Session> {
  return new Promise((resolvePromise, reject) => {
    const session = http2.connect(target.url, target.tls ?? {});
    session.once("error", reject);
    session.once("connect", () => {
      session.off("error", reject);
      session.on("error", () => undefined);
      resolvePromise(session);
    });
  });
}

/**
 * HTTP/2 load from this process: `connections` sessions, each with `streams` requests always in
 * flight (a new one as soon as one ends), for `seconds`. Latency: request sent to response end.
 */
async function h2Load(
  target: H2Target,
  connections: number,
  streams: number,
  seconds: number,
): Promise<LoadResult> {
  const sessions = await Promise.all(Array.from({ length: connections }, () => openSession(target)));
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const worker = (session: http2.ClientHttp2Session) =>
    new Promise<void>((done) => {
      const next = () => {
        if (performance.now() >= deadline || session.destroyed) {
          done();
          return;
        }
        const t0 = performance.now();
        const req = session.request({ ":method": "GET", ":path": "/get" }, { endStream: true });
        let status = 0;
        req.on("response", (headers) => {
          status = Number(headers[":status"]);
        });
        req.resume();
        req.once("end", () => {
          latencies.push(performance.now() - t0);
          if (status !== 200) errors++;
          next();
        });
        req.once("error", () => {
          errors++;
          setImmediate(next);
        });
      };
      next();
    });
  await Promise.all(sessions.flatMap((s) => Array.from({ length: streams }, () => worker(s))));
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(sessions.map((s) => new Promise<void>((r) => s.close(() => r()))));
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50Ms: quantileSorted(sorted, 0.5),
    p99Ms: quantileSorted(sorted, 0.99),
    errors,
  };
}

/** One GET or POST through a port; the status, to check the set-up before measuring. */
function probe(port: number, method: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path: "/get", agent: false, timeout: 5000 },
      (res) => {
        res.resume();
        res.once("end", () => resolvePromise(res.statusCode ?? 0));
      },
    );
    req.once("timeout", () => req.destroy(new Error(`no answer on ${port} within 5 s`)));
    req.once("error", reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// The run

interface Options {
  quick: boolean;
  seconds: number;
  reps: number;
  only: Set<string> | undefined;
  profileDir: string | undefined;
}

function parseOptions(args: readonly string[]): Options {
  const quick = args.includes("--quick");
  const number = (name: string, fallback: number) => {
    if (!args.includes(name)) return fallback;
    const n = Number(flag(args, name));
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a whole number ≥ 1`);
    return n;
  };
  const only = args.includes("--only") ? new Set(flag(args, "--only").split(",")) : undefined;
  for (const row of only ?? [])
    if (!ROW_KEYS.includes(row)) throw new Error(`--only ${row}: rows are ${ROW_KEYS.join(", ")}`);
  return {
    quick,
    seconds: number("--duration", quick ? 1 : 3),
    reps: number("--reps", quick ? 1 : 3),
    only,
    profileDir: args.includes("--profile") ? resolve(flag(args, "--profile")) : undefined,
  };
}

interface Proxies {
  readonly client?: string;
  readonly server?: string;
}

/** A measurement and the CPU the proxies spent on it, per request. */
interface Measured extends LoadResult {
  readonly clientCpuUs: number | undefined;
  readonly serverCpuUs: number | undefined;
  /** The kernel's share of each side's CPU time. */
  readonly clientSysShare: number | undefined;
  readonly serverSysShare: number | undefined;
}

interface Row {
  readonly key: string;
  readonly label: string;
  /** The proxy processes on the path, whose CPU time is counted. */
  readonly proxies: Proxies;
  readonly run: (connections: number, seconds: number) => Promise<LoadResult>;
}

const ROW_KEYS = ["a", "b", "b-tcp", "c", "d", "e-direct", "e-haproxy", "e-tessera"];

function wrkRow(key: string, label: string, port: number, proxies: Proxies): Row {
  return {
    key,
    label,
    proxies,
    run: async (connections, seconds) => {
      const r = await wrk(port, connections, seconds);
      return { ...r, errors: r.non2xx + r.socketErrors };
    },
  };
}

function h2Row(key: string, label: string, target: H2Target, proxies: Proxies): Row {
  return {
    key,
    label,
    proxies,
    // 32 concurrent requests as 4 connections × 8 streams; one connection × one stream for latency.
    run: (connections, seconds) =>
      connections === 1 ? h2Load(target, 1, 1, seconds) : h2Load(target, 4, connections / 4, seconds),
  };
}

/** Counts the access log's request lines by protocol and outcome. */
function countAccessLines(file: string): Map<string, number> {
  const counts = new Map<string, number>();
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return counts;
  }
  for (const line of text.split("\n")) {
    if (!line.includes('"type":"access"')) continue;
    const record = JSON.parse(line) as { protocol?: string; outcome?: string };
    const key = `${record.protocol}/${record.outcome}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function ms(value: number | undefined): string {
  return value === undefined || Number.isNaN(value) ? "-" : `${value.toFixed(3)} ms`;
}

/** CPU per request and the kernel's share of it: `45.0 µs (38% sys)`. */
function cpuCell(us: number | undefined, sysShare: number | undefined): string {
  if (us === undefined || Number.isNaN(us)) return "-";
  return `${us.toFixed(1)} µs${sysShare === undefined ? "" : ` (${(100 * sysShare).toFixed(0)}% sys)`}`;
}

/** Runs a row and charges the proxies' CPU time to its requests. */
async function measure(row: Row, connections: number, seconds: number): Promise<Measured> {
  const names = [row.proxies.client, row.proxies.server];
  const { value, cpu } = await withCpu(
    names.filter((n) => n !== undefined),
    () => row.run(connections, seconds),
  );
  const [client, server] = row.proxies.client ? cpu : [undefined, cpu[0]];
  const perRequest = (c: CpuTime | undefined) =>
    c && value.requests > 0 ? ((c.userMs + c.sysMs) * 1000) / value.requests : undefined;
  const sysShare = (c: CpuTime | undefined) =>
    c && c.userMs + c.sysMs > 0 ? c.sysMs / (c.userMs + c.sysMs) : undefined;
  return {
    ...value,
    clientCpuUs: perRequest(client),
    serverCpuUs: perRequest(server),
    clientSysShare: sysShare(client),
    serverSysShare: sysShare(server),
  };
}

function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? "-" : ok ? "PASS" : "MISS";
}

async function bench(options: Options): Promise<void> {
  const t0 = Date.now();
  await ensureTools();
  workDir = mkdtempSync(join(tmpdir(), "tessera-bench-proxy-"));
  const dir = workDir;
  if (options.profileDir) mkdirSync(options.profileDir, { recursive: true });

  // One CA, two SVIDs: the same certificates for haproxy and for Tessera (haproxy wants the
  // certificate and its key in one PEM file; X509Svid.parse reads the same file).
  const ca = await TestCa.create(TRUST_DOMAIN);
  const server = await ca.issueSvid(HTTPBIN_ID);
  const client = await ca.issueSvid(SLEEP_ID);
  writeFileSync(join(dir, "ca.pem"), ca.certificate.toString());
  writeFileSync(join(dir, "server.pem"), server.certificatesPem + server.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(dir, "client.pem"), client.certificatesPem + client.privateKeyPem, { mode: 0o600 });
  mkdirSync(join(dir, "manifests"));
  writeFileSync(join(dir, "manifests", "workloads.yaml"), WORKLOADS);
  writeFileSync(
    join(dir, "manifests", "policies.yaml"),
    [STRICT, ALLOW_SLEEP_GET, ALLOW_SLEEP_TCP].join("\n---\n"),
  );

  const ports: HaproxyPorts = {
    appHttp: await freePort(),
    appH2c: await freePort(),
    pairHttp: await freePort(),
    pairTcp: await freePort(),
    inboundHttp: await freePort(),
    inboundTcp: await freePort(),
  };
  await startHaproxy("app", appConfig(ports), [ports.appHttp, ports.appH2c]);
  await startHaproxy("server", serverSideConfig(ports, dir), [ports.inboundHttp, ports.inboundTcp]);
  await startHaproxy("client", clientSideConfig(ports, dir), [ports.pairHttp, ports.pairTcp]);
  const serverSidecar = await startSidecarProcess(
    "server",
    ["--dir", dir, "--app-port", String(ports.appHttp)],
    options.profileDir,
  );
  const [tesseraInboundHttp, tesseraInboundTcp] = serverSidecar.inbound as [number, number];
  const clientSidecar = await startSidecarProcess(
    "client",
    ["--dir", dir, "--http-route", String(tesseraInboundHttp), "--tcp-route", String(tesseraInboundTcp)],
    options.profileDir,
  );
  const [tesseraHttp, tesseraTcp] = clientSidecar.outboundTcp as [number, number];

  // Every path answers, and the Tessera pair really decides per request: a POST is refused.
  const setUpProbes = [
    ["app", ports.appHttp, "GET", 200],
    ["haproxy pair", ports.pairHttp, "GET", 200],
    ["haproxy pair, tcp", ports.pairTcp, "GET", 200],
    ["Tessera pair", tesseraHttp, "GET", 200],
    ["Tessera pair, a POST the policy does not allow", tesseraHttp, "POST", 403],
    ["Tessera pair, tcp", tesseraTcp, "GET", 200],
  ] as const;
  for (const [what, port, method, expected] of setUpProbes) {
    const status = await probe(port, method);
    if (status !== expected)
      throw new Error(`set-up check failed: ${what} answered ${status}, not ${expected}`);
  }

  const caPem = readFileSync(join(dir, "ca.pem"));
  const clientPem = readFileSync(join(dir, "client.pem"));
  const h2Tls = (expectedId: string): http2.SecureClientSessionOptions => ({
    ca: caPem,
    cert: clientPem,
    key: clientPem,
    ALPNProtocols: ["h2"],
    // SVIDs carry a SPIFFE ID, not a host name: the server is checked by its ID instead.
    checkServerIdentity: (_host, cert) =>
      (cert.subjectaltname ?? "").split(", ").includes(`URI:${expectedId}`)
        ? undefined
        : new Error(`the server is not ${expectedId}`),
  });

  const haproxyPair = { client: "haproxy-client", server: "haproxy-server" };
  const tesseraPair = { client: "sidecar-client", server: "sidecar-server" };
  const rows: Row[] = [
    wrkRow("a", "(a) wrk → app", ports.appHttp, {}),
    wrkRow("b", "(b) haproxy mTLS pair, mode http", ports.pairHttp, haproxyPair),
    wrkRow("b-tcp", "(b-tcp) haproxy mTLS pair, mode tcp", ports.pairTcp, haproxyPair),
    wrkRow("c", "(c) Tessera pair, HTTP/1.1, L7 policy per request", tesseraHttp, tesseraPair),
    wrkRow("d", "(d) Tessera pair, appProtocol tcp, L4 policy per connection", tesseraTcp, tesseraPair),
    h2Row("e-direct", "(e) h2 client → app (h2c)", { url: `http://127.0.0.1:${ports.appH2c}` }, {}),
    h2Row(
      "e-haproxy",
      "(e) h2 client, mTLS → haproxy inbound → app",
      { url: `https://127.0.0.1:${ports.inboundHttp}`, tls: h2Tls(HTTPBIN_ID) },
      { server: haproxyPair.server },
    ),
    h2Row(
      "e-tessera",
      "(e) h2 client, mTLS → Tessera inbound → app",
      { url: `https://127.0.0.1:${tesseraInboundHttp}`, tls: h2Tls(HTTPBIN_ID) },
      { server: tesseraPair.server },
    ),
  ].filter((r) => !options.only || options.only.has(r.key));

  const CONNECTIONS = 32;
  const results = new Map<string, { many: Measured[]; one: Measured[] }>();
  const sent = new Map<string, number>();
  const count = (key: string, r: LoadResult) => sent.set(key, (sent.get(key) ?? 0) + r.requests);
  process.stdout.write(
    `proxy benchmark: ${options.reps} × ${options.seconds} s per row and connection count, after a 1 s warm-up; ` +
      `${availableParallelism()} CPUs shared by the load generator, the proxies and the app; ${loadAverage()}\n`,
  );
  for (const row of rows) count(row.key, await row.run(CONNECTIONS, 1));
  for (let rep = 0; rep < options.reps; rep++) {
    for (const row of rows) {
      const entry = results.get(row.key) ?? { many: [], one: [] };
      results.set(row.key, entry);
      const many = await measure(row, CONNECTIONS, options.seconds);
      count(row.key, many);
      entry.many.push(many);
      const one = await measure(row, 1, options.seconds);
      count(row.key, one);
      entry.one.push(one);
      const errors = many.errors + one.errors;
      if (errors > 0)
        process.stdout.write(`  warning: ${row.label}: ${errors} non-200 responses or socket errors\n`);
    }
    process.stdout.write(`  repetition ${rep + 1}/${options.reps} done\n`);
  }

  // Stop the sidecars first: their access logs are complete once they have exited.
  await stopChildren();
  const serverLines = countAccessLines(join(dir, "server-access.log"));
  const clientLines = countAccessLines(join(dir, "client-access.log"));

  const figure = (key: string, which: "many" | "one", pick: (r: Measured) => number | undefined) => {
    const values = (results.get(key)?.[which] ?? []).map(pick).filter((v) => v !== undefined);
    return values.length > 0 ? median(values) : undefined;
  };
  const rps = (key: string) => figure(key, "many", (r) => r.rps);
  const p50One = (key: string) => figure(key, "one", (r) => r.p50Ms);
  const baseP50 = p50One("a");
  const basePerKind = (key: string) => (key.startsWith("e-") ? p50One("e-direct") : baseP50);

  const out: string[] = [];
  out.push(
    `\nThroughput and latency, ${CONNECTIONS} connections (HTTP/2: 4 connections × 8 streams), median of ${options.reps}`,
  );
  out.push(
    table(
      ["configuration", "req/s", "p50", "p99", "req/s vs (a)", "CPU/req client side", "server side"],
      rows.map((r) => {
        const base = r.key.startsWith("e-") ? rps("e-direct") : rps("a");
        const value = rps(r.key);
        return [
          r.label,
          formatCount(value === undefined ? undefined : Math.round(value)),
          ms(figure(r.key, "many", (x) => x.p50Ms)),
          ms(figure(r.key, "many", (x) => x.p99Ms)),
          value !== undefined && base !== undefined ? formatRatio(value / base) : "-",
          cpuCell(
            figure(r.key, "many", (x) => x.clientCpuUs),
            figure(r.key, "many", (x) => x.clientSysShare),
          ),
          cpuCell(
            figure(r.key, "many", (x) => x.serverCpuUs),
            figure(r.key, "many", (x) => x.serverSysShare),
          ),
        ];
      }),
    ),
  );
  out.push(`\nLatency at one connection (HTTP/2: one stream), median of ${options.reps}`);
  out.push(
    table(
      ["configuration", "req/s", "p50", "p99", "p50 added over the direct row"],
      rows.map((r) => {
        const p50 = p50One(r.key);
        const base = basePerKind(r.key);
        const added = p50 !== undefined && base !== undefined && !r.key.endsWith("direct") && r.key !== "a";
        const value = figure(r.key, "one", (x) => x.rps);
        return [
          r.label,
          formatCount(value === undefined ? undefined : Math.round(value)),
          ms(p50),
          ms(figure(r.key, "one", (x) => x.p99Ms)),
          added ? ms((p50 as number) - (base as number)) : "-",
        ];
      }),
    ),
  );

  // The rows of one repetition run minutes apart at most, those of different repetitions further:
  // a ratio per repetition, then their median, keeps slow drifts of the machine out of it.
  const pairedRatios = (a: string, b: string): number[] => {
    const xs = results.get(a)?.many ?? [];
    const ys = results.get(b)?.many ?? [];
    const out: number[] = [];
    for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
      const x = xs[i]?.rps;
      const y = ys[i]?.rps;
      if (x !== undefined && y !== undefined && y > 0) out.push(x / y);
    }
    return out;
  };
  const ratio = (a: string, b: string) => {
    const r = pairedRatios(a, b);
    return r.length > 0 ? median(r) : undefined;
  };
  const ratioText = (a: string, b: string) => {
    const r = pairedRatios(a, b);
    if (r.length === 0) return "-";
    const range = r.length > 1 ? ` (${Math.min(...r).toFixed(2)}-${Math.max(...r).toFixed(2)})` : "";
    return `${(median(r) as number).toFixed(2)}×${range}`;
  };
  const added = (key: string) => {
    const p = p50One(key);
    return p !== undefined && baseP50 !== undefined ? p - baseP50 : undefined;
  };
  const targetRows: string[][] = [];
  const targetRow = (what: string, value: number | undefined, shown: string, target: string, ok: boolean) =>
    targetRows.push([
      what,
      value === undefined ? "-" : shown,
      target,
      verdict(value === undefined ? undefined : ok),
    ]);
  const cb = ratio("c", "b");
  const db = ratio("d", "b");
  targetRow(
    "req/s (c)/(b), median of per-repetition ratios (range)",
    cb,
    ratioText("c", "b"),
    `≥ ${TARGET_HTTP_RATIO}×`,
    (cb ?? 0) >= TARGET_HTTP_RATIO,
  );
  targetRow(
    "req/s (d)/(b), same",
    db,
    ratioText("d", "b"),
    `≥ ${TARGET_TCP_RATIO}×`,
    (db ?? 0) >= TARGET_TCP_RATIO,
  );
  const dbt = ratio("d", "b-tcp");
  targetRows.push([
    "req/s (d)/(b-tcp), for reference",
    dbt === undefined ? "-" : ratioText("d", "b-tcp"),
    "",
    "",
  ]);
  for (const key of ["b", "c", "d"]) {
    const a = added(key);
    const isTarget = key !== "b";
    targetRows.push([
      `p50 added at one connection, (${key})`,
      ms(a),
      isTarget ? `≤ ${TARGET_ADDED_P50_MS} ms` : "",
      isTarget ? verdict(a === undefined ? undefined : a <= TARGET_ADDED_P50_MS) : "",
    ]);
  }
  // CPU per request hardly depends on what else runs on the machine, unlike req/s.
  // A row without a client-side proxy adds none; one whose client proxy's CPU was not read has no figure.
  const pairCpu = (key: string) => {
    const hasClient = rows.find((r) => r.key === key)?.proxies.client !== undefined;
    const c = hasClient ? figure(key, "many", (x) => x.clientCpuUs) : 0;
    const sv = figure(key, "many", (x) => x.serverCpuUs);
    return sv === undefined || c === undefined ? undefined : c + sv;
  };
  for (const [ours, theirs] of [
    ["c", "b"],
    ["d", "b-tcp"],
    ["e-tessera", "e-haproxy"],
  ] as const) {
    const x = pairCpu(ours);
    const y = pairCpu(theirs);
    targetRows.push([
      `proxy CPU per request, (${ours}) ÷ (${theirs})`,
      x === undefined || y === undefined
        ? "-"
        : `${(x / y).toFixed(2)}× (${x.toFixed(1)} vs ${y.toFixed(1)} µs)`,
      "",
      "",
    ]);
  }
  const eh = ratio("e-tessera", "e-haproxy");
  targetRows.push([
    "HTTP/2 req/s Tessera/haproxy inbound",
    eh === undefined ? "-" : ratioText("e-tessera", "e-haproxy"),
    "",
    "",
  ]);
  out.push("\nTargets (printed, not asserted)");
  out.push(table(["figure", "value", "target", "verdict"], targetRows));

  // Sanity: one access log line per request the server sidecar forwarded.
  const httpLines = [...serverLines].filter(([k]) => k.startsWith("http/")).reduce((s, [, n]) => s + n, 0);
  const h2Lines = [...serverLines].filter(([k]) => k.startsWith("http2/")).reduce((s, [, n]) => s + n, 0);
  const tcpLines = [...serverLines].filter(([k]) => k.startsWith("tcp/")).reduce((s, [, n]) => s + n, 0);
  const outboundLines = [...clientLines.values()].reduce((s, n) => s + n, 0);
  out.push("\nAccess logs (JSON lines, written to files by the sidecar processes)");
  out.push(
    `  httpbin sidecar: ${formatCount(httpLines)} HTTP/1.1 request lines for ${formatCount(sent.get("c") ?? 0)} requests wrk completed through (c) (+${setUpProbes.filter(([, port]) => port === tesseraHttp).length} set-up probes); ` +
      `${formatCount(h2Lines)} HTTP/2 lines for ${formatCount(sent.get("e-tessera") ?? 0)} requests; ${formatCount(tcpLines)} TCP connection lines`,
  );
  out.push(`  sleep sidecar: ${formatCount(outboundLines)} outbound connection lines`);
  out.push(
    `  by outcome: ${[...serverLines]
      .sort()
      .map(([k, n]) => `${k} ${formatCount(n)}`)
      .join(", ")}`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
  if (options.profileDir) printProfiles(options.profileDir);
  process.stdout.write(`\n${loadAverage()} at the end (other work on this machine skews every row alike)\n`);
  process.stdout.write(`\ntotal proxy benchmark time ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

// ---------------------------------------------------------------------------------------------
// CPU profiles of the sidecars (--profile)

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

type CallFrame = CpuProfile["nodes"][number]["callFrame"];

function frameName(frame: CallFrame): string {
  const where = frame.url ? `${basename(frame.url)}:${frame.lineNumber + 1}` : "";
  return `${frame.functionName || "(anonymous)"} ${where}`.trim();
}

function areaOf(frame: CallFrame): string {
  if (frame.url.includes("/src/mesh/")) return "Tessera proxy";
  if (frame.url.includes("/src/")) return "Tessera other";
  if (frame.url.includes("node_modules")) return "dependencies";
  if (frame.url.startsWith("node:")) return "node internals (JS)";
  return frame.functionName.startsWith("(") ? frame.functionName : "native";
}

/**
 * Where each sidecar's time went: self time by area and by function, and the inclusive time of
 * Tessera's and its dependencies' functions (what a change there could save at most).
 */
function printProfiles(profileDir: string): void {
  for (const file of readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"))) {
    const profile = JSON.parse(readFileSync(join(profileDir, file), "utf8")) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parentOf = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
    const self = new Map<string, number>();
    const inclusive = new Map<string, number>();
    const areas = new Map<string, number>();
    const add = (map: Map<string, number>, key: string, dt: number) => map.set(key, (map.get(key) ?? 0) + dt);
    let total = 0;
    profile.samples.forEach((id, i) => {
      const frame = byId.get(id)?.callFrame;
      const dt = profile.timeDeltas[i] ?? 0;
      if (!frame || frame.functionName === "(idle)") return;
      total += dt;
      add(self, frameName(frame), dt);
      add(areas, areaOf(frame), dt);
      // Each function once per stack, however often it recurses.
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
        const f = byId.get(at)?.callFrame;
        if (!f || !/\/src\/|node_modules/.test(f.url)) continue;
        const name = frameName(f);
        if (!seen.has(name)) add(inclusive, name, dt);
        seen.add(name);
      }
    });
    const pct = (n: number) => `${((100 * n) / total).toFixed(1)}%`;
    const top = (map: Map<string, number>, n: number) =>
      [...map]
        .sort((x, y) => y[1] - x[1])
        .slice(0, n)
        .map(([k, v]) => [k, pct(v)]);
    process.stdout.write(
      `\nProfile ${file}: ${(total / 1e6).toFixed(1)} s busy (idle excluded); self time by area: ${top(
        areas,
        10,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}\n`,
    );
    process.stdout.write(`${table(["function (self time)", "share"], top(self, 20))}\n\n`);
    process.stdout.write(
      `${table(["Tessera or dependency function (inclusive time)", "share"], top(inclusive, 30))}\n`,
    );
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const roleAt = args.indexOf("--role");
  if (roleAt >= 0) {
    await runSidecar(args[roleAt + 1] ?? "", args);
    return;
  }
  process.once("exit", cleanUpNow);
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.once(signal, () => {
      void cleanUp().finally(() => process.exit(130));
    });
  try {
    await bench(parseOptions(args));
  } finally {
    await cleanUp();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (err) {
    process.stderr.write(`proxy benchmark: ${(err as Error).message}\n`);
    cleanUpNow();
    process.exitCode = 1;
  }
}
