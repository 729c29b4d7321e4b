/**
 * NetworkPolicy as nftables drops: the generated text is parsed back by the reference
 * interpreter and judged packet by packet against the policy engine on random clusters; nft
 * itself accepts the generated rulesets (check mode, in a throw-away namespace); and real
 * packets between two network namespaces are dropped (a timeout, not a refusal) or let through,
 * with a policy change applied live. Needs root (CI runs as root).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { clusterFromObjects, clusterFromText } from "../../../src/kube/index.js";
import { formatIPv4, parseIPv4 } from "../../../src/kube/ip.js";
import type { Pod } from "../../../src/kube/objects.js";
import { runCommand } from "../../../src/mesh/local/exec.js";
import {
  applyNetpol,
  EGRESS_PRIORITY,
  INGRESS_PRIORITY,
  type MeshPod,
  NETPOL_TABLE,
  NetpolConfigError,
  netpolRuleset,
  removeNetpol,
} from "../../../src/mesh/local/netpol-nft.js";
import {
  evaluateChain,
  type NftPacket,
  type NftTable,
  parseNftScript,
} from "../../../src/mesh/local/netpol-nft-reference.js";
import { compile, type Engine } from "../../../src/policy/engine.js";
import type { Endpoint, Flow } from "../../../src/policy/model.js";
import {
  clusterObjectsArb,
  flowSpecArb,
  type KubeObjects,
  POD_IPS,
} from "../../policy/netpol/arbitraries.js";

const NUM_RUNS = Number(process.env.TESSERA_FC_RUNS ?? 250);
const HOST_IP = "10.213.0.1";

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    throw new Error(
      "these tests create network namespaces and load nftables rules: run them as root (CI does)",
    );
}

/** Every Pod object gets its own address from the pool (the mesh gives each pod one). */
function withDistinctPodIps(objects: KubeObjects): object[] {
  let next = 0;
  return objects.map((o) =>
    o.kind === "Pod" ? { ...o, status: { podIP: POD_IPS[next++ % POD_IPS.length] } } : o,
  );
}

function meshOf(objects: readonly object[]): { engine: Engine; mesh: MeshPod[] } {
  const { cluster, diagnostics } = clusterFromObjects(objects);
  const { engine } = compile(cluster, diagnostics);
  const mesh = cluster.pods
    .filter((p): p is Pod & { ip: number } => p.ip !== undefined)
    .map((pod, i) => ({ pod, netns: `tsrt-t-pod${i}`, ip: formatIPv4(pod.ip) }));
  return { engine, mesh };
}

const NFT_NAME = { TCP: "tcp", UDP: "udp", SCTP: "sctp" } as const;

/** The L3/L4 layers' verdict on a flow, straight from `decide` (the per-flow path of the engine). */
function l3l4Allows(engine: Engine, flow: Flow): boolean {
  const names = new Set(engine.layers.map((l) => l.name));
  return engine
    .decide(flow)
    .trace.filter((s) => names.has(s.layer))
    .every((s) => s.allowed);
}

