/**
 * The SPIFFE Workload API server (SPIFFE_Workload_API.md, SPIFFE_Workload_Endpoint.md) on a
 * Unix socket: gRPC, wire-compatible with workloadapi.proto (`/SpiffeWorkloadAPI/<Method>`).
 *
 * Why its own listener: a Workload API server must know who is calling, and the only trustworthy
 * answer is the kernel's, per connection (SO_PEERCRED). @grpc/grpc-js gives handlers no socket,
 * so Tessera owns the `net.Server`: on accept it reads the peer's credentials and records the
 * process (PID-reuse guard), then hands the socket to an `http2` server of its own, which serves
 * the Connect router (gRPC protocol only). Each HTTP/2 session is mapped to its caller, and
 * handlers find the caller through the request's session.
 *
 * Every call, in this order:
 *   1. `workload.spiffe.io: true` must be present, else InvalidArgument (Endpoint §3);
 *   2. request arguments (audience, token), else InvalidArgument;
 *   3. the caller is attested: each attestor's selectors for its pid; then the PID-reuse guard
 *      re-checks the process (and again before a JWT answer), else PermissionDenied;
 *   4. no identity for the selectors: PermissionDenied.
 * Streams send the full current state at once and again after every change that alters it;
 * when the workload loses every identity, the stream ends with PermissionDenied. WIT methods
 * answer Unimplemented. Messages and logs never contain private keys or tokens.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, chmod as setMode, unlink } from "node:fs/promises";
import * as http2 from "node:http2";
import * as net from "node:net";
import { dirname } from "node:path";
import { create, type DescMessage, type JsonObject, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { JwtBundle } from "../../spiffe/bundle/jwtbundle.js";
import { JwtBundleSet } from "../../spiffe/bundle/set.js";
import type { X509Bundle } from "../../spiffe/bundle/x509bundle.js";
import { SpiffeId, type TrustDomain } from "../../spiffe/id.js";
import { JwtSvidError, validateJwtSvid } from "../../spiffe/jwtsvid.js";
import { ENDPOINT_SOCKET_ENV, parseEndpointAddress } from "../../spiffe/workload/address.js";
import { WORKLOAD_API_HEADER } from "../../spiffe/workload/client.js";
import {
  type JWTBundlesResponse,
  JWTBundlesResponseSchema,
  type JWTSVIDRequest,
  type JWTSVIDResponse,
  JWTSVIDResponseSchema,
  JWTSVIDSchema,
  SpiffeWorkloadAPI,
  type ValidateJWTSVIDRequest,
  type ValidateJWTSVIDResponse,
  ValidateJWTSVIDResponseSchema,
  type X509BundlesResponse,
  X509BundlesResponseSchema,
  type X509SVIDResponse,
  X509SVIDResponseSchema,
  X509SVIDSchema,
} from "../../spiffe/workload/gen/workloadapi_pb.js";
import {
  AttestationError,
  attestWorkload,
  type PeerCredentials,
  type Selector,
  type WorkloadAttestor,
} from "./attestor.js";
import type { IdentityProvider, X509Identities } from "./identity-provider.js";
import { peerCredentials as readPeerCredentials } from "./peercred.js";
import { ProcessGuard } from "./unix-attestor.js";

/** What re-checks that the caller's PID still names the process that connected. */
export interface CallerGuard {
  check(): Promise<void>;
}

export interface WorkloadApiServerOptions {
  /** The Unix socket path; default the path of `SPIFFE_ENDPOINT_SOCKET` (a `unix:` address). */
  socketPath?: string;
  attestors: readonly WorkloadAttestor[];
  identities: IdentityProvider;
  /** Records the caller's process at accept time (default: ProcessGuard over /proc). */
  guardCaller?: (creds: PeerCredentials) => Promise<CallerGuard>;
  /** Reads a new connection's peer credentials (default: SO_PEERCRED). */
  peerCredentials?: (socket: net.Socket) => PeerCredentials;
  /** Receives one line per refused call or connection problem (default: none). Never secrets. */
  log?: (message: string) => void;
  /** How long close() lets connections finish before destroying them (default 1000 ms). */
  closeTimeoutMs?: number;
}

