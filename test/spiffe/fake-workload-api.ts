/**
 * A fake SPIFFE Workload API server for tests: grpc-js on a Unix socket in a temp dir (or on
 * 127.0.0.1:0), speaking the real wire format (`/SpiffeWorkloadAPI/<Method>`, protobuf messages
 * from the generated code). The test decides every response, push, stream end and error.
 * Like a real agent, it refuses a request without `workload.spiffe.io: true` with InvalidArgument.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  JWTBundlesRequestSchema,
  type JWTBundlesResponse,
  JWTBundlesResponseSchema,
  type JWTSVIDRequest,
  JWTSVIDRequestSchema,
  type JWTSVIDResponse,
  JWTSVIDResponseSchema,
  type ValidateJWTSVIDRequest,
  ValidateJWTSVIDRequestSchema,
  type ValidateJWTSVIDResponse,
  ValidateJWTSVIDResponseSchema,
  X509BundlesRequestSchema,
  type X509BundlesResponse,
  X509BundlesResponseSchema,
  X509SVIDRequestSchema,
  type X509SVIDResponse,
  X509SVIDResponseSchema,
} from "../../src/spiffe/workload/gen/workloadapi_pb.js";

export type WorkloadMethod =
  | "FetchX509SVID"
  | "FetchX509Bundles"
  | "FetchJWTSVID"
  | "FetchJWTBundles"
  | "ValidateJWTSVID";

export interface Failure {
  code: grpc.status;
  details?: string;
}

function serialize<D extends DescMessage>(schema: D): (m: MessageShape<D>) => Buffer {
  return (m) => Buffer.from(toBinary(schema, m));
}

function deserialize<D extends DescMessage>(schema: D): (b: Buffer) => MessageShape<D> {
  return (b) => fromBinary(schema, b);
}

/** Polls `cond` every 5 ms; rejects after `timeoutMs` with `what` in the message. */
export async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A server-streaming method. On each call it first consumes a queued failure (`failNext`), or
 * the persistent one (`failAll`); otherwise it sends `current` (when set) and keeps the stream
 * open for `push`.
 */
export class FakeStream<Res> {
  current: Res | undefined;
  readonly queued: Failure[] = [];
  failAll: Failure | undefined;
  calls = 0;
  /** Calls that reached the handler with the right metadata. */
  accepted = 0;
  cancelled = 0;
  readonly active = new Set<grpc.ServerWritableStream<unknown, Res>>();
  /** Times (Date.now()) at which calls arrived. */
  readonly callTimes: number[] = [];

  /** Sets the state and sends it on every open stream. */
  push(res: Res): void {
    this.current = res;
    for (const s of this.active) s.write(res);
  }

  /** Sends a message on open streams without making it the state new streams get. */
  sendRaw(res: Res): void {
    for (const s of this.active) s.write(res);
  }

  failNext(...failures: Failure[]): void {
    this.queued.push(...failures);
  }

  /** Ends every open stream, with OK (a plain end) or with a failure status. */
  endAll(failure?: Failure): void {
    for (const s of [...this.active]) {
      this.active.delete(s);
      if (failure) s.emit("error", failure);
      else s.end();
    }
  }

  handle(call: grpc.ServerWritableStream<unknown, Res>): void {
    this.accepted++;
    const failure = this.queued.shift() ?? this.failAll;
    if (failure) {
      call.emit("error", failure);
      return;
    }
    this.active.add(call);
    call.on("cancelled", () => {
      this.cancelled++;
      this.active.delete(call);
    });
    call.on("error", () => this.active.delete(call));
    call.on("finish", () => this.active.delete(call));
    if (this.current !== undefined) call.write(this.current);
  }
}

/** A unary method: `respond` gives the response or a failure; requests are recorded. */
export class FakeUnary<Req, Res> {
  respond: (req: Req) => Res | Failure = () => ({ code: grpc.status.UNIMPLEMENTED, details: "not set" });
  calls = 0;
  readonly requests: Req[] = [];
}

function isFailure(v: unknown): v is Failure {
  return typeof v === "object" && v !== null && "code" in v && typeof (v as Failure).code === "number";
}

export class FakeWorkloadApi {
  readonly x509 = new FakeStream<X509SVIDResponse>();
  readonly x509Bundles = new FakeStream<X509BundlesResponse>();
  readonly jwtBundles = new FakeStream<JWTBundlesResponse>();
  readonly jwtSvid = new FakeUnary<JWTSVIDRequest, JWTSVIDResponse>();
  readonly validate = new FakeUnary<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse>();
  /** The `workload.spiffe.io` values of every call, by method. */
  readonly headers: { method: WorkloadMethod; values: string[] }[] = [];
  /** Calls refused for a missing header. */
  refusedForHeader = 0;

  private server: grpc.Server | undefined;

  private constructor(
    readonly dir: string,
    private bindTarget: string,
    public address: string,
  ) {}

