/**
 * Pods on one host, for real: a bridge and network namespaces created with `ip`, processes run
 * in them under their own uid, and cleanup. Needs root (CI runs as root). Every name carries
 * the mesh prefix plus a suffix unique to this run, on a /24 the host does not already route, so
 * a running mesh or a concurrent run is never touched; `after` removes everything.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { type AddressInfo, connect, createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { LOCAL_MESH } from "../../../src/mesh/local/addresses.js";
import { cleanupLocalMesh, isNamedByPrefix } from "../../../src/mesh/local/cleanup.js";
import {
  createPod,
  deletePod,
  ensureBridge,
  hostVethName,
  listNetns,
  listPods,
  type MeshNetwork,
  NETNS_ETC_DIR,
  PodNetworkError,
  podNetnsName,
  podResolvConf,
} from "../../../src/mesh/local/netns.js";
import {
  execInPod,
  PodProcessError,
  podCommand,
  podEnvironment,
  spawnInPod,
} from "../../../src/mesh/local/spawn.js";

const execFileAsync = promisify(execFile);

/** A command the test runs itself (not through the code under test), optionally in a namespace. */
async function run(
  argv: string[],
  netns?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const full = netns === undefined ? argv : ["ip", "netns", "exec", netns, ...argv];
  try {
    const { stdout, stderr } = await execFileAsync(full[0] as string, full.slice(1));
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof failed.code === "number" ? failed.code : 1,
      stdout: failed.stdout ?? "",
      stderr: failed.stderr ?? "",
    };
  }
}

