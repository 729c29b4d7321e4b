/**
 * Token buckets, one per key (an agent's SPIFFE ID): `burst` tokens, refilled at `perSecond`.
 * Each signed CSR costs one token. In-memory per replica.
 */
export interface RateLimit {
  /** Bucket size: how many signatures an agent may ask for at once. */
  readonly burst: number;
  /** Refill rate, signatures per second. */
  readonly perSecond: number;
}

export const DEFAULT_SIGN_RATE_LIMIT: RateLimit = { burst: 500, perSecond: 50 };
const MAX_BUCKETS = 100_000;

export class TokenBuckets {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly limit: RateLimit,
    private readonly clock: () => number = Date.now,
  ) {
    if (!(limit.burst >= 1) || !(limit.perSecond > 0))
      throw new Error("rate limit: burst must be >= 1 and perSecond > 0");
  }

  /** Takes `n` tokens from `key`'s bucket: 0 when granted, else the seconds to wait. */
  take(key: string, n = 1): number {
    const now = this.clock();
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= MAX_BUCKETS) this.#prune(now);
      b = { tokens: this.limit.burst, at: now };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
    b.at = now;
    if (n > this.limit.burst) return Number.POSITIVE_INFINITY;
    if (b.tokens >= n) {
      b.tokens -= n;
      return 0;
    }
    return Math.ceil((n - b.tokens) / this.limit.perSecond);
  }

  #prune(now: number): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.limit.perSecond >= this.limit.burst)
        this.#buckets.delete(k);
    }
  }
}
