/**
 * Traffic capture: the nft script as text (pure, fuzzed), then applied for real. Two pods on a
 * bridge: A in the mesh, with a stand-in sidecar (a small Node server run as the sidecar uid that
 * answers with the original destination it reads), B without sidecar. Service endpoints are
 * servers of this test process on the host's bridge address. Needs root (CI runs as root). Names
 * carry the mesh prefix and a suffix unique to this run, on a /24 the host does not route yet;
 * `after` removes everything.
 */

import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { LOCAL_MESH } from "../../../src/mesh/local/addresses.js";
import {
  applyCapture,
  CAPTURE_TABLE,
  type CaptureSpec,
  CaptureSpecError,
  captureRuleset,
  removeCapture,
  type ServiceRoute,
} from "../../../src/mesh/local/capture.js";
import { cleanupLocalMesh } from "../../../src/mesh/local/cleanup.js";
import { createPod, ensureBridge, type MeshNetwork } from "../../../src/mesh/local/netns.js";
import { execInPod, spawnInPod } from "../../../src/mesh/local/spawn.js";
import { assertReachableByOtherUids } from "../../helpers/paths.js";

const execFileAsync = promisify(execFile);

const SIDECAR = { uid: 21337, gid: 21337 };
const APP = { uid: 21000, gid: 21000 };
const SERVICE_IP = "10.214.0.20";
const EMPTY_SERVICE_IP = "10.214.0.21";
const ALT_OUTBOUND_PORT = 15011;

/** A stand-in sidecar: on each capture port, answers with the connection's original destination. */
const SIDECAR_SCRIPT = `
import { createServer } from "node:net";
const { originalDestination } = await import(process.argv[2]);
const listeners = JSON.parse(process.argv[3]);
let pending = Object.keys(listeners).length;
for (const [name, port] of Object.entries(listeners)) {
  createServer((socket) => {
    socket.on("error", () => {});
    if (name === "status") return socket.end("status from " + socket.remoteAddress + "\\n");
    try {
      const dst = originalDestination(socket);
      socket.end(name + " " + dst.address + ":" + dst.port + "\\n");
    } catch (err) {
      socket.end(name + " error " + err.message + "\\n");
    }
  }).listen(port, "0.0.0.0", () => { if (--pending === 0) console.log("ready"); });
}
`;

/** The pod's app: what answers on :80 when nothing intercepts. */
const APP_SCRIPT = `
require("node:net").createServer((s) => { s.on("error", () => {}); s.end("app from " + s.remoteAddress + "\\n"); })
  .listen(80, "0.0.0.0", () => console.log("ready"));
`;

/** `tcp HOST PORT [COUNT]`: one line per connection (reply or error); `udp HOST PORT`: the reply. */
const CLIENT_SCRIPT = `
import { connect } from "node:net";
import { createSocket } from "node:dgram";
const [mode, host, portText, countText = "1"] = process.argv.slice(2);
const port = Number(portText);
if (mode === "udp") {
  const socket = createSocket("udp4");
  const timer = setTimeout(() => { console.log("udp timeout"); process.exit(0); }, 3000);
  socket.on("message", (m) => { console.log(m.toString().trim()); clearTimeout(timer); socket.close(); });
  socket.send("ping", port, host);
} else {
  for (let i = 0; i < Number(countText); i++) {
    console.log(await new Promise((resolve) => {
      let text = "";
      const socket = connect(port, host);
      socket.setEncoding("utf8").on("data", (d) => { text += d; });
      socket.on("end", () => resolve(text.trim()));
      socket.on("error", (err) => resolve("error " + err.code));
      socket.setTimeout(3000, () => { socket.destroy(); resolve("error timeout"); });
    }));
  }
}
`;

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "these tests create network namespaces and nft rules and need root: run them as root (CI does)",
    );
  }
}

