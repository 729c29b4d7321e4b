import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { X509BundleSet } from "../../src/spiffe/bundle/set.js";
import { SpiffeError } from "../../src/spiffe/errors.js";
import { SpiffeId, TrustDomain } from "../../src/spiffe/id.js";
import type { TlsSource } from "../../src/spiffe/tls.js";
import {
  WORKLOAD_API_HEADER,
  WorkloadApiClient,
  WorkloadApiError,
  type X509Context,
} from "../../src/spiffe/workload/client.js";
import {
  JWTSVIDResponseSchema,
  ValidateJWTSVIDResponseSchema,
  X509BundlesResponseSchema,
  X509SVIDRequestSchema,
  X509SVIDResponseSchema,
  X509SVIDSchema,
} from "../../src/spiffe/workload/gen/workloadapi_pb.js";
import { JwtSource } from "../../src/spiffe/workload/jwtsource.js";
import { X509Source } from "../../src/spiffe/workload/x509source.js";
import { type Failure, FakeWorkloadApi, until } from "./fake-workload-api.js";
import {
  FixtureCa,
  JwtAuthority,
  jwtBundlesResponse,
  jwtSvidMessage,
  type SvidMaterial,
  x509Response,
} from "./workload-fixtures.js";

const FAST = { initialMs: 20, maxMs: 100 };
const TD = TrustDomain.parse("example.org");
const FED = TrustDomain.parse("federated.test");
const OTHER = TrustDomain.parse("other.test");

let ca: FixtureCa;
let fedCa: FixtureCa;
let otherCa: FixtureCa;
let svid1: SvidMaterial;
let svid2: SvidMaterial; // svid1's rotation: same ID, new certificate and key
let svidDb: SvidMaterial;
let jwtA: JwtAuthority;
let jwtB: JwtAuthority; // rotated JWT authority of example.org
let jwtFed: JwtAuthority;

before(async () => {
  [ca, fedCa, otherCa] = await Promise.all([
    FixtureCa.create("example.org"),
    FixtureCa.create("federated.test"),
    FixtureCa.create("other.test"),
  ]);
  [svid1, svid2, svidDb] = await Promise.all([ca.issue("/web"), ca.issue("/web"), ca.issue("/db")]);
  jwtA = new JwtAuthority("example.org", "kid-a");
  jwtB = new JwtAuthority("example.org", "kid-b");
  jwtFed = new JwtAuthority("federated.test", "kid-fed");
});

const fakes: FakeWorkloadApi[] = [];
const clients: WorkloadApiClient[] = [];

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(fakes.map((f) => f.dispose()));
});

async function startFake(options: { tcp?: boolean } = {}): Promise<FakeWorkloadApi> {
  const fake = await FakeWorkloadApi.start(options);
  fakes.push(fake);
  return fake;
}

function newClient(address: string, backoff = FAST): WorkloadApiClient {
  const client = new WorkloadApiClient({ address, backoff });
  clients.push(client);
  return client;
}

function status(code: grpc.status, details = "test"): Failure {
  return { code, details };
}

function leafOf(ctx: X509Context, i = 0): Buffer {
  const svid = ctx.svids[i];
  assert.ok(svid);
  const leaf = svid.certificates[0];
  assert.ok(leaf);
  return leaf.raw;
}

/** Collects a watcher's updates and errors. */
function recorder<T>() {
  const updates: T[] = [];
  const errors: WorkloadApiError[] = [];
  return {
    updates,
    errors,
    watcher: { onUpdate: (v: T) => updates.push(v), onError: (e: WorkloadApiError) => errors.push(e) },
  };
}

