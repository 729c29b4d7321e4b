/**
 * End to end: one `tessera server run` and one `tessera agent run` as real child processes, in a
 * temporary directory, on a free port. Workloads are real processes too: the CLI (`svid fetch`,
 * as root and as uid 65534), a Python gRPC client generated at test time from the SPIFFE
 * Workload API proto (another implementation), and the TS X509Source in this process.
 *
 * The cases follow the "Truth and attacks": a foreign client, another uid, a restart of
 * the server, short TTLs, CA rotation and, last (it ends the agent's life), a banned agent.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import type { X509Certificate } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SpiffeBundle } from "../../../src/spiffe/bundle/spiffebundle.js";
import { X509Bundle } from "../../../src/spiffe/bundle/x509bundle.js";
import { TrustDomain } from "../../../src/spiffe/id.js";
import { validateJwtSvid } from "../../../src/spiffe/jwtsvid.js";
import { X509Source } from "../../../src/spiffe/workload/x509source.js";
import {
  parseCertificates,
  parseDerCertificates,
  verifyX509Svid,
  X509Svid,
} from "../../../src/spiffe/x509svid.js";
import { assertReachableByOtherUids, cliPath, oracle } from "../../helpers/paths.js";
import { type RunOptions, type RunResult, run, tessera } from "../run.js";

const TD = "example.org";
const ME = `spiffe://${TD}/me`;
const NOBODY = 65534;
/** The X.509-SVID TTL of the workload entry: short, so rotation and expiry happen in the test. */
const X509_TTL = 8;
const PYTHON = "/usr/bin/python3";

