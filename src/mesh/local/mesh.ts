import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { POLICY_KINDS } from "../../kube/cluster.js";
import { Diagnostics, InputError } from "../../kube/errors.js";
import { clusterOf, loadObjects } from "../../kube/index.js";
import { formatIPv4 } from "../../kube/ip.js";
import type { Cluster, Pod } from "../../kube/objects.js";
import { serviceBackends, targetPortOn } from "../../kube/services.js";
import { compile } from "../../policy/engine.js";
import { LOCAL_MESH } from "./addresses.js";
import type { ServiceRoute } from "./capture.js";
import { applyCapture } from "./capture.js";
import { cleanupLocalMesh } from "./cleanup.js";
import { zoneFromServices } from "./dns-server.js";
import { runCommand } from "./exec.js";
import { DNS_RUN, podIp, resolveManifests } from "./manifests.js";
import { createPod, ensureBridge } from "./netns.js";
import { applyNetpol } from "./netpol-nft.js";
import { execInPod, podCommand, spawnInPod } from "./spawn.js";
import {
  findPod,
  logsDir,
  type MeshState,
  manifestsDir,
  type PodState,
  policiesFile,
  readState,
  stateFile,
  writeState,
} from "./state.js";

/** `node dist/src/cli/main.js`: how the mesh runs Tessera's own programs (sidecars, DNS, httpbin). */
const CLI = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
const tessera = (...args: string[]) => [process.execPath, CLI, ...args];
/** The package root (dist/src/cli/main.js is three levels down). */
const PACKAGE_ROOT = dirname(dirname(dirname(dirname(CLI))));
/**
 * Where pod processes find Tessera when its own directory is closed to other users (a clone
 * under /root): a read-only bind mount, outside the state directory so that removing the state
 * can never reach into it.
 */
const CODE_MOUNT = "/run/tessera/code";
let podCli = CLI;
/** Tessera as a pod process (its own uid) runs it. */
const podTessera = (...args: string[]) => [process.execPath, podCli, ...args];

function isMounted(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[4] === path);
}

/** Makes Tessera's code reachable for the pods' uids (a bind mount when its directory is closed). */
async function preparePodCli(): Promise<void> {
  checkReachable(process.execPath, "Node.js");
  if (reachable(dirname(CLI))) {
    podCli = CLI;
    return;
  }
  if (!isMounted(CODE_MOUNT)) {
    mkdirSync(CODE_MOUNT, { recursive: true, mode: 0o755 });
    chmodSync(dirname(CODE_MOUNT), 0o755);
    await runCommand(["mount", "--bind", "-o", "ro", PACKAGE_ROOT, CODE_MOUNT]);
  }
  podCli = join(CODE_MOUNT, relative(PACKAGE_ROOT, CLI));
}

/** Removes the code mount, if any (never recursively: it is Tessera's own tree). */
async function releasePodCli(): Promise<void> {
  if (existsSync(CODE_MOUNT) && isMounted(CODE_MOUNT))
    await runCommand(["umount", CODE_MOUNT], { allowFailure: true });
  if (existsSync(CODE_MOUNT) && !isMounted(CODE_MOUNT)) rmdirSync(CODE_MOUNT);
}
const TRUST_DOMAIN = "cluster.local";
const APP_UID_BASE = 10_000;
const SIDECAR_UID_BASE = 20_000;

export class MeshError extends Error {}

export type Say = (line: string) => void;

