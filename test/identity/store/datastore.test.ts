/**
 * One suite of datastore behaviour, run against SQLite (a temporary file) and PostgreSQL (the
 * database in TESSERA_PG_URL; each test gets its own schema). Without TESSERA_PG_URL the
 * PostgreSQL half is skipped with the reason locally, and fails in CI (`CI` set): start one
 * with `eval "$(.ci/start-postgres)"`.
 */
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import pg from "pg";
import {
  type Datastore,
  isStoreError,
  StoreError,
  type StoreErrorCode,
} from "../../../src/identity/store/datastore.js";
import { LATEST_SCHEMA_VERSION } from "../../../src/identity/store/migrations.js";
import type { BundleContent, Jwk, NewCaKey } from "../../../src/identity/store/model.js";
import { openStore, parseStoreUrl } from "../../../src/identity/store/open.js";
import { describePostgresUrl } from "../../../src/identity/store/postgres.js";
import { openSqliteStore } from "../../../src/identity/store/sqlite.js";
import type { StoreOptions } from "../../../src/identity/store/sqlstore.js";

const TD = "example.org";
const SERVER = `spiffe://${TD}/spire/server`;
const AGENT = `spiffe://${TD}/spire/agent/x509pop/node-1`;
const AGENT2 = `spiffe://${TD}/spire/agent/join_token/3b1c`;

/** One empty database; `open` may be called several times (several servers on it). */
interface TestDb {
  open(options?: StoreOptions): Promise<Datastore>;
  /** SQLite only: the file. */
  readonly file?: string;
}

interface Backend {
  readonly name: "sqlite" | "postgres";
  /** Runs `fn` on a fresh, empty database; closes every store it opened, then drops it. */
  withDb(fn: (db: TestDb) => Promise<void>): Promise<void>;
}

function sqliteBackend(): Backend {
  return {
    name: "sqlite",
    async withDb(fn) {
      const dir = mkdtempSync(join(tmpdir(), "tessera-store-"));
      const file = join(dir, "state", "datastore.db");
      const opened: Datastore[] = [];
      try {
        await fn({
          file,
          async open(options) {
            const s = await openStore(`sqlite://${file}`, options);
            opened.push(s);
            return s;
          },
        });
      } finally {
        for (const s of opened) await s.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function postgresBackend(url: string): Backend {
  return {
    name: "postgres",
    async withDb(fn) {
      const schema = `tessera_test_${randomBytes(6).toString("hex")}`;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const opened: Datastore[] = [];
      try {
        await admin.query(`CREATE SCHEMA ${schema}`);
        const u = new URL(url);
        u.searchParams.set("options", `-c search_path=${schema}`);
        await fn({
          async open(options) {
            const s = await openStore(u.toString(), { poolSize: 4, ...options });
            opened.push(s);
            return s;
          },
        });
      } finally {
        for (const s of opened) await s.close();
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.end();
      }
    },
  };
}

async function rejectsWith(p: Promise<unknown>, code: StoreErrorCode, message?: RegExp): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof StoreError, `expected a StoreError, got ${String(e)}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected a StoreError ${code}, but it succeeded`);
}

const FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

function ecKey(): { privateKeyPem: string; jwk: Record<string, unknown> } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    jwk: publicKey.export({ format: "jwk" }) as Record<string, unknown>,
  };
}

function jwk(kid: string): Jwk {
  return { kid, kty: "EC", crv: "P-256", x: "x", y: "y" };
}

function bundle(jwtAuthorities: Jwk[], sequenceHint = 0): BundleContent {
  return {
    trustDomain: TD,
    x509Authorities: [FAKE_CERT],
    jwtAuthorities,
    refreshHintSeconds: 300 + sequenceHint,
  };
}

/** A clock that tests move by hand. */
function manualClock(start = Date.UTC(2030, 0, 1)): { now: () => Date; advance(ms: number): void } {
  let t = start;
  return { now: () => new Date(t), advance: (ms) => (t += ms) };
}