function isKind(kind: string) {
  return (err: unknown) => {
    assert.ok(err instanceof WorkloadApiError, `not a WorkloadApiError: ${String(err)}`);
    assert.ok(err instanceof SpiffeError);
    assert.equal(err.kind, kind, err.message);
    assert.equal(err.code, `workload-api:${kind}`);
    return true;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Workload API client: each RPC", () => {
  it("FetchX509SVID: SVIDs, own and federated bundles; the stream is cancelled after the first message", async () => {
    const fake = await startFake();
    fake.x509.push(
      x509Response([{ svid: svid1, bundle: ca.bundleDer, hint: "internal" }], {
        "spiffe://federated.test": fedCa.bundleDer,
      }),
    );
    const client = newClient(fake.address);
    const ctx = await client.fetchX509Context();
    assert.equal(ctx.svids.length, 1);
    assert.equal(ctx.svids[0]?.id.toString(), "spiffe://example.org/web");
    assert.equal(ctx.svids[0]?.hint, "internal");
    assert.deepEqual(leafOf(ctx), svid1.leafDer);
    assert.ok(ctx.bundles.get(TD)?.authorities[0]?.raw.equals(ca.bundleDer));
    assert.ok(ctx.bundles.get(FED)?.authorities[0]?.raw.equals(fedCa.bundleDer));
    assert.equal(ctx.bundles.size, 2);
    const svid = await client.fetchX509Svid();
    assert.equal(svid.id.toString(), "spiffe://example.org/web");

    // A chain through an intermediate: leaf first, the bundle holds the root only.
    const viaIntermediate = await (await ca.intermediate()).issue("/deep");
    fake.x509.push(x509Response([{ svid: viaIntermediate, bundle: ca.bundleDer }]));
    const deep = await client.fetchX509Svid();
    assert.equal(deep.id.toString(), "spiffe://example.org/deep");
    assert.equal(deep.certificates.length, 2);
    assert.deepEqual(deep.certificates[0]?.raw, viaIntermediate.leafDer);
    await until(() => fake.x509.cancelled === 3 && fake.x509.active.size === 0, "every stream cancelled");
  });

  it("works over tcp://127.0.0.1:port", async () => {
    const fake = await startFake({ tcp: true });
    assert.match(fake.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const client = newClient(fake.address);
    const ctx = await client.fetchX509Context();
    assert.equal(ctx.svids[0]?.id.toString(), "spiffe://example.org/web");
  });

  it("takes the address from SPIFFE_ENDPOINT_SOCKET by default", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
    process.env.SPIFFE_ENDPOINT_SOCKET = fake.address;
    try {
      const client = new WorkloadApiClient({ backoff: FAST });
      clients.push(client);
      assert.equal(client.address.kind, "unix");
      assert.equal((await client.fetchX509Context()).svids.length, 1);
    } finally {
      if (saved === undefined) delete process.env.SPIFFE_ENDPOINT_SOCKET;
      else process.env.SPIFFE_ENDPOINT_SOCKET = saved;
    }
    assert.throws(
      () => new WorkloadApiClient({ address: "unix://relative/agent.sock" }),
      (e: unknown) => e instanceof SpiffeError && e.code === "invalid-endpoint-address:unix-authority",
    );
  });

  it("FetchX509Bundles: fetch and watch", async () => {
    const fake = await startFake();
    fake.x509Bundles.push(
      create(X509BundlesResponseSchema, {
        bundles: { "spiffe://example.org": ca.bundleDer, "spiffe://federated.test": fedCa.bundleDer },
      }),
    );
    const client = newClient(fake.address);
    const set = await client.fetchX509Bundles();
    assert.deepEqual(set.trustDomains().map(String).sort(), ["example.org", "federated.test"]);

    const rec = recorder<X509BundleSet>();
    const ac = new AbortController();
    const done = client.watchX509Bundles(rec.watcher, ac.signal);
    await until(() => rec.updates.length === 1, "first bundles");
    fake.x509Bundles.push(
      create(X509BundlesResponseSchema, { bundles: { "spiffe://example.org": ca.bundleDer } }),
    );
    await until(() => rec.updates.length === 2, "second bundles");
    assert.deepEqual(rec.updates[1]?.trustDomains().map(String), ["example.org"]);
    ac.abort();
    await done;
    await until(() => fake.x509Bundles.active.size === 0, "stream cancelled");
  });

  it("FetchJWTSVID: audience and subject sent, SVIDs parsed, duplicate hints dropped", async () => {
    const fake = await startFake();
    const webToken = await jwtA.sign("/web", ["svc-a", "svc-b"]);
    const dbToken = await jwtA.sign("/db", "svc-a");
    const dupToken = await jwtA.sign("/dup", "svc-a");
    fake.jwtSvid.respond = () =>
      create(JWTSVIDResponseSchema, {
        svids: [
          jwtSvidMessage("spiffe://example.org/web", webToken, "internal"),
          jwtSvidMessage("spiffe://example.org/db", dbToken),
          jwtSvidMessage("spiffe://example.org/dup", dupToken, "internal"),
        ],
      });
    const client = newClient(fake.address);
    const svid = await client.fetchJwtSvid({
      audience: "svc-a",
      subject: SpiffeId.parse("spiffe://example.org/web"),
    });
    assert.equal(svid.id.toString(), "spiffe://example.org/web");
    assert.equal(svid.marshal(), webToken);
    assert.equal(svid.hint, "internal");
    assert.deepEqual(fake.jwtSvid.requests[0]?.audience, ["svc-a"]);
    assert.equal(fake.jwtSvid.requests[0]?.spiffeId, "spiffe://example.org/web");

    const all = await client.fetchJwtSvids({ audience: ["svc-a"] });
    assert.deepEqual(
      all.map((s) => s.id.toString()),
      ["spiffe://example.org/web", "spiffe://example.org/db"],
    );
    assert.equal(fake.jwtSvid.requests[1]?.spiffeId, "");

    await assert.rejects(client.fetchJwtSvid({ audience: [] }), isKind("invalid-request"));
    assert.equal(fake.jwtSvid.calls, 2);
  });

  it("FetchJWTBundles: fetch and watch", async () => {
    const fake = await startFake();
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks(), "federated.test": jwtFed.jwks() }));
    const client = newClient(fake.address);
    const set = await client.fetchJwtBundles();
    assert.ok(set.get(TD)?.findKey("kid-a"));
    assert.ok(set.get(FED)?.findKey("kid-fed"));
    const ac = new AbortController();
    const rec = recorder<typeof set>();
    const done = client.watchJwtBundles(rec.watcher, ac.signal);
    await until(() => rec.updates.length === 1, "first JWT bundles");
    ac.abort();
    await done;
    await until(() => fake.jwtBundles.cancelled === 2, "streams cancelled");
  });

  it("ValidateJWTSVID: the server's answer, and the request it got", async () => {
    const fake = await startFake();
    const token = await jwtA.sign("/web", "svc");
    fake.validate.respond = (req) =>
      create(ValidateJWTSVIDResponseSchema, {
        spiffeId: "spiffe://example.org/web",
        claims: { sub: "spiffe://example.org/web", aud: [req.audience], exp: 123 },
      });
    const client = newClient(fake.address);
    const res = await client.validateJwtSvid(token, "svc");
    assert.equal(res.id.toString(), "spiffe://example.org/web");
    assert.deepEqual(res.claims, { sub: "spiffe://example.org/web", aud: ["svc"], exp: 123 });
    assert.equal(fake.validate.requests[0]?.svid, token);
    assert.equal(fake.validate.requests[0]?.audience, "svc");

    fake.validate.respond = () => status(grpc.status.INVALID_ARGUMENT, "token is expired");
    await assert.rejects(client.validateJwtSvid(token, "svc"), (e: unknown) => {
      isKind("InvalidArgument")(e);
      assert.ok(!(e as Error).message.includes(token), "the token is never in a message");
      return true;
    });
  });
});