export function requireRoot(command: string): void {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new MeshError(
      `tessera ${command} needs root: it creates network namespaces, packet redirection and processes under other uids (run it with sudo)`,
    );
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new MeshError(`${what} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts a process that outlives `up`, its output in the mesh's log directory. */
function daemon(argv: readonly string[], logFile: string, env: Record<string, string> = {}): ChildProcess {
  const fd = openSync(logFile, "a");
  const [file, ...args] = argv as [string, ...string[]];
  const child = spawn(file, args, {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
  });
  child.unref();
  return child;
}

function podDaemon(
  netns: string,
  argv: readonly string[],
  uid: number,
  logFile: string,
  env: Record<string, string> = {},
) {
  return daemon(podCommand(netns, argv, { uid, gid: uid }), logFile, env);
}

async function cli(args: string[]): Promise<string> {
  return (await runCommand(tessera(...args))).stdout;
}

/** What a pod runs: its `tessera.io/run` annotation, a built-in for the lab's images, or its command. */
export function appCommand(pod: Pod): string[] {
  const run = pod.annotations["tessera.io/run"];
  if (run === DNS_RUN) return podTessera("mesh-dns", "--zone", "ZONE", "--listen", "0.0.0.0:53");
  if (run) return ["/bin/sh", "-c", run];
  const container = pod.containers[0];
  const image = container?.image ?? "";
  if (/(^|\/)httpbin(:|$)/.test(image)) {
    const port = pod.ports.find((p) => p.protocol === "TCP")?.port ?? 80;
    return podTessera("httpbin", "--listen", `0.0.0.0:${port}`);
  }
  const argv = [...(container?.command ?? []), ...(container?.args ?? [])];
  if (argv.length > 0 && (argv[0]?.startsWith("/") ? existsSync(argv[0]) : true)) return argv;
  if (/(^|\/)curl(:|$)/.test(image) || /busybox|alpine|debian|ubuntu/.test(image))
    return ["/bin/sleep", "infinity"];
  throw new MeshError(
    `${pod.namespace}/${pod.workload.name}: image ${image || "(none)"} is not built into Tessera and the pod has no command; say what it runs with the annotation tessera.io/run: "<command>"`,
  );
}

function serviceRoutes(cluster: Cluster): ServiceRoute[] {
  const routes: ServiceRoute[] = [];
  for (const service of cluster.services) {
    if (service.clusterIp === undefined) continue;
    const clusterIp = formatIPv4(service.clusterIp);
    const backends = serviceBackends(cluster, service);
    for (const port of service.ports) {
      if (port.protocol === "SCTP") continue;
      const endpoints = backends.flatMap((pod) => {
        const target = targetPortOn(port, pod);
        return target === undefined || pod.ip === undefined ? [] : [{ ip: podIp(pod), port: target }];
      });
      routes.push({
        clusterIp,
        port: port.port,
        protocol: port.protocol === "UDP" ? "udp" : "tcp",
        endpoints,
      });
    }
  }
  return routes;
}

/** The manifests as the mesh runs them (workloads with addresses, and the current policies). */
export function meshCluster(stateDir: string): Cluster {
  const objects = loadObjects([manifestsDir(stateDir)], () => "");
  return clusterOf(objects, new Diagnostics()).cluster;
}

function podId(pod: Pod): string {
  return `${pod.namespace}-${pod.workload.name}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 40);
}

/** Compiles the current manifests and replaces every pod's packet filter (NetworkPolicy). */
async function enforceNetworkPolicy(stateDir: string, state: Pick<MeshState, "pods">): Promise<void> {
  const cluster = meshCluster(stateDir);
  const { engine } = compile(cluster, new Diagnostics());
  const pods = state.pods.map((p) => {
    const pod = cluster.workloads.find((w) => w.namespace === p.namespace && w.name === p.workload)?.pods[0];
    if (!pod) throw new MeshError(`pod ${p.namespace}/${p.workload} vanished from the manifests`);
    return { pod, netns: p.netns, ip: p.ip };
  });
  await applyNetpol(engine, pods, { hostIp: LOCAL_MESH.bridgeIp });
}

/** Removes what a previous mesh left (processes, namespaces, links, rules, files). */
export async function removeLeftovers(stateDir: string, say: Say): Promise<void> {
  if (existsSync(stateFile(stateDir))) {
    try {
      await stopProcesses(readState(stateDir));
    } catch {
      // a broken state file: the namespaces below are still found by name
    }
  }
  const removed = await cleanupLocalMesh();
  if (removed.length > 0) say(`removed leftovers of an earlier mesh: ${removed.join(", ")}`);
  rmSync(stateDir, { recursive: true, force: true });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    // Each mesh process leads its own process group (detached): the group takes its children too.
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  }
}

