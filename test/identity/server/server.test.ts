/**
 * The identity server end to end, in process: a server on 127.0.0.1:0 with a temporary data
 * directory (SQLite), fake agents over node:https with their agent SVIDs, and the Admin API on
 * its Unix socket.
 */
import assert from "node:assert/strict";
import { createHash, sign, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { adminRequest } from "../../../src/cli/admin.js";
import { ADMIN_API, AGENT_API, type WireEntry } from "../../../src/identity/api.js";
import { IdentityServer } from "../../../src/identity/server/server.js";
import { SpiffeBundle } from "../../../src/spiffe/bundle/spiffebundle.js";
import { TrustDomain } from "../../../src/spiffe/id.js";
import { verifyX509Svid } from "../../../src/spiffe/x509svid.js";
import { TestCa } from "../../spiffe/testca.js";
import { makeCsr, workloadKey } from "./ca/helpers.js";
import { type ClientSvid, FakeAgent, newKeyAndCsr, svidFromResponse } from "./fake-agent.js";

const TD = "example.org";

describe("identity server end to end (SQLite)", () => {
  let dir: string;
  let server: IdentityServer;
  let nodeCa: TestCa;
  const logs: string[] = [];
  let agent: FakeAgent;
  let sock: string;

  async function start(extra: Partial<Parameters<typeof IdentityServer.start>[0]> = {}): Promise<void> {
    server = await IdentityServer.start({
      dataDir: join(dir, "server"),
      trustDomain: TD,
      bind: "127.0.0.1:0",
      x509popCaPem: nodeCa.certificate.toString(),
      rotationIntervalSeconds: 3600,
      log: (l) => logs.push(l),
      ...extra,
    });
    agent = new FakeAgent("127.0.0.1", server.agentAddress.port, TD);
    sock = server.adminSocketPath;
  }

  const admin = async (method: string, path: string, body?: unknown) =>
    (await adminRequest(sock, method, path, body)).json as Record<string, unknown>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "tessera-srv-"));
    nodeCa = await TestCa.create("nodes.test");
    await start();
  });

  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // State shared by the steps below (they run in order).
  let joinAgentId = "";
  let joinSvid: ClientSvid;
  let popAgentId = "";
  let popSvid: ClientSvid;
  let entryA: WireEntry;
  let entryPop: WireEntry;
  let workloadSvidBeforeRotation: X509Certificate[] = [];

  it("keeps its admin socket 0600 in a 0700 data directory", () => {
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "server")).mode & 0o777, 0o700);
    assert.ok(statSync(sock).isSocket());
  });

  it("attests an agent with a join token, once", async () => {
    const t = await admin("POST", ADMIN_API.joinTokens, { ttlSeconds: 600 });
    const token = t.token as string;
    assert.equal(t.spiffeId, `spiffe://${TD}/spire/agent/join_token/${token}`);
    // A malformed CSR is refused and does not spend the token.
    const bad = await agent.call("POST", AGENT_API.attest, { method: "join_token", token, csr: "AAAA" });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(bad.body.message as string, /csr/i);
    const { key, csr } = await newKeyAndCsr();
    const ok = await agent.call("POST", AGENT_API.attest, { method: "join_token", token, csr });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.spiffeId, t.spiffeId);
    joinAgentId = ok.body.spiffeId as string;
    joinSvid = svidFromResponse(ok.body.svid as string[], key);
    const bundle = agent.learnBundle(ok);
    assert.equal(verifyX509Svid(joinSvid.certificates, bundle).id.toString(), joinAgentId);
    const again = await agent.call("POST", AGENT_API.attest, { method: "join_token", token, csr });
    assert.equal(again.status, 403);
    assert.equal(again.body.code, "join-token-used");
    const unknown = await agent.call("POST", AGENT_API.attest, {
      method: "join_token",
      token: "x".repeat(32),
      csr,
    });
    assert.equal(unknown.body.code, "join-token-unknown");
    // No secret in the server log.
    assert.ok(!logs.join("\n").includes(token), "the join token must not be logged");
  });

  it("syncs only the agent's entries and signs only for them", async () => {
    entryA = (await admin("POST", ADMIN_API.entries, {
      spiffeId: `spiffe://${TD}/web`,
      parentId: joinAgentId,
      selectors: ["unix:uid:1000"],
      dnsNames: ["web.local"],
      x509SvidTtlSeconds: 600,
    })) as unknown as WireEntry;
    const other = (await admin("POST", ADMIN_API.entries, {
      spiffeId: `spiffe://${TD}/db`,
      parentId: `spiffe://${TD}/spire/agent/join_token/someone-else-entirely`,
      selectors: ["unix:uid:999"],
    })) as unknown as WireEntry;
    const sync = await agent.call("GET", AGENT_API.sync, undefined, joinSvid);
    assert.equal(sync.status, 200, JSON.stringify(sync.body));
    const ids = (sync.body.entries as WireEntry[]).map((e) => e.id);
    assert.deepEqual(ids, [entryA.id]);
    assert.equal(SpiffeBundle.parse(TrustDomain.parse(TD), sync.body.bundle as string).sequence, 1n);

    const key = await workloadKey("ec-p256");
    const csr = makeCsr(key).toString("base64");
    const signed = await agent.call(
      "POST",
      AGENT_API.sign,
      { requests: [{ entryId: entryA.id, csr }] },
      joinSvid,
    );
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const svids = signed.body.svids as Array<{ certificates: string[]; spiffeId: string; entryId: string }>;
    assert.equal(svids.length, 1);
    const chain = (svids[0]?.certificates ?? []).map((b) => new X509Certificate(Buffer.from(b, "base64")));
    assert.equal(verifyX509Svid(chain, agent.bundle as SpiffeBundle).id.toString(), `spiffe://${TD}/web`);
    assert.ok(chain[0]?.checkPrivateKey(key.privateKey), "the SVID certifies the workload's own key");
    assert.match(chain[0]?.subjectAltName ?? "", /DNS:web\.local/);

    const refused = await agent.call(
      "POST",
      AGENT_API.sign,
      { requests: [{ entryId: other.id, csr }] },
      joinSvid,
    );
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, "entry-not-authorized");
    // One bad request in a batch refuses the batch.
    const mixed = await agent.call(
      "POST",
      AGENT_API.sign,
      {
        requests: [
          { entryId: entryA.id, csr },
          { entryId: entryA.id, csr: Buffer.from("not a csr").toString("base64") },
        ],
      },
      joinSvid,
    );
    assert.equal(mixed.status, 400);
    assert.match(mixed.body.message as string, /requests\[1\]\.csr/);
    const garbage = await agent.call("POST", AGENT_API.sign, { requests: "x" }, joinSvid);
    assert.equal(garbage.status, 400);
    // Without a client certificate: refused.
    const anonymous = await agent.call("GET", AGENT_API.sync);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, "no-client-certificate");
    // A JWT-SVID for the entry.
    const jwt = await agent.call("POST", AGENT_API.jwt, { entryId: entryA.id, audience: ["db"] }, joinSvid);
    assert.equal(jwt.status, 200, JSON.stringify(jwt.body));
    assert.equal(jwt.body.spiffeId, `spiffe://${TD}/web`);
  });

  it("renews the agent SVID; the old one is then refused", async () => {
    const { key, csr } = await newKeyAndCsr();
    const r = await agent.call("POST", AGENT_API.renew, { csr }, joinSvid);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const renewed = svidFromResponse(r.body.svid as string[], key);
    assert.notEqual(renewed.certificates[0]?.serialNumber, joinSvid.certificates[0]?.serialNumber);
    const old = await agent.call("GET", AGENT_API.sync, undefined, joinSvid);
    assert.equal(old.status, 403);
    assert.equal(old.body.code, "agent-svid-superseded");
    joinSvid = renewed;
    assert.equal((await agent.call("GET", AGENT_API.sync, undefined, joinSvid)).status, 200);
    // A malformed renew changes nothing: the current SVID still works.
    const bad = await agent.call("POST", AGENT_API.renew, { csr: "!!" }, joinSvid);
    assert.equal(bad.status, 400);
    assert.equal((await agent.call("GET", AGENT_API.sync, undefined, joinSvid)).status, 200);
  });

  it("attests a node with x509pop (nonce signed with the node key)", async () => {
    const node = await nodeCa.issue({ subject: "CN=node-1", ca: false, keyUsage: ["digitalSignature"] });
    const certificates = [node.der.toString("base64")];
    const challenge = await agent.call("POST", AGENT_API.attest, { method: "x509pop", certificates });
    assert.equal(challenge.status, 200, JSON.stringify(challenge.body));
    const nonce = challenge.body.nonce as string;
    const { key, csr } = await newKeyAndCsr();
    const wrongSig = sign("sha256", Buffer.from("other"), node.key.privateKey).toString("base64");
    const bad = await agent.call("POST", AGENT_API.attest, {
      method: "x509pop_response",
      certificates,
      nonce,
      signature: wrongSig,
      csr,
    });
    assert.equal(bad.status, 403);
    assert.equal(bad.body.code, "x509pop-bad-signature");
    // The nonce was used up by the failed try: start again.
    const nonce2 = (await agent.call("POST", AGENT_API.attest, { method: "x509pop", certificates })).body
      .nonce as string;
    const signature = sign("sha256", Buffer.from(nonce2, "base64"), node.key.privateKey).toString("base64");
    const ok = await agent.call("POST", AGENT_API.attest, {
      method: "x509pop_response",
      certificates,
      nonce: nonce2,
      signature,
      csr,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const fp = createHash("sha1").update(node.der).digest("hex");
    popAgentId = ok.body.spiffeId as string;
    assert.equal(popAgentId, `spiffe://${TD}/spire/agent/x509pop/${fp}`);
    popSvid = svidFromResponse(ok.body.svid as string[], key);
    const listed = (await admin("GET", ADMIN_API.agent + encodeURIComponent(popAgentId))) as {
      selectors: string[];
    };
    assert.ok(listed.selectors.includes("x509pop:subject:cn:node-1"), JSON.stringify(listed.selectors));
    // A node certificate from another CA is refused at the first step.
    const stranger = await (await TestCa.create("other.test")).issue({ subject: "CN=evil", ca: false });
    const refused = await agent.call("POST", AGENT_API.attest, {
      method: "x509pop",
      certificates: [stranger.der.toString("base64")],
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, "x509pop-untrusted");
    // A node alias would work as well; here a direct entry.
    entryPop = (await admin("POST", ADMIN_API.entries, {
      spiffeId: `spiffe://${TD}/api`,
      parentId: popAgentId,
      selectors: ["unix:uid:1001"],
    })) as unknown as WireEntry;
    const wk = await workloadKey("ec-p256");
    const s = await agent.call(
      "POST",
      AGENT_API.sign,
      { requests: [{ entryId: entryPop.id, csr: makeCsr(wk).toString("base64") }] },
      popSvid,
    );
    assert.equal(s.status, 200, JSON.stringify(s.body));
    workloadSvidBeforeRotation = (
      (s.body.svids as Array<{ certificates: string[] }>)[0]?.certificates ?? []
    ).map((b) => new X509Certificate(Buffer.from(b, "base64")));
  });

  it("refuses a banned agent's renewal and signing; a deleted agent must attest again", async () => {
    const banned = await admin("POST", `${ADMIN_API.agent}${encodeURIComponent(joinAgentId)}/ban`);
    assert.equal(banned.banned, true);
    const { csr } = await newKeyAndCsr();
    const renew = await agent.call("POST", AGENT_API.renew, { csr }, joinSvid);
    assert.equal(renew.status, 403);
    assert.equal(renew.body.code, "agent-banned");
    const sign1 = await agent.call(
      "POST",
      AGENT_API.sign,
      { requests: [{ entryId: entryA.id, csr }] },
      joinSvid,
    );
    assert.equal(sign1.status, 403);
    await admin("DELETE", ADMIN_API.agent + encodeURIComponent(joinAgentId));
    const gone = await agent.call("GET", AGENT_API.sync, undefined, joinSvid);
    assert.equal(gone.status, 403);
    assert.equal(gone.body.code, "agent-unknown");
  });

  it("rotates the CA: old SVIDs still verify, new ones chain to the new CA, the sequence grows", async () => {
    const before = server.bundle();
    const seq0 = before.sequence as bigint;
    const oldActive = server.sharedCa.ca.x509Authorities.active.certificate;
    const prepared = await admin("POST", ADMIN_API.caPrepare);
    assert.ok(prepared.prepared);
    assert.equal(server.bundle().sequence, seq0 + 1n);
    assert.equal(server.bundle().x509Authorities.length, 2);
    await admin("POST", ADMIN_API.caActivate);
    const newActive = server.sharedCa.ca.x509Authorities.active.certificate;
    assert.ok(!newActive.raw.equals(oldActive.raw));
    const bundle = server.bundle();
    assert.ok((bundle.sequence as bigint) > seq0);
    // Old workload SVID: still valid against the new bundle.
    assert.equal(verifyX509Svid(workloadSvidBeforeRotation, bundle).id.toString(), `spiffe://${TD}/api`);
    // An agent that has not synced since before the rotation still verifies the server (the
    // server keeps its SVID of the old CA until half its life), syncs, and learns the new root.
    agent.bundle = before;
    const lagging = await agent.call("GET", AGENT_API.sync, undefined, popSvid);
    assert.equal(lagging.status, 200, JSON.stringify(lagging.body));
    assert.equal(agent.learnBundle(lagging).x509Authorities.length, 2);
    // The x509pop agent's old SVID still authenticates; new SVIDs chain to the new CA.
    agent.bundle = bundle;
    const wk = await workloadKey("ec-p256");
    const s = await agent.call(
      "POST",
      AGENT_API.sign,
      { requests: [{ entryId: entryPop.id, csr: makeCsr(wk).toString("base64") }] },
      popSvid,
    );
    assert.equal(s.status, 200, JSON.stringify(s.body));
    const leaf = new X509Certificate(
      Buffer.from((s.body.svids as Array<{ certificates: string[] }>)[0]?.certificates[0] ?? "", "base64"),
    );
    assert.ok(leaf.checkIssued(newActive) && leaf.verify(newActive.publicKey));
    // The bundle of sync is the same one.
    const sync = await agent.call("GET", AGENT_API.sync, undefined, popSvid);
    assert.equal(
      SpiffeBundle.parse(TrustDomain.parse(TD), sync.body.bundle as string).sequence,
      bundle.sequence,
    );
    // Activating with nothing prepared: a clear refusal.
    await assert.rejects(adminRequest(sock, "POST", ADMIN_API.caActivate), /prepare/);
  });

  it("keeps CA, entries and agents across a restart; rate-limits signing per agent", async () => {
    const bundleBefore = server.bundle().marshal();
    const activeBefore = server.sharedCa.ca.x509Authorities.active.keyId;
    await server.stop();
    await start({ signRateLimit: { burst: 3, perSecond: 0.01 } });
    assert.equal(server.bundle().marshal(), bundleBefore);
    assert.equal(server.sharedCa.ca.x509Authorities.active.keyId, activeBefore);
    const entries = (await admin("GET", ADMIN_API.entries)).entries as WireEntry[];
    assert.deepEqual(entries.map((e) => e.spiffeId).sort(), [
      `spiffe://${TD}/api`,
      `spiffe://${TD}/db`,
      `spiffe://${TD}/web`,
    ]);
    const agents = (await admin("GET", ADMIN_API.agents)).agents as Array<{ spiffeId: string }>;
    assert.deepEqual(
      agents.map((a) => a.spiffeId),
      [popAgentId],
    );
    agent.bundle = server.bundle();
    assert.equal((await agent.call("GET", AGENT_API.sync, undefined, popSvid)).status, 200);
    const wk = await workloadKey("ec-p256");
    const req = { entryId: entryPop.id, csr: makeCsr(wk).toString("base64") };
    const two = await agent.call("POST", AGENT_API.sign, { requests: [req, req] }, popSvid);
    assert.equal(two.status, 200);
    assert.equal((await agent.call("POST", AGENT_API.sign, { requests: [req] }, popSvid)).status, 200);
    const limited = await agent.call("POST", AGENT_API.sign, { requests: [req] }, popSvid);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.code, "rate-limited");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
  });

  it("answers bad Admin API input with a clear error and changes nothing", async () => {
    const before = (await admin("GET", ADMIN_API.entries)).entries as WireEntry[];
    await assert.rejects(
      adminRequest(sock, "POST", ADMIN_API.entries, {
        spiffeId: "spiffe://elsewhere.org/x",
        parentId: popAgentId,
        selectors: ["a:b"],
      }),
      /trust domain example\.org/,
    );
    await assert.rejects(
      adminRequest(sock, "POST", ADMIN_API.entries, { spiffeId: `spiffe://${TD}/x`, bogus: 1 }),
      /unknown entry field/,
    );
    await assert.rejects(
      adminRequest(sock, "PATCH", ADMIN_API.entry + encodeURIComponent(entryPop.id), {
        revision: 99,
        hint: "h",
      }),
      (e: Error & { status?: number }) => e.status === 409,
    );
    assert.deepEqual((await admin("GET", ADMIN_API.entries)).entries, before);
  });
});
