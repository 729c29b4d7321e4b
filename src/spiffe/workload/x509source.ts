import { EventEmitter } from "node:events";
import type { X509Bundle, X509BundleSource } from "../bundle/x509bundle.js";
import type { TrustDomain } from "../id.js";
import type { X509Svid } from "../x509svid.js";
import { type BackoffOptions, WorkloadApiClient, WorkloadApiError, type X509Context } from "./client.js";

export interface X509SourceOptions {
  /** A client to share; it stays open when the source closes. Default: a client of its own. */
  client?: WorkloadApiClient;
  /** Address for the source's own client (default `SPIFFE_ENDPOINT_SOCKET`). */
  address?: string;
  backoff?: Partial<BackoffOptions>;
  /** Chooses the SVID `getX509Svid` returns; default the first (the default identity, API §8). */
  picker?: (svids: readonly X509Svid[]) => X509Svid;
  /** Give up when the first update has not come within this time (default: wait). */
  timeoutMs?: number;
}

/**
 * The workload's X.509-SVIDs and bundles, kept current by a FetchX509SVID stream. Events:
 * `update` (X509Context) on each new state, `error` (WorkloadApiError) on each failure of the
 * stream, when someone listens. A PermissionDenied status withdraws the state: `getX509Svid`
 * throws and no bundle is returned until the next message. `close()` ends the stream; after it,
 * no timer or socket remains.
 */
export class X509Source extends EventEmitter implements X509BundleSource {
  readonly #client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #picker: (svids: readonly X509Svid[]) => X509Svid;
  readonly #abort = new AbortController();
  #ctx: X509Context | undefined;
  #watch: Promise<void> | undefined;
  #closed = false;
  #lastError: WorkloadApiError | undefined;

  private constructor(
    client: WorkloadApiClient,
    ownsClient: boolean,
    picker: ((svids: readonly X509Svid[]) => X509Svid) | undefined,
  ) {
    super();
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#picker = picker ?? ((svids) => svids[0] as X509Svid);
  }

  /** Opens the stream and resolves after the first X.509 context arrived. */
  static async create(options: X509SourceOptions = {}): Promise<X509Source> {
    const client =
      options.client ??
      new WorkloadApiClient({
        ...(options.address === undefined ? {} : { address: options.address }),
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
      });
    const source = new X509Source(client, options.client === undefined, options.picker);
    try {
      await source.#start(options.timeoutMs);
    } catch (err) {
      await source.close();
      throw err;
    }
    return source;
  }

  #start(timeoutMs: number | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (err?: unknown) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const last = this.#lastError ? ` (last error: ${this.#lastError.message})` : "";
          settle(
            new WorkloadApiError(
              "timeout",
              `no X.509 context from the Workload API within ${timeoutMs} ms${last}`,
            ),
          );
        }, timeoutMs);
      }
      this.#watch = this.#client.watchX509Context(
        {
          onUpdate: (ctx) => {
            this.#ctx = ctx;
            settle();
            this.emit("update", ctx);
          },
          onError: (err) => {
            this.#lastError = err;
            // PermissionDenied withdraws every SVID: stop using them (API §5.2.1) until a new message.
            if (err.kind === "PermissionDenied") this.#ctx = undefined;
            if (this.listenerCount("error") > 0) this.emit("error", err);
          },
        },
        this.#abort.signal,
      );
      this.#watch.then(
        () => settle(new WorkloadApiError("closed", "the X.509 source was closed before its first update")),
        (err: unknown) => settle(err),
      );
    });
  }

  #current(): X509Context {
    if (this.#closed) throw new WorkloadApiError("closed", "the X.509 source is closed");
    if (this.#ctx === undefined) {
      throw new WorkloadApiError(
        "PermissionDenied",
        "the Workload API withdrew this workload's X.509-SVIDs (PermissionDenied); none is used until it grants them again",
      );
    }
    return this.#ctx;
  }

  /** The SVID chosen by the picker (default: the first, the default identity). */
  getX509Svid(): X509Svid {
    return this.#picker(this.#current().svids);
  }

  /** Every SVID of the current state, in the server's order. */
  getX509Svids(): readonly X509Svid[] {
    return [...this.#current().svids];
  }

  /**
   * The current bundle of a trust domain, or undefined when the workload does not trust it
   * (also while the Workload API denies the workload: nothing is trusted then).
   */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    if (this.#closed) throw new WorkloadApiError("closed", "the X.509 source is closed");
    return this.#ctx?.bundles.get(trustDomain);
  }

  /** Every current bundle (own trust domain and federated ones); none while denied. */
  getX509Bundles(): readonly X509Bundle[] {
    if (this.#closed) throw new WorkloadApiError("closed", "the X.509 source is closed");
    return this.#ctx ? [...this.#ctx.bundles.bundles()] : [];
  }

  /** The current context as the last good message gave it. */
  getX509Context(): X509Context {
    return this.#current();
  }

  /** The last error the stream reported (the state still comes from the last good message). */
  get lastError(): WorkloadApiError | undefined {
    return this.#lastError;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Cancels the stream and waits for it to end; closes the client when the source made it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    await this.#watch?.catch(() => undefined);
    if (this.#ownsClient) await this.#client.close();
  }
}