/** A /24 of 10.215.128.0/17 that no host route uses yet (netns.test.ts takes the lower half). */
async function freeOctet(): Promise<number> {
  const { stdout } = await execFileAsync("ip", ["-4", "route", "show", "table", "all"]);
  const used = new Set([...stdout.matchAll(/\b10\.215\.(\d+)\./g)].map((m) => Number(m[1])));
  const start = Math.floor(Math.random() * 128);
  for (let i = 0; i < 128; i++) {
    const octet = 128 + ((start + i) % 128);
    if (!used.has(octet)) return octet;
  }
  throw new Error("no free 10.215.x.0/24 for the test network");
}

async function waitForReady(child: ChildProcess): Promise<void> {
  let text = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready within 5 s: ${text}`)), 5000);
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      text += d;
      if (text.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      text += d;
    });
    child.on("exit", (code) => reject(new Error(`exited ${code} before ready: ${text}`)));
  });
}

const route = (clusterIp: string, port: number, protocol: "tcp" | "udp", endpoints: [string, number][]) =>
  ({
    clusterIp,
    port,
    protocol,
    endpoints: endpoints.map(([ip, p]) => ({ ip, port: p })),
  }) satisfies ServiceRoute;

describe("capture ruleset text", () => {
  const services = [
    route(SERVICE_IP, 8000, "tcp", [
      ["10.213.0.5", 8080],
      ["10.213.0.6", 8080],
    ]),
    route(LOCAL_MESH.dnsServiceIp, 53, "udp", [["10.213.0.7", 5353]]),
    route(EMPTY_SERVICE_IP, 80, "tcp", []),
  ];

  it("replaces the pod's table in one transaction", () => {
    const text = captureRuleset({ inMesh: false, services: [] });
    assert.ok(
      text.startsWith(
        `table inet ${CAPTURE_TABLE}\ndelete table inet ${CAPTURE_TABLE}\ntable inet ${CAPTURE_TABLE} {\n`,
      ),
    );
    assert.equal(CAPTURE_TABLE, `${LOCAL_MESH.prefix}_capture`);
  });

  it("for a mesh pod: inbound to the inbound port except excluded ports, outbound except the sidecar and loopback", () => {
    const text = captureRuleset({ inMesh: true, sidecarUid: 1337, services });
    assert.match(text, /type nat hook prerouting priority dstnat;/);
    assert.match(text, /iifname "eth0" tcp dport \{ 15020, 15021, 15090 \} return\n/);
    assert.match(text, /iifname "eth0" meta l4proto tcp fib daddr type local redirect to :15006\n/);
    const capture = /chain outbound_capture \{\n([^}]*)\}/.exec(text)?.[1] ?? "";
    assert.deepEqual(
      capture.trim().split(/\n\s*/),
      ["meta skuid 1337 return", 'oifname "lo" return', "meta l4proto tcp redirect to :15001"],
      "order matters: the exemptions come before the redirect",
    );
    const outbound = /chain outbound \{\n([^}]*)\}/.exec(text)?.[1] ?? "";
    assert.ok(
      outbound.indexOf("jump outbound_capture") < outbound.indexOf("vmap"),
      "capture before translation",
    );
  });

  it("translates every Service port with endpoints, spreading over several, and refuses the rest of the range", () => {
    const text = captureRuleset({ inMesh: false, services });
    assert.doesNotMatch(text, /redirect|skuid|prerouting/);
    assert.match(
      text,
      /ip daddr \. meta l4proto \. th dport vmap \{ 10\.214\.0\.20 \. tcp \. 8000 : goto service_0, 10\.214\.0\.10 \. udp \. 53 : goto service_1 \}/,
    );
    assert.match(
      text,
      /meta l4proto tcp dnat ip to numgen random mod 2 map \{ 0 : 10\.213\.0\.5 \. 8080, 1 : 10\.213\.0\.6 \. 8080 \}/,
    );
    assert.match(text, /meta l4proto udp dnat ip to 10\.213\.0\.7:5353/);
    assert.doesNotMatch(text, /10\.214\.0\.21/, "a Service with no endpoints gets no translation");
    assert.match(
      text,
      /ip daddr 10\.214\.0\.0\/16 meta l4proto tcp reject with tcp reset\n\t\tip daddr 10\.214\.0\.0\/16 reject\n/,
    );
  });

  it("uses the ports given and is deterministic", () => {
    const spec: CaptureSpec = {
      inMesh: true,
      sidecarUid: 7,
      inboundPort: 16006,
      outboundPort: 16001,
      excludeInboundPorts: [22, 9090, 22],
      services,
    };
    const text = captureRuleset(spec);
    assert.match(text, /tcp dport \{ 22, 9090 \} return/);
    assert.match(text, /redirect to :16006/);
    assert.match(text, /redirect to :16001/);
    assert.equal(captureRuleset(spec), text);
    assert.doesNotMatch(captureRuleset({ ...spec, excludeInboundPorts: [] }), /dport \{/);
  });

  it("refuses specs that would capture wrongly, with a message naming the field", () => {
    const bad: [Partial<CaptureSpec> & Record<string, unknown>, RegExp][] = [
      [{ inMesh: true }, /sidecarUid undefined is not valid/],
      [{ inMesh: true, sidecarUid: 0 }, /non-root uid/],
      [{ inMesh: true, sidecarUid: 1337, inboundPort: 15001 }, /both 15001/],
      [{ inboundPort: 0 }, /inboundPort: port 0/],
      [{ excludeInboundPorts: [70000] }, /excludeInboundPorts: port 70000/],
      [{ services: [route("10.214.0.256", 80, "tcp", [])] }, /services\[0\]\.clusterIp/],
      [{ services: [route("010.214.0.1", 80, "tcp", [])] }, /not an IPv4 address/],
      [{ services: [route("10.215.0.1", 80, "tcp", [])] }, /outside the Service range 10\.214\.0\.0\/16/],
      [{ services: [route(SERVICE_IP, 80, "sctp" as "tcp", [])] }, /protocol "sctp"/],
      [{ services: [route(SERVICE_IP, 80, "tcp", []), route(SERVICE_IP, 80, "tcp", [])] }, /appears twice/],
      [{ services: [route(SERVICE_IP, 80, "tcp", [["10.213.0.5", 0]])] }, /endpoints\[0\]: port 0/],
      [{ services: [route(SERVICE_IP, 80, "tcp", [["10.213.0.5;flush ruleset", 1]])] }, /endpoints\[0\]\.ip/],
    ];
    for (const [fields, message] of bad) {
      const spec = { inMesh: false, services: [], ...fields } as CaptureSpec;
      assert.throws(
        () => captureRuleset(spec),
        (err: unknown) => {
          assert.ok(err instanceof CaptureSpecError, String(err));
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });

  it("given arbitrary input, returns a clean script or throws CaptureSpecError, nothing else", () => {
    const anything = fc.oneof(fc.anything(), fc.integer(), fc.string());
    const port = fc.oneof(fc.integer({ min: 1, max: 65535 }), anything);
    const ip = fc.oneof(fc.ipV4(), fc.constantFrom("10.214.0.20", "10.214.255.254"), anything);
    const service = fc.oneof(
      fc.record({
        clusterIp: ip,
        port,
        protocol: fc.oneof(fc.constantFrom("tcp", "udp"), anything),
        endpoints: fc.oneof(
          fc.array(fc.oneof(fc.record({ ip, port }), anything), { maxLength: 3 }),
          anything,
        ),
      }),
      anything,
    );
    const specArb = fc.record({
      inMesh: fc.oneof(fc.boolean(), anything),
      sidecarUid: fc.oneof(fc.integer({ min: 1, max: 65535 }), anything),
      inboundPort: fc.oneof(fc.constant(undefined), port),
      excludeInboundPorts: fc.oneof(fc.constant(undefined), fc.array(port, { maxLength: 3 }), anything),
      services: fc.oneof(fc.array(service, { maxLength: 4 }), anything),
    });
    fc.assert(
      fc.property(fc.oneof({ weight: 9, arbitrary: specArb }, { weight: 1, arbitrary: anything }), (spec) => {
        try {
          const script = captureRuleset(spec as unknown as CaptureSpec);
          // Nothing from the input reaches the script but validated numbers and addresses.
          assert.match(script, /^[\t\n a-z0-9_.:{},;"/-]*$/);
        } catch (err) {
          assert.ok(err instanceof CaptureSpecError, `unexpected ${String(err)}`);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("capture applied in pods (root)", () => {
  let network: MeshNetwork;
  let ipA: string;
  let ipB: string;
  let netnsA: string;
  let netnsB: string;
  let dir: string | undefined;
  let clientScript: string;
  let services: ServiceRoute[];
  let meshSpec: CaptureSpec;
  const backendPorts: number[] = [];
  let udpPort: number;
  const servers: Server[] = [];
  let udpServer: UdpSocket | undefined;
  const children: ChildProcess[] = [];

  before(async () => {
    requireRoot();
    assertReachableByOtherUids();
    const octet = await freeOctet();
    const suffix = randomBytes(3).toString("hex");
    network = {
      prefix: `tsrt-k${suffix}`,
      bridge: `tsbk${suffix}`,
      bridgeIp: `10.215.${octet}.1`,
      podPrefixLength: 24,
    };
    ipA = `10.215.${octet}.2`;
    ipB = `10.215.${octet}.3`;
    await ensureBridge(network);
    netnsA = (await createPod({ id: "a", namespaceName: "default", ip: ipA }, network)).netns;
    netnsB = (await createPod({ id: "b", namespaceName: "default", ip: ipB }, network)).netns;

    for (let i = 0; i < 2; i++) {
      const server = createServer((socket) => {
        socket.on("error", () => undefined);
        socket.end(`backend ${(socket.address() as AddressInfo).port} from ${socket.remoteAddress}\n`);
      });
      await new Promise<void>((resolve) => server.listen(0, network.bridgeIp, resolve));
      servers.push(server);
      backendPorts.push((server.address() as AddressInfo).port);
    }
    const udp = createSocket("udp4");
    udpServer = udp;
    udp.on("message", (_msg, from) => udp.send(`udp backend from ${from.address}`, from.port, from.address));
    await new Promise<void>((resolve) => udp.bind(0, network.bridgeIp, resolve));
    udpPort = udp.address().port;

    services = [
      route(
        SERVICE_IP,
        8000,
        "tcp",
        backendPorts.map((p) => [network.bridgeIp, p]),
      ),
      route(LOCAL_MESH.dnsServiceIp, 53, "udp", [[network.bridgeIp, udpPort]]),
      route(EMPTY_SERVICE_IP, 80, "tcp", []),
    ];
    meshSpec = { inMesh: true, sidecarUid: SIDECAR.uid, services };
    await applyCapture(netnsA, meshSpec);
    await applyCapture(netnsB, { inMesh: false, services });

    // Readable by the pods' uids: mkdtemp makes a 0700 directory.
    dir = mkdtempSync(join(tmpdir(), `${network.prefix}-`));
    chmodSync(dir, 0o755);
    clientScript = join(dir, "client.mjs");
    writeFileSync(clientScript, CLIENT_SCRIPT, { mode: 0o644 });
    writeFileSync(join(dir, "sidecar.mjs"), SIDECAR_SCRIPT, { mode: 0o644 });
    const originalDst = new URL("../../../src/mesh/local/original-dst.js", import.meta.url).href;
    const listeners = {
      inbound: LOCAL_MESH.inboundCapturePort,
      outbound: LOCAL_MESH.outboundCapturePort,
      alt: ALT_OUTBOUND_PORT,
      status: LOCAL_MESH.statusPort,
    };
    const sidecar = spawnInPod(
      netnsA,
      [process.execPath, join(dir, "sidecar.mjs"), originalDst, JSON.stringify(listeners)],
      SIDECAR,
    );
    children.push(sidecar);
    await waitForReady(sidecar);
    const app = spawnInPod(netnsA, [process.execPath, "-e", APP_SCRIPT], APP);
    children.push(app);
    await waitForReady(app);
  });

  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    for (const server of servers) server.close();
    udpServer?.close();
    if (network) await cleanupLocalMesh({ prefix: network.prefix });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function tcp(
    netns: string,
    ids: { uid: number; gid: number },
    host: string,
    port: number,
    count = 1,
  ): Promise<string[]> {
    const result = await execInPod(
      netns,
      [process.execPath, clientScript, "tcp", host, String(port), String(count)],
      ids,
    );
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim().split("\n");
  }

  async function udp(netns: string, host: string, port: number): Promise<string> {
    const result = await execInPod(netns, [process.execPath, clientScript, "udp", host, String(port)], APP);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  it("sends every connection to a mesh pod to its sidecar, which reads the original destination", async () => {
    assert.deepEqual(await tcp(netnsB, APP, ipA, 80), [`inbound ${ipA}:80`]);
    assert.deepEqual(await tcp(netnsB, APP, ipA, 9999), [`inbound ${ipA}:9999`]);
    const fromHost = await new Promise<string>((resolve, reject) => {
      let text = "";
      const socket = connect(80, ipA);
      socket.setEncoding("utf8").on("data", (d: string) => {
        text += d;
      });
      socket.on("end", () => resolve(text.trim())).on("error", reject);
    });
    assert.equal(fromHost, `inbound ${ipA}:80`);
  });

  it("leaves the sidecar's own ports reachable directly", async () => {
    assert.deepEqual(await tcp(netnsB, APP, ipA, LOCAL_MESH.statusPort), [`status from ${ipB}`]);
  });

  it("lets the sidecar reach the app on 127.0.0.1, and the app loopback, without redirection", async () => {
    assert.deepEqual(await tcp(netnsA, SIDECAR, "127.0.0.1", 80), ["app from 127.0.0.1"]);
    assert.deepEqual(await tcp(netnsA, APP, "127.0.0.1", LOCAL_MESH.statusPort), ["status from 127.0.0.1"]);
  });

  it("sends a mesh pod's outgoing TCP to its sidecar, Services and plain addresses alike", async () => {
    assert.deepEqual(await tcp(netnsA, APP, SERVICE_IP, 8000), [`outbound ${SERVICE_IP}:8000`]);
    const [port] = backendPorts;
    assert.deepEqual(await tcp(netnsA, APP, network.bridgeIp, port as number), [
      `outbound ${network.bridgeIp}:${port}`,
    ]);
    // Any uid but the sidecar's is captured, not only the app's.
    assert.deepEqual(await tcp(netnsA, { uid: 1, gid: 1 }, SERVICE_IP, 8000), [
      `outbound ${SERVICE_IP}:8000`,
    ]);
  });

  it("does not redirect the sidecar's own connections, which still get Service translation", async () => {
    const [port] = backendPorts;
    assert.deepEqual(await tcp(netnsA, SIDECAR, network.bridgeIp, port as number), [
      `backend ${port} from ${ipA}`,
    ]);
    const [line] = await tcp(netnsA, SIDECAR, SERVICE_IP, 8000);
    assert.match(
      line ?? "",
      new RegExp(`^backend (${backendPorts.join("|")}) from ${ipA.replaceAll(".", "\\.")}$`),
    );
  });

  it("translates a pod without sidecar's TCP to a ClusterIP to its endpoints, spread over them", async () => {
    const lines = await tcp(netnsB, APP, SERVICE_IP, 8000, 24);
    const seen = new Set<string>();
    for (const line of lines) {
      const match = /^backend (\d+) from (\S+)$/.exec(line);
      assert.ok(match, line);
      assert.equal(match[2], ipB);
      seen.add(match[1] as string);
    }
    // Random per connection: all 24 on one endpoint has probability 2^-23.
    assert.deepEqual([...seen].sort(), backendPorts.map(String).sort());
  });

  it("translates UDP to the DNS ClusterIP in every pod, mesh or not", async () => {
    assert.equal(await udp(netnsB, LOCAL_MESH.dnsServiceIp, 53), `udp backend from ${ipB}`);
    assert.equal(await udp(netnsA, LOCAL_MESH.dnsServiceIp, 53), `udp backend from ${ipA}`);
  });

  it("refuses at once a ClusterIP port with no endpoint, an undefined port, an unknown ClusterIP", async () => {
    assert.deepEqual(await tcp(netnsB, APP, EMPTY_SERVICE_IP, 80), ["error ECONNREFUSED"]);
    assert.deepEqual(await tcp(netnsB, APP, SERVICE_IP, 9999), ["error ECONNREFUSED"]);
    assert.deepEqual(await tcp(netnsB, APP, "10.214.0.99", 80), ["error ECONNREFUSED"]);
  });

  it("replaces the rules when applied again: the old redirect target no longer applies", async () => {
    try {
      await applyCapture(netnsA, { ...meshSpec, outboundPort: ALT_OUTBOUND_PORT });
      assert.deepEqual(await tcp(netnsA, APP, SERVICE_IP, 8000), [`alt ${SERVICE_IP}:8000`]);
      const { stdout } = await execFileAsync("ip", ["netns", "exec", netnsA, "nft", "list", "ruleset"]);
      assert.equal(stdout.match(/^table /gm)?.length, 1, stdout);
      assert.match(stdout, new RegExp(`redirect to :${ALT_OUTBOUND_PORT}`));
      assert.doesNotMatch(stdout, new RegExp(`redirect to :${LOCAL_MESH.outboundCapturePort}\\b`));
    } finally {
      await applyCapture(netnsA, meshSpec);
    }
    assert.deepEqual(await tcp(netnsA, APP, SERVICE_IP, 8000), [`outbound ${SERVICE_IP}:8000`]);
  });

  it("removes the rules: the pod's traffic then goes where it was addressed", async () => {
    try {
      await removeCapture(netnsB);
      await removeCapture(netnsB);
      assert.deepEqual(await tcp(netnsB, APP, ipA, LOCAL_MESH.statusPort), [`status from ${ipB}`]);
      const { stdout } = await execFileAsync("ip", ["netns", "exec", netnsB, "nft", "list", "ruleset"]);
      assert.equal(stdout.trim(), "");
    } finally {
      await applyCapture(netnsB, { inMesh: false, services });
    }
  });

  it("produces scripts nft accepts for any valid spec", async () => {
    const ip = fc.ipV4().filter((a) => !a.startsWith("0.") && a !== "255.255.255.255");
    const port = fc.integer({ min: 1, max: 65535 });
    const clusterIp = fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }))
      .map(([c, d]) => `10.214.${c}.${d}`);
    const serviceArb = fc.record({
      clusterIp,
      port,
      protocol: fc.constantFrom<"tcp" | "udp">("tcp", "udp"),
      endpoints: fc.array(fc.record({ ip, port }), { maxLength: 4 }),
    });
    const specArb = fc.record({
      inMesh: fc.boolean(),
      sidecarUid: fc.integer({ min: 1, max: 0xfffffffe }),
      inboundPort: fc.integer({ min: 1, max: 32767 }),
      outboundPort: fc.integer({ min: 32768, max: 65535 }),
      excludeInboundPorts: fc.array(port, { maxLength: 5 }),
      services: fc.uniqueArray(serviceArb, {
        maxLength: 6,
        selector: (s) => `${s.clusterIp} ${s.protocol} ${s.port}`,
      }),
    });
    fc.assert(
      fc.property(specArb, (spec) => {
        // -c: checked by the kernel, not committed.
        execFileSync("ip", ["netns", "exec", netnsB, "nft", "-c", "-f", "-"], {
          input: captureRuleset(spec),
          stdio: ["pipe", "pipe", "pipe"],
        });
      }),
      { numRuns: 25 },
    );
  });
});