function defineSuite(backend: Backend): void {
  const { withDb } = backend;

  describe("schema migrations", () => {
    it("apply at first open and are a no-op at every reopen; data survives restarts", () =>
      withDb(async (db) => {
        const s1 = await db.open();
        assert.equal(await s1.schemaVersion(), LATEST_SCHEMA_VERSION);
        const entry = await s1.createEntry({
          spiffeId: `spiffe://${TD}/web`,
          parentId: AGENT,
          selectors: ["unix:uid:1000"],
        });
        await s1.createAgent({
          spiffeId: AGENT,
          attestationType: "x509pop",
          serialNumber: "0a1b",
          expiresAt: new Date(Date.now() + 3600_000),
          selectors: ["x509pop:subject:cn:node-1"],
        });
        const key = ecKey();
        await s1.putCaKey({
          id: "x509-1",
          kind: "x509",
          state: "active",
          certificatePem: FAKE_CERT,
          privateKeyPem: key.privateKeyPem,
          notAfter: new Date(Date.now() + 86400_000),
        });
        await s1.putBundle(bundle([jwk("k1")]), 0n);
        const { token } = await s1.createJoinToken(600);
        await s1.close();

        for (let restart = 0; restart < 2; restart++) {
          const s = await db.open();
          assert.equal(await s.schemaVersion(), LATEST_SCHEMA_VERSION);
          assert.deepEqual(await s.getEntry(entry.id), entry);
          assert.equal((await s.getAgent(AGENT)).serialNumber, "0a1b");
          assert.equal((await s.getCaKey("x509-1")).privateKeyPem, key.privateKeyPem);
          const b = await s.getBundle(TD);
          assert.equal(b?.sequence, 1n);
          assert.deepEqual(b?.jwtAuthorities, [jwk("k1")]);
          if (restart === 1) assert.equal((await s.spendJoinToken(token)).status, "ok");
          await s.close();
        }
      }));

    it("several servers starting at once migrate once", () =>
      withDb(async (db) => {
        const stores = await Promise.all(Array.from({ length: 4 }, () => db.open()));
        for (const s of stores) assert.equal(await s.schemaVersion(), LATEST_SCHEMA_VERSION);
        await stores[0]?.createEntry({
          spiffeId: `spiffe://${TD}/a`,
          parentId: AGENT,
          selectors: ["unix:uid:1"],
        });
        assert.equal((await stores[3]?.listEntries())?.length, 1);
      }));
  });

  describe("registration entries", () => {
    it("create applies defaults and normalizes; get, list, update, delete", () =>
      withDb(async (db) => {
        const s = await db.open();
        const e = await s.createEntry({
          spiffeId: `SPIFFE://Example.ORG/ns/prod/sa/web`,
          parentId: AGENT,
          selectors: [
            "k8s:ns:prod",
            { type: "k8s", value: "sa:web" },
            "k8s:ns:prod",
            "unix:path:/usr/bin/a:b",
          ],
          dnsNames: ["Web.Prod.svc", "web.prod.svc"],
        });
        assert.match(e.id, /^[0-9a-f-]{36}$/);
        assert.equal(e.spiffeId, `spiffe://${TD}/ns/prod/sa/web`);
        assert.deepEqual(e.selectors, [
          { type: "k8s", value: "ns:prod" },
          { type: "k8s", value: "sa:web" },
          { type: "unix", value: "path:/usr/bin/a:b" },
        ]);
        assert.equal(e.x509SvidTtlSeconds, 3600);
        assert.equal(e.jwtSvidTtlSeconds, 300);
        assert.deepEqual(e.dnsNames, ["web.prod.svc"]);
        assert.equal(e.hint, "");
        assert.equal(e.admin, false);
        assert.equal(e.downstream, false);
        assert.equal(e.expiresAt, undefined);
        assert.equal(e.revision, 1);
        assert.deepEqual(await s.getEntry(e.id), e);

        const expiresAt = new Date(Date.UTC(2031, 5, 1));
        const other = await s.createEntry({
          spiffeId: `spiffe://${TD}/db`,
          parentId: AGENT2,
          selectors: ["unix:uid:70"],
          x509SvidTtlSeconds: 600,
          jwtSvidTtlSeconds: 60,
          hint: "db",
          admin: true,
          downstream: true,
          expiresAt,
        });
        assert.deepEqual((await s.getEntry(other.id)).expiresAt, expiresAt);
        assert.equal((await s.getEntry(other.id)).admin, true);

        assert.deepEqual((await s.listEntries()).map((x) => x.id).sort(), [e.id, other.id].sort());
        assert.deepEqual(
          (await s.listEntries({ parentId: AGENT2 })).map((x) => x.id),
          [other.id],
        );
        assert.deepEqual(
          (await s.listEntries({ spiffeId: `spiffe://${TD}/ns/prod/sa/web` })).map((x) => x.id),
          [e.id],
        );
        const workload = ["k8s:ns:prod", "k8s:sa:web", "unix:path:/usr/bin/a:b", "unix:uid:0"];
        assert.deepEqual(
          (await s.listEntries({ selectorsSubsetOf: workload })).map((x) => x.id),
          [e.id],
        );
        assert.deepEqual(await s.listEntries({ selectorsSubsetOf: ["k8s:ns:prod", "k8s:sa:web"] }), []);
        assert.deepEqual(await s.listEntries({ selectorsSubsetOf: [] }), []);

        const u = await s.updateEntry(e.id, 1, { hint: "front", selectors: ["k8s:ns:prod"], expiresAt });
        assert.equal(u.revision, 2);
        assert.equal(u.hint, "front");
        assert.deepEqual(u.selectors, [{ type: "k8s", value: "ns:prod" }]);
        assert.deepEqual(u.createdAt, e.createdAt);
        assert.deepEqual(await s.getEntry(e.id), u);
        assert.deepEqual(
          (await s.listEntries({ selectorsSubsetOf: ["k8s:ns:prod", "k8s:sa:nothing"] })).map((x) => x.id),
          [e.id],
        );
        const cleared = await s.updateEntry(e.id, 2, { expiresAt: null });
        assert.equal(cleared.expiresAt, undefined);
        assert.equal(cleared.revision, 3);

        await s.deleteEntry(e.id);
        await rejectsWith(s.getEntry(e.id), "not-found", /list entries/);
        await rejectsWith(s.deleteEntry(e.id), "not-found");
        await rejectsWith(s.updateEntry(e.id, 3, { hint: "x" }), "not-found");
        assert.deepEqual(await s.listEntries({ selectorsSubsetOf: workload }), []);
      }));

    it("refuses invalid entries with a message that says what would be right", () =>
      withDb(async (db) => {
        const s = await db.open();
        const ok = { spiffeId: `spiffe://${TD}/web`, parentId: AGENT, selectors: ["unix:uid:1000"] };
        const cases: [string, object, RegExp][] = [
          [
            "bad SPIFFE ID",
            { spiffeId: "http://example.org/web" },
            /spiffeId .* is not a SPIFFE ID.*spiffe:\/\//,
          ],
          ["SPIFFE ID without path", { spiffeId: `spiffe://${TD}` }, /has no path/],
          ["bad parent ID", { parentId: "spiffe://bad domain/x" }, /parentId/],
          [
            "parent in another trust domain",
            { parentId: "spiffe://other.org/spire/agent/x" },
            /same trust domain/,
          ],
          ["reserved SPIFFE ID", { spiffeId: SERVER }, /reserved/],
          ["selector without ':'", { selectors: ["unix"] }, /has no ':'.*type:value/],
          ["selector with empty value", { selectors: ["unix:"] }, /empty value/],
          ["selector with empty type", { selectors: [":uid:1"] }, /empty type/],
          ["no selectors", { selectors: [] }, /at least one selector/],
          [
            "X.509 TTL 0",
            { x509SvidTtlSeconds: 0 },
            /x509SvidTtlSeconds must be a whole number of seconds above 0/,
          ],
          ["X.509 TTL negative", { x509SvidTtlSeconds: -5 }, /x509SvidTtlSeconds/],
          ["X.509 TTL fractional", { x509SvidTtlSeconds: 1.5 }, /x509SvidTtlSeconds/],
          ["JWT TTL 0", { jwtSvidTtlSeconds: 0 }, /jwtSvidTtlSeconds/],
          ["bad DNS name", { dnsNames: ["web_1..x"] }, /dnsNames\[0\].*not a DNS name/],
          ["id not a UUID", { id: "entry-1" }, /not a UUID/],
          ["expiry not a date", { expiresAt: new Date("nope") }, /expiresAt/],
        ];
        for (const [what, change, message] of cases) {
          await rejectsWith(s.createEntry({ ...ok, ...change } as never), "invalid", message).catch((e) => {
            throw new Error(`${what}: ${(e as Error).message}`);
          });
        }
        assert.deepEqual(await s.listEntries(), [], "nothing invalid was stored");

        const e = await s.createEntry(ok);
        await rejectsWith(
          s.createEntry({ ...ok, selectors: ["unix:uid:1000", "unix:uid:1000"] }),
          "already-exists",
          new RegExp(`entry ${e.id} .*update that entry instead`),
        );
        await rejectsWith(
          s.createEntry({ ...ok, id: e.id, spiffeId: `spiffe://${TD}/other` }),
          "already-exists",
        );
        await rejectsWith(s.updateEntry(e.id, 1, { x509SvidTtlSeconds: 0 }), "invalid", /x509SvidTtlSeconds/);
        await rejectsWith(s.updateEntry(e.id, 1, { selectors: ["nocolon"] }), "invalid", /type:value/);
        await rejectsWith(s.updateEntry(e.id, 0, { hint: "x" }), "invalid", /revision/);
        const e2 = await s.createEntry({ ...ok, selectors: ["unix:uid:2000"] });
        await rejectsWith(
          s.updateEntry(e2.id, 1, { selectors: ["unix:uid:1000"] }),
          "already-exists",
          /already has/,
        );
        assert.equal((await s.getEntry(e.id)).revision, 1, "failed updates change nothing");
        await rejectsWith(s.getEntry("not-a-uuid"), "invalid");
      }));

    it("optimistic concurrency: an update at a stale revision is a conflict, across servers", () =>
      withDb(async (db) => {
        const a = await db.open();
        const b = await db.open();
        const e = await a.createEntry({
          spiffeId: `spiffe://${TD}/web`,
          parentId: AGENT,
          selectors: ["unix:uid:1"],
        });
        const seenByB = await b.getEntry(e.id);
        const afterA = await a.updateEntry(e.id, e.revision, { hint: "from a" });
        assert.equal(afterA.revision, 2);
        await rejectsWith(
          b.updateEntry(e.id, seenByB.revision, { hint: "from b" }),
          "conflict",
          /changed since you read it .*read it again/,
        );
        await rejectsWith(b.deleteEntry(e.id, seenByB.revision), "conflict");
        const reread = await b.getEntry(e.id);
        assert.equal(reread.hint, "from a");
        assert.equal((await b.updateEntry(e.id, reread.revision, { hint: "from b" })).revision, 3);

        // Racing writers at the same revision: exactly one wins.
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 === 0 ? a : b).updateEntry(e.id, 3, { hint: `racer ${i}` }),
          ),
        );
        const won = results.filter((r) => r.status === "fulfilled");
        assert.equal(won.length, 1);
        for (const r of results) {
          if (r.status === "rejected") assert.ok(isStoreError(r.reason, "conflict"), String(r.reason));
        }
        const final = await a.getEntry(e.id);
        assert.equal(final.revision, 4);
        assert.equal(final.hint, (won[0] as PromiseFulfilledResult<{ hint: string }>).value.hint);
        await a.deleteEntry(e.id, 4);
      }));

    it("listEntriesForAgent: entries parented to the agent or to its node aliases", () =>
      withDb(async (db) => {
        const clock = manualClock();
        const s = await db.open({ now: clock.now });
        const agentSelectors = ["x509pop:ca:fingerprint:ab:cd", "x509pop:subject:cn:node-1"];
        await s.createAgent({
          spiffeId: AGENT,
          attestationType: "x509pop",
          serialNumber: "01",
          expiresAt: new Date(clock.now().getTime() + 3600_000),
          selectors: agentSelectors,
        });
        const alias = await s.createEntry({
          spiffeId: `spiffe://${TD}/node/cluster-a`,
          parentId: SERVER,
          selectors: ["x509pop:ca:fingerprint:ab:cd"],
        });
        const otherAlias = await s.createEntry({
          spiffeId: `spiffe://${TD}/node/cluster-b`,
          parentId: SERVER,
          selectors: ["x509pop:ca:fingerprint:ab:cd", "x509pop:subject:cn:node-2"],
        });
        const expiredAlias = await s.createEntry({
          spiffeId: `spiffe://${TD}/node/old`,
          parentId: SERVER,
          selectors: ["x509pop:subject:cn:node-1"],
          expiresAt: new Date(clock.now().getTime() - 1000),
        });
        const direct = await s.createEntry({
          spiffeId: `spiffe://${TD}/web`,
          parentId: AGENT,
          selectors: ["unix:uid:1000"],
        });
        const viaAlias = await s.createEntry({
          spiffeId: `spiffe://${TD}/api`,
          parentId: alias.spiffeId,
          selectors: ["k8s:ns:prod"],
        });
        const viaOther = await s.createEntry({
          spiffeId: `spiffe://${TD}/b`,
          parentId: otherAlias.spiffeId,
          selectors: ["k8s:ns:b"],
        });
        await s.createEntry({
          spiffeId: `spiffe://${TD}/old`,
          parentId: expiredAlias.spiffeId,
          selectors: ["k8s:ns:o"],
        });
        await s.createEntry({ spiffeId: `spiffe://${TD}/c`, parentId: AGENT2, selectors: ["unix:uid:1000"] });
        const expiring = await s.createEntry({
          spiffeId: `spiffe://${TD}/soon`,
          parentId: AGENT,
          selectors: ["unix:uid:5"],
          expiresAt: new Date(clock.now().getTime() + 60_000),
        });

        assert.deepEqual(
          (await s.listNodeAliases(AGENT, agentSelectors)).map((e) => e.id),
          [alias.id],
        );
        // All created at the same instant (manual clock): compare as sets.
        const ids = async (sel?: string[]) =>
          (await s.listEntriesForAgent(AGENT, sel)).map((e) => e.id).sort();
        const set = (...entries: { id: string }[]) => entries.map((e) => e.id).sort();
        assert.deepEqual(await ids(), set(direct, viaAlias, expiring));
        assert.deepEqual(await ids(agentSelectors), set(direct, viaAlias, expiring));
        assert.deepEqual(await ids(["x509pop:subject:cn:node-9"]), set(direct, expiring), "no alias matches");
        assert.deepEqual(
          await ids(["x509pop:ca:fingerprint:ab:cd", "x509pop:subject:cn:node-2"]),
          set(direct, viaAlias, viaOther, expiring),
          "both aliases match these selectors",
        );
        clock.advance(120_000);
        assert.deepEqual(await ids(), set(direct, viaAlias), "expired entries are left out");
        await rejectsWith(s.listEntriesForAgent(AGENT2), "not-found", /must attest again/);
        assert.deepEqual(
          (await s.listEntriesForAgent(AGENT2, [])).map((e) => e.spiffeId),
          [`spiffe://${TD}/c`],
        );
      }));
  });

  describe("attested agents", () => {
    it("create, renew with the current serial, ban, delete: banned and deleted agents cannot renew", () =>
      withDb(async (db) => {
        const s = await db.open();
        const base = Date.UTC(2030, 0, 1);
        const exp = (h: number) => new Date(base + h * 3600_000);
        const a = await s.createAgent({
          spiffeId: AGENT,
          attestationType: "x509pop",
          serialNumber: "1001",
          expiresAt: exp(1),
          selectors: ["x509pop:subject:cn:node-1"],
        });
        assert.equal(a.banned, false);
        assert.deepEqual(a.selectors, [{ type: "x509pop", value: "subject:cn:node-1" }]);
        await rejectsWith(
          s.createAgent({
            spiffeId: AGENT,
            attestationType: "x509pop",
            serialNumber: "1",
            expiresAt: exp(1),
          }),
          "already-exists",
        );
        await rejectsWith(
          s.createAgent({
            spiffeId: `spiffe://${TD}/web`,
            attestationType: "x509pop",
            serialNumber: "1",
            expiresAt: exp(1),
          }),
          "invalid",
          /spire\/agent/,
        );
        await rejectsWith(
          s.createAgent({
            spiffeId: AGENT2,
            attestationType: "tpm" as never,
            serialNumber: "1",
            expiresAt: exp(1),
          }),
          "invalid",
          /join_token/,
        );

        const r = await s.updateAgentSerial(AGENT, {
          serialNumber: "1002",
          expiresAt: exp(2),
          expectedSerial: "1001",
        });
        assert.equal(r.serialNumber, "1002");
        assert.deepEqual(r.expiresAt, exp(2));
        await rejectsWith(
          s.updateAgentSerial(AGENT, { serialNumber: "1003", expiresAt: exp(2), expectedSerial: "1001" }),
          "conflict",
          /not its current one/,
        );
        await s.createAgent({
          spiffeId: AGENT2,
          attestationType: "join_token",
          serialNumber: "77",
          expiresAt: exp(1),
        });
        assert.deepEqual(
          (await s.listAgents()).map((x) => x.spiffeId),
          [AGENT2, AGENT].sort(),
        );

        const banned = await s.banAgent(AGENT);
        assert.equal(banned.banned, true);
        assert.equal((await s.banAgent(AGENT)).banned, true, "ban is idempotent");
        await rejectsWith(
          s.updateAgentSerial(AGENT, { serialNumber: "1004", expiresAt: exp(3), expectedSerial: "1002" }),
          "banned",
          /delete the agent/,
        );
        await rejectsWith(s.updateAgentSerial(AGENT, { serialNumber: "1004", expiresAt: exp(3) }), "banned");
        await rejectsWith(
          s.createAgent({
            spiffeId: AGENT,
            attestationType: "x509pop",
            serialNumber: "2001",
            expiresAt: exp(1),
          }),
          "banned",
        );
        assert.equal((await s.getAgent(AGENT)).serialNumber, "1002", "a banned agent's record is unchanged");
        assert.deepEqual(
          (await s.listAgents({ banned: true })).map((x) => x.spiffeId),
          [AGENT],
        );
        assert.deepEqual(
          (await s.listAgents({ banned: false, attestationType: "join_token" })).map((x) => x.spiffeId),
          [AGENT2],
        );

        await s.deleteAgent(AGENT);
        await rejectsWith(s.getAgent(AGENT), "not-found", /must attest again/);
        await rejectsWith(
          s.updateAgentSerial(AGENT, { serialNumber: "1005", expiresAt: exp(3) }),
          "not-found",
        );
        await rejectsWith(s.deleteAgent(AGENT), "not-found");
        await rejectsWith(s.banAgent(AGENT), "not-found");
        const again = await s.createAgent({
          spiffeId: AGENT,
          attestationType: "x509pop",
          serialNumber: "3001",
          expiresAt: exp(1),
        });
        assert.equal(again.banned, false, "after deletion the agent may attest again");
      }));
  });

  describe("join tokens", () => {
    it("are spent once: ok, then used; unknown and expired tokens are refused", () =>
      withDb(async (db) => {
        const clock = manualClock();
        const s = await db.open({ now: clock.now });
        const { token, expiresAt } = await s.createJoinToken(600);
        assert.ok(token.length >= 32);
        assert.equal(expiresAt.getTime(), clock.now().getTime() + 600_000);
        const listed = await s.listJoinTokens();
        assert.equal(listed.length, 1);
        assert.equal(listed[0]?.tokenHash, createHash("sha256").update(token).digest("hex"));
        assert.ok(!JSON.stringify(listed).includes(token), "the token itself is never stored");

        assert.deepEqual(await s.spendJoinToken(token), { status: "ok", expiresAt });
        assert.deepEqual(await s.spendJoinToken(token), { status: "used" });
        assert.deepEqual(await s.spendJoinToken("no-such-token-anywhere"), { status: "unknown" });
        assert.deepEqual(await s.spendJoinToken(""), { status: "unknown" });

        const short = await s.createJoinToken(60);
        clock.advance(60_000);
        assert.deepEqual(await s.spendJoinToken(short.token), {
          status: "expired",
          expiresAt: short.expiresAt,
        });
        assert.deepEqual(await s.spendJoinToken(short.token), {
          status: "expired",
          expiresAt: short.expiresAt,
        });

        const chosen = await s.createJoinToken(60, "operator-chosen-token-1");
        assert.equal(chosen.token, "operator-chosen-token-1");
        await rejectsWith(s.createJoinToken(60, "operator-chosen-token-1"), "already-exists");
        await rejectsWith(s.createJoinToken(60, "short"), "invalid", /16-256/);
        await rejectsWith(s.createJoinToken(0), "invalid", /TTL/);

        assert.equal(await s.pruneJoinTokens(), 1, "the expired one");
        assert.equal((await s.listJoinTokens()).length, 2);
      }));

    it("two servers racing to spend the same token: exactly one wins", () =>
      withDb(async (db) => {
        const a = await db.open();
        const b = await db.open();
        const tokens = await Promise.all(Array.from({ length: 20 }, () => a.createJoinToken(600)));
        const results = await Promise.all(
          tokens.map(({ token }) =>
            Promise.all([
              a.spendJoinToken(token),
              b.spendJoinToken(token),
              b.spendJoinToken(token),
              a.spendJoinToken(token),
            ]),
          ),
        );
        for (const r of results) {
          const statuses = r.map((x) => x.status).sort();
          assert.deepEqual(statuses, ["ok", "used", "used", "used"]);
        }
      }));
  });

  describe("CA and JWT keys", () => {
    it("put, list, compare-and-set state, rotate", () =>
      withDb(async (db) => {
        const s = await db.open();
        const k1 = ecKey();
        const k2 = ecKey();
        const j1 = ecKey();
        const notAfter = new Date(Date.UTC(2031, 0, 1));
        const x1: NewCaKey = {
          id: "x509-1",
          kind: "x509",
          state: "active",
          certificatePem: FAKE_CERT,
          privateKeyPem: k1.privateKeyPem,
          notAfter,
        };
        const put = await s.putCaKey(x1);
        assert.equal(put.privateKeyPem, k1.privateKeyPem);
        assert.deepEqual(put.notAfter, notAfter);
        await rejectsWith(s.putCaKey(x1), "already-exists");
        await s.putCaKey({ ...x1, id: "x509-2", state: "prepared", privateKeyPem: k2.privateKeyPem });
        const jwtKey = await s.putCaKey({
          id: "jwt-1",
          kind: "jwt",
          state: "active",
          publicJwk: { ...j1.jwk, kid: "jwt-1" } as Jwk,
          privateKeyPem: j1.privateKeyPem,
          notAfter,
        });
        assert.equal(jwtKey.publicJwk?.kid, "jwt-1");
        await rejectsWith(
          s.putCaKey({
            id: "jwt-2",
            kind: "jwt",
            state: "prepared",
            publicJwk: jwk("other"),
            privateKeyPem: j1.privateKeyPem,
            notAfter,
          }),
          "invalid",
          /kid/,
        );
        await rejectsWith(
          s.putCaKey({ ...x1, id: "x509-3", certificatePem: "not pem" }),
          "invalid",
          /BEGIN CERTIFICATE/,
        );
        await rejectsWith(
          s.putCaKey({
            id: "jwt-3",
            kind: "jwt",
            state: "prepared",
            publicJwk: { ...jwk("jwt-3"), d: "secret" },
            privateKeyPem: j1.privateKeyPem,
            notAfter,
          }),
          "invalid",
          /private key material/,
        );

        assert.deepEqual(
          (await s.listCaKeys({ kind: "x509" })).map((k) => [k.id, k.state]),
          [
            ["x509-1", "active"],
            ["x509-2", "prepared"],
          ],
        );
        assert.deepEqual((await s.listCaKeys({ state: "active" })).map((k) => k.id).sort(), [
          "jwt-1",
          "x509-1",
        ]);

        const rotated = await s.activateCaKey("x509-2");
        assert.equal(rotated.state, "active");
        assert.equal((await s.getCaKey("x509-1")).state, "old");
        assert.equal((await s.getCaKey("jwt-1")).state, "active", "other kinds are untouched");
        await rejectsWith(s.activateCaKey("x509-2"), "conflict", /not prepared/);

        await rejectsWith(
          s.setCaKeyState("x509-1", "active", "prepared"),
          "conflict",
          /is old, not prepared/,
        );
        assert.equal((await s.setCaKeyState("x509-1", "prepared", "old")).state, "prepared");
        await s.deleteCaKey("x509-1");
        await rejectsWith(s.getCaKey("x509-1"), "not-found");
        await rejectsWith(s.deleteCaKey("x509-1"), "not-found");
      }));

    it("seals private keys with a key encryption key when given one", () =>
      withDb(async (db) => {
        const kek = randomBytes(32);
        const sealed = await db.open({ keyEncryptionKey: kek });
        const k = ecKey();
        await sealed.putCaKey({
          id: "x509-1",
          kind: "x509",
          state: "active",
          certificatePem: FAKE_CERT,
          privateKeyPem: k.privateKeyPem,
          notAfter: new Date(Date.UTC(2031, 0, 1)),
        });
        assert.equal((await sealed.getCaKey("x509-1")).privateKeyPem, k.privateKeyPem);
        const plain = await db.open();
        await rejectsWith(plain.getCaKey("x509-1"), "unavailable", /sealed/);
        const wrong = await db.open({ keyEncryptionKey: randomBytes(32) });
        await rejectsWith(wrong.getCaKey("x509-1"), "unavailable", /does not open/);
        await rejectsWith(db.open({ keyEncryptionKey: randomBytes(16) }), "invalid", /32 bytes/);
        if (db.file !== undefined) {
          await sealed.close();
          const raw = readFileSync(db.file).toString("latin1") + readWal(db.file);
          assert.ok(!raw.includes("PRIVATE KEY"), "no private key in the file");
        }
      }));
  });

  describe("trust bundles", () => {
    it("put is a compare-and-set on the sequence", () =>
      withDb(async (db) => {
        const s = await db.open();
        assert.equal(await s.getBundle(TD), undefined);
        const b1 = await s.putBundle(bundle([jwk("k1")]), 0n);
        assert.equal(b1.sequence, 1n);
        assert.equal(b1.trustDomain, TD);
        assert.deepEqual(b1.x509Authorities, [FAKE_CERT]);
        await rejectsWith(
          s.putBundle(bundle([jwk("k2")]), 0n),
          "conflict",
          /at sequence 1, not 0.*read it again/,
        );
        const b2 = await s.putBundle(bundle([jwk("k1"), jwk("k2")]), 1n);
        assert.equal(b2.sequence, 2n);
        await rejectsWith(s.putBundle(bundle([jwk("k3")]), 1n), "conflict");
        await rejectsWith(s.putBundle(bundle([jwk("k3")]), 5n), "conflict");
        assert.deepEqual(await s.getBundle(TD), b2);
        await rejectsWith(s.putBundle(bundle([jwk("k1"), jwk("k1")]), 2n), "invalid", /twice/);
        await rejectsWith(s.putBundle({ ...bundle([]), trustDomain: "Bad Domain" }, 0n), "invalid");
        await s.putBundle({ ...bundle([]), trustDomain: "other.org" }, 0n);
        assert.deepEqual(
          (await s.listBundles()).map((b) => b.trustDomain),
          [TD, "other.org"],
        );
        await s.deleteBundle("other.org");
        await rejectsWith(s.deleteBundle("other.org"), "not-found");
      }));

    it("two servers updating concurrently: sequences strictly increase and no update is lost", () =>
      withDb(async (db) => {
        const a = await db.open();
        const b = await db.open();
        const perServer = 12;
        const run = async (s: Datastore, name: string): Promise<bigint[]> => {
          const seen: bigint[] = [];
          await Promise.all(
            Array.from({ length: 3 }, async (_, lane) => {
              for (let i = lane; i < perServer; i += 3) {
                const r = await s.updateBundle(TD, (cur) =>
                  bundle([...(cur?.jwtAuthorities ?? []), jwk(`${name}-${i}`)]),
                );
                seen.push(r.sequence);
              }
            }),
          );
          return seen;
        };
        const [sa, sb] = await Promise.all([run(a, "a"), run(b, "b")]);
        const all = [...sa, ...sb].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
        assert.deepEqual(
          all,
          Array.from({ length: 2 * perServer }, (_, i) => BigInt(i + 1)),
          "each write got its own sequence, 1..n",
        );
        const final = await a.getBundle(TD);
        assert.equal(final?.sequence, BigInt(2 * perServer));
        assert.equal(final?.jwtAuthorities.length, 2 * perServer, "every update is in the final bundle");

        // Blind compare-and-set writes at the same sequence from both servers: exactly one wins.
        const n = BigInt(2 * perServer);
        const racers = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? a : b).putBundle(bundle([jwk(`race-${i}`)]), n)),
        );
        assert.equal(racers.filter((r) => r.status === "fulfilled").length, 1);
        for (const r of racers) {
          if (r.status === "rejected") assert.ok(isStoreError(r.reason, "conflict"), String(r.reason));
        }
        assert.equal((await b.getBundle(TD))?.sequence, n + 1n);
      }));
  });
}