describe("Workload API client: metadata", () => {
  it("every call carries workload.spiffe.io: true", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    fake.x509Bundles.push(
      create(X509BundlesResponseSchema, { bundles: { "spiffe://example.org": ca.bundleDer } }),
    );
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks() }));
    const token = await jwtA.sign("/web", "svc");
    fake.jwtSvid.respond = () =>
      create(JWTSVIDResponseSchema, { svids: [jwtSvidMessage("spiffe://example.org/web", token)] });
    fake.validate.respond = () =>
      create(ValidateJWTSVIDResponseSchema, { spiffeId: "spiffe://example.org/web", claims: {} });
    const client = newClient(fake.address);
    await client.fetchX509Context();
    await client.fetchX509Bundles();
    await client.fetchJwtBundles();
    await client.fetchJwtSvid({ audience: "svc" });
    await client.validateJwtSvid(token, "svc");
    assert.deepEqual(fake.headers.map((h) => h.method).sort(), [
      "FetchJWTBundles",
      "FetchJWTSVID",
      "FetchX509Bundles",
      "FetchX509SVID",
      "ValidateJWTSVID",
    ]);
    for (const h of fake.headers) assert.deepEqual(h.values, ["true"], h.method);
    assert.equal(fake.refusedForHeader, 0);
  });

  it("the fake refuses a request without it (or with another value) with InvalidArgument", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const raw = new grpc.Client(
      `unix://${fake.address.slice("unix://".length)}`,
      grpc.credentials.createInsecure(),
    );
    try {
      const call = (md: grpc.Metadata) =>
        new Promise<grpc.StatusObject>((resolve) => {
          const stream = raw.makeServerStreamRequest(
            "/SpiffeWorkloadAPI/FetchX509SVID",
            () => Buffer.alloc(0),
            (b: Buffer) => b,
            create(X509SVIDRequestSchema),
            md,
          );
          stream.on("data", () => stream.cancel());
          stream.on("error", () => undefined);
          stream.on("status", resolve);
        });
      assert.equal((await call(new grpc.Metadata())).code, grpc.status.INVALID_ARGUMENT);
      const wrong = new grpc.Metadata();
      wrong.set(WORKLOAD_API_HEADER, "True");
      assert.equal((await call(wrong)).code, grpc.status.INVALID_ARGUMENT);
      assert.equal(fake.refusedForHeader, 2);
      assert.equal(fake.x509.accepted, 0);
    } finally {
      raw.close();
    }
  });
});

