import type { X509Bundle, X509BundleSource } from "../bundle/x509bundle.js";
import type { TrustDomain } from "../id.js";
import type { X509Svid } from "../x509svid.js";
import { WorkloadApiError, type X509Context } from "./client.js";
import { StreamSource, type StreamSourceKind, type StreamSourceOptions } from "./stream-source.js";

export interface X509SourceOptions extends StreamSourceOptions {
  /** Chooses the SVID `getX509Svid` returns; default the first (the default identity, API §8). */
  picker?: (svids: readonly X509Svid[]) => X509Svid;
}

const X509_STREAM: StreamSourceKind<X509Context> = {
  name: "X.509 source",
  first: "X.509 context",
  watch: (client, watcher, signal) => client.watchX509Context(watcher, signal),
};

/**
 * The workload's X.509-SVIDs and bundles, kept current by a FetchX509SVID stream. Events:
 * `update` (X509Context) on each new state, `error` (WorkloadApiError) on each failure of the
 * stream, when someone listens. A PermissionDenied status withdraws the state: `getX509Svid`
 * throws and no bundle is returned until the next message. `close()` ends the stream; after it,
 * no timer or socket remains.
 */
export class X509Source extends StreamSource<X509Context> implements X509BundleSource {
  readonly #picker: (svids: readonly X509Svid[]) => X509Svid;

  private constructor(options: X509SourceOptions) {
    super(options, X509_STREAM);
    this.#picker = options.picker ?? ((svids) => svids[0] as X509Svid);
  }

  /** Opens the stream and resolves after the first X.509 context arrived. */
  static async create(options: X509SourceOptions = {}): Promise<X509Source> {
    const source = new X509Source(options);
    await source.open(options.timeoutMs);
    return source;
  }

  #context(): X509Context {
    const ctx = this.current();
    if (ctx === undefined) {
      throw new WorkloadApiError(
        "PermissionDenied",
        "the Workload API withdrew this workload's X.509-SVIDs (PermissionDenied); none is used until it grants them again",
      );
    }
    return ctx;
  }

  /** The SVID chosen by the picker (default: the first, the default identity). */
  getX509Svid(): X509Svid {
    return this.#picker(this.#context().svids);
  }

  /** Every SVID of the current state, in the server's order. */
  getX509Svids(): readonly X509Svid[] {
    return [...this.#context().svids];
  }

  /**
   * The current bundle of a trust domain, or undefined when the workload does not trust it
   * (also while the Workload API denies the workload: nothing is trusted then).
   */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.current()?.bundles.get(trustDomain);
  }

  /** Every current bundle (own trust domain and federated ones); none while denied. */
  getX509Bundles(): readonly X509Bundle[] {
    return [...(this.current()?.bundles.bundles() ?? [])];
  }

  /** The current context as the last good message gave it. */
  getX509Context(): X509Context {
    return this.#context();
  }
}