  /** Starts on a Unix socket in a new temp dir, or on 127.0.0.1 with a free port (`tcp: true`). */
  static async start(options: { tcp?: boolean } = {}): Promise<FakeWorkloadApi> {
    const dir = await mkdtemp(join(tmpdir(), "tessera-wlapi-"));
    const sock = join(dir, "agent.sock");
    const fake = options.tcp
      ? new FakeWorkloadApi(dir, "127.0.0.1:0", "")
      : new FakeWorkloadApi(dir, `unix://${sock}`, `unix://${sock}`);
    await fake.listen();
    return fake;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  /** (Re)binds the same address; a restart keeps every state and counter. */
  async listen(): Promise<void> {
    const server = new grpc.Server();
    server.addService(this.definition(), this.handlers());
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(this.bindTarget, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      );
    });
    if (this.bindTarget === "127.0.0.1:0" || this.address.startsWith("tcp://")) {
      // A tcp restart reuses the port it got the first time.
      this.bindTarget = `127.0.0.1:${port}`;
      this.address = `tcp://127.0.0.1:${port}`;
    }
    this.server = server;
  }

  /** Drops every connection and stops listening (a crashed agent). */
  stop(): void {
    const server = this.server;
    this.server = undefined;
    for (const s of [this.x509, this.x509Bundles, this.jwtBundles]) s.active.clear();
    server?.forceShutdown();
  }

  async restart(): Promise<void> {
    this.stop();
    await this.listen();
  }

  async dispose(): Promise<void> {
    this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private definition(): grpc.ServiceDefinition {
    const unary = <I extends DescMessage, O extends DescMessage>(path: string, i: I, o: O) => ({
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: serialize(i),
      requestDeserialize: deserialize(i),
      responseSerialize: serialize(o),
      responseDeserialize: deserialize(o),
    });
    const stream = <I extends DescMessage, O extends DescMessage>(path: string, i: I, o: O) => ({
      ...unary(path, i, o),
      responseStream: true,
    });
    return {
      FetchX509SVID: stream(
        "/SpiffeWorkloadAPI/FetchX509SVID",
        X509SVIDRequestSchema,
        X509SVIDResponseSchema,
      ),
      FetchX509Bundles: stream(
        "/SpiffeWorkloadAPI/FetchX509Bundles",
        X509BundlesRequestSchema,
        X509BundlesResponseSchema,
      ),
      FetchJWTSVID: unary("/SpiffeWorkloadAPI/FetchJWTSVID", JWTSVIDRequestSchema, JWTSVIDResponseSchema),
      FetchJWTBundles: stream(
        "/SpiffeWorkloadAPI/FetchJWTBundles",
        JWTBundlesRequestSchema,
        JWTBundlesResponseSchema,
      ),
      ValidateJWTSVID: unary(
        "/SpiffeWorkloadAPI/ValidateJWTSVID",
        ValidateJWTSVIDRequestSchema,
        ValidateJWTSVIDResponseSchema,
      ),
    } as unknown as grpc.ServiceDefinition;
  }

  /** Records the header; false (and InvalidArgument sent) when it is not exactly `true`. */
  private checkHeader(method: WorkloadMethod, metadata: grpc.Metadata): boolean {
    const values = metadata.get("workload.spiffe.io").map(String);
    this.headers.push({ method, values });
    if (values.length === 1 && values[0] === "true") return true;
    this.refusedForHeader++;
    return false;
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const headerMissing: Failure = {
      code: grpc.status.INVALID_ARGUMENT,
      details: "security header missing from request",
    };
    const streamHandler =
      <Res>(method: WorkloadMethod, s: FakeStream<Res>) =>
      (call: grpc.ServerWritableStream<unknown, Res>) => {
        s.calls++;
        s.callTimes.push(Date.now());
        if (!this.checkHeader(method, call.metadata)) {
          call.emit("error", headerMissing);
          return;
        }
        s.handle(call);
      };
    const unaryHandler =
      <Req, Res>(method: WorkloadMethod, u: FakeUnary<Req, Res>) =>
      (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
        u.calls++;
        if (!this.checkHeader(method, call.metadata)) {
          callback(headerMissing as grpc.ServiceError);
          return;
        }
        u.requests.push(call.request);
        const out = u.respond(call.request);
        if (isFailure(out)) callback(out as grpc.ServiceError);
        else callback(null, out);
      };
    return {
      FetchX509SVID: streamHandler("FetchX509SVID", this.x509),
      FetchX509Bundles: streamHandler("FetchX509Bundles", this.x509Bundles),
      FetchJWTBundles: streamHandler("FetchJWTBundles", this.jwtBundles),
      FetchJWTSVID: unaryHandler("FetchJWTSVID", this.jwtSvid),
      ValidateJWTSVID: unaryHandler("ValidateJWTSVID", this.validate),
    } as grpc.UntypedServiceImplementation;
  }
}