describe("netpolRuleset", () => {
  const yaml = (ports: string) => `
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: 10.213.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: 10.213.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}, {ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]
    ports: ${ports}
`;
  function twoPods(ports = "[{port: 8080}, {port: 53, protocol: UDP}]") {
    const { cluster, diagnostics } = clusterFromText(yaml(ports));
    const { engine } = compile(cluster, diagnostics);
    const [a, b] = cluster.pods as [Pod, Pod];
    const pods: MeshPod[] = [
      { pod: a, netns: "tsrt-t-a", ip: "10.213.0.2" },
      { pod: b, netns: "tsrt-t-b", ip: "10.213.0.3" },
    ];
    return { engine, pods };
  }

  it("replaces one table atomically, with the hooks and priorities that see original ports and real peers", () => {
    const { engine, pods } = twoPods();
    const table = parseNftScript(netpolRuleset(engine, pods[1] as MeshPod, pods, { hostIp: HOST_IP }));
    assert.equal(table.family, "inet");
    assert.equal(table.name, NETPOL_TABLE);
    assert.ok(table.replacesWhole, "declare, delete, define in one script");
    assert.deepEqual(table.chains.get("ingress")?.base, {
      type: "filter",
      hook: "prerouting",
      priority: INGRESS_PRIORITY,
      policy: "accept",
    });
    assert.deepEqual(table.chains.get("egress")?.base, {
      type: "filter",
      hook: "output",
      priority: EGRESS_PRIORITY,
      policy: "accept",
    });
    // After conntrack (-200), before dstnat (-100); output after Service DNAT (-100).
    assert.ok(INGRESS_PRIORITY > -200 && INGRESS_PRIORITY < -100);
    assert.ok(EGRESS_PRIORITY > -100);
  });

  it("gives sources with equal allowances one chain, and merges adjacent equal ranges", () => {
    const { engine, pods } = twoPods();
    const table = parseNftScript(netpolRuleset(engine, pods[1] as MeshPod, pods, { hostIp: HOST_IP }));
    const groups = [...table.chains.keys()].filter((n) => n.startsWith("ingress_allow_"));
    assert.equal(groups.length, 1, "pod a and the ipBlock allow the same ports");
    const elements = table.maps.get("ingress_peers")?.elements ?? [];
    assert.deepEqual(
      elements.map((e) => [formatIPv4(e.start), formatIPv4(e.end), e.verdict]),
      [
        ["10.213.0.2", "10.213.0.2", { kind: "jump", chain: "ingress_allow_0" }],
        ["10.213.0.3", "10.213.0.3", { kind: "accept" }],
        ["192.168.0.0", "192.168.0.255", { kind: "jump", chain: "ingress_allow_0" }],
        ["192.168.2.0", "192.168.255.255", { kind: "jump", chain: "ingress_allow_0" }],
      ],
    );
    assert.deepEqual(table.maps.get("egress_peers")?.elements, [
      { start: 0, end: 0xffffffff, verdict: { kind: "accept" } },
    ]);
  });

  it("passes established traffic and loopback whatever the policy says", () => {
    const { engine, pods } = twoPods("[]");
    const table = parseNftScript(netpolRuleset(engine, pods[1] as MeshPod, pods, { hostIp: HOST_IP }));
    const packet: NftPacket = {
      saddr: parseIPv4("10.9.9.9") as number,
      daddr: parseIPv4("10.213.0.3") as number,
      protocol: "tcp",
      dport: 22,
      ctState: "new",
      iifname: "eth0",
    };
    assert.equal(evaluateChain(table, "ingress", packet), "drop");
    assert.equal(evaluateChain(table, "ingress", { ...packet, ctState: "established" }), "accept");
    assert.equal(
      evaluateChain(table, "ingress", { ...packet, ctState: "related", protocol: "icmp" }),
      "accept",
    );
    assert.equal(evaluateChain(table, "ingress", { ...packet, iifname: "lo" }), "accept");
    assert.equal(evaluateChain(table, "ingress", { ...packet, ctState: "invalid" }), "drop");
  });

  it("refuses inconsistent addresses instead of guarding the wrong peer", () => {
    const { engine, pods } = twoPods();
    const [a, b] = pods as [MeshPod, MeshPod];
    const ruleset =
      (self: MeshPod, all: MeshPod[], hostIp = HOST_IP) =>
      () =>
        netpolRuleset(engine, self, all, { hostIp });
    assert.throws(ruleset({ ...b, ip: "10.213.0.9" }, [a]), NetpolConfigError);
    assert.throws(ruleset(b, [a, { ...a, ip: "10.213.0.3", pod: b.pod }, b]), /two pods have the address/);
    assert.throws(ruleset(b, pods, "10.213.0.2"), /host address 10.213.0.2 is also a pod's address/);
    assert.throws(ruleset(b, pods, "nope"), /not IPv4/);
    assert.throws(ruleset({ ...b, ip: "10.213.0.300" }, pods), /not an IPv4 address/);
  });
});

/** A flow between mesh pods or outside addresses, with ICMP standing for "not TCP, UDP or SCTP". */
interface TestFlow {
  readonly src: MeshPod | number;
  readonly dst: MeshPod | number;
  readonly protocol: "TCP" | "UDP" | "SCTP" | "ICMP";
  readonly port: number;
}

/** The verdict of the rules (egress of the source pod, then ingress of the destination pod) against the engine's. */
function judge(engine: Engine, tables: ReadonlyMap<MeshPod, NftTable>, f: TestFlow): void {
  const ipOf = (e: MeshPod | number) => (typeof e === "number" ? e : (e.pod.ip as number));
  const endpoint = (e: MeshPod | number): Endpoint =>
    typeof e === "number" ? { kind: "ip", ip: e } : { kind: "pod", pod: e.pod };
  const self = f.src === f.dst;
  const base = { saddr: ipOf(f.src), daddr: ipOf(f.dst), ctState: "new" } as const;
  const packet: NftPacket =
    f.protocol === "ICMP"
      ? { ...base, protocol: "icmp" }
      : { ...base, protocol: NFT_NAME[f.protocol], dport: f.port };
  const iface = self ? "lo" : "eth0";
  const egress =
    typeof f.src === "number"
      ? "accept"
      : evaluateChain(tables.get(f.src) as NftTable, "egress", { ...packet, oifname: iface });
  const ingress =
    typeof f.dst === "number"
      ? "accept"
      : evaluateChain(tables.get(f.dst) as NftTable, "ingress", { ...packet, iifname: iface });
  const passes = egress === "accept" && ingress === "accept";
  let expected: boolean;
  if (self) expected = true;
  else if (f.protocol === "ICMP") expected = engine.allowed(endpoint(f.src), endpoint(f.dst)).isAll();
  else
    expected = l3l4Allows(engine, {
      src: endpoint(f.src),
      dst: endpoint(f.dst),
      protocol: f.protocol,
      port: f.port,
    });
  const what = `${formatIPv4(base.saddr)} -> ${formatIPv4(base.daddr)} ${f.protocol} ${f.port}`;
  assert.equal(
    passes,
    expected,
    `${what}: rules egress ${egress}, ingress ${ingress}; engine allows: ${expected}`,
  );
}

/**
 * Flows at every edge the rules draw: each end of each allowed port interval and the port
 * beyond it, for every pod pair, and the addresses on both sides of every ipBlock boundary.
 */
function edgeFlows(engine: Engine, mesh: readonly MeshPod[]): TestFlow[] {
  const out: TestFlow[] = [];
  const protocols = ["TCP", "UDP", "SCTP"] as const;
  const portsNear = (src: MeshPod | number, dst: MeshPod | number): number[] => {
    const ep = (e: MeshPod | number): Endpoint =>
      typeof e === "number" ? { kind: "ip", ip: e } : { kind: "pod", pod: e.pod };
    const allowed = engine.allowed(ep(src), ep(dst));
    const ports = new Set([80]);
    for (const p of protocols) {
      const iv = allowed.portsOf(p);
      for (const edge of iv)
        for (const near of [edge - 1, edge, edge + 1]) if (near >= 1 && near <= 65535) ports.add(near);
    }
    return [...ports];
  };
  const byIp = new Map(mesh.map((p) => [p.pod.ip as number, p]));
  // An address that is a mesh pod's is that pod; the pods themselves are covered above.
  const addresses = engine
    .ipBoundaries()
    .flatMap((b) => [b - 1, b])
    .filter((ip) => !byIp.has(ip));
  for (const dst of mesh) {
    for (const src of [...mesh, ...addresses]) {
      if (src === dst) continue;
      for (const port of portsNear(src, dst))
        for (const protocol of protocols) out.push({ src, dst, protocol, port });
      out.push({ src, dst, protocol: "ICMP", port: 0 });
    }
    for (const ip of addresses) {
      for (const port of portsNear(dst, ip))
        for (const protocol of protocols) out.push({ src: dst, dst: ip, protocol, port });
    }
  }
  return out;
}

describe("the generated rules agree with the policy engine (reference interpreter)", () => {
  const flowArb = fc.record({ spec: flowSpecArb, icmp: fc.boolean() });

  it("drops exactly what the engine denies, for TCP, UDP, SCTP and ICMP, on random clusters", () => {
    fc.assert(
      fc.property(
        clusterObjectsArb({ minUnits: 2, maxUnits: 5, maxPolicies: 5 }),
        fc.array(flowArb, { minLength: 1, maxLength: 30 }),
        (objects, flows) => {
          const { engine, mesh } = meshOf(withDistinctPodIps(objects));
          fc.pre(mesh.length > 0);
          const tables = new Map<MeshPod, NftTable>(
            mesh.map((p) => [p, parseNftScript(netpolRuleset(engine, p, mesh, { hostIp: HOST_IP }))]),
          );
          const byIp = new Map(mesh.map((p) => [p.pod.ip as number, p]));
          const pick = (i: number) => mesh[i % mesh.length] as MeshPod;
          for (const { spec, icmp } of flows) {
            // An address that is a mesh pod's is that pod: its packets carry the pod's address.
            const outside = byIp.get(spec.ip) ?? spec.ip;
            const src = spec.shape === "ip-pod" ? outside : pick(spec.src);
            const dst = spec.shape === "pod-ip" ? outside : pick(spec.dst);
            const target =
              spec.dstPort !== undefined && typeof dst !== "number" && dst.pod.ports.length > 0
                ? dst.pod.ports[spec.dstPort % dst.pod.ports.length]
                : undefined;
            judge(engine, tables, {
              src,
              dst,
              protocol: icmp ? "ICMP" : (target?.protocol ?? spec.protocol),
              port: target?.port ?? spec.port,
            });
          }
          for (const flow of edgeFlows(engine, mesh)) judge(engine, tables, flow);
        },
      ),
      { numRuns: NUM_RUNS, includeErrorInReport: true },
    );
  });

  it("keeps rulesets small: one chain per distinct allowance, no two adjacent ranges alike", () => {
    fc.assert(
      fc.property(clusterObjectsArb({ minUnits: 2, maxUnits: 5, maxPolicies: 5 }), (objects) => {
        const { engine, mesh } = meshOf(withDistinctPodIps(objects));
        const cuts = engine.ipBoundaries().length + 2 * mesh.length + 1;
        for (const p of mesh) {
          const table = parseNftScript(netpolRuleset(engine, p, mesh, { hostIp: HOST_IP }));
          for (const direction of ["ingress", "egress"]) {
            const elements = table.maps.get(`${direction}_peers`)?.elements ?? [];
            assert.ok(elements.length <= cuts);
            const sorted = [...elements].sort((x, y) => x.start - y.start);
            for (let i = 1; i < sorted.length; i++) {
              const [prev, cur] = [sorted[i - 1], sorted[i]] as const;
              if (prev && cur && prev.end + 1 === cur.start)
                assert.notDeepEqual(prev.verdict, cur.verdict, "adjacent equal ranges are merged");
            }
            const groups = [...table.chains.values()].filter((c) => c.name.startsWith(`${direction}_allow_`));
            const bodies = groups.map((g) => JSON.stringify(g.rules));
            assert.equal(new Set(bodies).size, bodies.length, "no two groups allow the same ports");
          }
        }
      }),
      { numRuns: Math.ceil(NUM_RUNS / 3) },
    );
  });
});

describe("nft accepts every generated ruleset", () => {
  const netns = `tsrt-t-${randomBytes(4).toString("hex")}`;
  before(async () => {
    requireRoot();
    await runCommand(["ip", "netns", "add", netns]);
  });
  after(async () => {
    await runCommand(["ip", "netns", "delete", netns], { allowFailure: true });
  });

  it("nft -c -f passes on random clusters' rulesets", async () => {
    await fc.assert(
      fc.asyncProperty(clusterObjectsArb({ minUnits: 2, maxUnits: 5, maxPolicies: 5 }), async (objects) => {
        const { engine, mesh } = meshOf(withDistinctPodIps(objects));
        for (const p of mesh) {
          const script = netpolRuleset(engine, p, mesh, { hostIp: HOST_IP });
          const result = await runCommand(["nft", "-c", "-f", "-"], {
            input: script,
            netns,
            allowFailure: true,
          });
          assert.equal(result.code, 0, `${result.stderr}\n${script}`);
        }
      }),
      { numRuns: 8 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Real packets

const SERVER_SCRIPT = `
import { createServer } from "node:net";
const ports = JSON.parse(process.env.PORTS);
await Promise.all(ports.map((port) => new Promise((resolve) => {
  createServer((s) => s.end()).listen(port, "0.0.0.0", resolve);
})));
console.log("ready");`;

/** Connects to each port at once; prints port -> connected | refused | timeout (after 1 s). */
const PROBE_SCRIPT = `
import { connect } from "node:net";
const ports = JSON.parse(process.env.PORTS);
const outcomes = await Promise.all(ports.map((port) => new Promise((resolve) => {
  const s = connect({ host: process.env.HOST, port });
  s.setTimeout(1000, () => { s.destroy(); resolve("timeout"); });
  s.on("connect", () => { s.destroy(); resolve("connected"); });
  s.on("error", (e) => resolve(e.code === "ECONNREFUSED" ? "refused" : "error " + e.code));
})));
console.log(JSON.stringify(Object.fromEntries(ports.map((p, i) => [p, outcomes[i]]))));`;

describe("real packets between two network namespaces", () => {
  const suffix = randomBytes(4).toString("hex");
  const nsA = `tsrt-t-${suffix}a`;
  const nsB = `tsrt-t-${suffix}b`;
  const [ipA, ipB] = ["10.213.0.2", "10.213.0.3"];
  let server: ChildProcess | undefined;

  const clusterYaml = (bIngress: string, aEgress = "") => `
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: ${ipA}}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: ${ipB}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: ${bIngress}
${aEgress}`;

  async function apply(yaml: string): Promise<void> {
    const { cluster, diagnostics } = clusterFromText(yaml);
    const { engine } = compile(cluster, diagnostics);
    const [a, b] = cluster.pods as [Pod, Pod];
    await applyNetpol(
      engine,
      [
        { pod: a, netns: nsA, ip: ipA },
        { pod: b, netns: nsB, ip: ipB },
      ],
      { hostIp: HOST_IP },
    );
  }

  async function probe(ports: number[]): Promise<Record<string, string>> {
    const { stdout } = await runCommand(
      [
        "env",
        `PORTS=${JSON.stringify(ports)}`,
        `HOST=${ipB}`,
        process.execPath,
        "--input-type=module",
        "-e",
        PROBE_SCRIPT,
      ],
      { netns: nsA },
    );
    return JSON.parse(stdout) as Record<string, string>;
  }

  before(async () => {
    requireRoot();
    const [vethA, vethB] = [`tst${suffix}a`, `tst${suffix}b`];
    await runCommand(["ip", "netns", "add", nsA]);
    await runCommand(["ip", "netns", "add", nsB]);
    await runCommand([
      "ip",
      "link",
      "add",
      vethA,
      "netns",
      nsA,
      "type",
      "veth",
      "peer",
      "name",
      vethB,
      "netns",
      nsB,
    ]);
    for (const [ns, dev, ip] of [
      [nsA, vethA, ipA],
      [nsB, vethB, ipB],
    ] as const) {
      await runCommand(["ip", "addr", "add", `${ip}/24`, "dev", dev], { netns: ns });
      await runCommand(["ip", "link", "set", dev, "up"], { netns: ns });
      await runCommand(["ip", "link", "set", "lo", "up"], { netns: ns });
    }
    const started = spawn(
      "ip",
      ["netns", "exec", nsB, process.execPath, "--input-type=module", "-e", SERVER_SCRIPT],
      { env: { ...process.env, PORTS: "[8080, 9090]" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    server = started;
    await new Promise<void>((resolve, reject) => {
      let text = "";
      const timer = setTimeout(() => reject(new Error(`server in ${nsB} did not start: ${text}`)), 5000);
      const onData = (d: Buffer) => {
        text += d.toString();
        if (text.includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      };
      started.stdout?.on("data", onData);
      started.stderr?.on("data", onData);
      started.on("exit", (code) => reject(new Error(`server exited ${code}: ${text}`)));
    });
  });

  after(async () => {
    if (server?.pid !== undefined && server.exitCode === null) {
      const exited = new Promise((resolve) => server?.once("exit", resolve));
      server.kill();
      await exited;
    }
    await runCommand(["ip", "netns", "delete", nsA], { allowFailure: true });
    await runCommand(["ip", "netns", "delete", nsB], { allowFailure: true });
  });

  it("drops denied SYNs (the caller times out) and applies policy changes live", async () => {
    // 8080-8081 allowed: 8080 answers, 8081 has no listener (refused: the SYN got through); 9090 dropped.
    await apply(clusterYaml("[{port: 8080, endPort: 8081}]"));
    assert.deepEqual(await probe([8080, 8081, 9090]), {
      8080: "connected",
      8081: "refused",
      9090: "timeout",
    });

    await apply(clusterYaml("[{port: 9090}]"));
    assert.deepEqual(await probe([8080, 9090]), { 8080: "timeout", 9090: "connected" });
    const tables = await runCommand(["nft", "list", "tables"], { netns: nsB });
    assert.equal(tables.stdout.match(new RegExp(`table inet ${NETPOL_TABLE}\\b`, "g"))?.length, 1);

    // Egress of the source counts too: a isolated for egress with no rule reaches nothing.
    const denyEgress = `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-out, namespace: default}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]`;
    await apply(clusterYaml("[{port: 9090}]", denyEgress));
    assert.deepEqual(await probe([9090]), { 9090: "timeout" });

    await removeNetpol([{ netns: nsA }, { netns: nsB }]);
    assert.deepEqual(await probe([8080, 9090]), { 8080: "connected", 9090: "connected" });
  });
});
