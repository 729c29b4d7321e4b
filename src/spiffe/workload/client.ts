/**
 * SPIFFE Workload API client (SPIFFE_Workload_API.md, SPIFFE_Workload_Endpoint.md) over gRPC on
 * a Unix socket or `tcp://IP:port`.
 *
 * - Every call carries the metadata `workload.spiffe.io: true` (Endpoint §3).
 * - Watches keep their stream open and reopen it when it ends (API §4.2–4.5), with capped
 *   exponential backoff and jitter, reset after each good message. InvalidArgument and
 *   Unimplemented are final (Endpoint §6, App. A); Unavailable, PermissionDenied, a stream that
 *   ends and every other failure are retried.
 * - Every message is the complete current state. A message whose mandatory field is at its
 *   default is reported through `onError` and discarded; the previous state stays.
 * - Errors never contain private keys or tokens.
 */
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { JwtBundle } from "../bundle/jwtbundle.js";
import { type BundleSet, JwtBundleSet, X509BundleSet } from "../bundle/set.js";
import { X509Bundle } from "../bundle/x509bundle.js";
import { SpiffeError } from "../errors.js";
import { SpiffeId, TrustDomain } from "../id.js";
import { type JwtSvid, parseJwtSvidInsecure } from "../jwtsvid.js";
import { X509Svid } from "../x509svid.js";
import { type EndpointAddress, endpointFromEnv, grpcTarget, parseEndpointAddress } from "./address.js";
import {
  JWTBundlesRequestSchema,
  type JWTBundlesResponse,
  JWTBundlesResponseSchema,
  JWTSVIDRequestSchema,
  type JWTSVIDResponse,
  JWTSVIDResponseSchema,
  ValidateJWTSVIDRequestSchema,
  ValidateJWTSVIDResponseSchema,
  X509BundlesRequestSchema,
  type X509BundlesResponse,
  X509BundlesResponseSchema,
  X509SVIDRequestSchema,
  type X509SVIDResponse,
  X509SVIDResponseSchema,
} from "./gen/workloadapi_pb.js";

/** The metadata every Workload API request carries (key and value are case-sensitive). */
export const WORKLOAD_API_HEADER = "workload.spiffe.io";

/** Wire paths: workloadapi.proto has no `package`, so the service is `SpiffeWorkloadAPI`. */
export const WORKLOAD_API_METHODS = {
  fetchX509Svid: "/SpiffeWorkloadAPI/FetchX509SVID",
  fetchX509Bundles: "/SpiffeWorkloadAPI/FetchX509Bundles",
  fetchJwtSvid: "/SpiffeWorkloadAPI/FetchJWTSVID",
  fetchJwtBundles: "/SpiffeWorkloadAPI/FetchJWTBundles",
  validateJwtSvid: "/SpiffeWorkloadAPI/ValidateJWTSVID",
} as const;

/** gRPC status codes by their canonical names. */
export const GRPC_CODE_NAMES = [
  "OK",
  "Cancelled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
] as const;

export type GrpcCodeName = (typeof GRPC_CODE_NAMES)[number];

/**
 * What went wrong: a gRPC status name (`InvalidArgument`, `Unavailable`, ...) or
 * `malformed-response` (a message broke a rule of the API and was discarded),
 * `stream-ended` (the server closed a stream), `closed` (the client or source was closed),
 * `timeout`, `invalid-request` (refused before sending).
 */
export type WorkloadApiErrorKind =
  | GrpcCodeName
  | "malformed-response"
  | "stream-ended"
  | "closed"
  | "timeout"
  | "invalid-request";

export class WorkloadApiError extends SpiffeError {
  /** The gRPC status code when the error came from a call status. */
  readonly grpcCode: number | undefined;

  constructor(
    readonly kind: WorkloadApiErrorKind,
    message: string,
    options?: { grpcCode?: number; cause?: unknown },
  ) {
    super(`workload-api:${kind}`, message);
    this.name = "WorkloadApiError";
    this.grpcCode = options?.grpcCode;
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }

  /** False for the codes after which a client must not retry (InvalidArgument, Unimplemented). */
  get retryable(): boolean {
    return this.kind !== "InvalidArgument" && this.kind !== "Unimplemented" && this.kind !== "closed";
  }
}