/** The caller of a connection, as known at accept time. */
type Caller = { ok: true; creds: PeerCredentials; guard: Promise<CallerGuard> } | { ok: false; error: Error };

/** An attested call. */
interface AttestedCall {
  creds: PeerCredentials;
  selectors: Selector[];
  guard: CallerGuard;
}

interface Encoded<M> {
  message: M;
  /** SHA-256 of the encoded message: streams send a state only when it differs from the last. */
  digest: string;
}

const CALLER = createContextKey<Caller | undefined>(undefined, { description: "workload API caller" });

/** Largest request accepted (requests are tiny; a JWT to validate is the biggest). */
const READ_MAX_BYTES = 1024 * 1024;

function denied(message: string): ConnectError {
  return new ConnectError(message, Code.PermissionDenied);
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function encode<D extends DescMessage>(schema: D, message: MessageShape<D>): Encoded<MessageShape<D>> {
  const digest = createHash("sha256").update(toBinary(schema, message)).digest("hex");
  return { message, digest };
}

/**
 * grpc-message as the gRPC spec writes it: percent-encoding only for bytes outside 0x20–0x7E
 * and for `%`. Connect encodes it with encodeURIComponent, and grpc-js (Tessera's own client,
 * like Node's other gRPC users) decodes with decodeURI, which leaves `%3A`, `%2C`, `%2F`, ... as
 * they are: "spiffe%3A%2F%2Fexample.org". Every gRPC client decodes the spec's form.
 */
export function grpcMessageEncoding(value: string): string {
  let text: string;
  try {
    text = decodeURIComponent(value);
  } catch {
    return value;
  }
  let out = "";
  for (const b of Buffer.from(text, "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function fixHeaders(headers: unknown): void {
  if (headers === null || typeof headers !== "object") return;
  const h = headers as Record<string, unknown>;
  const value = h["grpc-message"];
  if (typeof value === "string") h["grpc-message"] = grpcMessageEncoding(value);
}

/** Rewrites grpc-message in the headers (trailers-only responses) and trailers Connect writes. */
function reencodeGrpcMessage(res: http2.Http2ServerResponse): void {
  const writeHead = res.writeHead;
  const addTrailers = res.addTrailers;
  res.writeHead = function (this: http2.Http2ServerResponse, ...args: unknown[]) {
    for (const a of args) fixHeaders(a);
    return (writeHead as (...a: unknown[]) => http2.Http2ServerResponse).apply(this, args);
  } as typeof res.writeHead;
  res.addTrailers = function (this: http2.Http2ServerResponse, trailers: http2.OutgoingHttpHeaders) {
    fixHeaders(trailers);
    addTrailers.call(this, trailers);
  };
}

/** The path of `SPIFFE_ENDPOINT_SOCKET`, which must be a `unix:` address. */
function socketPathFromEnv(): string {
  const value = process.env[ENDPOINT_SOCKET_ENV];
  if (value === undefined || value === "") {
    throw new Error(`no socketPath given and ${ENDPOINT_SOCKET_ENV} is not set`);
  }
  const address = parseEndpointAddress(value);
  if (address.kind !== "unix") {
    throw new Error(`${ENDPOINT_SOCKET_ENV} must be a unix:// address for the Workload API server`);
  }
  return address.path;
}

export class WorkloadApiServer {
  readonly socketPath: string;
  private readonly attestors: readonly WorkloadAttestor[];
  private readonly identities: IdentityProvider;
  private readonly guardCaller: (creds: PeerCredentials) => Promise<CallerGuard>;
  private readonly readCreds: (socket: net.Socket) => PeerCredentials;
  private readonly log: (message: string) => void;
  private readonly closeTimeoutMs: number;

  private readonly net: net.Server;
  private readonly h2: http2.Http2Server;
  private readonly callers = new WeakMap<http2.Http2Session, Caller>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<net.Socket>();
  /** The caller of the connection being handed to the http2 server (its "session" event is synchronous). */
  private handingOver: Caller | undefined;

  /** Bumped on every change of the provider; streams wait on `waiters`. */
  private generation = 0;
  private readonly waiters = new Set<() => void>();
  private readonly streams = new Set<AbortController>();
  private readonly x509Cache = new WeakMap<X509Identities, Encoded<X509SVIDResponse>>();
  private readonly bundlesCache = new WeakMap<X509Identities, Encoded<X509BundlesResponse>>();
  private readonly jwtBundlesCache = new WeakMap<readonly JwtBundle[], Encoded<JWTBundlesResponse>>();
  private unsubscribe: (() => void) | undefined;
  private state: "new" | "listening" | "closing" | "closed" = "new";
  private closeDone: Promise<void> | undefined;

  constructor(options: WorkloadApiServerOptions) {
    this.socketPath = options.socketPath ?? socketPathFromEnv();
    this.attestors = [...options.attestors];
    this.identities = options.identities;
    this.guardCaller = options.guardCaller ?? ((creds) => ProcessGuard.capture(creds));
    this.readCreds = options.peerCredentials ?? readPeerCredentials;
    this.log = options.log ?? (() => undefined);
    this.closeTimeoutMs = options.closeTimeoutMs ?? 1000;

    const handler = connectNodeAdapter({
      routes: (router: ConnectRouter) => router.service(SpiffeWorkloadAPI, this.implementation()),
      grpc: true,
      grpcWeb: false,
      connect: false,
      // No compression: the socket is local, and each stream's message would be compressed anew.
      acceptCompression: [],
      readMaxBytes: READ_MAX_BYTES,
      contextValues: (req) => {
        const session = "stream" in req ? req.stream.session : undefined;
        return createContextValues().set(CALLER, session ? this.callers.get(session) : undefined);
      },
    });
    this.h2 = http2.createServer({}, (req, res) => {
      reencodeGrpcMessage(res);
      handler(req, res);
    });
    this.h2.on("session", (session: http2.ServerHttp2Session) => {
      const caller = this.handingOver;
      if (caller !== undefined) this.callers.set(session, caller);
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
    this.h2.on("sessionError", (err: Error) =>
      this.log(`workload API: HTTP/2 session error: ${err.message}`),
    );
    this.net = net.createServer((socket) => this.accept(socket));
  }

  /** `unix:///path/to/socket`, the value for workloads' SPIFFE_ENDPOINT_SOCKET. */
  get address(): string {
    return `unix://${this.socketPath}`;
  }

  /** Open streams (FetchX509SVID, FetchX509Bundles, FetchJWTBundles). */
  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Creates the socket's directory, replaces a stale socket (refuses when another server
   * answers on it, or when the path is not a socket), listens and makes the socket 0777 (like
   * SPIRE's agent: any local process may ask; attestation decides what it gets).
   */
  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("the Workload API server was already started");
    await mkdir(dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await this.removeStaleSocket();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.net.once("error", onError);
      // A deep accept queue: a thousand workloads (re)connecting at once, e.g. after an agent
      // restart, must not meet EAGAIN (the kernel caps it at net.core.somaxconn).
      this.net.listen({ path: this.socketPath, backlog: 4096 }, () => {
        this.net.off("error", onError);
        this.unsubscribe = this.identities.onChange(() => this.changed());
        this.state = "listening";
        resolve();
      });
    });
    this.net.on("error", (err) => this.log(`workload API: listener error: ${err.message}`));
    await setMode(this.socketPath, 0o777);
  }

  /**
   * Stops accepting, ends every stream (status OK: clients reconnect), lets connections finish
   * for up to `closeTimeoutMs`, then destroys them and removes the socket. Idempotent.
   */
  close(): Promise<void> {
    this.closeDone ??= this.shutdown();
    return this.closeDone;
  }

  private async shutdown(): Promise<void> {
    const wasListening = this.state === "listening";
    this.state = "closing";
    this.unsubscribe?.();
    const netClosed = wasListening
      ? new Promise<void>((resolve) => this.net.close(() => resolve()))
      : Promise.resolve();
    for (const s of [...this.streams]) s.abort();
    for (const session of [...this.sessions]) session.close();
    const deadline = setTimeout(() => {
      for (const session of [...this.sessions]) session.destroy();
      for (const socket of [...this.sockets]) socket.destroy();
    }, this.closeTimeoutMs);
    deadline.unref();
    await netClosed;
    clearTimeout(deadline);
    // Only a socket this server created is removed (libuv usually has already).
    if (wasListening) {
      try {
        await unlink(this.socketPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    this.state = "closed";
  }

  private async removeStaleSocket(): Promise<void> {
    let isSocket: boolean;
    try {
      isSocket = (await lstat(this.socketPath)).isSocket();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    if (!isSocket) throw new Error(`${this.socketPath} exists and is not a socket; refusing to replace it`);
    const live = await new Promise<boolean>((resolve) => {
      const probe = net.connect(this.socketPath);
      probe.once("connect", () => {
        probe.destroy();
        resolve(true);
      });
      probe.once("error", () => resolve(false));
    });
    if (live) throw new Error(`another server is listening on ${this.socketPath}`);
    await unlink(this.socketPath);
  }

  // ---------------------------------------------------------------------------------------------
  // Connections

  private accept(socket: net.Socket): void {
    if (this.state !== "listening") {
      socket.destroy();
      return;
    }
    let caller: Caller;
    try {
      const creds = this.readCreds(socket);
      // Recorded now, as close to connect() as possible; awaited by each call.
      const guard = this.guardCaller(creds);
      guard.catch(() => undefined);
      caller = { ok: true, creds, guard };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.log(`workload API: cannot identify a new connection's caller: ${error.message}`);
      caller = { ok: false, error };
    }
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    this.handingOver = caller;
    try {
      this.h2.emit("connection", socket);
    } finally {
      this.handingOver = undefined;
    }
  }

  private changed(): void {
    this.generation++;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  /** Resolves true after the next change (at once if one happened since `since`), false when `signal` aborts. */
  private nextChange(since: number, signal: AbortSignal): Promise<boolean> {
    if (this.generation !== since) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const onAbort = () => {
        this.waiters.delete(wake);
        resolve(false);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      };
      this.waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Per call: header, attestation, identities

  private requireHeader(ctx: HandlerContext): void {
    if (ctx.requestHeader.get(WORKLOAD_API_HEADER) !== "true") {
      throw invalid("security header missing from request");
    }
  }

  private async attest(ctx: HandlerContext): Promise<AttestedCall> {
    const method = ctx.method.name;
    const caller = ctx.values.get(CALLER);
    if (caller === undefined) throw denied("the caller of this connection is unknown");
    if (!caller.ok) throw denied(`the caller could not be identified: ${caller.error.message}`);
    const { creds } = caller;
    try {
      const guard = await caller.guard;
      const selectors = await attestWorkload(this.attestors, creds);
      await guard.check();
      return { creds, selectors, guard };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.log(`workload API: ${method} refused for pid ${creds.pid} (uid ${creds.uid}): ${why}`);
      if (err instanceof AttestationError) throw denied(why);
      throw denied(`workload attestation failed: ${why}`);
    }
  }

  private async recheck(call: AttestedCall): Promise<void> {
    try {
      await call.guard.check();
    } catch (err) {
      throw denied(err instanceof Error ? err.message : String(err));
    }
  }

  private noIdentity(call: AttestedCall, method: string): ConnectError {
    this.log(
      `workload API: ${method}: no identity for pid ${call.creds.pid} (uid ${call.creds.uid}, ${call.selectors.length} selectors)`,
    );
    return denied("no identity issued");
  }

  private lookup(call: AttestedCall): X509Identities | undefined {
    try {
      return this.identities.identitiesFor(call.selectors);
    } catch (err) {
      throw new ConnectError(`identity lookup failed: ${(err as Error).message}`, Code.Internal);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Responses (cached per state object: every stream of the same workload shares one encoding)

  private x509Response(ids: X509Identities): Encoded<X509SVIDResponse> {
    const hit = this.x509Cache.get(ids);
    if (hit !== undefined) return hit;
    const bundleOf = (td: TrustDomain): X509Bundle => {
      if (ids.bundle.trustDomain.equals(td)) return ids.bundle;
      const fed = ids.federated.find((b) => b.trustDomain.equals(td));
      if (fed === undefined) {
        throw new ConnectError(`no bundle for trust domain ${td.name} of an SVID`, Code.Internal);
      }
      return fed;
    };
    const message = create(X509SVIDResponseSchema, {
      svids: ids.svids.map((svid) => {
        const raw = svid.marshalRaw();
        return create(X509SVIDSchema, {
          spiffeId: svid.id.toString(),
          x509Svid: raw.certificates,
          x509SvidKey: raw.privateKey,
          bundle: bundleOf(svid.id.trustDomain).marshalDer(),
          hint: svid.hint ?? "",
        });
      }),
      federatedBundles: this.federatedMap(ids),
    });
    const out = encode(X509SVIDResponseSchema, message);
    this.x509Cache.set(ids, out);
    return out;
  }

  private federatedMap(ids: X509Identities): { [key: string]: Uint8Array } {
    const map: { [key: string]: Uint8Array } = {};
    for (const b of ids.federated) {
      if (b.trustDomain.equals(ids.bundle.trustDomain)) continue;
      map[b.trustDomain.idString()] = b.marshalDer();
    }
    return map;
  }

  private x509BundlesResponse(ids: X509Identities): Encoded<X509BundlesResponse> {
    const hit = this.bundlesCache.get(ids);
    if (hit !== undefined) return hit;
    const bundles = {
      [ids.bundle.trustDomain.idString()]: ids.bundle.marshalDer(),
      ...this.federatedMap(ids),
    };
    const out = encode(X509BundlesResponseSchema, create(X509BundlesResponseSchema, { bundles }));
    this.bundlesCache.set(ids, out);
    return out;
  }

  private jwtBundlesResponse(list: readonly JwtBundle[]): Encoded<JWTBundlesResponse> {
    const hit = this.jwtBundlesCache.get(list);
    if (hit !== undefined) return hit;
    const bundles: { [key: string]: Uint8Array } = {};
    for (const b of list) bundles[b.trustDomain.idString()] = Buffer.from(b.marshal(), "utf8");
    const out = encode(JWTBundlesResponseSchema, create(JWTBundlesResponseSchema, { bundles }));
    this.jwtBundlesCache.set(list, out);
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Handlers

  /**
   * A stream of states: `state()` is called now and after every change; it returns the message
   * to send, or throws (e.g. PermissionDenied) to end the stream. Unchanged states are not resent.
   */
  private async *watch<M>(ctx: HandlerContext, state: () => Encoded<M>): AsyncGenerator<M> {
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    this.streams.add(stop);
    if (this.state !== "listening") stop.abort();
    try {
      let last: string | undefined;
      while (!stop.signal.aborted) {
        const seen = this.generation;
        const { message, digest } = state();
        if (digest !== last) {
          last = digest;
          yield message;
        }
        if (!(await this.nextChange(seen, stop.signal))) return;
      }
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      this.streams.delete(stop);
    }
  }

  private async *fetchX509Svid(ctx: HandlerContext): AsyncGenerator<X509SVIDResponse> {
    this.requireHeader(ctx);
    const call = await this.attest(ctx);
    yield* this.watch(ctx, () => {
      const ids = this.lookup(call);
      if (ids === undefined) throw this.noIdentity(call, "FetchX509SVID");
      return this.x509Response(ids);
    });
  }

  private async *fetchX509Bundles(ctx: HandlerContext): AsyncGenerator<X509BundlesResponse> {
    this.requireHeader(ctx);
    const call = await this.attest(ctx);
    yield* this.watch(ctx, () => {
      const ids = this.lookup(call);
      if (ids === undefined) throw this.noIdentity(call, "FetchX509Bundles");
      return this.x509BundlesResponse(ids);
    });
  }

  private async *fetchJwtBundles(ctx: HandlerContext): AsyncGenerator<JWTBundlesResponse> {
    this.requireHeader(ctx);
    const call = await this.attest(ctx);
    yield* this.watch(ctx, () => {
      if (this.lookup(call) === undefined) throw this.noIdentity(call, "FetchJWTBundles");
      const list = this.identities.jwtBundles();
      if (list.length === 0) throw new ConnectError("no JWT bundle available yet", Code.Unavailable);
      return this.jwtBundlesResponse(list);
    });
  }

  private async fetchJwtSvid(req: JWTSVIDRequest, ctx: HandlerContext): Promise<JWTSVIDResponse> {
    this.requireHeader(ctx);
    if (req.audience.length === 0) throw invalid("audience must be specified");
    if (req.audience.some((a) => a === "")) throw invalid("audience must not contain an empty value");
    let subject: string | undefined;
    if (req.spiffeId !== "") {
      try {
        subject = SpiffeId.parse(req.spiffeId).toString();
      } catch (err) {
        throw invalid(`spiffe_id is not a SPIFFE ID: ${(err as Error).message}`);
      }
    }
    const call = await this.attest(ctx);
    if (this.lookup(call) === undefined) throw this.noIdentity(call, "FetchJWTSVID");
    let svids: Awaited<ReturnType<IdentityProvider["jwtSvidFor"]>>;
    try {
      svids = await this.identities.jwtSvidFor(call.selectors, req.audience, subject);
    } catch (err) {
      throw new ConnectError(`JWT-SVID issuance failed: ${(err as Error).message}`, Code.Internal);
    }
    if (svids.length === 0) {
      if (subject !== undefined) throw denied(`no identity issued for ${subject}`);
      throw this.noIdentity(call, "FetchJWTSVID");
    }
    // Signing took time: make sure the PID still names the caller before handing out tokens.
    await this.recheck(call);
    return create(JWTSVIDResponseSchema, {
      svids: svids.map((s) =>
        create(JWTSVIDSchema, { spiffeId: s.spiffeId, svid: s.token, hint: s.hint ?? "" }),
      ),
    });
  }

  private async validateJwtSvid(
    req: ValidateJWTSVIDRequest,
    ctx: HandlerContext,
  ): Promise<ValidateJWTSVIDResponse> {
    this.requireHeader(ctx);
    if (req.audience === "") throw invalid("audience must be specified");
    if (req.svid === "") throw invalid("svid must be specified");
    const call = await this.attest(ctx);
    // Default deny: unlike SPIRE (which validates for any attested caller), a caller that
    // matches no entry gets nothing, not even verification.
    if (this.lookup(call) === undefined) throw this.noIdentity(call, "ValidateJWTSVID");
    let svid: Awaited<ReturnType<typeof validateJwtSvid>>;
    try {
      svid = await validateJwtSvid(req.svid, new JwtBundleSet(this.identities.jwtBundles()), req.audience);
    } catch (err) {
      if (err instanceof JwtSvidError) throw invalid(err.message);
      throw new ConnectError(`JWT-SVID validation failed: ${(err as Error).message}`, Code.Internal);
    }
    return create(ValidateJWTSVIDResponseSchema, {
      spiffeId: svid.id.toString(),
      claims: { ...svid.claims } as JsonObject,
    });
  }

  /** A stream that fails at once: InvalidArgument without the header, else Unimplemented. */
  private unimplementedStream<M>(ctx: HandlerContext, method: string): AsyncIterable<M> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          this.requireHeader(ctx);
          throw new ConnectError(`${method} is not implemented by this agent`, Code.Unimplemented);
        },
      }),
    };
  }

  private implementation(): ServiceImpl<typeof SpiffeWorkloadAPI> {
    return {
      fetchX509SVID: (_req, ctx) => this.fetchX509Svid(ctx),
      fetchX509Bundles: (_req, ctx) => this.fetchX509Bundles(ctx),
      fetchJWTSVID: (req, ctx) => this.fetchJwtSvid(req, ctx),
      fetchJWTBundles: (_req, ctx) => this.fetchJwtBundles(ctx),
      validateJWTSVID: (req, ctx) => this.validateJwtSvid(req, ctx),
      fetchWITSVID: (_req, ctx) => this.unimplementedStream(ctx, "FetchWITSVID"),
      fetchWITBundles: (_req, ctx) => this.unimplementedStream(ctx, "FetchWITBundles"),
    };
  }
}