describe("X509Source and JwtSource", () => {
  it("X509Source follows rotations and federation changes, fires update, and closes the stream", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const source = await X509Source.create({ address: fake.address, backoff: FAST, timeoutMs: 3000 });
    const forTls: TlsSource = source; // what the mTLS helpers take
    assert.ok(forTls);
    try {
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid1.leafDer);
      assert.ok(source.getX509BundleForTrustDomain(TD));
      assert.equal(source.getX509BundleForTrustDomain(FED), undefined);

      const updates: X509Context[] = [];
      source.on("update", (ctx: X509Context) => updates.push(ctx));

      // Rotation, and a federated bundle appears.
      fake.x509.push(
        x509Response([{ svid: svid2, bundle: ca.bundleDer }], { "spiffe://federated.test": fedCa.bundleDer }),
      );
      await until(() => updates.length === 1, "rotation");
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid2.leafDer);
      assert.ok(source.getX509BundleForTrustDomain(FED)?.authorities[0]?.raw.equals(fedCa.bundleDer));
      assert.equal(source.getX509Bundles().length, 2);

      // The federated bundle is swapped for another one: the first must be unloaded.
      fake.x509.push(
        x509Response([{ svid: svid2, bundle: ca.bundleDer }], {
          "spiffe://other.test": otherCa.bundleDer,
          "spiffe://federated.test": Buffer.alloc(0),
        }),
      );
      await until(() => updates.length === 2, "federation change");
      assert.equal(source.getX509BundleForTrustDomain(FED), undefined);
      assert.ok(source.getX509BundleForTrustDomain(OTHER));

      // An SVID is redacted: the source stops handing it out.
      fake.x509.push(
        x509Response([
          { svid: svidDb, bundle: ca.bundleDer },
          { svid: svid2, bundle: ca.bundleDer },
        ]),
      );
      await until(() => updates.length === 3, "second identity");
      assert.equal(source.getX509Svid().id.toString(), "spiffe://example.org/db");
      fake.x509.push(x509Response([{ svid: svid2, bundle: ca.bundleDer }]));
      await until(() => updates.length === 4, "redaction");
      assert.deepEqual(
        source.getX509Svids().map((s) => s.id.toString()),
        ["spiffe://example.org/web"],
      );
      assert.equal(source.getX509BundleForTrustDomain(OTHER), undefined);
    } finally {
      await source.close();
    }
    assert.ok(source.closed);
    await until(() => fake.x509.cancelled === 1 && fake.x509.active.size === 0, "the server sees the cancel");
    assert.throws(() => source.getX509Svid(), isKind("closed"));
    await source.close(); // idempotent
  });

  it("X509Source picker and hints: the first of duplicate hints wins", async () => {
    const fake = await startFake();
    fake.x509.push(
      x509Response([
        { svid: svid1, bundle: ca.bundleDer, hint: "internal" },
        { svid: svidDb, bundle: ca.bundleDer, hint: "external" },
        { svid: svid2, bundle: ca.bundleDer, hint: "external" },
      ]),
    );
    const client = newClient(fake.address);
    const source = await X509Source.create({
      client,
      picker: (svids) => svids.find((s) => s.hint === "external") ?? (svids[0] as (typeof svids)[number]),
    });
    try {
      assert.equal(source.getX509Svids().length, 2);
      assert.equal(source.getX509Svid().id.toString(), "spiffe://example.org/db");
    } finally {
      await source.close();
    }
    assert.equal(client.closed, false, "a shared client stays open");
  });

  it("JwtSource follows JWT bundle rotations and fetches JWT-SVIDs", async () => {
    const fake = await startFake();
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks() }));
    const token = await jwtA.sign("/web", "svc");
    fake.jwtSvid.respond = () =>
      create(JWTSVIDResponseSchema, { svids: [jwtSvidMessage("spiffe://example.org/web", token)] });
    const source = await JwtSource.create({ address: fake.address, backoff: FAST, timeoutMs: 3000 });
    try {
      assert.ok(source.getJwtBundleForTrustDomain(TD)?.findKey("kid-a"));
      let updates = 0;
      source.on("update", () => updates++);
      fake.jwtBundles.push(
        jwtBundlesResponse({ "example.org": jwtB.jwks(), "federated.test": jwtFed.jwks() }),
      );
      await until(() => updates === 1, "JWT bundle rotation");
      assert.equal(source.getJwtBundleForTrustDomain(TD)?.findKey("kid-a"), undefined);
      assert.ok(source.getJwtBundleForTrustDomain(TD)?.findKey("kid-b"));
      assert.ok(source.getJwtBundleForTrustDomain(FED));
      fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtB.jwks() }));
      await until(() => updates === 2, "federated JWT bundle removed");
      assert.equal(source.getJwtBundleForTrustDomain(FED), undefined);
      assert.equal(source.getJwtBundles().length, 1);

      const svid = await source.fetchJwtSvid({ audience: "svc" });
      assert.equal(svid.marshal(), token);
    } finally {
      await source.close();
    }
    await until(() => fake.jwtBundles.cancelled === 1, "the server sees the cancel");
    await assert.rejects(source.fetchJwtSvid({ audience: "svc" }), isKind("closed"));
  });

  it("PermissionDenied withdraws the SVIDs and bundles until the server grants them again", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks() }));
    const client = newClient(fake.address);
    const x = await X509Source.create({ client });
    const j = await JwtSource.create({ client });
    try {
      let updates = 0;
      x.on("update", () => updates++);
      j.on("update", () => updates++);
      const denied = status(grpc.status.PERMISSION_DENIED, "no identity issued");
      fake.x509.failAll = denied;
      fake.jwtBundles.failAll = denied;
      fake.x509.endAll(denied);
      fake.jwtBundles.endAll(denied);
      await until(
        () => x.lastError?.kind === "PermissionDenied" && j.lastError?.kind === "PermissionDenied",
        "denied",
      );
      assert.throws(() => x.getX509Svid(), isKind("PermissionDenied"));
      assert.equal(x.getX509BundleForTrustDomain(TD), undefined);
      assert.deepEqual(x.getX509Bundles(), []);
      assert.equal(j.getJwtBundleForTrustDomain(TD), undefined);
      assert.deepEqual(j.getJwtBundles(), []);
      const denials = fake.x509.calls;
      await until(() => fake.x509.calls >= denials + 2, "retries while denied");
      fake.x509.failAll = undefined;
      fake.jwtBundles.failAll = undefined;
      await until(() => updates === 2, "granted again");
      assert.equal(x.getX509Svid().id.toString(), "spiffe://example.org/web");
      assert.ok(j.getJwtBundleForTrustDomain(TD));
    } finally {
      await x.close();
      await j.close();
    }
  });

  it("create times out when no update comes, naming the last error", async () => {
    const fake = await startFake();
    fake.x509.failAll = status(grpc.status.PERMISSION_DENIED, "no identity issued");
    await assert.rejects(
      X509Source.create({ address: fake.address, backoff: FAST, timeoutMs: 200 }),
      (e: unknown) => {
        isKind("timeout")(e);
        assert.match((e as Error).message, /PermissionDenied/);
        return true;
      },
    );
    await sleep(50); // a call sent just before the timeout may still reach the server
    const calls = fake.x509.calls;
    assert.ok(calls >= 2, `retried while waiting (${calls} calls)`);
    await sleep(150);
    assert.equal(fake.x509.calls, calls, "no call after the failed create");
  });
});