function statusError(status: { code: number; details?: string }, method: string): WorkloadApiError {
  const name: GrpcCodeName = GRPC_CODE_NAMES[status.code] ?? "Unknown";
  const details = status.details ? `: ${status.details}` : "";
  return new WorkloadApiError(name, `Workload API ${method} failed with ${name}${details}`, {
    grpcCode: status.code,
  });
}

function malformed(what: string, cause?: unknown): WorkloadApiError {
  const why = cause instanceof Error ? `: ${cause.message}` : "";
  return new WorkloadApiError("malformed-response", `Workload API response discarded: ${what}${why}`, {
    cause,
  });
}

function closedError(): WorkloadApiError {
  return new WorkloadApiError("closed", "the Workload API client is closed");
}

/** The X.509 state the Workload API hands a workload: its SVIDs (default first) and the bundles it trusts. */
export interface X509Context {
  svids: X509Svid[];
  bundles: X509BundleSet;
}

export interface Watcher<T> {
  onUpdate(value: T): void;
  onError(err: WorkloadApiError): void;
}
export type X509ContextWatcher = Watcher<X509Context>;
export type X509BundlesWatcher = Watcher<X509BundleSet>;
export type JwtBundlesWatcher = Watcher<JwtBundleSet>;

export interface JwtSvidParams {
  /** One audience or several; at least one is required. */
  audience: string | readonly string[];
  /** Ask for the JWT-SVID of this identity only (default: all the workload is entitled to). */
  subject?: SpiffeId | string;
}

export interface JwtSvidValidation {
  id: SpiffeId;
  /** The token's claims, as the server decoded them. */
  claims: Record<string, unknown>;
}

export interface BackoffOptions {
  /** First retry delay (default 1000 ms). */
  initialMs: number;
  /** Cap on the retry delay (default 30000 ms). */
  maxMs: number;
}

export interface WorkloadApiClientOptions {
  /** `unix:///path` or `tcp://IP:port`; default `SPIFFE_ENDPOINT_SOCKET`. */
  address?: string;
  backoff?: Partial<BackoffOptions>;
}

