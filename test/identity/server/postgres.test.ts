/**
 * Two server replicas sharing one PostgreSQL database (TESSERA_PG_URL; skipped without it,
 * failing in CI): one CA and one bundle for both, a join token spent on one cannot be spent on
 * the other, a CA rotation on one reaches the other.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import pg from "pg";
import { adminRequest } from "../../../src/cli/admin.js";
import { ADMIN_API, AGENT_API } from "../../../src/identity/api.js";
import { IdentityServer } from "../../../src/identity/server/server.js";
import { FakeAgent, newKeyAndCsr, svidFromResponse } from "./fake-agent.js";

const URL_ENV = process.env.TESSERA_PG_URL;
const TD = "replicas.test";

describe("two server replicas on PostgreSQL", {
  skip: URL_ENV || process.env.CI ? false : "TESSERA_PG_URL is not set",
}, () => {
  it("share one CA and bundle, spend each join token once, and see each other's rotations", async (t) => {
    if (!URL_ENV) {
      if (process.env.CI) assert.fail("TESSERA_PG_URL must be set in CI");
      return;
    }
    const schema = `tessera_srv_${randomBytes(6).toString("hex")}`;
    const adminDb = new pg.Client({ connectionString: URL_ENV });
    await adminDb.connect();
    await adminDb.query(`CREATE SCHEMA ${schema}`);
    const u = new URL(URL_ENV);
    u.searchParams.set("options", `-c search_path=${schema}`);
    const dir = mkdtempSync(join(tmpdir(), "tessera-pg-srv-"));
    const servers: IdentityServer[] = [];
    t.after(async () => {
      for (const s of servers) await s.stop();
      await adminDb.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await adminDb.end();
      rmSync(dir, { recursive: true, force: true });
    });
    const start = (name: string) =>
      IdentityServer.start({
        dataDir: join(dir, name),
        trustDomain: TD,
        bind: "127.0.0.1:0",
        datastoreUrl: u.toString(),
        rotationIntervalSeconds: 3600,
        log: () => undefined,
      });
    // Started together on an empty database: exactly one CA is created.
    const [a, b] = await Promise.all([start("a"), start("b")]);
    servers.push(a, b);
    assert.equal(a.bundle().marshal(), b.bundle().marshal());
    assert.equal(a.bundle().sequence, 1n);

    const agentA = new FakeAgent("127.0.0.1", a.agentAddress.port, TD);
    const agentB = new FakeAgent("127.0.0.1", b.agentAddress.port, TD);
    const token = (
      (await adminRequest(a.adminSocketPath, "POST", ADMIN_API.joinTokens, {})).json as { token: string }
    ).token;
    const { key, csr } = await newKeyAndCsr();
    const first = await agentA.call("POST", AGENT_API.attest, { method: "join_token", token, csr });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const second = await agentB.call("POST", AGENT_API.attest, { method: "join_token", token, csr });
    assert.equal(second.status, 403);
    assert.equal(second.body.code, "join-token-used");
    // Racing on both replicas: exactly one wins.
    const raced = (
      (await adminRequest(b.adminSocketPath, "POST", ADMIN_API.joinTokens, {})).json as { token: string }
    ).token;
    const answers = await Promise.all([
      agentA.call("POST", AGENT_API.attest, { method: "join_token", token: raced, csr }),
      agentB.call("POST", AGENT_API.attest, { method: "join_token", token: raced, csr }),
    ]);
    assert.deepEqual(answers.map((x) => x.status).sort(), [200, 403]);

    // The agent attested on A is served by B.
    const svid = svidFromResponse(first.body.svid as string[], key);
    agentB.learnBundle(first);
    assert.equal((await agentB.call("GET", AGENT_API.sync, undefined, svid)).status, 200);

    // A rotation on A reaches B at its next tick.
    await adminRequest(a.adminSocketPath, "POST", ADMIN_API.caPrepare);
    await adminRequest(a.adminSocketPath, "POST", ADMIN_API.caActivate);
    await b.tick();
    assert.equal(b.bundle().marshal(), a.bundle().marshal());
    assert.equal(b.sharedCa.ca.x509Authorities.active.keyId, a.sharedCa.ca.x509Authorities.active.keyId);
    assert.ok((b.bundle().sequence as bigint) > 1n);
  });
});