function readWal(file: string): string {
  try {
    return readFileSync(`${file}-wal`).toString("latin1");
  } catch {
    return "";
  }
}

describe("datastore on SQLite", () => {
  defineSuite(sqliteBackend());

  it("keeps the file private (0600), in WAL mode, and never stores a join token", () =>
    sqliteBackend().withDb(async (db) => {
      const s = await db.open();
      const { token } = await s.createJoinToken(60);
      await s.createEntry({ spiffeId: `spiffe://${TD}/web`, parentId: AGENT, selectors: ["unix:uid:1"] });
      const file = db.file ?? "";
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(`${file}-wal`).mode & 0o777, 0o600);
      const raw = readFileSync(file).toString("latin1") + readWal(file);
      assert.ok(!raw.includes(token), "the join token is not in the database file");
      await s.close();
      await rejectsWith(s.listEntries(), "unavailable", /closed/);
    }));

  it("refuses a database newer than this code, and a file that is not a database", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tessera-store-"));
    try {
      const file = join(dir, "db.sqlite");
      const s = await openSqliteStore(file);
      await s.close();
      const Database = (await import("better-sqlite3")).default;
      const raw = new Database(file);
      raw
        .prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
        .run();
      raw.close();
      await rejectsWith(openSqliteStore(file), "unavailable", /version 999, newer/);
      const junk = join(dir, "junk.db");
      (await import("node:fs")).writeFileSync(
        junk,
        "this is not a database file at all, no no no no no no no no no no",
      );
      await rejectsWith(openSqliteStore(junk), "unavailable", /not a SQLite database/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("datastore URLs", () => {
  it("sqlite:, file paths and postgres: URLs", () => {
    assert.deepEqual(parseStoreUrl("sqlite:///var/lib/tessera/datastore.db"), {
      kind: "sqlite",
      path: "/var/lib/tessera/datastore.db",
    });
    assert.deepEqual(parseStoreUrl("sqlite:data/x.db"), { kind: "sqlite", path: "data/x.db" });
    assert.deepEqual(parseStoreUrl("./datastore.db"), { kind: "sqlite", path: "./datastore.db" });
    assert.deepEqual(parseStoreUrl("/tmp/x.db"), { kind: "sqlite", path: "/tmp/x.db" });
    assert.equal(parseStoreUrl("postgres://u:p@h:5432/db").kind, "postgres");
    assert.equal(parseStoreUrl("postgresql://u:p@h/db").kind, "postgres");
    assert.throws(() => parseStoreUrl("mysql://h/db"), /mysql:\/\/ is not supported.*sqlite:.*postgres:/);
    assert.throws(() => parseStoreUrl(""), /empty/);
    assert.throws(() => parseStoreUrl("sqlite://"), /no path/);
  });

  it("describes a PostgreSQL URL without its password", () => {
    assert.equal(
      describePostgresUrl("postgres://tessera:s3cret@db.internal:5433/ids"),
      "tessera@db.internal:5433/ids",
    );
  });

  it("an unreachable PostgreSQL is 'unavailable' with a message that names it, not the password", async () => {
    const e = await rejectsWith(
      openStore("postgres://tessera:s3cret@127.0.0.1:1/ids", { connectTimeoutMs: 2000 }),
      "unavailable",
      /PostgreSQL at tessera@127\.0\.0\.1:1\/ids/,
    );
    assert.ok(!e.message.includes("s3cret"));
  });
});

const pgUrl = process.env.TESSERA_PG_URL;
if (pgUrl) {
  describe("datastore on PostgreSQL", () => {
    defineSuite(postgresBackend(pgUrl));
  });
} else if (process.env.CI) {
  describe("datastore on PostgreSQL", () => {
    it("needs TESSERA_PG_URL in CI", () => {
      assert.fail(
        "TESSERA_PG_URL is not set: .ci/run must start PostgreSQL (.ci/start-postgres) and export TESSERA_PG_URL before the tests",
      );
    });
  });
} else {
  describe("datastore on PostgreSQL", () => {
    it("runs the same suite", {
      skip: 'TESSERA_PG_URL is not set: run eval "$(.ci/start-postgres)" to test against PostgreSQL too',
    }, () => {});
  });
}
