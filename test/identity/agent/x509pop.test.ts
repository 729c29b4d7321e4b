/**
 * x509pop node attestation from the agent's side, against the real identity server in this
 * process: the Agent (library) and `tessera agent run --x509pop-cert/--x509pop-key` (a child
 * process, options partly from --config).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, generateKeyPairSync, verify } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { adminRequest } from "../../../src/cli/admin.js";
import { Agent } from "../../../src/identity/agent/agent.js";
import { AgentApiError, ServerClient, signX509PopNonce } from "../../../src/identity/agent/server-client.js";
import { ADMIN_API } from "../../../src/identity/api.js";
import { IdentityServer } from "../../../src/identity/server/server.js";
import { cliPath } from "../../helpers/paths.js";
import { until } from "../../spiffe/fake-workload-api.js";
import { type IssuedCertificate, TestCa } from "../../spiffe/testca.js";

const TD = "pop.example";

describe("agent x509pop attestation (real server in-process)", () => {
  let dir: string;
  let server: IdentityServer;
  let nodeCa: TestCa;
  let node: IssuedCertificate;

  const address = () => `127.0.0.1:${server.agentAddress.port}`;
  const serverCa = () => server.bundle().x509Bundle().authorities;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-x509pop-"));
    nodeCa = await TestCa.create("nodes.test");
    node = await nodeCa.issue({ subject: "CN=node-7", ca: false, keyUsage: ["digitalSignature"] });
    server = await IdentityServer.start({
      dataDir: join(dir, "server"),
      trustDomain: TD,
      bind: "127.0.0.1:0",
      x509popCaPem: nodeCa.certificate.toString(),
      rotationIntervalSeconds: 3600,
      log: () => undefined,
    });
  });

  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("signs the nonce bytes so the node key verifies them (EC, RSA, Ed25519)", () => {
    const nonce = Buffer.from("0123456789abcdef0123456789abcdef").toString("base64");
    for (const [type, alg] of [
      ["ec", "sha256"],
      ["rsa", "sha256"],
      ["ed25519", null],
    ] as const) {
      const pair =
        type === "ec"
          ? generateKeyPairSync("ec", { namedCurve: "P-256" })
          : type === "rsa"
            ? generateKeyPairSync("rsa", { modulusLength: 2048 })
            : generateKeyPairSync("ed25519");
      const sig = Buffer.from(signX509PopNonce(nonce, pair.privateKey), "base64");
      assert.ok(verify(alg, Buffer.from(nonce, "base64"), pair.publicKey, sig), type);
    }
  });

  it("attests by x509pop, gets the x509pop agent ID and syncs its entries", async () => {
    const fp = createHash("sha1").update(node.der).digest("hex");
    const agentId = `spiffe://${TD}/spire/agent/x509pop/${fp}`;
    const entry = (
      await adminRequest(server.adminSocketPath, "POST", ADMIN_API.entries, {
        spiffeId: `spiffe://${TD}/node-workload`,
        parentId: agentId,
        selectors: ["unix:uid:4242"],
      })
    ).json as { id: string };
    assert.ok(entry.id);
    const logs: string[] = [];
    const agent = new Agent({
      dataDir: join(dir, "agent-lib"),
      server: new ServerClient({ address: address(), trustBundle: serverCa() }),
      x509pop: { certificates: [node.certificate], privateKey: node.key.privateKey },
      syncIntervalMs: 200,
      retryMs: 100,
      log: (l) => logs.push(l),
    });
    try {
      await agent.start();
      assert.equal(agent.spiffeId?.toString(), agentId);
      assert.equal(agent.stats.attestations, 1);
      assert.ok(agent.stats.syncs >= 1, logs.join("\n"));
      assert.equal(agent.cache.entryCount, 1);
      await agent.syncNow();
      assert.ok(agent.stats.syncs >= 2);
      assert.equal(agent.lastError, undefined);
    } finally {
      await agent.stop();
    }
  });

  it("a node certificate from another CA is refused with the server's code", async () => {
    const stranger = await (await TestCa.create("other.test")).issue({
      subject: "CN=intruder",
      ca: false,
      keyUsage: ["digitalSignature"],
    });
    const agent = new Agent({
      dataDir: join(dir, "agent-stranger"),
      server: new ServerClient({ address: address(), trustBundle: serverCa() }),
      x509pop: { certificates: [stranger.certificate], privateKey: stranger.key.privateKey },
    });
    await assert.rejects(agent.start(), (e: unknown) => {
      assert.ok(e instanceof AgentApiError);
      assert.equal(e.code, "x509pop-untrusted");
      return true;
    });
  });

  it("a join token and x509pop credentials exclude each other", () => {
    assert.throws(
      () =>
        new Agent({
          dataDir: join(dir, "agent-both"),
          server: new ServerClient({ address: address(), trustBundle: serverCa() }),
          joinToken: "t",
          x509pop: { certificates: [node.certificate], privateKey: node.key.privateKey },
        }),
      /not both/,
    );
  });

  it("tessera agent run --x509pop-cert/--x509pop-key (server and trust bundle from --config)", async () => {
    const cert = join(dir, "node.pem");
    const key = join(dir, "node.key");
    const bundle = join(dir, "server-ca.pem");
    const config = join(dir, "agent.yaml");
    await writeFile(cert, node.pem);
    await writeFile(key, node.privateKeyPem, { mode: 0o600 });
    await writeFile(
      bundle,
      serverCa()
        .map((c) => c.toString())
        .join(""),
    );
    await writeFile(
      config,
      `# agent config\nserver: "${address()}"\ntrustBundle: ${bundle}\ndataDir: ${join(dir, "wrong")}\nsyncInterval: 1\n`,
    );
    const dataDir = join(dir, "agent-cli");
    const child = spawn(
      process.execPath,
      [
        cliPath,
        "agent",
        "run",
        "--config",
        config,
        "--data-dir",
        dataDir,
        "--x509pop-cert",
        cert,
        "--x509pop-key",
        key,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TESSERA_JOIN_TOKEN: "" } },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    try {
      await until(
        () => stderr.includes("Workload API on") || child.exitCode !== null,
        "the agent to start",
        15_000,
      );
      assert.match(
        stderr,
        /attested as spiffe:\/\/pop\.example\/spire\/agent\/x509pop\/[0-9a-f]{40}/,
        stderr,
      );
      // --data-dir on the command line beat the config file's dataDir.
      assert.ok(stderr.includes(join(dataDir, "workload.sock")), stderr);
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0, stderr);
  });

  it("tessera agent run refuses --join-token with --x509pop-cert, and half an x509pop pair", async () => {
    const run = (args: string[]) =>
      new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [cliPath, "agent", "run", "--server", address(), ...args], {
          stdio: ["ignore", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
        });
        child.on("close", (status) => resolve({ status, stderr }));
      });
    const both = await run(["--join-token", "x", "--x509pop-cert", "a.pem", "--x509pop-key", "a.key"]);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /exclude each other/);
    const half = await run(["--x509pop-cert", "a.pem"]);
    assert.equal(half.status, 2);
    assert.match(half.stderr, /give both --x509pop-cert and --x509pop-key/);
  });
});