async function mustRun(argv: string[], netns?: string): Promise<string> {
  const result = await run(argv, netns);
  assert.equal(result.code, 0, `${argv.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

const APP_UID = 23001;
/** Connects to argv[1]:argv[2] and prints what the server sends. */
const CLIENT = `require("node:net").connect(Number(process.argv[2]), process.argv[1]).pipe(process.stdout);`;
const APP_GID = 23002;

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "these tests create network namespaces, veths and a bridge and need root: run them as root (CI does)",
    );
  }
}

/** /24s of 10.215.0.0/16 in [from, to) that no host route or address uses yet. */
async function freeSubnets(count: number, from: number, to: number): Promise<number[]> {
  const stdout = await mustRun(["ip", "-4", "route", "show", "table", "all"]);
  const used = new Set<number>();
  for (const match of stdout.matchAll(/\b10\.215\.(\d+)\./g)) used.add(Number(match[1]));
  const free: number[] = [];
  const start = from + Math.floor(Math.random() * (to - from));
  for (let i = 0; i < to - from && free.length < count; i++) {
    const octet = from + ((start - from + i) % (to - from));
    if (!used.has(octet)) free.push(octet);
  }
  if (free.length < count) throw new Error("no free 10.215.x.0/24 for the test network");
  return free;
}

function testNetwork(letter: string, octet: number): MeshNetwork {
  const suffix = randomBytes(3).toString("hex");
  return {
    prefix: `tsrt-${letter}${suffix}`,
    bridge: `tsb${letter}${suffix}`,
    bridgeIp: `10.215.${octet}.1`,
    podPrefixLength: 24,
  };
}

async function linkJson(name: string): Promise<Record<string, unknown> | undefined> {
  const result = await run(["ip", "-j", "-d", "addr", "show", "dev", name]);
  if (result.code !== 0) return undefined;
  return (JSON.parse(result.stdout) as Record<string, unknown>[])[0];
}

async function waitForLine(stream: NodeJS.ReadableStream, wanted: string): Promise<void> {
  let text = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${wanted}" within 5 s: ${text}`)), 5000);
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      text += d;
      if (text.includes(wanted)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

describe("pod names, files and process commands (pure)", () => {
  it("derives the namespace from prefix and id, and refuses ids that are not short [a-z0-9-]", () => {
    assert.equal(podNetnsName("web"), `${LOCAL_MESH.prefix}-web`);
    for (const bad of ["", "Web", "a_b", "-a", "a-", "a/b", "../x", "a".repeat(41), "a b"]) {
      assert.throws(() => podNetnsName(bad), PodNetworkError, bad);
    }
  });

  it("names the host veth from the namespace: stable, distinct, within IFNAMSIZ", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,60}[a-z0-9]$/), (netns) => {
        const name = hostVethName(netns);
        assert.match(name, /^tsv[0-9a-f]{10}$/);
        assert.equal(hostVethName(netns), name);
      }),
    );
    assert.notEqual(hostVethName("tessera-a"), hostVethName("tessera-b"));
    assert.throws(() => hostVethName("../etc"), PodNetworkError);
  });

  it("writes Kubernetes' resolv.conf and refuses names that would inject directives", () => {
    assert.equal(
      podResolvConf({ namespaceName: "shop" }),
      `nameserver ${LOCAL_MESH.dnsServiceIp}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`,
    );
    assert.equal(
      podResolvConf({ namespaceName: "x", dnsServer: "10.214.0.53", searchDomains: ["corp.example"] }),
      "nameserver 10.214.0.53\nsearch corp.example\noptions ndots:5\n",
    );
    assert.throws(
      () => podResolvConf({ namespaceName: "x", searchDomains: ["a\nnameserver 1.1.1.1"] }),
      PodNetworkError,
    );
    assert.throws(() => podResolvConf({ namespaceName: "x", dnsServer: "010.0.0.1" }), PodNetworkError);
    assert.throws(() => podResolvConf({ namespaceName: "Bad_NS" }), PodNetworkError);
  });

  it("refuses root, (uid_t)-1, empty argv and unsafe environment names", () => {
    assert.deepEqual(podCommand("tessera-a", ["id"], { uid: 1000, gid: 1001 }), [
      "ip",
      "netns",
      "exec",
      "tessera-a",
      "setpriv",
      "--reuid=1000",
      "--regid=1001",
      "--clear-groups",
      "--",
      "id",
    ]);
    assert.throws(() => podCommand("tessera-a", ["id"], { uid: 0, gid: 1 }), PodProcessError);
    assert.throws(() => podCommand("tessera-a", ["id"], { uid: 1, gid: 0 }), PodProcessError);
    assert.throws(() => podCommand("tessera-a", ["id"], { uid: 0xffffffff, gid: 1 }), PodProcessError);
    assert.throws(() => podCommand("tessera-a", ["id"], { uid: 1.5, gid: 1 }), PodProcessError);
    assert.throws(() => podCommand("tessera-a", [], { uid: 1, gid: 1 }), PodProcessError);
    assert.throws(() => podCommand("a/../b", ["id"], { uid: 1, gid: 1 }), PodNetworkError);
    assert.throws(() => podEnvironment({ "A=B": "1" }), PodProcessError);
    assert.deepEqual(podEnvironment({ X: "1" }), { PATH: podEnvironment().PATH, HOME: "/tmp", X: "1" });
  });

  it("names objects by prefix with a separator only", () => {
    assert.ok(isNamedByPrefix("tessera", "tessera"));
    assert.ok(isNamedByPrefix("tessera-web", "tessera"));
    assert.ok(isNamedByPrefix("tessera_capture", "tessera"));
    assert.ok(!isNamedByPrefix("tesserax", "tessera"));
    assert.ok(!isNamedByPrefix("my-tessera-web", "tessera"));
  });

  it("refuses an address outside the bridge's subnet before touching the host", async () => {
    const network: MeshNetwork = {
      prefix: "tessera-v0",
      bridge: "tsbv0",
      bridgeIp: "10.215.9.1",
      podPrefixLength: 24,
    };
    for (const ip of ["10.215.10.2", "10.215.9.1", "10.215.9.0", "10.215.9.255", "10.215.9.02", "x"]) {
      await assert.rejects(
        createPod({ id: "a", namespaceName: "default", ip }, network),
        PodNetworkError,
        ip,
      );
    }
  });
});

