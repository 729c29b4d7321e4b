/**
 * The admin commands through the Admin API socket: `dist/src/cli/main.js` spawned (async: the
 * server runs in this process) against an in-process server.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { IdentityServer } from "../../../src/identity/server/server.js";
import { tessera } from "../run.js";

const TD = "cli.test";

describe("admin commands over the admin socket", () => {
  let dir: string;
  let dataDir: string;
  let server: IdentityServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "tessera-cli-"));
    dataDir = join(dir, "srv");
    server = await IdentityServer.start({
      dataDir,
      trustDomain: TD,
      bind: "127.0.0.1:0",
      rotationIntervalSeconds: 3600,
      log: () => undefined,
    });
  });

  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("token generate prints a token and the agent ID it gives", async () => {
    const json = await tessera(["token", "generate", "--data-dir", dataDir, "--ttl", "60", "-o", "json"]);
    assert.equal(json.status, 0, json.stderr);
    const t = JSON.parse(json.stdout) as { token: string; spiffeId: string };
    assert.equal(t.spiffeId, `spiffe://${TD}/spire/agent/join_token/${t.token}`);
    const txt = await tessera(["token", "generate", "--admin-socket", join(dataDir, "admin.sock")]);
    assert.equal(txt.status, 0, txt.stderr);
    assert.match(txt.stdout, /^Token +: \S+\nSPIFFE ID +: spiffe:\/\/cli\.test\/spire\/agent\/join_token\//);
  });

  it("entry create, show, update, delete", async () => {
    const parent = `spiffe://${TD}/spire/agent/join_token/abcdefghijklmnopq`;
    const created = await tessera([
      "entry",
      "create",
      "--data-dir",
      dataDir,
      "--spiffe-id",
      `spiffe://${TD}/web`,
      "--parent-id",
      parent,
      "--selector",
      "unix:uid:1000",
      "--selector",
      "unix:gid:1000",
      "--dns",
      "web.local",
      "--x509-ttl",
      "900",
      "-o",
      "json",
    ]);
    assert.equal(created.status, 0, created.stderr);
    const e = JSON.parse(created.stdout) as {
      id: string;
      revision: number;
      selectors: string[];
      x509SvidTtlSeconds: number;
    };
    assert.deepEqual(e.selectors, ["unix:gid:1000", "unix:uid:1000"]);
    assert.equal(e.x509SvidTtlSeconds, 900);
    const dup = await tessera([
      "entry",
      "create",
      "--data-dir",
      dataDir,
      "--spiffe-id",
      `spiffe://${TD}/web`,
      "--parent-id",
      parent,
      "--selector",
      "unix:uid:1000",
      "--selector",
      "unix:gid:1000",
    ]);
    assert.equal(dup.status, 1);
    assert.match(dup.stderr, /^error: /);
    const missing = await tessera([
      "entry",
      "create",
      "--data-dir",
      dataDir,
      "--spiffe-id",
      `spiffe://${TD}/x`,
    ]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--parent-id/);
    const show = await tessera(["entry", "show", e.id, "--data-dir", dataDir]);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /SPIFFE ID +: spiffe:\/\/cli\.test\/web/);
    const list = await tessera([
      "entry",
      "show",
      "--spiffe-id",
      `spiffe://${TD}/web`,
      "--data-dir",
      dataDir,
      "-o",
      "json",
    ]);
    assert.equal((JSON.parse(list.stdout) as { entries: unknown[] }).entries.length, 1);
    const upd = await tessera([
      "entry",
      "update",
      e.id,
      "--hint",
      "front",
      "--data-dir",
      dataDir,
      "-o",
      "json",
    ]);
    assert.equal(upd.status, 0, upd.stderr);
    assert.equal((JSON.parse(upd.stdout) as { revision: number; hint: string }).revision, 2);
    const stale = await tessera([
      "entry",
      "update",
      e.id,
      "--hint",
      "x",
      "--revision",
      "1",
      "--data-dir",
      dataDir,
    ]);
    assert.equal(stale.status, 1);
    assert.match(stale.stderr, /revision|changed/i);
    const del = await tessera(["entry", "delete", e.id, "--data-dir", dataDir]);
    assert.equal(del.status, 0, del.stderr);
    const gone = await tessera(["entry", "show", e.id, "--data-dir", dataDir]);
    assert.equal(gone.status, 1);
  });

  it("agent list, bundle show, ca prepare and activate", async () => {
    const agents = await tessera(["agent", "list", "--data-dir", dataDir, "-o", "json"]);
    assert.equal(agents.status, 0, agents.stderr);
    assert.deepEqual(JSON.parse(agents.stdout), { agents: [] });
    const ban = await tessera([
      "agent",
      "ban",
      `spiffe://${TD}/spire/agent/x509pop/none`,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(ban.status, 1);
    const pem = await tessera(["bundle", "show", "--data-dir", dataDir]);
    assert.equal(pem.status, 0, pem.stderr);
    assert.match(pem.stdout, /^-----BEGIN CERTIFICATE-----/);
    const jwks = await tessera(["bundle", "show", "--format", "spiffe", "--data-dir", dataDir]);
    const doc = JSON.parse(jwks.stdout) as { keys: unknown[]; spiffe_sequence: number };
    assert.equal(doc.spiffe_sequence, 1);
    const prep = await tessera(["ca", "prepare", "--data-dir", dataDir, "-o", "json"]);
    assert.equal(prep.status, 0, prep.stderr);
    assert.equal((JSON.parse(prep.stdout) as { sequence: string }).sequence, "2");
    const act = await tessera(["ca", "activate", "--data-dir", dataDir]);
    assert.equal(act.status, 0, act.stderr);
    assert.match(act.stdout, /Prepared : none/);
    const again = await tessera(["ca", "activate", "--data-dir", dataDir]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /prepare/);
  });

  it("says what to do when the server is not running", async () => {
    const r = await tessera(["agent", "list", "--data-dir", join(dir, "nowhere")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach the identity server's admin socket .*tessera server run/);
  });

  it("every command has --help with examples", async () => {
    const commands = [
      ["server", "run"],
      ["token", "generate"],
      ["entry", "create"],
      ["entry", "show"],
      ["entry", "update"],
      ["entry", "delete"],
      ["agent", "list"],
      ["agent", "ban"],
      ["bundle", "show"],
      ["ca", "prepare"],
    ];
    const results = await Promise.all(commands.map((args) => tessera([...args, "--help"])));
    results.forEach((r, i) => {
      const name = (commands[i] ?? []).join(" ");
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.match(r.stdout, /Examples:/, name);
    });
  });
});
