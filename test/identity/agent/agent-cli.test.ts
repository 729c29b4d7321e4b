/**
 * `tessera agent run`, `tessera svid fetch` and `tessera healthcheck` as processes, against the
 * fake Agent API server in this process (so every child is spawned asynchronously).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseJwtSvidInsecure } from "../../../src/spiffe/jwtsvid.js";
import { X509Svid } from "../../../src/spiffe/x509svid.js";
import { cliPath } from "../../helpers/paths.js";
import { until } from "../../spiffe/fake-workload-api.js";
import { tessera } from "../run.js";
import { FakeAgentApi, TD } from "./fake-agent-api.js";

const uid = process.geteuid?.() ?? 0;

describe("tessera agent run / svid fetch / healthcheck", () => {
  let api: FakeAgentApi;
  let dir: string;
  let agent: ChildProcess;
  let agentErr = "";
  let socket: string;

  before(async () => {
    api = await FakeAgentApi.start();
    dir = await mkdtemp(join(tmpdir(), "tessera-agent-cli-"));
    await writeFile(join(dir, "ca.pem"), api.caPem);
    socket = join(dir, "data", "workload.sock");
    api.addEntry(`spiffe://${TD}/cli`, [`unix:uid:${uid}`]);
    const token = api.newToken();
    agent = spawn(
      process.execPath,
      [
        cliPath,
        "agent",
        "run",
        "--server",
        api.address,
        "--data-dir",
        join(dir, "data"),
        "--trust-bundle",
        join(dir, "ca.pem"),
        "--sync-interval",
        "0.2",
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TESSERA_JOIN_TOKEN: token } },
    );
    agent.stderr?.on("data", (d: Buffer) => {
      agentErr += d.toString();
    });
    await until(
      () => agentErr.includes("SPIFFE_ENDPOINT_SOCKET=") || agent.exitCode !== null,
      "the agent",
      10_000,
    );
    assert.match(agentErr, /export SPIFFE_ENDPOINT_SOCKET=unix:\/\//, agentErr);
    assert.doesNotMatch(agentErr, new RegExp(token));
  });

  after(async () => {
    if (agent.exitCode === null) {
      const exited = new Promise((r) => agent.once("exit", r));
      agent.kill("SIGTERM");
      await exited;
    }
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("healthcheck answers healthy; a socket with no agent is unhealthy", async () => {
    const ok = await tessera(["healthcheck", "--socket", socket]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /healthy/);
    const bad = await tessera(["healthcheck", "--socket", join(dir, "nothing.sock")]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /unhealthy: the agent does not answer/);
  });

  it("svid fetch prints a summary, writes PEM files (key 0600), and prints only the JWT with --jwt", async () => {
    const summary = await tessera(["svid", "fetch", "--socket", socket]);
    assert.equal(summary.status, 0, summary.stderr);
    assert.match(summary.stdout, new RegExp(`SPIFFE ID: +spiffe://${TD}/cli`));
    assert.doesNotMatch(summary.stdout, /PRIVATE KEY/);

    const out = join(dir, "out");
    const written = await tessera(["svid", "fetch", "--socket", socket, "--write", out]);
    assert.equal(written.status, 0, written.stderr);
    assert.equal((await stat(join(out, "svid.key"))).mode & 0o777, 0o600);
    const svid = X509Svid.parse(await readFile(join(out, "svid.pem")), await readFile(join(out, "svid.key")));
    assert.equal(svid.id.toString(), `spiffe://${TD}/cli`);
    const bundle = new X509Certificate(await readFile(join(out, "bundle.pem")));
    assert.ok(svid.leaf.verify(bundle.publicKey));

    const jwt = await tessera(["svid", "fetch", "--socket", socket, "--jwt", "--audience", "db"]);
    assert.equal(jwt.status, 0, jwt.stderr);
    const token = jwt.stdout.trim();
    assert.equal(jwt.stdout, `${token}\n`);
    assert.equal(parseJwtSvidInsecure(token, "db").id.toString(), `spiffe://${TD}/cli`);

    const usage = await tessera(["svid", "fetch", "--socket", socket, "--jwt"]);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--audience/);
  });

  it("no matching entry: PermissionDenied says who the caller is and how to fix it", async () => {
    const saved = api.entries;
    api.entries = [];
    try {
      await new Promise((r) => setTimeout(r, 600)); // a few syncs
      const r = await tessera(["svid", "fetch", "--socket", socket]);
      assert.equal(r.status, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `no registration entry matches this process: uid ${uid}, gid \\d+, path /.+ — create one with: tessera entry create`,
        ),
      );
      assert.match(r.stderr, new RegExp(`--selector unix:uid:${uid}`));
    } finally {
      api.entries = saved;
    }
  });

  it("agent run without a join token or identity says what to do", async () => {
    const r = await tessera([
      "agent",
      "run",
      "--server",
      api.address,
      "--data-dir",
      join(dir, "empty"),
      "--insecure-bootstrap",
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--join-token TOKEN/);
    const both = await tessera([
      "agent",
      "run",
      "--server",
      api.address,
      "--trust-bundle",
      join(dir, "ca.pem"),
      "--insecure-bootstrap",
    ]);
    assert.equal(both.status, 2);
  });
});