describe("pods on a bridge (root)", () => {
  let network: MeshNetwork;
  let other: MeshNetwork;
  let ipA: string;
  let ipB: string;
  const strays: string[] = [];

  before(async () => {
    requireRoot();
    const [octet, otherOctet] = await freeSubnets(2, 0, 128);
    network = testNetwork("n", octet as number);
    other = testNetwork("c", otherOctet as number);
    ipA = `10.215.${octet}.2`;
    ipB = `10.215.${octet}.3`;
    await ensureBridge(network);
    await ensureBridge(network);
    await createPod({ id: "a", namespaceName: "shop", ip: ipA }, network);
    await createPod({ id: "b", namespaceName: "shop", ip: ipB, dnsServer: "10.214.0.53" }, network);
  });

  after(async () => {
    if (network) await cleanupLocalMesh({ prefix: network.prefix });
    if (other) await cleanupLocalMesh({ prefix: other.prefix });
    for (const stray of strays) {
      if (stray.startsWith("netns ")) await run(["ip", "netns", "del", stray.slice(6)]);
      if (stray.startsWith("link ")) await run(["ip", "link", "del", stray.slice(5)]);
    }
  });

  it("puts the host's address on the bridge, once, however often it is ensured", async () => {
    const bridge = await linkJson(network.bridge);
    assert.ok(bridge, "bridge exists");
    assert.equal(bridge.ifalias, network.prefix);
    const addrs = (bridge.addr_info as { family: string; local: string; prefixlen: number }[]).filter(
      (a) => a.family === "inet",
    );
    assert.deepEqual(
      addrs.map((a) => `${a.local}/${a.prefixlen}`),
      [`${network.bridgeIp}/24`],
    );
    assert.ok((bridge.flags as string[]).includes("UP"));
  });

  it("lists the pods with their address and host veth, attached to the bridge", async () => {
    const pods = await listPods(network);
    assert.deepEqual(pods, [
      { netns: `${network.prefix}-a`, ip: ipA, hostVeth: hostVethName(`${network.prefix}-a`) },
      { netns: `${network.prefix}-b`, ip: ipB, hostVeth: hostVethName(`${network.prefix}-b`) },
    ]);
    for (const pod of pods) {
      const veth = await linkJson(pod.hostVeth);
      assert.equal(veth?.master, network.bridge);
      assert.equal(veth?.ifalias, pod.netns);
    }
  });

  it("lets both pods reach the host's bridge address over TCP", async () => {
    const server = createServer((socket) => socket.end(`host sees ${socket.remoteAddress}\n`));
    await new Promise<void>((resolve) => server.listen(0, network.bridgeIp, resolve));
    try {
      const { port } = server.address() as AddressInfo;
      for (const [id, ip] of [
        ["a", ipA],
        ["b", ipB],
      ] as const) {
        const client = await execInPod(
          `${network.prefix}-${id}`,
          [process.execPath, "-e", CLIENT, network.bridgeIp, String(port)],
          {
            uid: APP_UID,
            gid: APP_GID,
          },
        );
        assert.equal(client.stdout, `host sees ${ip}\n`, client.stderr);
      }
    } finally {
      server.close();
    }
  });

  it("runs a non-root app on :80 in one pod, reachable over TCP from the other pod and the host", async () => {
    const server = spawnInPod(
      `${network.prefix}-a`,
      [
        process.execPath,
        "-e",
        `require("node:net").createServer((s) => s.end("hello from " + process.getuid() + "\\n")).listen(80, "0.0.0.0", () => console.log("ready"));`,
      ],
      { uid: APP_UID, gid: APP_GID },
    );
    try {
      await waitForLine(server.stdout as NodeJS.ReadableStream, "ready");
      const client = await execInPod(`${network.prefix}-b`, [process.execPath, "-e", CLIENT, ipA, "80"], {
        uid: APP_UID + 1,
        gid: APP_GID,
      });
      assert.equal(client.stdout, `hello from ${APP_UID}\n`, client.stderr);
      const fromHost = await new Promise<string>((resolve, reject) => {
        let text = "";
        const socket = connect(80, ipA);
        socket.setEncoding("utf8").on("data", (d: string) => {
          text += d;
        });
        socket.on("end", () => resolve(text)).on("error", reject);
      });
      assert.equal(fromHost, `hello from ${APP_UID}\n`);
    } finally {
      server.kill("SIGKILL");
    }
  });

  it("gives pod processes the mesh's resolv.conf and hosts", async () => {
    const a = await execInPod(`${network.prefix}-a`, ["cat", "/etc/resolv.conf", "/etc/hosts"], {
      uid: APP_UID,
      gid: APP_GID,
    });
    assert.equal(a.code, 0, a.stderr);
    assert.equal(
      a.stdout,
      `nameserver ${LOCAL_MESH.dnsServiceIp}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n127.0.0.1\tlocalhost\n${ipA}\ta\n`,
    );
    const b = await execInPod(`${network.prefix}-b`, ["cat", "/etc/resolv.conf"], {
      uid: APP_UID,
      gid: APP_GID,
    });
    assert.match(b.stdout, /^nameserver 10\.214\.0\.53\n/);
  });

  it("runs processes as the numeric uid/gid, no supplementary groups, no capabilities, clean environment", async () => {
    const netns = `${network.prefix}-a`;
    const opts = { uid: APP_UID, gid: APP_GID, env: { GREETING: "hi" } };
    const ids = await execInPod(
      netns,
      ["sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Prm):' /proc/self/status"],
      opts,
    );
    assert.equal(
      ids.stdout,
      `${APP_UID}\n${APP_GID}\n${APP_GID}\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n`,
      ids.stderr,
    );
    process.env.TESSERA_TEST_LEAK = "secret";
    try {
      const env = await execInPod(netns, ["env"], opts);
      const names = env.stdout
        .trim()
        .split("\n")
        .map((line) => line.split("=")[0])
        .sort();
      assert.deepEqual(names, ["GREETING", "HOME", "PATH"]);
      assert.match(env.stdout, /^HOME=\/tmp$/m);
    } finally {
      delete process.env.TESSERA_TEST_LEAK;
    }
    const cwd = await execInPod(netns, ["pwd"], opts);
    assert.equal(cwd.stdout, "/tmp\n");
    const exit = await execInPod(netns, ["sh", "-c", "echo oops >&2; exit 3"], opts);
    assert.deepEqual(exit, { code: 3, stdout: "", stderr: "oops\n" });
  });

  it("gives pods no IPv6, so nothing bypasses IPv4 capture over link-local addresses", async () => {
    const netns = `${network.prefix}-a`;
    assert.equal((await mustRun(["ip", "-6", "-o", "addr", "show"], netns)).trim(), "");
    assert.equal((await mustRun(["sysctl", "-n", "net.ipv4.ip_unprivileged_port_start"], netns)).trim(), "0");
  });

  it("refuses to create a pod twice, and one whose veth name is taken, leaving nothing behind", async () => {
    await assert.rejects(createPod({ id: "a", namespaceName: "shop", ip: ipA }, network), /already exists/);
    const netns = `${network.prefix}-taken`;
    const veth = hostVethName(netns);
    strays.push(`link ${veth}`);
    await mustRun(["ip", "link", "add", "name", veth, "type", "bridge"]);
    const ipC = ipA.replace(/\.2$/, ".9");
    await assert.rejects(
      createPod({ id: "taken", namespaceName: "shop", ip: ipC }, network),
      /already exists/,
    );
    assert.ok(!(await listNetns()).includes(netns), "no namespace left");
    assert.ok((await linkJson(veth)) !== undefined, "someone else's link is kept");
    await mustRun(["ip", "link", "del", veth]);
  });

  it("deletes a pod with a process still inside: process, veth, namespace and files go; again is a no-op", async () => {
    const ipC = ipA.replace(/\.2$/, ".4");
    const pod = await createPod({ id: "c", namespaceName: "shop", ip: ipC }, network);
    const sleeper = spawnInPod(pod.netns, ["sleep", "60"], { uid: APP_UID, gid: APP_GID, stdio: "ignore" });
    const exited = new Promise((resolve) => sleeper.on("exit", (_code, signal) => resolve(signal)));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const removed = await deletePod(pod.netns);
    assert.deepEqual(removed, [
      `process ${sleeper.pid} (in ${pod.netns})`,
      `veth ${pod.hostVeth}`,
      `netns ${pod.netns}`,
      join(NETNS_ETC_DIR, pod.netns),
    ]);
    assert.equal(await exited, "SIGKILL");
    assert.equal(await linkJson(pod.hostVeth), undefined);
    assert.ok(!existsSync(join(NETNS_ETC_DIR, pod.netns)));
    assert.deepEqual(await deletePod(pod.netns), []);
    // The same pod can be created again at once.
    await createPod({ id: "c", namespaceName: "shop", ip: ipC }, network);
    await deletePod(pod.netns);
  });

  it("cleans up everything a prefix names, and nothing else; a second cleanup removes nothing", async () => {
    await ensureBridge(other);
    const ipOther = other.bridgeIp.replace(/\.1$/, ".2");
    const pod = await createPod({ id: "x", namespaceName: "default", ip: ipOther }, other);
    const sleeper = spawnInPod(pod.netns, ["sleep", "60"], { uid: APP_UID, gid: APP_GID, stdio: "ignore" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const strayDir = join(NETNS_ETC_DIR, `${other.prefix}-stray`);
    mkdirSync(strayDir, { recursive: true });
    await mustRun(["nft", "add", "table", "inet", `${other.prefix}_filter`]);
    // Neighbours whose names only look alike: a longer prefix, and an alias with no separator.
    const neighbourNetns = `${other.prefix}x-keep`;
    const neighbourLink = `tsk${other.prefix.slice(-6)}`;
    strays.push(`netns ${neighbourNetns}`, `link ${neighbourLink}`);
    await mustRun(["ip", "netns", "add", neighbourNetns]);
    await mustRun([
      "ip",
      "link",
      "add",
      "name",
      neighbourLink,
      "type",
      "veth",
      "peer",
      "name",
      `${neighbourLink}p`,
    ]);
    await mustRun(["ip", "link", "set", "dev", neighbourLink, "alias", `${other.prefix}x`]);

    const removed = await cleanupLocalMesh({ prefix: other.prefix });
    assert.deepEqual(
      [...removed].sort(),
      [
        `process ${sleeper.pid} (in ${pod.netns})`,
        `veth ${pod.hostVeth}`,
        `netns ${pod.netns}`,
        join(NETNS_ETC_DIR, pod.netns),
        `bridge ${other.bridge}`,
        strayDir,
        `nft table inet ${other.prefix}_filter`,
      ].sort(),
    );
    const netnsList = await mustRun(["ip", "netns", "list"]);
    assert.ok(!netnsList.split("\n").some((line) => line.startsWith(`${other.prefix}-`)), netnsList);
    assert.ok(netnsList.includes(neighbourNetns), "a namespace with a longer prefix is kept");
    const links = await mustRun(["ip", "-d", "link", "show"]);
    assert.ok(!links.includes(other.bridge) && !links.includes(pod.hostVeth), links);
    assert.ok(links.includes(neighbourLink), "a link whose alias only starts like the prefix is kept");
    assert.ok(!existsSync(strayDir) && !existsSync(join(NETNS_ETC_DIR, pod.netns)));
    const tables = await mustRun(["nft", "list", "tables"]);
    assert.ok(!tables.includes(other.prefix), tables);
    // The other test network is untouched.
    assert.equal((await listPods(network)).length, 2);

    assert.deepEqual(await cleanupLocalMesh({ prefix: other.prefix }), []);
  });
});