export interface CallOptions {
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Response parsing (RULES §5: a mandatory field at its default → error, message discarded)

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function trustDomainKey(key: string, field: string): TrustDomain {
  try {
    return TrustDomain.parse(key);
  } catch (err) {
    throw malformed(`${field} key ${JSON.stringify(key)} is not a trust domain`, err);
  }
}

/** Parses an X509SVIDResponse. Exported for tests and for servers that check what they send. */
export function parseX509Context(res: X509SVIDResponse): X509Context {
  if (res.svids.length === 0) throw malformed("X509SVIDResponse.svids is empty (it is required)");
  const svids: X509Svid[] = [];
  const hints = new Set<string>();
  const bundles = new X509BundleSet();
  res.svids.forEach((s, i) => {
    const field = `X509SVIDResponse.svids[${i}]`;
    if (s.spiffeId === "") throw malformed(`${field}.spiffe_id is empty (it is required)`);
    if (s.x509Svid.length === 0) throw malformed(`${field}.x509_svid is empty (it is required)`);
    if (s.x509SvidKey.length === 0) throw malformed(`${field}.x509_svid_key is empty (it is required)`);
    if (s.bundle.length === 0) throw malformed(`${field}.bundle is empty (it is required)`);
    let declared: SpiffeId;
    try {
      declared = SpiffeId.parse(s.spiffeId);
    } catch (err) {
      throw malformed(`${field}.spiffe_id is not a SPIFFE ID`, err);
    }
    let svid: X509Svid;
    try {
      svid = X509Svid.parseRaw(
        toBuffer(s.x509Svid),
        toBuffer(s.x509SvidKey),
        s.hint === "" ? undefined : s.hint,
      );
    } catch (err) {
      throw malformed(`${field} is not a valid X.509-SVID`, err);
    }
    if (!svid.id.equals(declared)) {
      throw malformed(`${field}.spiffe_id ${declared} differs from the certificate's ID ${svid.id}`);
    }
    let bundle: X509Bundle;
    try {
      bundle = X509Bundle.fromDer(svid.id.trustDomain, toBuffer(s.bundle));
    } catch (err) {
      throw malformed(`${field}.bundle is not a valid X.509 bundle`, err);
    }
    // A hint is unique per response; on duplicates the first SVID wins (API §5.2.1).
    if (s.hint !== "") {
      if (hints.has(s.hint)) return;
      hints.add(s.hint);
    }
    svids.push(svid);
    bundles.add(bundle);
  });
  for (const [key, der] of Object.entries(res.federatedBundles)) {
    // An empty value means "no bundle": the next state simply does not hold it.
    if (der.length === 0) continue;
    const td = trustDomainKey(key, "X509SVIDResponse.federated_bundles");
    if (svids.some((s) => s.id.trustDomain.equals(td))) continue; // own trust domain: svids' bundle is authoritative
    try {
      bundles.add(X509Bundle.fromDer(td, toBuffer(der)));
    } catch (err) {
      throw malformed(
        `X509SVIDResponse.federated_bundles[${JSON.stringify(key)}] is not a valid X.509 bundle`,
        err,
      );
    }
  }
  return { svids, bundles };
}

/**
 * Fills `set` from a required `bundles` field (trust domain → bundle bytes; empty bytes: no
 * bundle). A key that is not a trust domain, bytes that do not parse, or no bundle at all make
 * the response malformed.
 */
function addRequiredBundles<B extends { readonly trustDomain: TrustDomain }>(
  set: BundleSet<B>,
  bundles: { readonly [key: string]: Uint8Array },
  field: string,
  kind: "X.509" | "JWT",
  parse: (td: TrustDomain, bytes: Buffer) => B,
): void {
  for (const [key, bytes] of Object.entries(bundles)) {
    if (bytes.length === 0) continue;
    const td = trustDomainKey(key, field);
    try {
      set.add(parse(td, toBuffer(bytes)));
    } catch (err) {
      throw malformed(`${field}[${JSON.stringify(key)}] is not a valid ${kind} bundle`, err);
    }
  }
  if (set.size === 0) throw malformed(`${field} is empty (it is required)`);
}

export function parseX509Bundles(res: X509BundlesResponse): X509BundleSet {
  const set = new X509BundleSet();
  addRequiredBundles(set, res.bundles, "X509BundlesResponse.bundles", "X.509", (td, der) =>
    X509Bundle.fromDer(td, der),
  );
  return set;
}

export function parseJwtBundles(res: JWTBundlesResponse): JwtBundleSet {
  const set = new JwtBundleSet();
  addRequiredBundles(set, res.bundles, "JWTBundlesResponse.bundles", "JWT", (td, jwks) =>
    JwtBundle.parse(td, jwks),
  );
  return set;
}

export function parseJwtSvids(res: JWTSVIDResponse, audience: readonly string[]): JwtSvid[] {
  if (res.svids.length === 0) throw malformed("JWTSVIDResponse.svids is empty (it is required)");
  const out: JwtSvid[] = [];
  const hints = new Set<string>();
  res.svids.forEach((s, i) => {
    const field = `JWTSVIDResponse.svids[${i}]`;
    if (s.spiffeId === "") throw malformed(`${field}.spiffe_id is empty (it is required)`);
    if (s.svid === "") throw malformed(`${field}.svid is empty (it is required)`);
    let svid: JwtSvid;
    try {
      // Like go-spiffe, the client trusts the agent for the signature; claims are checked.
      svid = parseJwtSvidInsecure(s.svid, audience, s.hint === "" ? {} : { hint: s.hint });
    } catch (err) {
      throw malformed(`${field}.svid is not a valid JWT-SVID`, err);
    }
    if (svid.id.toString() !== s.spiffeId) {
      throw malformed(`${field}.spiffe_id ${s.spiffeId} differs from the token's subject ${svid.id}`);
    }
    if (s.hint !== "") {
      if (hints.has(s.hint)) return;
      hints.add(s.hint);
    }
    out.push(svid);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Transport

/** A server-streaming RPC of the Workload API: an empty request, a stream of messages parsed by `parse`. */
interface StreamRpc<I extends DescMessage, O extends DescMessage, T> {
  path: string;
  inSchema: I;
  outSchema: O;
  parse: (m: MessageShape<O>) => T;
}

const X509_CONTEXT_RPC = {
  path: WORKLOAD_API_METHODS.fetchX509Svid,
  inSchema: X509SVIDRequestSchema,
  outSchema: X509SVIDResponseSchema,
  parse: parseX509Context,
};

const X509_BUNDLES_RPC = {
  path: WORKLOAD_API_METHODS.fetchX509Bundles,
  inSchema: X509BundlesRequestSchema,
  outSchema: X509BundlesResponseSchema,
  parse: parseX509Bundles,
};

const JWT_BUNDLES_RPC = {
  path: WORKLOAD_API_METHODS.fetchJwtBundles,
  inSchema: JWTBundlesRequestSchema,
  outSchema: JWTBundlesResponseSchema,
  parse: parseJwtBundles,
};

function serializer<D extends DescMessage>(schema: D): (m: MessageShape<D>) => Buffer {
  return (m) => {
    const bytes = toBinary(schema, m);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (b: Buffer) => MessageShape<D> {
  return (b) => fromBinary(schema, b);
}

function workloadMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, "true");
  return md;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts (the timer is then cleared). */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

type StreamOutcome = { aborted: true } | { aborted: false; error: WorkloadApiError };

export class WorkloadApiClient {
  readonly address: EndpointAddress;
  private readonly backoff: BackoffOptions;
  private readonly grpc: grpc.Client;
  private readonly closing = new AbortController();
  private readonly watches = new Set<Promise<unknown>>();
  private closeDone: Promise<void> | undefined;

  constructor(options: WorkloadApiClientOptions = {}) {
    this.address = options.address === undefined ? endpointFromEnv() : parseEndpointAddress(options.address);
    const initialMs = options.backoff?.initialMs ?? 1000;
    this.backoff = { initialMs, maxMs: Math.max(initialMs, options.backoff?.maxMs ?? 30_000) };
    this.grpc = new grpc.Client(grpcTarget(this.address), grpc.credentials.createInsecure(), {
      // The agent is local: never go through an HTTP proxy from the environment.
      "grpc.enable_http_proxy": 0,
      // The channel's own reconnection follows the same schedule as the watches.
      "grpc.initial_reconnect_backoff_ms": this.backoff.initialMs,
      "grpc.max_reconnect_backoff_ms": this.backoff.maxMs,
    });
  }

  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /** Stops every watch, waits for them to finish and closes the channel. Idempotent. */
  async close(): Promise<void> {
    if (this.closing.signal.aborted) {
      await this.closeDone;
      return;
    }
    this.closing.abort();
    this.closeDone = Promise.allSettled([...this.watches]).then(() => this.grpc.close());
    await this.closeDone;
  }

  // ----- X.509

  /** The current X.509 context: the first message of FetchX509SVID. */
  fetchX509Context(options: CallOptions = {}): Promise<X509Context> {
    return this.first(X509_CONTEXT_RPC, options.signal);
  }

  /** The default X.509-SVID (the first one the server lists). */
  async fetchX509Svid(options: CallOptions = {}): Promise<X509Svid> {
    const ctx = await this.fetchX509Context(options);
    return ctx.svids[0] as X509Svid;
  }

  /** Streams X.509 contexts until `signal` aborts or the client closes (then resolves). */
  watchX509Context(watcher: X509ContextWatcher, signal?: AbortSignal): Promise<void> {
    return this.watch(X509_CONTEXT_RPC, watcher, signal);
  }

  fetchX509Bundles(options: CallOptions = {}): Promise<X509BundleSet> {
    return this.first(X509_BUNDLES_RPC, options.signal);
  }

  watchX509Bundles(watcher: X509BundlesWatcher, signal?: AbortSignal): Promise<void> {
    return this.watch(X509_BUNDLES_RPC, watcher, signal);
  }

  // ----- JWT

  /** The first JWT-SVID the server returns for the audience (and subject, when given). */
  async fetchJwtSvid(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid> {
    const svids = await this.fetchJwtSvids(params, options);
    return svids[0] as JwtSvid;
  }

  /** Every JWT-SVID the workload is entitled to for the audience. Not retried. */
  async fetchJwtSvids(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid[]> {
    const audience = typeof params.audience === "string" ? [params.audience] : [...params.audience];
    if (audience.length === 0 || audience.some((a) => a === "")) {
      throw new WorkloadApiError(
        "invalid-request",
        "a JWT-SVID request needs at least one non-empty audience",
      );
    }
    let subject = "";
    if (params.subject !== undefined) {
      try {
        subject = (
          typeof params.subject === "string" ? SpiffeId.parse(params.subject) : params.subject
        ).toString();
      } catch (err) {
        throw new WorkloadApiError("invalid-request", "the JWT-SVID subject is not a SPIFFE ID", {
          cause: err,
        });
      }
    }
    const res = await this.unary(
      WORKLOAD_API_METHODS.fetchJwtSvid,
      JWTSVIDRequestSchema,
      JWTSVIDResponseSchema,
      create(JWTSVIDRequestSchema, { audience, spiffeId: subject }),
      options.signal,
    );
    return parseJwtSvids(res, audience);
  }

  fetchJwtBundles(options: CallOptions = {}): Promise<JwtBundleSet> {
    return this.first(JWT_BUNDLES_RPC, options.signal);
  }

  watchJwtBundles(watcher: JwtBundlesWatcher, signal?: AbortSignal): Promise<void> {
    return this.watch(JWT_BUNDLES_RPC, watcher, signal);
  }

  /** Asks the server to validate a JWT-SVID for `audience` (ValidateJWTSVID). */
  async validateJwtSvid(
    token: string,
    audience: string,
    options: CallOptions = {},
  ): Promise<JwtSvidValidation> {
    if (token === "" || audience === "") {
      throw new WorkloadApiError("invalid-request", "ValidateJWTSVID needs a token and an audience");
    }
    const res = await this.unary(
      WORKLOAD_API_METHODS.validateJwtSvid,
      ValidateJWTSVIDRequestSchema,
      ValidateJWTSVIDResponseSchema,
      create(ValidateJWTSVIDRequestSchema, { audience, svid: token }),
      options.signal,
    );
    if (res.spiffeId === "") throw malformed("ValidateJWTSVIDResponse.spiffe_id is empty (it is required)");
    if (res.claims === undefined)
      throw malformed("ValidateJWTSVIDResponse.claims is missing (it is required)");
    let id: SpiffeId;
    try {
      id = SpiffeId.parse(res.spiffeId);
    } catch (err) {
      throw malformed("ValidateJWTSVIDResponse.spiffe_id is not a SPIFFE ID", err);
    }
    return { id, claims: res.claims as Record<string, unknown> };
  }

  // ----- calls

  /** A signal that aborts when `signal` does or when the client closes; `dispose` detaches it. */
  private link(signal: AbortSignal | undefined): { signal: AbortSignal; dispose: () => void } {
    const ac = new AbortController();
    const sources = [this.closing.signal, ...(signal ? [signal] : [])];
    const onAbort = () => ac.abort();
    for (const s of sources) {
      if (s.aborted) ac.abort();
      else s.addEventListener("abort", onAbort, { once: true });
    }
    return {
      signal: ac.signal,
      dispose: () => {
        for (const s of sources) s.removeEventListener("abort", onAbort);
      },
    };
  }

  private unary<I extends DescMessage, O extends DescMessage>(
    path: string,
    inSchema: I,
    outSchema: O,
    req: MessageShape<I>,
    signal: AbortSignal | undefined,
  ): Promise<MessageShape<O>> {
    if (this.closed) return Promise.reject(closedError());
    const linked = this.link(signal);
    return new Promise<MessageShape<O>>((resolve, reject) => {
      const call = this.grpc.makeUnaryRequest(
        path,
        serializer(inSchema),
        deserializer(outSchema),
        req,
        workloadMetadata(),
        {},
        (err, res) => {
          linked.dispose();
          if (err) reject(linked.signal.aborted && this.closed ? closedError() : statusError(err, path));
          else if (res === undefined) reject(malformed(`${path} returned no message`));
          else resolve(res);
        },
      );
      if (linked.signal.aborted) call.cancel();
      else linked.signal.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  /** The first message of a stream, parsed; the stream is then cancelled. Not retried. */
  private first<I extends DescMessage, O extends DescMessage, T>(
    { path, inSchema, outSchema, parse }: StreamRpc<I, O, T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    const linked = this.link(signal);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        linked.dispose();
        fn();
      };
      const call = this.grpc.makeServerStreamRequest(
        path,
        serializer(inSchema),
        deserializer(outSchema),
        create(inSchema),
        workloadMetadata(),
      );
      call.on("data", (m: MessageShape<O>) => {
        settle(() => {
          try {
            resolve(parse(m));
          } catch (err) {
            reject(err);
          }
        });
        call.cancel();
      });
      call.on("error", () => {
        // Reported through "status".
      });
      call.on("status", (status: grpc.StatusObject) => {
        settle(() => {
          if (linked.signal.aborted && this.closed) reject(closedError());
          else if (status.code === grpc.status.OK) {
            reject(
              new WorkloadApiError("stream-ended", `Workload API ${path} ended before its first message`),
            );
          } else reject(statusError(status, path));
        });
      });
      if (linked.signal.aborted) call.cancel();
      else linked.signal.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  /** One stream: resolves when it ends (with the error that ended it) or is aborted. */
  private runStream<I extends DescMessage, O extends DescMessage>(
    { path, inSchema, outSchema }: StreamRpc<I, O, unknown>,
    onMessage: (m: MessageShape<O>) => void,
    signal: AbortSignal,
  ): Promise<StreamOutcome> {
    return new Promise<StreamOutcome>((resolve) => {
      const call = this.grpc.makeServerStreamRequest(
        path,
        serializer(inSchema),
        deserializer(outSchema),
        create(inSchema),
        workloadMetadata(),
      );
      const onAbort = () => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
      call.on("data", (m: MessageShape<O>) => {
        if (!signal.aborted) onMessage(m);
      });
      call.on("error", () => {
        // Reported through "status".
      });
      call.on("status", (status: grpc.StatusObject) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) resolve({ aborted: true });
        else if (status.code === grpc.status.OK) {
          resolve({
            aborted: false,
            error: new WorkloadApiError("stream-ended", `Workload API ${path} stream ended`),
          });
        } else resolve({ aborted: false, error: statusError(status, path) });
      });
    });
  }

  private backoffDelay(attempt: number): number {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(attempt, 30));
    // "Equal jitter": between half the delay and the full delay, so retries never bunch up at 0.
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  private watch<I extends DescMessage, O extends DescMessage, T>(
    rpc: StreamRpc<I, O, T>,
    watcher: Watcher<T>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const { path, parse } = rpc;
    if (this.closed) return Promise.resolve();
    const linked = this.link(signal);
    const report = (err: WorkloadApiError) => {
      try {
        watcher.onError(err);
      } catch {
        // A watcher's failure must not stop the stream.
      }
    };
    const loop = async (): Promise<void> => {
      let attempt = 0;
      try {
        while (!linked.signal.aborted) {
          const outcome = await this.runStream(
            rpc,
            (m) => {
              let value: T;
              try {
                value = parse(m);
              } catch (err) {
                report(err instanceof WorkloadApiError ? err : malformed(`${path} message`, err));
                return;
              }
              attempt = 0;
              try {
                watcher.onUpdate(value);
              } catch (err) {
                // Like a throwing event listener: the watcher's own bug surfaces, the stream goes on.
                queueMicrotask(() => {
                  throw err;
                });
              }
            },
            linked.signal,
          );
          if (outcome.aborted) return;
          report(outcome.error);
          if (!outcome.error.retryable) throw outcome.error;
          if (!(await sleep(this.backoffDelay(attempt++), linked.signal))) return;
        }
      } finally {
        linked.dispose();
      }
    };
    const p = loop();
    const tracked = p.catch(() => undefined);
    this.watches.add(tracked);
    void tracked.then(() => this.watches.delete(tracked));
    return p;
  }
}