describe("Workload API client: reconnection", () => {
  it("a stream that ends is reopened and the state resumes", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const client = newClient(fake.address);
    const rec = recorder<X509Context>();
    const ac = new AbortController();
    const done = client.watchX509Context(rec.watcher, ac.signal);
    await until(() => rec.updates.length === 1, "first update");
    fake.x509.endAll();
    await until(() => rec.updates.length === 2, "state again on the new stream");
    assert.equal(fake.x509.calls, 2);
    assert.ok(rec.errors.some((e) => e.kind === "stream-ended"));
    fake.x509.push(x509Response([{ svid: svid2, bundle: ca.bundleDer }]));
    await until(() => rec.updates.length === 3, "push on the new stream");
    assert.deepEqual(leafOf(rec.updates[2] as X509Context), svid2.leafDer);
    ac.abort();
    await done;
  });

  it("a server restart: the source reconnects and resumes with the new state", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const source = await X509Source.create({ address: fake.address, backoff: FAST });
    try {
      const errors: WorkloadApiError[] = [];
      source.on("error", (e: WorkloadApiError) => errors.push(e));
      let updates = 0;
      source.on("update", () => updates++);
      fake.stop();
      await until(() => errors.length >= 1, "the stream failure is reported");
      // While the agent is down, the last state stays in use.
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid1.leafDer);
      await sleep(60);
      fake.x509.current = x509Response([{ svid: svid2, bundle: ca.bundleDer }]);
      await fake.listen();
      await until(() => updates >= 1, "update after the restart", 5000);
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid2.leafDer);
      assert.ok(errors.every((e) => e.retryable));
    } finally {
      await source.close();
    }
  });

  it("a source created before the agent listens waits for it", async () => {
    const fake = await startFake();
    fake.stop();
    fake.jwtBundles.current = jwtBundlesResponse({ "example.org": jwtA.jwks() });
    const pending = JwtSource.create({ address: fake.address, backoff: FAST, timeoutMs: 5000 });
    await sleep(80);
    await fake.listen();
    const source = await pending;
    try {
      assert.ok(source.getJwtBundleForTrustDomain(TD));
    } finally {
      await source.close();
    }
  });
});