/** SIGTERM to every process of the mesh, then SIGKILL to what is left. */
async function stopProcesses(state: MeshState): Promise<void> {
  const pids = [
    ...state.pods.flatMap((p) => [p.sidecarPid, p.appPid]),
    state.agentPid,
    state.serverPid,
  ].filter((pid): pid is number => typeof pid === "number" && pid > 0);
  for (const pid of pids) signal(pid, "SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  for (const pid of pids) signal(pid, "SIGKILL");
}

/**
 * Pod processes run under their own uids: they must reach Tessera's code and the state
 * directory. Refuses early, naming the directory, when one is closed to other users.
 */
export function checkReachable(path: string, what: string): void {
  const closed = closedAncestor(path);
  if (closed) {
    throw new MeshError(
      `${what} (${path}) is not reachable by the pods' uids: ${closed} is not searchable by other users (chmod o+x ${closed}, or use another directory)`,
    );
  }
}

function reachable(path: string): boolean {
  return closedAncestor(path) === undefined;
}

/** The first directory from `path` up that other users cannot search, if any. */
function closedAncestor(path: string): string | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

export interface UpResult {
  readonly state: MeshState;
}

/**
 * Brings up the mesh: pods in network namespaces on a bridge, their traffic captured, the
 * identity server and agent with one entry per ServiceAccount (selector unix:uid), the cluster
 * DNS, the apps and their sidecars, and NetworkPolicy as packet filters. Everything it created
 * is removed again when a step fails.
 */
export async function up(stateDir: string, inputs: readonly string[], say: Say): Promise<MeshState> {
  requireRoot("up");
  checkReachable(stateDir, "the state directory");
  await preparePodCli();
  await removeLeftovers(stateDir, say);
  const raws = loadObjects(inputs, () => {
    throw new InputError("no-stdin", "tessera up reads files and directories, not stdin");
  });
  const resolved = resolveManifests(raws);
  const cluster = resolved.cluster;
  const { mesh } = compile(cluster, new Diagnostics());
  mkdirSync(manifestsDir(stateDir), { recursive: true, mode: 0o755 });
  mkdirSync(logsDir(stateDir), { recursive: true, mode: 0o755 });
  chmodSync(stateDir, 0o755);
  writeFileSync(
    join(manifestsDir(stateDir), "workloads.json"),
    JSON.stringify({ apiVersion: "v1", kind: "List", items: resolved.workloads }, null, 1),
  );
  writeFileSync(
    policiesFile(stateDir),
    JSON.stringify({ apiVersion: "v1", kind: "List", items: resolved.policies }, null, 1),
  );
  try {
    return await start(stateDir, inputs, cluster, mesh.inMesh.bind(mesh), say);
  } catch (err) {
    if (process.env.TESSERA_KEEP_FAILED_MESH) {
      say(`up failed; the mesh is kept for inspection (TESSERA_KEEP_FAILED_MESH): ${stateDir}`);
      throw err;
    }
    say(`up failed, removing what it created: ${(err as Error).message}`);
    await down(stateDir, () => undefined).catch(() => undefined);
    throw err;
  }
}

async function start(
  stateDir: string,
  inputs: readonly string[],
  cluster: Cluster,
  inMesh: (pod: Pod) => boolean,
  say: Say,
): Promise<MeshState> {
  const logs = logsDir(stateDir);
  // Access logs are written by the sidecars' own uids.
  chmodSync(logs, 0o777);
  // Identity: the server, a join token, the agent.
  const serverDir = join(stateDir, "server");
  const agentDir = join(stateDir, "agent");
  const adminSocket = join(serverDir, "admin.sock");
  const agentSocket = join(stateDir, "workload", "agent.sock");
  mkdirSync(dirname(agentSocket), { recursive: true, mode: 0o755 });
  const serverPort = await freePort();
  const server = daemon(
    tessera(
      "server",
      "run",
      "--data-dir",
      serverDir,
      "--bind",
      `127.0.0.1:${serverPort}`,
      "--trust-domain",
      TRUST_DOMAIN,
    ),
    join(logs, "server.log"),
  );
  await waitFor("the identity server's admin socket", () => existsSync(adminSocket), 20_000);
  const token = JSON.parse(await cli(["token", "generate", "--admin-socket", adminSocket, "-o", "json"])) as {
    token: string;
    spiffeId: string;
  };
  const bundle = join(stateDir, "bundle.pem");
  writeFileSync(bundle, await cli(["bundle", "show", "--admin-socket", adminSocket]));
  const agent = daemon(
    tessera(
      "agent",
      "run",
      "--data-dir",
      agentDir,
      "--server",
      `127.0.0.1:${serverPort}`,
      "--join-token",
      token.token,
      "--socket",
      agentSocket,
      "--trust-bundle",
      bundle,
      "--sync-interval",
      "1",
      "--quiet",
    ),
    join(logs, "agent.log"),
  );
  await waitFor("the agent's Workload API socket", () => existsSync(agentSocket), 20_000);
  // Sidecars run under their own uids: they must reach the socket.
  chmodSync(agentSocket, 0o777);
  say(`identity server and agent up (trust domain ${TRUST_DOMAIN}, agent ${token.spiffeId})`);

  // Pods: addresses, namespaces, capture.
  await ensureBridge();
  const routes = serviceRoutes(cluster);
  const sidecarUids = new Map<string, number>();
  const pods: PodState[] = [];
  const services = cluster.services.flatMap((s) =>
    s.clusterIp === undefined
      ? []
      : [{ namespace: s.namespace, name: s.name, clusterIp: formatIPv4(s.clusterIp) }],
  );
  const zone = zoneFromServices(
    services,
    cluster.pods.flatMap((p) => (p.ip === undefined ? [] : [{ namespace: p.namespace, ip: podIp(p) }])),
  );
  const zoneFile = join(stateDir, "dns-zone.json");
  writeFileSync(zoneFile, JSON.stringify({ clusterDomain: zone.clusterDomain, records: [...zone.records] }));
  for (const [index, pod] of cluster.pods.entries()) {
    const ip = podIp(pod);
    const network = await createPod({ id: podId(pod), namespaceName: pod.namespace, ip });
    const member = inMesh(pod);
    let sidecarUid: number | undefined;
    let spiffeId: string | undefined;
    if (member) {
      const key = `${pod.namespace}/${pod.serviceAccount}`;
      sidecarUid = sidecarUids.get(key);
      spiffeId = `spiffe://${TRUST_DOMAIN}/ns/${pod.namespace}/sa/${pod.serviceAccount}`;
      if (sidecarUid === undefined) {
        sidecarUid = SIDECAR_UID_BASE + sidecarUids.size;
        sidecarUids.set(key, sidecarUid);
        await cli([
          "entry",
          "create",
          "--admin-socket",
          adminSocket,
          "--spiffe-id",
          spiffeId,
          "--parent-id",
          token.spiffeId,
          "--selector",
          `unix:uid:${sidecarUid}`,
          "-o",
          "json",
        ]);
      }
    }
    await applyCapture(network.netns, {
      inMesh: member,
      ...(sidecarUid ? { sidecarUid } : {}),
      services: routes,
    });
    const appUid = APP_UID_BASE + index;
    const command = appCommand(pod).map((a) => (a === "ZONE" ? zoneFile : a));
    const name = podId(pod);
    const app = podDaemon(network.netns, command, appUid, join(logs, `${name}.app.log`));
    let sidecar: ChildProcess | undefined;
    if (member && sidecarUid) {
      sidecar = podDaemon(
        network.netns,
        podTessera(
          "proxy",
          "run",
          "--workload",
          `${pod.namespace}/${pod.workload.name}`,
          "-f",
          manifestsDir(stateDir),
          "--socket",
          `unix://${agentSocket}`,
          "--inbound-capture",
          `0.0.0.0:${LOCAL_MESH.inboundCapturePort}`,
          "--outbound-capture",
          `127.0.0.1:${LOCAL_MESH.outboundCapturePort}`,
          "--status",
          `0.0.0.0:${LOCAL_MESH.statusPort}`,
          "--access-log",
          join(logs, `${name}.access.log`),
          "--reload-interval",
          "500",
        ),
        sidecarUid,
        join(logs, `${name}.sidecar.log`),
      );
    }
    pods.push({
      namespace: pod.namespace,
      workload: pod.workload.name,
      netns: network.netns,
      ip,
      serviceAccount: pod.serviceAccount,
      inMesh: member,
      appUid,
      sidecarUid,
      spiffeId,
      appPid: app.pid,
      sidecarPid: sidecar?.pid,
      command,
    });
  }
  const state: MeshState = {
    version: 1,
    createdAt: new Date().toISOString(),
    stateDir,
    inputs: [...inputs],
    serverPid: server.pid ?? 0,
    agentPid: agent.pid ?? 0,
    agentSocket,
    adminSocket,
    pods,
    services,
  };
  writeState(stateDir, state);
  await enforceNetworkPolicy(stateDir, state);
  say(`${pods.length} pods on ${LOCAL_MESH.bridge} (${LOCAL_MESH.podCidr}); waiting for the sidecars`);
  await Promise.all(
    pods
      .filter((p) => p.inMesh)
      .map((p) =>
        waitFor(`the sidecar of ${p.namespace}/${p.workload} to be ready`, () => sidecarReady(p), 30_000),
      ),
  );
  return state;
}

/** Asks a sidecar's status port, from inside its pod (no policy stands between them). */
export async function sidecarReady(pod: PodState): Promise<boolean> {
  const [, ...args] = statusCodeCurl(`http://127.0.0.1:${LOCAL_MESH.statusPort}/healthz/ready`, 2);
  const r = await execInPod(pod.netns, podTessera("curl", ...args), {
    uid: pod.appUid,
    gid: pod.appUid,
    timeoutMs: 5000,
  });
  return r.stdout.trim() === "200";
}

/** A curl command that prints only the response's status code (the lab's and readiness probes). */
export function statusCodeCurl(url: string, seconds: number, method?: string): string[] {
  return [
    "curl",
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-m",
    String(seconds),
    ...(method === undefined ? [] : ["-X", method]),
    url,
  ];
}

/** Rows as text columns, each cell padded to its column's widest. */
export function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/** Applies policy objects live: the packet filters are recompiled and the sidecars reload. */
export async function apply(
  stateDir: string,
  paths: readonly string[],
  say: Say,
  options: { replace?: boolean } = {},
): Promise<number> {
  requireRoot("apply");
  const state = readState(stateDir);
  const objects = loadObjects(paths, () => readFileSync(0, "utf8"));
  for (const o of objects) {
    if (!POLICY_KINDS.has(String(o.value.kind))) {
      throw new InputError(
        "not-a-policy",
        `tessera apply changes policies live (${[...POLICY_KINDS].join(", ")}); ${String(o.value.kind)} needs tessera down and up`,
        o.source,
      );
    }
  }
  const current = JSON.parse(readFileSync(policiesFile(stateDir), "utf8")) as {
    items: Record<string, unknown>[];
  };
  const key = (o: Record<string, unknown>) => {
    const m = (o.metadata ?? {}) as Record<string, unknown>;
    return `${String(o.kind)}/${String(m.namespace ?? "default")}/${String(m.name)}`;
  };
  const byKey = new Map(options.replace ? [] : current.items.map((o) => [key(o), o]));
  for (const o of objects) byKey.set(key(o.value), o.value);
  // Checked before anything changes: a policy that does not compile is refused whole.
  const candidate = { apiVersion: "v1", kind: "List", items: [...byKey.values()] };
  const workloads = loadObjects([join(manifestsDir(stateDir), "workloads.json")], () => "");
  compile(
    clusterOf(
      [
        ...workloads,
        ...candidate.items.map((value, i) => ({ value, source: { file: "<apply>", line: i + 1 } })),
      ],
      new Diagnostics(),
    ).cluster,
    new Diagnostics(),
  );
  writeFileSync(policiesFile(stateDir), JSON.stringify(candidate, null, 1));
  await enforceNetworkPolicy(stateDir, state);
  for (const pod of state.pods) {
    if (!pod.sidecarPid) continue;
    try {
      process.kill(pod.sidecarPid, "SIGHUP");
    } catch {
      say(`the sidecar of ${pod.namespace}/${pod.workload} is not running`);
    }
  }
  // The sidecars reload on SIGHUP (and within their reload interval in any case).
  await new Promise((r) => setTimeout(r, 300));
  say(`applied ${objects.length} object(s): ${objects.map((o) => key(o.value)).join(", ")}`);
  return 0;
}

/** Stops every process and removes everything the mesh created. */
export async function down(stateDir: string, say: Say): Promise<number> {
  requireRoot("down");
  let state: MeshState | undefined;
  try {
    state = readState(stateDir);
  } catch {
    state = undefined;
  }
  if (state) await stopProcesses(state);
  await releasePodCli();
  const removed = await cleanupLocalMesh();
  rmSync(stateDir, { recursive: true, force: true });
  say(
    state || removed.length
      ? `mesh removed${removed.length ? `: ${removed.join(", ")}` : ""}`
      : "no mesh was running",
  );
  return 0;
}

/** Runs a command inside a workload's pod as its app (curl, for instance). */
export async function execInWorkload(
  stateDir: string,
  workload: string,
  argv: readonly string[],
): Promise<number> {
  requireRoot("exec");
  const state = readState(stateDir);
  const pod = findPod(state, workload);
  await preparePodCli();
  let command = [...argv];
  if (command[0] === "curl" && !existsSync("/usr/bin/curl"))
    command = podTessera("curl", ...command.slice(1));
  const child = spawnInPod(pod.netns, command, { uid: pod.appUid, gid: pod.appUid, stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** Pods, identities, policies and each sidecar's readiness. */
export async function status(stateDir: string): Promise<string> {
  const state = readState(stateDir);
  await preparePodCli();
  const alive = (pid: number | undefined) => {
    if (!pid) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const lines = [
    `local mesh in ${stateDir} (up since ${state.createdAt})`,
    `identity server ${alive(state.serverPid) ? "running" : "STOPPED"}, agent ${alive(state.agentPid) ? "running" : "STOPPED"} (Workload API ${state.agentSocket})`,
    "",
  ];
  const rows: string[][] = [["POD", "IP", "APP", "SIDECAR", "IDENTITY"]];
  for (const p of state.pods) {
    const sidecar = !p.inMesh
      ? "-"
      : !alive(p.sidecarPid)
        ? "stopped"
        : (await sidecarReady(p).catch(() => false))
          ? "ready"
          : "not ready";
    rows.push([
      `${p.namespace}/${p.workload}`,
      p.ip,
      alive(p.appPid) ? "running" : "stopped",
      sidecar,
      p.spiffeId ?? "(outside the mesh)",
    ]);
  }
  lines.push(...alignColumns(rows));
  const policies = JSON.parse(readFileSync(policiesFile(stateDir), "utf8")) as {
    items: Record<string, unknown>[];
  };
  lines.push("", `policies (${policies.items.length}):`);
  for (const o of policies.items) {
    const m = (o.metadata ?? {}) as Record<string, unknown>;
    lines.push(`  ${String(o.kind)} ${String(m.namespace ?? "default")}/${String(m.name)}`);
  }
  lines.push(
    "",
    "services:",
    ...state.services.map((s) => `  ${s.name}.${s.namespace}.svc.cluster.local  ${s.clusterIp}`),
  );
  return `${lines.join("\n")}\n`;
}
