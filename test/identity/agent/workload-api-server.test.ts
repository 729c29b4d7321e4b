/**
 * The Workload API server against the real client (WorkloadApiClient, X509Source, JwtSource) on
 * a temp Unix socket, with real SO_PEERCRED and /proc attestation.
 *
 * This file is also the child process of the "another uid" test: with TESSERA_WLAPI_CHILD set
 * to an address it only fetches its X.509-SVID there and prints the outcome as JSON.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { chmod, lstat, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AttestationError, type WorkloadAttestor } from "../../../src/identity/agent/attestor.js";
import { StaticIdentityProvider } from "../../../src/identity/agent/identity-provider.js";
import { PeerCredentialsError, peerCredentials } from "../../../src/identity/agent/peercred.js";
import { UnixAttestor } from "../../../src/identity/agent/unix-attestor.js";
import { grpcMessageEncoding, WorkloadApiServer } from "../../../src/identity/agent/workload-api-server.js";
import { X509Bundle } from "../../../src/spiffe/bundle/x509bundle.js";
import { type SpiffeId, TrustDomain } from "../../../src/spiffe/id.js";
import {
  WORKLOAD_API_HEADER,
  WorkloadApiClient,
  WorkloadApiError,
} from "../../../src/spiffe/workload/client.js";
import {
  JWTBundlesRequestSchema,
  JWTBundlesResponseSchema,
  JWTSVIDRequestSchema,
  JWTSVIDResponseSchema,
  ValidateJWTSVIDRequestSchema,
  ValidateJWTSVIDResponseSchema,
  WITBundlesRequestSchema,
  WITBundlesResponseSchema,
  WITSVIDRequestSchema,
  WITSVIDResponseSchema,
  X509BundlesRequestSchema,
  X509BundlesResponseSchema,
  X509SVIDRequestSchema,
  X509SVIDResponseSchema,
} from "../../../src/spiffe/workload/gen/workloadapi_pb.js";
import { JwtSource } from "../../../src/spiffe/workload/jwtsource.js";
import { X509Source } from "../../../src/spiffe/workload/x509source.js";
import { X509Svid } from "../../../src/spiffe/x509svid.js";
import { assertReachableByOtherUids } from "../../helpers/paths.js";
import { until } from "../../spiffe/fake-workload-api.js";
import { TestCa } from "../../spiffe/testca.js";

const CHILD_ENV = "TESSERA_WLAPI_CHILD";

// ---------------------------------------------------------------------------------------------
// Child mode: fetch the X.509-SVID at the given address, print {ok, id} or {ok: false, kind}

async function childMain(address: string): Promise<void> {
  const client = new WorkloadApiClient({ address });
  let out: Record<string, unknown>;
  try {
    const svid = await client.fetchX509Svid({ signal: AbortSignal.timeout(5000) });
    out = { ok: true, id: svid.id.toString(), uid: process.geteuid?.() };
  } catch (err) {
    out = {
      ok: false,
      kind: err instanceof WorkloadApiError ? err.kind : "other",
      message: (err as Error).message,
      uid: process.geteuid?.(),
    };
  } finally {
    await client.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const childAddress = process.env[CHILD_ENV];
if (childAddress !== undefined && childAddress !== "") {
  await childMain(childAddress);
} else {
  defineTests();
}

// ---------------------------------------------------------------------------------------------
// Helpers

const FAST = { initialMs: 20, maxMs: 100 };
const TD = TrustDomain.parse("example.org");
const FED = TrustDomain.parse("federated.test");

interface Fixture {
  dir: string;
  server: WorkloadApiServer;
  provider: StaticIdentityProvider;
  logs: string[];
}

interface Material {
  ca: TestCa;
  fedCa: TestCa;
  jwtKey: ReturnType<typeof generateKeyPairSync>["privateKey"];
}

async function issuer(ca: TestCa): Promise<(id: SpiffeId) => Promise<X509Svid>> {
  return async (id) => {
    const s = await ca.issueSvid(id.toString());
    return X509Svid.parseRaw(s.certificatesDer, s.privateKeyDer);
  };
}

const uid = process.geteuid?.() ?? 0;

async function startFixture(
  m: Material,
  options: {
    entries?: { spiffeId: string; selectors: string[]; hint?: string }[];
    attestors?: WorkloadAttestor[];
    server?: Partial<ConstructorParameters<typeof WorkloadApiServer>[0]>;
    dir?: string;
  } = {},
): Promise<Fixture> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "tessera-agent-")));
  const provider = await StaticIdentityProvider.create({
    bundle: X509Bundle.fromCertificates(TD, m.ca.authorities),
    federated: [X509Bundle.fromCertificates(FED, m.fedCa.authorities)],
    issueX509Svid: await issuer(m.ca),
    jwtSigner: { key: m.jwtKey, kid: "jwt-1" },
    entries: options.entries ?? [
      { spiffeId: "spiffe://example.org/me", selectors: [`unix:uid:${uid}`], hint: "internal" },
      {
        spiffeId: "spiffe://example.org/me-too",
        selectors: [`unix:uid:${uid}`, `unix:gid:${process.getegid?.()}`],
      },
      { spiffeId: "spiffe://example.org/not-me", selectors: [`unix:uid:${uid}`, "unix:gid:4242"] },
    ],
  });
  const logs: string[] = [];
  const server = new WorkloadApiServer({
    socketPath: join(dir, "sock", "agent.sock"),
    attestors: options.attestors ?? [new UnixAttestor({ discoverWorkloadPath: false })],
    identities: provider,
    log: (l) => logs.push(l),
    ...options.server,
  });
  await server.start();
  return { dir, server, provider, logs };
}

async function stopFixture(f: Fixture): Promise<void> {
  await f.server.close();
  await rm(f.dir, { recursive: true, force: true });
}

function serializer<D extends DescMessage>(schema: D): (m: MessageShape<D>) => Buffer {
  return (m) => Buffer.from(toBinary(schema, m));
}

function deserializer<D extends DescMessage>(schema: D): (b: Buffer) => MessageShape<D> {
  return (b) => fromBinary(schema, b);
}

interface RawOutcome {
  code: number;
  details: string;
  messages: number;
}

/** One raw grpc-js call (unary or the first message of a stream), with or without the header. */
function rawCall<I extends DescMessage, O extends DescMessage>(
  address: string,
  path: string,
  inSchema: I,
  outSchema: O,
  req: MessageShape<I>,
  opts: { header: boolean; stream: boolean },
): Promise<RawOutcome> {
  const client = new grpc.Client(address.replace("unix://", "unix:"), grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (opts.header) md.set(WORKLOAD_API_HEADER, "true");
  return new Promise<RawOutcome>((resolve) => {
    const done = (o: RawOutcome) => {
      client.close();
      resolve(o);
    };
    if (opts.stream) {
      let messages = 0;
      const call = client.makeServerStreamRequest(
        path,
        serializer(inSchema),
        deserializer(outSchema),
        req,
        md,
      );
      call.on("data", () => {
        messages++;
        call.cancel();
      });
      call.on("error", () => undefined);
      call.on("status", (s: grpc.StatusObject) => done({ code: s.code, details: s.details, messages }));
    } else {
      client.makeUnaryRequest(path, serializer(inSchema), deserializer(outSchema), req, md, {}, (err, res) =>
        done(
          err
            ? { code: err.code, details: err.details, messages: 0 }
            : { code: grpc.status.OK, details: "", messages: res ? 1 : 0 },
        ),
      );
    }
  });
}

const METHODS = [
  {
    name: "FetchX509SVID",
    stream: true,
    in: X509SVIDRequestSchema,
    out: X509SVIDResponseSchema,
    req: () => create(X509SVIDRequestSchema),
  },
  {
    name: "FetchX509Bundles",
    stream: true,
    in: X509BundlesRequestSchema,
    out: X509BundlesResponseSchema,
    req: () => create(X509BundlesRequestSchema),
  },
  {
    name: "FetchJWTSVID",
    stream: false,
    in: JWTSVIDRequestSchema,
    out: JWTSVIDResponseSchema,
    req: () => create(JWTSVIDRequestSchema, { audience: ["svc"] }),
  },
  {
    name: "FetchJWTBundles",
    stream: true,
    in: JWTBundlesRequestSchema,
    out: JWTBundlesResponseSchema,
    req: () => create(JWTBundlesRequestSchema),
  },
  {
    name: "ValidateJWTSVID",
    stream: false,
    in: ValidateJWTSVIDRequestSchema,
    out: ValidateJWTSVIDResponseSchema,
    req: () => create(ValidateJWTSVIDRequestSchema, { audience: "svc", svid: "a.b.c" }),
  },
  {
    name: "FetchWITSVID",
    stream: true,
    in: WITSVIDRequestSchema,
    out: WITSVIDResponseSchema,
    req: () => create(WITSVIDRequestSchema),
  },
  {
    name: "FetchWITBundles",
    stream: true,
    in: WITBundlesRequestSchema,
    out: WITBundlesResponseSchema,
    req: () => create(WITBundlesRequestSchema),
  },
] as const;

function callMethod(address: string, name: string, header: boolean): Promise<RawOutcome> {
  const m = METHODS.find((x) => x.name === name);
  if (m === undefined) throw new Error(name);
  return rawCall(
    address,
    `/SpiffeWorkloadAPI/${m.name}`,
    m.in as DescMessage,
    m.out as DescMessage,
    m.req() as MessageShape<DescMessage>,
    { header, stream: m.stream },
  );
}

/** Runs this file as a child process (child mode), optionally as another uid. */
function runChild(
  address: string,
  ids?: { uid: number; gid: number },
): Promise<{ ok: boolean; id?: string; kind?: string; message?: string; uid?: number }> {
  const file = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", [CHILD_ENV]: address },
      cwd: tmpdir(),
      stdio: ["ignore", "pipe", "pipe"],
      ...(ids ?? {}),
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`child exited ${code} without a result; stderr: ${err.slice(0, 2000)}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Tests

function defineTests(): void {
  const m = {} as Material;

  before(async () => {
    [m.ca, m.fedCa] = await Promise.all([TestCa.create("example.org"), TestCa.create("federated.test")]);
    m.jwtKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  });

  describe("peerCredentials (SO_PEERCRED)", () => {
    it("reads the pid, uid and gid of the connecting process, and throws on a closed socket", async () => {
      const dir = await mkdtemp(join(tmpdir(), "tessera-peercred-"));
      const path = join(dir, "s.sock");
      const got = new Promise<net.Socket>((resolve) => {
        const srv = net.createServer((s) => {
          srv.close();
          resolve(s);
        });
        srv.listen(path, () => net.connect(path));
      });
      const sock = await got;
      try {
        assert.deepEqual(peerCredentials(sock), {
          pid: process.pid,
          uid: process.geteuid?.(),
          gid: process.getegid?.(),
        });
      } finally {
        sock.destroy();
      }
      await new Promise((r) => sock.once("close", r));
      assert.throws(() => peerCredentials(sock), PeerCredentialsError);
      await rm(dir, { recursive: true, force: true });
    });
  });

  describe("WorkloadApiServer with the real client", () => {
    let f: Fixture;
    before(async () => {
      f = await startFixture(m);
    });
    after(async () => {
      await stopFixture(f);
    });

    it("listens on a 0777 socket in a created directory", async () => {
      const s = await stat(f.server.socketPath);
      assert.ok(s.isSocket());
      assert.equal(s.mode & 0o777, 0o777);
      assert.equal(f.server.address, `unix://${f.server.socketPath}`);
    });

    it("FetchX509SVID: every matching entry's SVID, default first, with hint and bundles", async () => {
      const source = await X509Source.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 });
      try {
        const svids = source.getX509Svids();
        assert.deepEqual(
          svids.map((s) => s.id.toString()),
          ["spiffe://example.org/me", "spiffe://example.org/me-too"],
        );
        assert.equal(source.getX509Svid().hint, "internal");
        assert.equal(svids[1]?.hint, undefined);
        assert.ok(source.getX509BundleForTrustDomain(TD)?.hasAuthority(m.ca.certificate));
        assert.ok(source.getX509BundleForTrustDomain(FED)?.hasAuthority(m.fedCa.certificate));
        // The key works with the leaf (the client checked it) and is the provider's.
        assert.equal(source.getX509Svid().leaf.serialNumber, f.provider.currentSvids()[0]?.leaf.serialNumber);
      } finally {
        await source.close();
      }
    });

    it("FetchX509Bundles: own and federated trust domains", async () => {
      const client = new WorkloadApiClient({ address: f.server.address, backoff: FAST });
      try {
        const set = await client.fetchX509Bundles();
        assert.deepEqual(
          set
            .trustDomains()
            .map((t) => t.name)
            .sort(),
          ["example.org", "federated.test"],
        );
      } finally {
        await client.close();
      }
    });

    it("FetchJWTSVID and ValidateJWTSVID: tokens for the audience, validated with the JWT bundles", async () => {
      const source = await JwtSource.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 });
      const client = new WorkloadApiClient({ address: f.server.address, backoff: FAST });
      try {
        const bundle = source.getJwtBundleForTrustDomain(TD);
        assert.ok(bundle?.findKey("jwt-1"));
        const svids = await client.fetchJwtSvids({ audience: ["svc", "other"] });
        assert.deepEqual(
          svids.map((s) => [s.id.toString(), s.hint]),
          [
            ["spiffe://example.org/me", "internal"],
            ["spiffe://example.org/me-too", undefined],
          ],
        );
        const only = await client.fetchJwtSvids({ audience: "svc", subject: "spiffe://example.org/me-too" });
        assert.deepEqual(
          only.map((s) => s.id.toString()),
          ["spiffe://example.org/me-too"],
        );
        const token = (svids[0] as (typeof svids)[number]).marshal();
        const v = await client.validateJwtSvid(token, "svc");
        assert.equal(v.id.toString(), "spiffe://example.org/me");
        assert.equal(v.claims.sub, "spiffe://example.org/me");
        assert.deepEqual(v.claims.aud, ["svc", "other"]);
        assert.equal(typeof v.claims.exp, "number");
        await assert.rejects(client.validateJwtSvid(token, "not-the-audience"), (err: unknown) => {
          assert.ok(err instanceof WorkloadApiError);
          assert.equal(err.kind, "InvalidArgument");
          return true;
        });
        // An entry the workload does not have; the message reaches grpc-js readable.
        await assert.rejects(
          client.fetchJwtSvids({ audience: "svc", subject: "spiffe://example.org/not-me" }),
          (err: unknown) =>
            err instanceof WorkloadApiError &&
            err.kind === "PermissionDenied" &&
            err.message.endsWith("PermissionDenied: no identity issued for spiffe://example.org/not-me"),
        );
      } finally {
        await client.close();
        await source.close();
      }
    });

    it("FetchJWTSVID without an audience, ValidateJWTSVID without a token: InvalidArgument", async () => {
      const noAud = await rawCall(
        f.server.address,
        "/SpiffeWorkloadAPI/FetchJWTSVID",
        JWTSVIDRequestSchema,
        JWTSVIDResponseSchema,
        create(JWTSVIDRequestSchema, {}),
        { header: true, stream: false },
      );
      assert.equal(noAud.code, grpc.status.INVALID_ARGUMENT);
      assert.match(noAud.details, /audience must be specified/);
      const badSubject = await rawCall(
        f.server.address,
        "/SpiffeWorkloadAPI/FetchJWTSVID",
        JWTSVIDRequestSchema,
        JWTSVIDResponseSchema,
        create(JWTSVIDRequestSchema, { audience: ["a"], spiffeId: "not an id" }),
        { header: true, stream: false },
      );
      assert.equal(badSubject.code, grpc.status.INVALID_ARGUMENT);
      const noToken = await rawCall(
        f.server.address,
        "/SpiffeWorkloadAPI/ValidateJWTSVID",
        ValidateJWTSVIDRequestSchema,
        ValidateJWTSVIDResponseSchema,
        create(ValidateJWTSVIDRequestSchema, { audience: "svc" }),
        { header: true, stream: false },
      );
      assert.equal(noToken.code, grpc.status.INVALID_ARGUMENT);
      assert.match(noToken.details, /svid must be specified/);
      const garbage = await callMethod(f.server.address, "ValidateJWTSVID", true);
      assert.equal(garbage.code, grpc.status.INVALID_ARGUMENT);
    });

    it("every method without the workload.spiffe.io header: InvalidArgument", async () => {
      for (const method of METHODS) {
        const r = await callMethod(f.server.address, method.name, false);
        assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `${method.name}: ${r.details}`);
        assert.equal(r.details, "security header missing from request");
        assert.equal(r.messages, 0);
      }
      // A wrong value is no better than none.
      const client = new grpc.Client(
        f.server.address.replace("unix://", "unix:"),
        grpc.credentials.createInsecure(),
      );
      const md = new grpc.Metadata();
      md.set(WORKLOAD_API_HEADER, "yes");
      const code = await new Promise<number>((resolve) => {
        const call = client.makeServerStreamRequest(
          "/SpiffeWorkloadAPI/FetchX509SVID",
          serializer(X509SVIDRequestSchema),
          deserializer(X509SVIDResponseSchema),
          create(X509SVIDRequestSchema),
          md,
        );
        call.on("error", () => undefined);
        call.on("status", (s: grpc.StatusObject) => resolve(s.code));
      });
      client.close();
      assert.equal(code, grpc.status.INVALID_ARGUMENT);
    });

    it("the WIT methods answer Unimplemented", async () => {
      for (const name of ["FetchWITSVID", "FetchWITBundles"]) {
        const r = await callMethod(f.server.address, name, true);
        assert.equal(r.code, grpc.status.UNIMPLEMENTED, name);
      }
    });

    it("a rotation reaches every open stream, and unchanged state is not resent", async () => {
      const sources = await Promise.all(
        Array.from({ length: 20 }, () =>
          X509Source.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 }),
        ),
      );
      const jwt = await JwtSource.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 });
      let jwtUpdates = 0;
      jwt.on("update", () => jwtUpdates++);
      try {
        const before = sources.map((s) => s.getX509Svid().leaf.serialNumber);
        assert.equal(new Set(before).size, 1);
        await f.provider.rotate();
        const rotated = f.provider.currentSvids()[0]?.leaf.serialNumber;
        assert.notEqual(rotated, before[0]);
        await until(
          () => sources.every((s) => s.getX509Svid().leaf.serialNumber === rotated),
          "every stream to get the rotated SVID",
        );
        // The X.509 rotation changed nothing the JWT bundles stream carries: nothing was resent.
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(jwtUpdates, 0);
        assert.ok(f.server.openStreams >= 21);
      } finally {
        await jwt.close();
        await Promise.all(sources.map((s) => s.close()));
      }
      await until(() => f.server.openStreams === 0, "streams to end after the clients closed");
    });

    it("a bundle change is pushed to FetchX509Bundles and FetchX509SVID streams", async () => {
      const client = new WorkloadApiClient({ address: f.server.address, backoff: FAST });
      const seen: string[][] = [];
      const ac = new AbortController();
      const watch = client.watchX509Bundles(
        {
          onUpdate: (set) =>
            seen.push(
              set
                .trustDomains()
                .map((t) => t.name)
                .sort(),
            ),
          onError: () => undefined,
        },
        ac.signal,
      );
      try {
        await until(() => seen.length === 1, "the first bundles");
        const other = await TestCa.create("other.test");
        await f.provider.setBundles(X509Bundle.fromCertificates(TD, m.ca.authorities), [
          X509Bundle.fromCertificates(FED, m.fedCa.authorities),
          X509Bundle.fromCertificates(TrustDomain.parse("other.test"), other.authorities),
        ]);
        await until(() => seen.length === 2, "the new bundles");
        assert.deepEqual(seen[1], ["example.org", "federated.test", "other.test"]);
      } finally {
        ac.abort();
        await watch;
        await client.close();
      }
    });
  });

  describe("WorkloadApiServer refusals", () => {
    it("PermissionDenied on every method when no entry matches", async () => {
      const f = await startFixture(m, {
        entries: [{ spiffeId: "spiffe://example.org/someone-else", selectors: ["unix:uid:4242"] }],
      });
      try {
        for (const method of METHODS.filter((x) => !x.name.startsWith("FetchWIT"))) {
          const r = await callMethod(f.server.address, method.name, true);
          assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${method.name}: ${r.details}`);
          assert.equal(r.details, "no identity issued");
        }
        assert.ok(f.logs.some((l) => /FetchX509SVID: no identity for pid \d+/.test(l)));
        // The real client reports it as PermissionDenied too.
        const client = new WorkloadApiClient({ address: f.server.address, backoff: FAST });
        await assert.rejects(
          client.fetchX509Context(),
          (err: unknown) => err instanceof WorkloadApiError && err.kind === "PermissionDenied",
        );
        await client.close();
      } finally {
        await stopFixture(f);
      }
    });

    it("an open stream ends with PermissionDenied when the workload loses its last entry", async () => {
      const f = await startFixture(m, {
        entries: [{ spiffeId: "spiffe://example.org/me", selectors: [`unix:uid:${uid}`] }],
      });
      const source = await X509Source.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 });
      const errors: WorkloadApiError[] = [];
      source.on("error", (e: WorkloadApiError) => errors.push(e));
      try {
        assert.equal(await f.provider.removeEntries("spiffe://example.org/me"), 1);
        await until(
          () => errors.some((e) => e.kind === "PermissionDenied"),
          "PermissionDenied on the stream",
        );
        assert.throws(() => source.getX509Svid(), /withdrew/);
        // Granted again: the client's retry gets it.
        await f.provider.addEntry({ spiffeId: "spiffe://example.org/me", selectors: [`unix:uid:${uid}`] });
        await until(() => {
          try {
            return source.getX509Svid().id.toString() === "spiffe://example.org/me";
          } catch {
            return false;
          }
        }, "the identity back");
      } finally {
        await source.close();
        await stopFixture(f);
      }
    });

    it("PermissionDenied with the reason when the PID-reuse guard trips", async () => {
      const f = await startFixture(m, {
        server: {
          guardCaller: async (creds) => ({
            check: async () => {
              throw new AttestationError(
                "pid-reused",
                `pid ${creds.pid} now names another process (start time 1 when it connected, 2 now): the caller exited and its PID was reused; refusing`,
              );
            },
          }),
        },
      });
      try {
        const r = await callMethod(f.server.address, "FetchX509SVID", true);
        assert.equal(r.code, grpc.status.PERMISSION_DENIED);
        assert.match(r.details, /now names another process .* PID was reused; refusing/);
        assert.ok(f.logs.some((l) => /FetchX509SVID refused for pid \d+/.test(l)));
      } finally {
        await stopFixture(f);
      }
    });

    it("PermissionDenied when the peer credentials cannot be read (fail closed)", async () => {
      const f = await startFixture(m, {
        server: {
          peerCredentials: () => {
            throw new PeerCredentialsError("getsockopt(SO_PEERCRED) failed with errno 95");
          },
        },
      });
      try {
        const r = await callMethod(f.server.address, "FetchX509SVID", true);
        assert.equal(r.code, grpc.status.PERMISSION_DENIED);
        assert.match(r.details, /caller could not be identified: getsockopt\(SO_PEERCRED\) failed/);
      } finally {
        await stopFixture(f);
      }
    });

    it("PermissionDenied when an attestor fails", async () => {
      const f = await startFixture(m, {
        attestors: [
          new UnixAttestor({ discoverWorkloadPath: false }),
          {
            name: "broken",
            attest: async () => {
              throw new Error("kubelet unreachable");
            },
          },
        ],
      });
      try {
        const r = await callMethod(f.server.address, "FetchX509SVID", true);
        assert.equal(r.code, grpc.status.PERMISSION_DENIED);
        assert.match(r.details, /workload attestor "broken" failed for pid \d+: kubelet unreachable/);
      } finally {
        await stopFixture(f);
      }
    });

    it("a process running as another uid is denied the entry bound to unix:uid:0; root gets it", async (t) => {
      if (uid !== 0) {
        t.skip("needs root to spawn a process as uid 65534");
        return;
      }
      const dir = await mkdtemp(join(tmpdir(), "tessera-agent-uid-"));
      // mkdtemp makes 0700: the other user must reach the socket (itself 0777).
      await chmod(dir, 0o755);
      const f = await startFixture(m, {
        dir,
        entries: [{ spiffeId: "spiffe://example.org/root-only", selectors: ["unix:uid:0"] }],
      });
      try {
        await chmod(join(dir, "sock"), 0o755);
        assertReachableByOtherUids();
        const nobody = await runChild(f.server.address, { uid: 65534, gid: 65534 });
        assert.equal(nobody.uid, 65534);
        assert.equal(nobody.ok, false, JSON.stringify(nobody));
        assert.equal(nobody.kind, "PermissionDenied", JSON.stringify(nobody));
        const root = await runChild(f.server.address);
        assert.deepEqual(root, { ok: true, id: "spiffe://example.org/root-only", uid: 0 });
      } finally {
        await stopFixture(f);
      }
    });
  });

  describe("WorkloadApiServer lifecycle", () => {
    it("close() ends open streams, removes the socket and refuses new connections", async () => {
      const f = await startFixture(m);
      const source = await X509Source.create({ address: f.server.address, backoff: FAST, timeoutMs: 5000 });
      const errors: string[] = [];
      source.on("error", (e: WorkloadApiError) => errors.push(e.kind));
      try {
        assert.equal(f.server.openStreams, 1);
        await f.server.close();
        await f.server.close();
        assert.equal(f.server.openStreams, 0);
        await assert.rejects(lstat(f.server.socketPath), { code: "ENOENT" });
        await until(() => errors.length > 0, "the stream to end");
        assert.ok(["stream-ended", "Unavailable"].includes(errors[0] ?? ""), errors.join(","));
      } finally {
        await source.close();
        await rm(f.dir, { recursive: true, force: true });
      }
    });

    it("replaces a stale socket, refuses a live one and a path that is not a socket", async () => {
      const dir = await mkdtemp(join(tmpdir(), "tessera-agent-"));
      const path = join(dir, "agent.sock");
      // A stale socket: its server was killed, so nobody unlinked it and nobody answers.
      const holder = spawn(
        process.execPath,
        ["-e", `require("net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      await new Promise((r) => holder.stdout.once("data", r));
      const exited = new Promise((r) => holder.once("exit", r));
      holder.kill("SIGKILL");
      await exited;
      assert.ok((await stat(path)).isSocket());
      const f = await startFixture(m, { dir, server: { socketPath: path } });
      try {
        const ok = await callMethod(f.server.address, "FetchX509SVID", true);
        assert.equal(ok.messages, 1, ok.details);
        const second = new WorkloadApiServer({ socketPath: path, attestors: [], identities: f.provider });
        await assert.rejects(second.start(), /another server is listening/);
        const file = join(dir, "file");
        await writeFile(file, "x");
        const third = new WorkloadApiServer({ socketPath: file, attestors: [], identities: f.provider });
        await assert.rejects(third.start(), /is not a socket; refusing to replace it/);
      } finally {
        await stopFixture(f);
      }
    });

    it("takes the socket path from SPIFFE_ENDPOINT_SOCKET when none is given", async () => {
      const provider = await StaticIdentityProvider.create({
        bundle: X509Bundle.fromCertificates(TD, m.ca.authorities),
        issueX509Svid: await issuer(m.ca),
      });
      const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
      try {
        process.env.SPIFFE_ENDPOINT_SOCKET = "unix:///run/tessera/agent.sock";
        assert.equal(
          new WorkloadApiServer({ attestors: [], identities: provider }).socketPath,
          "/run/tessera/agent.sock",
        );
        process.env.SPIFFE_ENDPOINT_SOCKET = "tcp://127.0.0.1:8080";
        assert.throws(() => new WorkloadApiServer({ attestors: [], identities: provider }), /must be a unix/);
      } finally {
        if (saved === undefined) delete process.env.SPIFFE_ENDPOINT_SOCKET;
        else process.env.SPIFFE_ENDPOINT_SOCKET = saved;
      }
    });
  });

  describe("grpc-message encoding", () => {
    it("percent-encodes only what the gRPC spec asks (non-ASCII, controls, %)", () => {
      assert.equal(
        grpcMessageEncoding(encodeURIComponent("no identity for spiffe://example.org/a, b; c")),
        "no identity for spiffe://example.org/a, b; c",
      );
      assert.equal(grpcMessageEncoding(encodeURIComponent("100% → ok\n")), "100%25 %E2%86%92 ok%0A");
      assert.equal(grpcMessageEncoding("%E0%A4%A"), "%E0%A4%A");
    });
  });

  describe("StaticIdentityProvider", () => {
    it("matches entries whose selectors are a subset of the workload's, and caches per selector set", async () => {
      const p = await StaticIdentityProvider.create({
        bundle: X509Bundle.fromCertificates(TD, m.ca.authorities),
        issueX509Svid: await issuer(m.ca),
        entries: [
          { spiffeId: "spiffe://example.org/a", selectors: ["unix:uid:1"] },
          { spiffeId: "spiffe://example.org/b", selectors: ["unix:uid:1", "unix:gid:2"] },
        ],
      });
      const sel = (...s: string[]) => s.map((x) => ({ type: "unix", value: x.slice(5) }));
      assert.deepEqual(
        p.identitiesFor(sel("unix:uid:1"))?.svids.map((s) => s.id.toString()),
        ["spiffe://example.org/a"],
      );
      const both = p.identitiesFor(sel("unix:gid:2", "unix:uid:1", "unix:path:/x"));
      assert.deepEqual(
        both?.svids.map((s) => s.id.toString()),
        ["spiffe://example.org/a", "spiffe://example.org/b"],
      );
      assert.equal(p.identitiesFor(sel("unix:uid:1", "unix:path:/x", "unix:gid:2")), both);
      assert.equal(p.identitiesFor(sel("unix:gid:2")), undefined);
      let changes = 0;
      const off = p.onChange(() => changes++);
      await p.rotate();
      assert.notEqual(p.identitiesFor(sel("unix:gid:2", "unix:uid:1", "unix:path:/x")), both);
      off();
      await p.rotate();
      assert.equal(changes, 1);
      await assert.rejects(p.jwtSvidFor(sel("unix:uid:1"), ["a"]), /no JWT signing key/);
      await assert.rejects(
        p.addEntry({ spiffeId: "spiffe://example.org/c", selectors: [] }),
        /at least one selector/,
      );
    });
  });
}