describe("Workload API client: retry rules", () => {
  it("InvalidArgument: reported, not retried; the watch rejects", async () => {
    const fake = await startFake();
    fake.x509.failAll = status(grpc.status.INVALID_ARGUMENT, "bad request");
    const client = newClient(fake.address);
    const rec = recorder<X509Context>();
    await assert.rejects(client.watchX509Context(rec.watcher), isKind("InvalidArgument"));
    assert.equal(rec.errors.length, 1);
    assert.equal(rec.errors[0]?.grpcCode, grpc.status.INVALID_ARGUMENT);
    assert.equal(rec.errors[0]?.retryable, false);
    await sleep(150);
    assert.equal(fake.x509.calls, 1);

    await assert.rejects(X509Source.create({ client }), isKind("InvalidArgument"));
    await sleep(100);
    assert.equal(fake.x509.calls, 2);
  });

  it("Unimplemented: not retried", async () => {
    const fake = await startFake();
    fake.jwtBundles.failAll = status(grpc.status.UNIMPLEMENTED);
    const client = newClient(fake.address);
    const rec = recorder<unknown>();
    await assert.rejects(client.watchJwtBundles(rec.watcher), isKind("Unimplemented"));
    await sleep(150);
    assert.equal(fake.jwtBundles.calls, 1);
    assert.equal(rec.errors.length, 1);
  });

  for (const [name, code] of [
    ["PermissionDenied", grpc.status.PERMISSION_DENIED],
    ["Unavailable", grpc.status.UNAVAILABLE],
    ["Internal", grpc.status.INTERNAL],
  ] as const) {
    it(`${name}: retried with growing backoff until a message comes`, async () => {
      const fake = await startFake();
      fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
      fake.x509.failNext(status(code), status(code), status(code));
      const client = newClient(fake.address, { initialMs: 20, maxMs: 1000 });
      const rec = recorder<X509Context>();
      const ac = new AbortController();
      const done = client.watchX509Context(rec.watcher, ac.signal);
      await until(() => rec.updates.length === 1, "update after the failures");
      ac.abort();
      await done;
      assert.equal(fake.x509.calls, 4);
      assert.deepEqual(
        rec.errors.map((e) => e.kind),
        [name, name, name],
      );
      // Equal jitter: attempt n waits between half and all of 20·2^n ms.
      const t = fake.x509.callTimes;
      for (let i = 1; i < t.length; i++) {
        const gap = (t[i] as number) - (t[i - 1] as number);
        assert.ok(gap >= 10 * 2 ** (i - 1) - 3, `gap ${i} is ${gap} ms`);
      }
    });
  }

  it("the backoff is capped", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    fake.x509.failNext(...Array.from({ length: 6 }, () => status(grpc.status.UNAVAILABLE)));
    const client = newClient(fake.address, { initialMs: 20, maxMs: 40 });
    const rec = recorder<X509Context>();
    const ac = new AbortController();
    const done = client.watchX509Context(rec.watcher, ac.signal);
    await until(() => rec.updates.length === 1, "update after the failures");
    ac.abort();
    await done;
    // Capped: at most 20 + 5 × 40 = 220 ms of waiting; uncapped it would be at least 630 ms.
    const t = fake.x509.callTimes;
    const total = (t.at(-1) as number) - (t[0] as number);
    assert.equal(t.length, 7);
    assert.ok(total < 500, `6 retries took ${total} ms`);
  });

  it("the backoff is reset after a good message", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    fake.x509.failNext(...Array.from({ length: 6 }, () => status(grpc.status.UNAVAILABLE)));
    const client = newClient(fake.address, { initialMs: 10, maxMs: 800 });
    const rec = recorder<X509Context>();
    const ac = new AbortController();
    const done = client.watchX509Context(rec.watcher, ac.signal);
    await until(() => rec.updates.length === 1, "update after the failures");
    // Without a reset the 7th retry would wait 320–640 ms; after a good message it is 5–10 ms.
    const ended = Date.now();
    fake.x509.endAll();
    await until(() => rec.updates.length === 2, "update after the stream end");
    const gap = (fake.x509.callTimes.at(-1) as number) - ended;
    assert.ok(gap < 200, `reconnected after ${gap} ms`);
    ac.abort();
    await done;
  });
});

