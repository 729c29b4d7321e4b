/**
 * The agent against a fake Agent API server (fake-agent-api.ts), serving workloads through the
 * real Workload API server and client (SO_PEERCRED, /proc attestation of this very process).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AGENT_FILES, Agent, redactAgentId } from "../../../src/identity/agent/agent.js";
import { createCsr, generateP256Key } from "../../../src/identity/agent/csr.js";
import {
  AgentApiError,
  parseServerAddress,
  ServerClient,
} from "../../../src/identity/agent/server-client.js";
import { UnixAttestor } from "../../../src/identity/agent/unix-attestor.js";
import { WorkloadApiServer } from "../../../src/identity/agent/workload-api-server.js";
import { parseCsr } from "../../../src/identity/server/ca/csr.js";
import { JwtBundleSet } from "../../../src/spiffe/bundle/set.js";
import { validateJwtSvid } from "../../../src/spiffe/jwtsvid.js";
import { WorkloadApiClient, WorkloadApiError } from "../../../src/spiffe/workload/client.js";
import type { X509Svid } from "../../../src/spiffe/x509svid.js";
import { until } from "../../spiffe/fake-workload-api.js";
import { FakeAgentApi, TD } from "./fake-agent-api.js";

const uid = process.geteuid?.() ?? 0;
const gid = process.getegid?.() ?? 0;
const FAST = { initialMs: 20, maxMs: 100 };

interface Rig {
  dir: string;
  api: FakeAgentApi;
  agent: Agent;
  wl: WorkloadApiServer;
  client: WorkloadApiClient;
  logs: string[];
}

async function startAgent(
  api: FakeAgentApi,
  dir: string,
  options: { token?: string; syncIntervalMs?: number; insecure?: boolean; logs?: string[] } = {},
): Promise<Agent> {
  const logs = options.logs ?? [];
  const server = new ServerClient({
    address: api.address,
    ...(options.insecure ? { insecureBootstrap: true } : { trustBundle: [new X509Certificate(api.caPem)] }),
  });
  const agent = new Agent({
    dataDir: join(dir, "data"),
    server,
    ...(options.token === undefined ? {} : { joinToken: options.token }),
    syncIntervalMs: options.syncIntervalMs ?? 200,
    retryMs: 100,
    log: (l) => logs.push(l),
  });
  await agent.start();
  return agent;
}

async function rig(api: FakeAgentApi, options: { syncIntervalMs?: number } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), "tessera-agent-run-"));
  const logs: string[] = [];
  const agent = await startAgent(api, dir, { token: api.newToken(), logs, ...options });
  const wl = new WorkloadApiServer({
    socketPath: join(dir, "data", "workload.sock"),
    attestors: [new UnixAttestor({ discoverWorkloadPath: false })],
    identities: agent,
    log: (l) => logs.push(l),
  });
  await wl.start();
  const client = new WorkloadApiClient({ address: wl.address, backoff: FAST });
  return { dir, api, agent, wl, client, logs };
}

async function stopRig(r: Rig): Promise<void> {
  await r.client.close();
  await r.wl.close();
  await r.agent.stop();
  await rm(r.dir, { recursive: true, force: true });
}

async function fetchError(client: WorkloadApiClient): Promise<WorkloadApiError> {
  try {
    await client.fetchX509Svid({ signal: AbortSignal.timeout(3000) });
  } catch (err) {
    assert.ok(err instanceof WorkloadApiError, String(err));
    return err;
  }
  assert.fail("expected the fetch to fail");
}

describe("agent CSR", () => {
  it("builds a PKCS#10 request the CA's strict parser accepts (EC P-256, ECDSA-SHA256)", async () => {
    const { privateKey, publicKey } = await generateP256Key();
    const csr = parseCsr(createCsr(privateKey));
    assert.equal(csr.keyType, "ec-p256");
    assert.equal(csr.signatureAlgorithm, "ecdsa-with-SHA256");
    assert.deepEqual(csr.subjectPublicKeyInfo, publicKey.export({ type: "spki", format: "der" }));
  });

  it("refuses other keys", async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    assert.throws(() => createCsr(privateKey), /P-256/);
  });
});

describe("server client", () => {
  it("parses HOST:PORT and refuses anything else", () => {
    assert.deepEqual(parseServerAddress("127.0.0.1:8081"), { host: "127.0.0.1", port: 8081 });
    assert.deepEqual(parseServerAddress("[::1]:9"), { host: "::1", port: 9 });
    assert.deepEqual(parseServerAddress("server.local:443"), { host: "server.local", port: 443 });
    assert.throws(() => parseServerAddress("8081"), /HOST:PORT/);
    assert.throws(() => parseServerAddress("h:0"), /HOST:PORT/);
  });

  it("redacts the join token in agent IDs for logs", () => {
    assert.equal(
      redactAgentId("spiffe://example.org/spire/agent/join_token/abcdefgh"),
      "spiffe://example.org/spire/agent/join_token/abcd…",
    );
  });

  it("refuses a server whose chain does not verify against --trust-bundle, before sending the token", async () => {
    const api = await FakeAgentApi.start();
    const other = await FakeAgentApi.start();
    try {
      const client = new ServerClient({
        address: api.address,
        trustBundle: [new X509Certificate(other.caPem)],
      });
      await assert.rejects(client.attest(api.newToken(), "x"), (err: unknown) => {
        assert.ok(err instanceof AgentApiError);
        assert.equal(err.code, "server-not-trusted");
        return true;
      });
      assert.equal(api.calls.attest, 0);
    } finally {
      await api.close();
      await other.close();
    }
  });

  it("insecure bootstrap: refuses a server whose ID is not spiffe://<td>/spire/server, before sending the token", async () => {
    const api = await FakeAgentApi.start({ serverId: `spiffe://${TD}/not-the-server` });
    try {
      const client = new ServerClient({ address: api.address, insecureBootstrap: true });
      await assert.rejects(client.attest(api.newToken(), "x"), /spire\/server/);
      assert.equal(api.calls.attest, 0);
    } finally {
      await api.close();
    }
  });

  it("without --trust-bundle or --insecure-bootstrap it says what to pass", async () => {
    const client = new ServerClient({ address: "127.0.0.1:1" });
    await assert.rejects(client.attest("t", "x"), /--trust-bundle FILE .* or --insecure-bootstrap/);
  });
});

describe("agent", () => {
  let api: FakeAgentApi;
  before(async () => {
    api = await FakeAgentApi.start();
  });
  after(async () => {
    await api.close();
  });

  it("attests, persists its identity (0600), syncs, and a workload fetches its X.509-SVID and a JWT-SVID", async () => {
    api.entries = [];
    const entry = api.addEntry(`spiffe://${TD}/web`, [`unix:uid:${uid}`], { hint: "web" });
    api.addEntry(`spiffe://${TD}/other`, [`unix:uid:${uid}`, "unix:gid:4242"]);
    const r = await rig(api);
    try {
      assert.match(
        r.agent.spiffeId?.toString() ?? "",
        /^spiffe:\/\/example\.org\/spire\/agent\/join_token\//,
      );
      for (const f of Object.values(AGENT_FILES)) {
        assert.equal((await stat(join(r.dir, "data", f))).mode & 0o777, 0o600, f);
      }
      const ctx = await r.client.fetchX509Context({ signal: AbortSignal.timeout(3000) });
      assert.deepEqual(
        ctx.svids.map((s) => s.id.toString()),
        [`spiffe://${TD}/web`],
      );
      assert.equal(ctx.svids[0]?.hint, "web");
      assert.equal(ctx.svids[0]?.privateKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
      assert.ok(ctx.bundles.get(ctx.svids[0]?.id.trustDomain as never));
      // JWT: minted once, then served from the cache.
      const jwt = await r.client.fetchJwtSvid({ audience: "db" });
      assert.equal(jwt.id.toString(), `spiffe://${TD}/web`);
      const bundles = await r.client.fetchJwtBundles();
      await validateJwtSvid(jwt.marshal(), new JwtBundleSet(bundles), "db");
      const again = await r.client.fetchJwtSvid({ audience: "db" });
      assert.equal(again.marshal(), jwt.marshal());
      assert.equal(api.calls.jwt, 1);
      assert.ok(entry.id);
      // Logs never carry keys or tokens.
      const joined = r.logs.join("\n");
      assert.doesNotMatch(joined, /PRIVATE KEY|eyJ/);
      assert.doesNotMatch(joined, /join_token\/tok-[a-z0-9]{6,}/);
    } finally {
      await stopRig(r);
    }
  });

  it("short TTLs: the open stream gets each new SVID before the previous one expires", async () => {
    api.entries = [];
    api.workloadTtlMs = 3000;
    api.addEntry(`spiffe://${TD}/short`, [`unix:uid:${uid}`]);
    const r = await rig(api, { syncIntervalMs: 5000 });
    const seen: { svid: X509Svid; at: number }[] = [];
    const ac = new AbortController();
    try {
      const watching = r.client.watchX509Context(
        {
          onUpdate: (ctx) => {
            const svid = ctx.svids[0];
            if (svid) seen.push({ svid, at: Date.now() });
          },
          onError: () => undefined,
        },
        ac.signal,
      );
      await until(() => seen.length >= 4, "four SVIDs on the stream", 8000);
      ac.abort();
      await watching;
      for (let i = 1; i < seen.length; i++) {
        const prev = seen[i - 1] as { svid: X509Svid };
        const cur = seen[i] as { svid: X509Svid; at: number };
        assert.notEqual(cur.svid.leaf.serialNumber, prev.svid.leaf.serialNumber);
        assert.ok(
          cur.at < Date.parse(prev.svid.leaf.validTo),
          `SVID ${i} arrived at ${new Date(cur.at).toISOString()}, after the previous expired (${prev.svid.leaf.validTo})`,
        );
      }
    } finally {
      ac.abort();
      api.workloadTtlMs = 60 * 60_000;
      await stopRig(r);
    }
  });

  it("a removed entry: its SVID is evicted and the workload gets PermissionDenied", async () => {
    api.entries = [];
    const e = api.addEntry(`spiffe://${TD}/gone`, [`unix:gid:${gid}`]);
    const r = await rig(api);
    try {
      assert.equal((await r.client.fetchX509Svid()).id.toString(), `spiffe://${TD}/gone`);
      api.removeEntry(e.id);
      await r.agent.syncNow();
      assert.equal(r.agent.cache.currentSvids().size, 0);
      const err = await fetchError(r.client);
      assert.equal(err.kind, "PermissionDenied");
    } finally {
      await stopRig(r);
    }
  });

  it("renews its own SVID at half-life, persists it, and a restart resumes without attesting again", async () => {
    api.entries = [];
    api.agentTtlMs = 2000;
    api.addEntry(`spiffe://${TD}/r`, [`unix:uid:${uid}`]);
    const dir = await mkdtemp(join(tmpdir(), "tessera-agent-renew-"));
    try {
      const token = api.newToken();
      const attests = api.calls.attest;
      const agent = await startAgent(api, dir, { token });
      const id = agent.spiffeId?.toString();
      const first = await readFile(join(dir, "data", AGENT_FILES.svid), "utf8");
      await until(() => agent.stats.renewals >= 1, "a renewal", 4000);
      const renewed = await readFile(join(dir, "data", AGENT_FILES.svid), "utf8");
      assert.notEqual(renewed, first);
      assert.equal(agent.spiffeId?.toString(), id);
      await agent.stop();
      api.agentTtlMs = 60 * 60_000;
      // Restart: the join token is spent; the agent resumes from its data directory.
      const restarted = await startAgent(api, dir, { token });
      try {
        assert.equal(restarted.spiffeId?.toString(), id);
        assert.equal(api.calls.attest, attests + 1);
        assert.equal(restarted.cache.currentSvids().size, 1);
      } finally {
        await restarted.stop();
      }
      // Without any identity and without a token: a message that says what to do.
      await assert.rejects(startAgent(api, join(dir, "empty")), /--join-token/);
    } finally {
      api.agentTtlMs = 60 * 60_000;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("banned: the agent cannot renew or sync, keeps serving until expiry, then workloads lose their identities", async () => {
    api.entries = [];
    api.workloadTtlMs = 2500;
    api.addEntry(`spiffe://${TD}/banned`, [`unix:uid:${uid}`]);
    const r = await rig(api);
    try {
      const svid = await r.client.fetchX509Svid();
      api.ban(r.agent.spiffeId?.toString() ?? "");
      await assert.rejects(
        r.agent.renewNow(),
        (err: unknown) => err instanceof AgentApiError && err.code === "agent-banned",
      );
      await r.agent.syncNow();
      assert.equal(r.agent.lastError?.code, "agent-banned");
      // Still served (maybe a rotation already happened before the ban).
      const during = await r.client.fetchX509Svid();
      assert.ok(Date.parse(during.leaf.validTo) >= Date.parse(svid.leaf.validTo));
      await until(() => Date.now() > Date.parse(during.leaf.validTo) + 200, "the SVID's expiry", 5000);
      const err = await fetchError(r.client);
      assert.equal(err.kind, "PermissionDenied");
      assert.ok(r.logs.some((l) => /expired without a successor/.test(l)));
    } finally {
      api.workloadTtlMs = 60 * 60_000;
      await stopRig(r);
    }
  });

  it("insecure bootstrap: attests, then verifies the server against the bundle it received", async () => {
    api.entries = [];
    const dir = await mkdtemp(join(tmpdir(), "tessera-agent-insecure-"));
    try {
      const agent = await startAgent(api, dir, { token: api.newToken(), insecure: true });
      try {
        await agent.syncNow();
        assert.equal(agent.lastError, undefined);
        assert.ok(agent.stats.syncs >= 1);
      } finally {
        await agent.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
