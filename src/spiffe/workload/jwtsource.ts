import { EventEmitter } from "node:events";
import type { JwtBundle, JwtBundleSource } from "../bundle/jwtbundle.js";
import type { JwtBundleSet } from "../bundle/set.js";
import type { TrustDomain } from "../id.js";
import type { JwtSvid } from "../jwtsvid.js";
import {
  type BackoffOptions,
  type CallOptions,
  type JwtSvidParams,
  WorkloadApiClient,
  WorkloadApiError,
} from "./client.js";

export interface JwtSourceOptions {
  /** A client to share; it stays open when the source closes. Default: a client of its own. */
  client?: WorkloadApiClient;
  /** Address for the source's own client (default `SPIFFE_ENDPOINT_SOCKET`). */
  address?: string;
  backoff?: Partial<BackoffOptions>;
  /** Give up when the first bundles have not come within this time (default: wait). */
  timeoutMs?: number;
}

/**
 * JWT bundles kept current by a FetchJWTBundles stream, and JWT-SVIDs fetched on demand.
 * Events: `update` (JwtBundleSet) on each new state, `error` (WorkloadApiError) on each failure
 * of the stream, when someone listens. A PermissionDenied status withdraws the bundles until the
 * next message. `close()` ends the stream; no timer or socket remains.
 */
export class JwtSource extends EventEmitter implements JwtBundleSource {
  readonly #client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #abort = new AbortController();
  #bundles: JwtBundleSet | undefined;
  #watch: Promise<void> | undefined;
  #closed = false;
  #lastError: WorkloadApiError | undefined;

  private constructor(client: WorkloadApiClient, ownsClient: boolean) {
    super();
    this.#client = client;
    this.#ownsClient = ownsClient;
  }

  /** Opens the stream and resolves after the first JWT bundles arrived. */
  static async create(options: JwtSourceOptions = {}): Promise<JwtSource> {
    const client =
      options.client ??
      new WorkloadApiClient({
        ...(options.address === undefined ? {} : { address: options.address }),
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
      });
    const source = new JwtSource(client, options.client === undefined);
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
              `no JWT bundles from the Workload API within ${timeoutMs} ms${last}`,
            ),
          );
        }, timeoutMs);
      }
      this.#watch = this.#client.watchJwtBundles(
        {
          onUpdate: (bundles) => {
            this.#bundles = bundles;
            settle();
            this.emit("update", bundles);
          },
          onError: (err) => {
            this.#lastError = err;
            // PermissionDenied withdraws every bundle: stop using them (API §6.2.2) until a new message.
            if (err.kind === "PermissionDenied") this.#bundles = undefined;
            if (this.listenerCount("error") > 0) this.emit("error", err);
          },
        },
        this.#abort.signal,
      );
      this.#watch.then(
        () => settle(new WorkloadApiError("closed", "the JWT source was closed before its first update")),
        (err: unknown) => settle(err),
      );
    });
  }

  #current(): JwtBundleSet | undefined {
    if (this.#closed) throw new WorkloadApiError("closed", "the JWT source is closed");
    return this.#bundles;
  }

  /** Fetches a JWT-SVID for the audience (FetchJWTSVID); JWT-SVIDs are short-lived, so never cached. */
  fetchJwtSvid(params: JwtSvidParams, options?: CallOptions): Promise<JwtSvid> {
    if (this.#closed) return Promise.reject(new WorkloadApiError("closed", "the JWT source is closed"));
    return this.#client.fetchJwtSvid(params, options);
  }

  fetchJwtSvids(params: JwtSvidParams, options?: CallOptions): Promise<JwtSvid[]> {
    if (this.#closed) return Promise.reject(new WorkloadApiError("closed", "the JWT source is closed"));
    return this.#client.fetchJwtSvids(params, options);
  }

  /**
   * The current JWT bundle of a trust domain, or undefined when the workload does not trust it
   * (also while the Workload API denies the workload: nothing is trusted then).
   */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.#current()?.get(trustDomain);
  }

  /** Every current JWT bundle; none while the Workload API denies the workload. */
  getJwtBundles(): readonly JwtBundle[] {
    return [...(this.#current()?.bundles() ?? [])];
  }

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