async function ok(args: string[]): Promise<string> {
  const r = await tessera(args);
  assert.equal(r.status, 0, `tessera ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A long-running CLI process whose output (stdout and stderr) is kept. */
class Proc {
  log = "";
  readonly child: ChildProcess;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [cliPath, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: "" },
    });
    const keep = (d: Buffer) => {
      this.log += d.toString();
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until the output (from `from` on) matches; fails early when the process exits. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<void> {
    await until(`${re} in the output of ${this.child.spawnargs.slice(2, 4).join(" ")}`, timeoutMs, () => {
      if (re.test(this.log.slice(from))) return true;
      if (!this.running) throw new Error(`the process exited (${this.child.exitCode}):\n${this.log}`);
      return undefined;
    });
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

function pem(certs: readonly X509Certificate[]): string {
  return certs.map((c) => c.toString()).join("");
}

/** `openssl verify [-attime T] -CAfile CA -untrusted CHAIN LEAF`: the exit status and output. */
async function opensslVerify(
  dir: string,
  name: string,
  ca: string,
  chain: readonly X509Certificate[],
  atMs?: number,
): Promise<RunResult> {
  const leaf = join(dir, `${name}.leaf.pem`);
  const untrusted = join(dir, `${name}.chain.pem`);
  const caFile = join(dir, `${name}.ca.pem`);
  await writeFile(leaf, (chain[0] as X509Certificate).toString());
  await writeFile(untrusted, pem(chain));
  await writeFile(caFile, ca);
  const attime = atMs === undefined ? [] : ["-attime", String(Math.floor(atMs / 1000))];
  return run("openssl", ["verify", ...attime, "-CAfile", caFile, "-untrusted", untrusted, leaf]);
}

const PY_CLIENT = `
import sys
import grpc
gen, sock, out, mode = sys.argv[1:5]
sys.path.insert(0, gen)
import workloadapi_pb2 as pb
import workloadapi_pb2_grpc as rpc

channel = grpc.insecure_channel("unix://" + sock)
stub = rpc.SpiffeWorkloadAPIStub(channel)
md = [] if mode == "noheader" else [("workload.spiffe.io", "true")]
try:
    stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=10)
    first = next(stream)
    stream.cancel()
    svid = first.svids[0]
    open(out + "/spiffe_id", "w").write(svid.spiffe_id)
    open(out + "/svid.der", "wb").write(svid.x509_svid)
    open(out + "/svid.key.der", "wb").write(svid.x509_svid_key)
    open(out + "/bundle.der", "wb").write(svid.bundle)
    jwt = stub.FetchJWTSVID(pb.JWTSVIDRequest(audience=["db"]), metadata=md, timeout=10)
    open(out + "/jwt", "w").write(jwt.svids[0].svid)
    print("ok")
except grpc.RpcError as e:
    print("rpc-error", e.code().name, e.details())
    sys.exit(3)
`;

const root0 = process.geteuid?.() === 0;

describe("identity end to end: server and agent processes", {
  timeout: 90_000,
  skip: root0 ? false : "needs root: the entry is bound to unix:uid:0 and a workload runs as uid 65534",
}, () => {
  let root: string;
  let serverDir: string;
  let agentDir: string;
  let socket: string;
  let port: number;
  let server: Proc;
  let agent: Proc;
  let agentId: string;
  let bundlePem: string;
  const td = TrustDomain.parse(TD);

  const serverArgs = () => [
    "server",
    "run",
    "--data-dir",
    serverDir,
    "--bind",
    `127.0.0.1:${port}`,
    "--trust-domain",
    TD,
  ];

  async function fetchSvid(out: string, options: RunOptions = {}): Promise<RunResult> {
    return tessera(["svid", "fetch", "--socket", socket, "--write", out, "--timeout", "5"], options);
  }

  /** What a workload of this process (root) gets now: its SVID chain and the bundle. */
  async function current(name: string): Promise<{ chain: X509Certificate[]; bundle: X509Certificate[] }> {
    const out = join(root, name);
    const r = await fetchSvid(out);
    assert.equal(r.status, 0, r.stderr);
    const svid = X509Svid.parse(await readFile(join(out, "svid.pem")), await readFile(join(out, "svid.key")));
    return {
      chain: [...svid.certificates],
      bundle: parseCertificates(await readFile(join(out, "bundle.pem"))),
    };
  }

  before(async () => {
    assertReachableByOtherUids();
    root = await mkdtemp(join(tmpdir(), "tessera-e2e-"));
    // uid 65534 must reach the socket: the path to it is world-searchable (the agent's data
    // directory stays 0700, the socket lives beside it).
    await chmod(root, 0o755);
    serverDir = join(root, "server");
    agentDir = join(root, "agent");
    await mkdir(join(root, "sock"), { mode: 0o755 });
    await chmod(join(root, "sock"), 0o755);
    socket = join(root, "sock", "workload.sock");
    port = await freePort();

    server = new Proc(serverArgs());
    await server.waitFor(/tessera server: trust domain example\.org/, 15_000);

    const token = JSON.parse(await ok(["token", "generate", "--data-dir", serverDir, "-o", "json"])) as {
      token: string;
      spiffeId: string;
    };
    agentId = token.spiffeId;
    bundlePem = await ok(["bundle", "show", "--data-dir", serverDir]);
    await writeFile(join(root, "bundle.pem"), bundlePem);

    agent = new Proc([
      "agent",
      "run",
      "--data-dir",
      agentDir,
      "--server",
      `127.0.0.1:${port}`,
      "--join-token",
      token.token,
      "--trust-bundle",
      join(root, "bundle.pem"),
      "--trust-domain",
      TD,
      "--socket",
      socket,
      "--sync-interval",
      "0.3",
    ]);
    await agent.waitFor(/export SPIFFE_ENDPOINT_SOCKET=unix:\/\//, 15_000);

    await ok([
      "entry",
      "create",
      "--data-dir",
      serverDir,
      "--spiffe-id",
      ME,
      "--parent-id",
      agentId,
      "--selector",
      "unix:uid:0",
      "--x509-ttl",
      String(X509_TTL),
      "-o",
      "json",
    ]);
    // The agent picks the entry up at its next sync.
    await until("the first SVID", 10_000, async () =>
      (await fetchSvid(join(root, "first"))).status === 0 ? true : undefined,
    );
  });

  after(async () => {
    await agent?.stop();
    await server?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("a Python gRPC client (grpcio) fetches an X.509-SVID and a JWT-SVID that openssl and the SPIFFE library accept; without the header: INVALID_ARGUMENT", async () => {
    const gen = join(root, "py");
    await mkdir(gen);
    const proto = oracle("spiffe", "workloadapi.proto");
    const protoc = await run(PYTHON, [
      "-m",
      "grpc_tools.protoc",
      `-I${dirname(proto)}`,
      "-I/usr/include",
      `--python_out=${gen}`,
      `--grpc_python_out=${gen}`,
      "workloadapi.proto",
    ]);
    assert.equal(protoc.status, 0, protoc.stderr);
    await writeFile(join(gen, "client.py"), PY_CLIENT);

    const out = join(root, "py-out");
    await mkdir(out);
    const py = await run(PYTHON, [join(gen, "client.py"), gen, socket, out, "header"]);
    assert.equal(py.status, 0, `${py.stdout}${py.stderr}`);
    assert.equal(py.stdout.trim(), "ok");
    assert.equal(await readFile(join(out, "spiffe_id"), "utf8"), ME);

    const chain = parseDerCertificates(await readFile(join(out, "svid.der")));
    const bundle = parseDerCertificates(await readFile(join(out, "bundle.der")));
    assert.ok(bundle.length >= 1);
    const verified = await opensslVerify(root, "py", pem(bundle), chain);
    assert.equal(verified.status, 0, `${verified.stdout}${verified.stderr}`);
    assert.match(verified.stdout, /: OK/);

    const svid = X509Svid.parseRaw(
      await readFile(join(out, "svid.der")),
      await readFile(join(out, "svid.key.der")),
    );
    assert.equal(svid.id.toString(), ME);
    const x509Bundle = X509Bundle.fromCertificates(td, bundle);
    assert.equal(verifyX509Svid(svid.certificates, x509Bundle).id.toString(), ME);

    const jwks = await ok(["bundle", "show", "--data-dir", serverDir, "--format", "spiffe"]);
    const jwtBundle = SpiffeBundle.parse(td, jwks).jwtBundle();
    const jwt = await validateJwtSvid(await readFile(join(out, "jwt"), "utf8"), jwtBundle, "db");
    assert.equal(jwt.id.toString(), ME);
    await assert.rejects(validateJwtSvid(await readFile(join(out, "jwt"), "utf8"), jwtBundle, "other"));

    const bare = await run(PYTHON, [join(gen, "client.py"), gen, socket, join(root, "nowhere"), "noheader"]);
    assert.equal(bare.status, 3, `${bare.stdout}${bare.stderr}`);
    assert.match(bare.stdout, /^rpc-error INVALID_ARGUMENT /);
  });

  it("a process of another uid (65534) is refused (PermissionDenied) where root gets the SVID bound to unix:uid:0", async () => {
    const mine = await current("root-out");
    assert.match(mine.chain[0]?.subjectAltName ?? "", new RegExp(`URI:${ME}`));

    const logFrom = agent.log.length;
    const other = await tessera(["svid", "fetch", "--socket", socket, "--timeout", "5"], {
      uid: NOBODY,
      cwd: "/",
    });
    assert.equal(other.status, 1, `${other.stdout}${other.stderr}`);
    assert.match(other.stderr, new RegExp(`no registration entry matches this process: uid ${NOBODY}\\b`));
    assert.doesNotMatch(other.stdout, /BEGIN/);
    await agent.waitFor(new RegExp(`no identity for pid \\d+ \\(uid ${NOBODY}`), 3000, logFrom);
  });

  it("with short TTLs the workload sees a new SVID before the old one expires", async () => {
    const source = await X509Source.create({
      address: `unix://${socket}`,
      timeoutMs: 5000,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    try {
      const seen: { serial: string; validTo: number; at: number }[] = [];
      const note = () => {
        const leaf = source.getX509Svid().leaf;
        if (seen.at(-1)?.serial !== leaf.serialNumber)
          seen.push({ serial: leaf.serialNumber, validTo: Date.parse(leaf.validTo), at: Date.now() });
      };
      note();
      source.on("update", note);
      // Two rotations: at half-life each, so within about one TTL.
      await until("two rotations", (X509_TTL + 4) * 1000, () => (seen.length >= 3 ? true : undefined));
      for (let i = 1; i < seen.length; i++) {
        const prev = seen[i - 1] as (typeof seen)[number];
        const next = seen[i] as (typeof seen)[number];
        // X.509 validTo has second precision: the successor came before the old one expired.
        assert.ok(
          next.at < prev.validTo,
          `SVID #${i} arrived at ${new Date(next.at).toISOString()}, after #${i - 1} expired`,
        );
        assert.ok(next.validTo > prev.validTo);
      }
      assert.equal(source.getX509Svid().id.toString(), ME);
    } finally {
      await source.close();
    }
  });

  it("a server restart keeps the CA, the entries and the agents; the agent keeps syncing", async () => {
    const before = await current("before-restart");
    const agentsBefore = await ok(["agent", "list", "--data-dir", serverDir, "-o", "json"]);
    await server.stop();
    server = new Proc(serverArgs());
    await server.waitFor(/tessera server: trust domain example\.org/, 15_000);

    assert.equal(await ok(["bundle", "show", "--data-dir", serverDir]), bundlePem);
    assert.equal(await ok(["agent", "list", "--data-dir", serverDir, "-o", "json"]), agentsBefore);
    assert.match(await ok(["entry", "show", "--data-dir", serverDir, "-o", "json"]), new RegExp(ME));

    // An entry created after the restart reaches the workload through the agent's sync.
    await ok([
      "entry",
      "create",
      "--data-dir",
      serverDir,
      "--spiffe-id",
      `spiffe://${TD}/nobody`,
      "--parent-id",
      agentId,
      "--selector",
      `unix:uid:${NOBODY}`,
    ]);
    const got = await until("the new entry at uid 65534", 10_000, async () => {
      const r = await tessera(["svid", "fetch", "--socket", socket, "--timeout", "5"], {
        uid: NOBODY,
        cwd: "/",
      });
      return r.status === 0 ? r.stdout : undefined;
    });
    assert.match(got, new RegExp(`spiffe://${TD}/nobody`));
    // And root's SVIDs keep rotating, signed by the same CA.
    const afterRestart = await until("a new SVID for root", (X509_TTL + 4) * 1000, async () => {
      const c = await current("after-restart");
      return c.chain[0]?.serialNumber !== before.chain[0]?.serialNumber ? c : undefined;
    });
    assert.equal(
      verifyX509Svid(
        afterRestart.chain,
        X509Bundle.fromCertificates(td, parseCertificates(bundlePem)),
      ).id.toString(),
      ME,
    );
  });

  it("CA rotation: after prepare and activate old SVIDs still verify against the bundle and new ones chain to the new CA", async () => {
    const old = await current("before-rotation");
    const oldRoots = parseCertificates(bundlePem);
    assert.equal(oldRoots.length, 1);
    await ok(["ca", "prepare", "--data-dir", serverDir, "-o", "json"]);
    // Activate only once the agent (hence its workloads) has the new bundle, as `ca prepare` says.
    const prepared = await until("the prepared CA in the workload's bundle", 10_000, async () => {
      const c = await current("prepared");
      return c.bundle.length === 2 ? c.bundle : undefined;
    });
    const newRoot = prepared.find(
      (c) => !c.raw.equals((oldRoots[0] as X509Certificate).raw),
    ) as X509Certificate;
    assert.ok(newRoot);
    await ok(["ca", "activate", "--data-dir", serverDir, "-o", "json"]);
    const bundleNow = parseCertificates(await ok(["bundle", "show", "--data-dir", serverDir]));
    assert.equal(bundleNow.length, 2);
    // The old SVID verifies against the bundle after the activation (now, or within its
    // validity should it have just expired).
    const at = Math.min(Date.now(), Date.parse((old.chain[0] as X509Certificate).validTo) - 1000);
    const oldOk = verifyX509Svid(old.chain, X509Bundle.fromCertificates(td, bundleNow), { at: new Date(at) });
    assert.equal(oldOk.id.toString(), ME);
    const o = await opensslVerify(root, "old", pem(bundleNow), old.chain, at);
    assert.equal(o.status, 0, o.stdout + o.stderr);

    const rotated = await until("an SVID signed by the new CA", (X509_TTL + 4) * 1000, async () => {
      const c = await current("rotated");
      return verifies(c.chain, [newRoot]) ? c : undefined;
    });
    assert.ok(!verifies(old.chain, [newRoot]), "the old SVID must not chain to the new CA");
    // The new SVID chains to the new CA, not to the old one, and verifies against the bundle.
    assert.ok(!verifies(rotated.chain, oldRoots), "the new SVID must not chain to the old CA");
    assert.equal(verifyX509Svid(rotated.chain, X509Bundle.fromCertificates(td, bundleNow)).id.toString(), ME);
    const n = await opensslVerify(root, "new", newRoot.toString(), rotated.chain);
    assert.equal(n.status, 0, n.stdout + n.stderr);
    assert.equal(
      (await opensslVerify(root, "new-old", pem(oldRoots), rotated.chain)).status === 0,
      false,
      "openssl must refuse the new SVID against the old root alone",
    );
    bundlePem = pem(bundleNow);
  });

  it("a banned agent can no longer sync; its workloads keep their SVID until it expires, then lose it", async () => {
    const logFrom = agent.log.length;
    await ok(["agent", "ban", "--data-dir", serverDir, agentId]);
    await agent.waitFor(/agent: (sync failed|cannot renew)[^\n]*/, 5000, logFrom);
    const line = agent.log.slice(logFrom).match(/agent: (sync failed|cannot renew)[^\n]*/)?.[0] ?? "";
    assert.match(line, /ban/i, line);

    // The workload still has an SVID right after the ban...
    const kept = await current("after-ban");
    const expiry = Date.parse((kept.chain[0] as X509Certificate).validTo);
    assert.ok(expiry > Date.now());
    // ...and loses it at expiry (no successor can be signed).
    const lost = await until("the workload to lose its SVID", (X509_TTL + 4) * 1000, async () => {
      const r = await fetchSvid(join(root, "lost"));
      return r.status !== 0 ? r : undefined;
    });
    assert.equal(lost.status, 1, lost.stderr);
    assert.match(lost.stderr, /no registration entry matches this process: uid 0\b/);
    // Not before the last SVID it had expired (second precision, plus the agent's timer).
    assert.ok(
      Date.now() >= expiry - 1000,
      `lost at ${new Date().toISOString()}, the SVID was valid until ${new Date(expiry).toISOString()}`,
    );
  });
});

function verifies(chain: readonly X509Certificate[], roots: readonly X509Certificate[]): boolean {
  try {
    verifyX509Svid(chain, X509Bundle.fromCertificates(TrustDomain.parse(TD), roots));
    return true;
  } catch {
    return false;
  }
}