describe("Workload API client: malformed messages are reported and discarded", () => {
  const emptyResponse = () => create(X509SVIDResponseSchema, {});
  const withField = (
    patch: Partial<{ spiffeId: string; x509Svid: Buffer; x509SvidKey: Buffer; bundle: Buffer }>,
  ) =>
    create(X509SVIDResponseSchema, {
      svids: [
        create(X509SVIDSchema, {
          spiffeId: svid2.id,
          x509Svid: svid2.chainDer,
          x509SvidKey: svid2.keyDer,
          bundle: ca.bundleDer,
          ...patch,
        }),
      ],
    });

  it("X.509: empty svids, default fields, mismatched IDs, garbage; the previous state stays", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    const source = await X509Source.create({ address: fake.address, backoff: FAST });
    try {
      const errors: WorkloadApiError[] = [];
      source.on("error", (e: WorkloadApiError) => errors.push(e));
      let updates = 0;
      source.on("update", () => updates++);
      const bad = [
        emptyResponse(),
        withField({ spiffeId: "" }),
        withField({ x509Svid: Buffer.alloc(0) }),
        withField({ x509SvidKey: Buffer.alloc(0) }),
        withField({ bundle: Buffer.alloc(0) }),
        withField({ spiffeId: "spiffe://example.org/not-web" }),
        withField({ spiffeId: "not an id" }),
        withField({ x509Svid: Buffer.from("garbage") }),
        withField({ x509SvidKey: svid1.keyDer }),
        x509Response([{ svid: svid2, bundle: ca.bundleDer }], { "not a trust domain!": fedCa.bundleDer }),
      ];
      for (const [i, msg] of bad.entries()) {
        fake.x509.sendRaw(msg);
        await until(() => errors.length === i + 1, `error for bad message ${i}`);
        assert.equal(errors[i]?.kind, "malformed-response", errors[i]?.message);
      }
      assert.match(errors[0]?.message ?? "", /svids/);
      assert.match(errors[1]?.message ?? "", /spiffe_id/);
      assert.match(errors[3]?.message ?? "", /x509_svid_key/);
      assert.equal(updates, 0);
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid1.leafDer, "previous state kept");
      assert.equal(source.lastError?.kind, "malformed-response");
      assert.equal(fake.x509.calls, 1, "a bad message does not break the stream");
      // A good message after the bad ones is taken.
      fake.x509.push(x509Response([{ svid: svid2, bundle: ca.bundleDer }]));
      await until(() => updates === 1, "good message");
      assert.deepEqual(source.getX509Svid().certificates[0]?.raw, svid2.leafDer);
      for (const e of errors) assert.ok(!/PRIVATE KEY/.test(e.message));
    } finally {
      await source.close();
    }
  });

  it("a malformed first message fails a fetch", async () => {
    const fake = await startFake();
    fake.x509.push(emptyResponse());
    fake.x509Bundles.push(create(X509BundlesResponseSchema, {}));
    fake.jwtBundles.push(jwtBundlesResponse({}));
    fake.jwtSvid.respond = () => create(JWTSVIDResponseSchema, {});
    fake.validate.respond = () => create(ValidateJWTSVIDResponseSchema, { spiffeId: "" });
    const client = newClient(fake.address);
    await assert.rejects(client.fetchX509Context(), isKind("malformed-response"));
    await assert.rejects(client.fetchX509Bundles(), isKind("malformed-response"));
    await assert.rejects(client.fetchJwtBundles(), isKind("malformed-response"));
    await assert.rejects(client.fetchJwtSvid({ audience: "svc" }), isKind("malformed-response"));
    await assert.rejects(client.validateJwtSvid("a.b.c", "svc"), isKind("malformed-response"));
    const token = await jwtA.sign("/web", "svc");
    for (const svids of [
      [jwtSvidMessage("", token)],
      [jwtSvidMessage("spiffe://example.org/web", "")],
      [jwtSvidMessage("spiffe://example.org/other", token)],
      [jwtSvidMessage("spiffe://example.org/web", "not.a.token")],
    ]) {
      fake.jwtSvid.respond = () => create(JWTSVIDResponseSchema, { svids });
      await assert.rejects(client.fetchJwtSvid({ audience: "svc" }), (e: unknown) => {
        isKind("malformed-response")(e);
        assert.ok(!(e as Error).message.includes(token), "no token in messages");
        return true;
      });
    }
    // A token for another audience is refused as well (claims are checked, not the signature).
    fake.jwtSvid.respond = () =>
      create(JWTSVIDResponseSchema, { svids: [jwtSvidMessage("spiffe://example.org/web", token)] });
    await assert.rejects(client.fetchJwtSvid({ audience: "other" }), isKind("malformed-response"));
  });

  it("JWT bundles: an empty map or a bad JWK Set is discarded; the previous bundles stay", async () => {
    const fake = await startFake();
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks() }));
    const source = await JwtSource.create({ address: fake.address, backoff: FAST });
    try {
      const errors: WorkloadApiError[] = [];
      source.on("error", (e: WorkloadApiError) => errors.push(e));
      fake.jwtBundles.sendRaw(jwtBundlesResponse({}));
      fake.jwtBundles.sendRaw(jwtBundlesResponse({ "example.org": Buffer.from("{not json") }));
      await until(() => errors.length === 2, "two errors");
      assert.ok(errors.every((e) => e.kind === "malformed-response"));
      assert.ok(source.getJwtBundleForTrustDomain(TD)?.findKey("kid-a"));
    } finally {
      await source.close();
    }
  });
});

