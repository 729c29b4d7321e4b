import type { JwtBundle, JwtBundleSource } from "../bundle/jwtbundle.js";
import type { JwtBundleSet } from "../bundle/set.js";
import type { TrustDomain } from "../id.js";
import type { JwtSvid } from "../jwtsvid.js";
import type { CallOptions, JwtSvidParams } from "./client.js";
import { StreamSource, type StreamSourceKind, type StreamSourceOptions } from "./stream-source.js";

/** Options of `JwtSource.create`: the ones every stream-backed source takes. */
export interface JwtSourceOptions extends StreamSourceOptions {}

const JWT_STREAM: StreamSourceKind<JwtBundleSet> = {
  name: "JWT source",
  first: "JWT bundles",
  watch: (client, watcher, signal) => client.watchJwtBundles(watcher, signal),
};

/**
 * JWT bundles kept current by a FetchJWTBundles stream, and JWT-SVIDs fetched on demand.
 * Events: `update` (JwtBundleSet) on each new state, `error` (WorkloadApiError) on each failure
 * of the stream, when someone listens. A PermissionDenied status withdraws the bundles until the
 * next message. `close()` ends the stream; no timer or socket remains.
 */
export class JwtSource extends StreamSource<JwtBundleSet> implements JwtBundleSource {
  private constructor(options: JwtSourceOptions) {
    super(options, JWT_STREAM);
  }

  /** Opens the stream and resolves after the first JWT bundles arrived. */
  static async create(options: JwtSourceOptions = {}): Promise<JwtSource> {
    const source = new JwtSource(options);
    await source.open(options.timeoutMs);
    return source;
  }

  /** Fetches a JWT-SVID for the audience (FetchJWTSVID); JWT-SVIDs are short-lived, so never cached. */
  fetchJwtSvid(params: JwtSvidParams, options?: CallOptions): Promise<JwtSvid> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.client.fetchJwtSvid(params, options);
  }

  fetchJwtSvids(params: JwtSvidParams, options?: CallOptions): Promise<JwtSvid[]> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.client.fetchJwtSvids(params, options);
  }

  /**
   * The current JWT bundle of a trust domain, or undefined when the workload does not trust it
   * (also while the Workload API denies the workload: nothing is trusted then).
   */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.current()?.get(trustDomain);
  }

  /** Every current JWT bundle; none while the Workload API denies the workload. */
  getJwtBundles(): readonly JwtBundle[] {
    return [...(this.current()?.bundles() ?? [])];
  }
}