describe("closing", () => {
  it("close() during backoff ends the watch at once", async () => {
    const fake = await startFake();
    fake.x509.failAll = status(grpc.status.UNAVAILABLE);
    const client = new WorkloadApiClient({
      address: fake.address,
      backoff: { initialMs: 5000, maxMs: 5000 },
    });
    const rec = recorder<X509Context>();
    const done = client.watchX509Context(rec.watcher);
    await until(() => rec.errors.length === 1, "first failure");
    const t0 = Date.now();
    await client.close();
    await done;
    assert.ok(Date.now() - t0 < 1000, "no wait for the backoff timer");
    assert.equal(fake.x509.calls, 1);
    await assert.rejects(client.fetchX509Context(), isKind("closed"));
  });

  it("a process using X509Source and JwtSource exits by itself after close()", async () => {
    const fake = await startFake();
    fake.x509.push(x509Response([{ svid: svid1, bundle: ca.bundleDer }]));
    fake.jwtBundles.push(jwtBundlesResponse({ "example.org": jwtA.jwks() }));
    const here = dirname(fileURLToPath(import.meta.url));
    const mod = (name: string) => pathToFileURL(join(here, "../../src/spiffe/workload", name)).href;
    const script = `
      import { X509Source } from ${JSON.stringify(mod("x509source.js"))};
      import { JwtSource } from ${JSON.stringify(mod("jwtsource.js"))};
      const opts = { address: process.argv[1], backoff: { initialMs: 20, maxMs: 100 }, timeoutMs: 5000 };
      const x = await X509Source.create(opts);
      const j = await JwtSource.create(opts);
      console.log(x.getX509Svid().id.toString());
      await x.close();
      await j.close();
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, fake.address], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += String(d);
    });
    child.stderr.on("data", (d) => {
      err += String(d);
    });
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve("hung");
      }, 8000);
      child.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c ?? "signal");
      });
    });
    assert.equal(code, 0, `child did not exit cleanly: ${code} ${err}`);
    assert.equal(out.trim(), "spiffe://example.org/web");
    await until(() => fake.x509.cancelled === 1 && fake.jwtBundles.cancelled === 1, "streams cancelled");
  });
});
