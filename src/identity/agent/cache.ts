/**
 * The agent's cache of workload identities: the registration entries the server authorized for
 * this agent (from sync), an X.509-SVID per entry, JWT-SVIDs per (entry, audience), and the
 * trust bundle. It answers the Workload API server (IdentityProvider) from memory.
 *
 *  - Each entry gets its own EC P-256 key, generated here; CSRs go to the server in batches.
 *  - Each SVID is rotated at half its remaining lifetime when it arrived, minus a jitter of up
 *    to `jitter` of that lifetime (so that SVIDs issued together do not rotate together).
 *  - An SVID whose entry is gone is evicted at once; an SVID that reaches its notAfter without
 *    a successor (the server refused or was unreachable) is dropped at that moment, and the
 *    workloads that relied on it lose it (PermissionDenied when it was their last one).
 *  - JWT-SVIDs are cached per (entry, audience set) and minted again once half their lifetime
 *    has passed.
 *
 * Every change of what a workload would receive is published once: `onChange` listeners run and
 * `identitiesFor` answers are rebuilt on demand (same object while nothing changed).
 */
import { X509Certificate } from "node:crypto";
import type { JwtBundle } from "../../spiffe/bundle/jwtbundle.js";
import type { SpiffeBundle } from "../../spiffe/bundle/spiffebundle.js";
import type { X509Bundle } from "../../spiffe/bundle/x509bundle.js";
import { SpiffeId } from "../../spiffe/id.js";
import { X509Svid } from "../../spiffe/x509svid.js";
import type { JwtRequest, JwtResponse, SignRequest, SignResponse, WireEntry } from "../api.js";
import { matchingEntries, type Selector, selectorKey } from "./attestor.js";
import { newKeyAndCsr } from "./csr.js";
import {
  type IdentityProvider,
  type IssuedJwtSvid,
  notifyListeners,
  type X509Identities,
} from "./identity-provider.js";

export interface SvidCacheOptions {
  /** Signs workload CSRs (the Agent API's sign). */
  sign: (request: SignRequest) => Promise<SignResponse>;
  /** Mints a JWT-SVID (the Agent API's jwt). */
  mintJwt: (request: JwtRequest) => Promise<JwtResponse>;
  /** Fraction of the lifetime by which rotation may come earlier than half-life (default 0.1). */
  jitter?: number;
  /** CSRs per sign request (default 100). */
  batchSize?: number;
  /** After a failed sign, how long until rotation is tried again (default 1000 ms). */
  retryMs?: number;
  /** Most JWT-SVIDs kept (default 10,000; the oldest go first). */
  maxJwtSvids?: number;
  log?: (message: string) => void;
  /** The clock (ms since the epoch). */
  now?: () => number;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
}

interface CachedSvid {
  readonly svid: X509Svid;
  /** The entry revision the SVID was issued for. */
  readonly revision: number;
  readonly spiffeId: string;
  readonly rotateAt: number;
  readonly expiresAt: number;
}

interface CachedJwt {
  readonly token: string;
  readonly spiffeId: string;
  readonly refreshAt: number;
  readonly expiresAt: number;
}

interface ParsedEntry {
  readonly wire: WireEntry;
  readonly selectors: readonly string[];
}

export class SvidCache implements IdentityProvider {
  private readonly options: Required<Omit<SvidCacheOptions, "log">> & { log: (m: string) => void };
  private entries: ParsedEntry[] = [];
  private svids = new Map<string, CachedSvid>();
  private jwts = new Map<string, CachedJwt>();
  private readonly jwtInFlight = new Map<string, Promise<CachedJwt>>();
  private bundle: SpiffeBundle | undefined;
  private bundleText = "";
  private x509Bundle: X509Bundle | undefined;
  private jwtBundleList: readonly JwtBundle[] = Object.freeze([]);
  private readonly listeners = new Set<() => void>();
  private readonly answers = new Map<string, X509Identities | null>();
  /** No rotation is retried before this time after a failed sign. */
  private retryAt = 0;
  /** How many changes were published. */
  generation = 0;

  constructor(options: SvidCacheOptions) {
    this.options = {
      jitter: 0.1,
      batchSize: 100,
      retryMs: 1000,
      maxJwtSvids: 10_000,
      now: Date.now,
      random: Math.random,
      ...options,
      log: options.log ?? (() => undefined),
    };
  }

  // ----- updates from the server

  /**
   * Applies a sync: the authorized entries and the trust bundle. Evicts what is gone, signs
   * SVIDs for new or changed entries, then publishes once. Signing failures are logged and
   * retried by the next update or `rotate()`; what is cached keeps being served.
   */
  async update(entries: readonly WireEntry[], bundle: SpiffeBundle): Promise<void> {
    let changed = false;
    const text = bundle.marshal();
    if (text !== this.bundleText) {
      this.bundle = bundle;
      this.bundleText = text;
      this.x509Bundle = bundle.x509Bundle();
      this.jwtBundleList = Object.freeze([bundle.jwtBundle()]);
      changed = true;
    }
    const now = this.options.now();
    const live = entries.filter((e) => e.expiresAt === undefined || Date.parse(e.expiresAt) > now);
    const before = this.entriesKey();
    this.entries = live.map((wire) => ({ wire, selectors: [...new Set(wire.selectors)] }));
    if (this.entriesKey() !== before) changed = true;
    const ids = new Set(live.map((e) => e.id));
    for (const id of [...this.svids.keys()]) {
      if (!ids.has(id)) {
        this.svids.delete(id);
        changed = true;
      }
    }
    for (const key of [...this.jwts.keys()]) {
      if (!ids.has(key.slice(0, key.indexOf("\n")))) this.jwts.delete(key);
    }
    if ((await this.signDue()) > 0) changed = true;
    if (this.dropExpired()) changed = true;
    if (changed) this.publish();
  }

  /** Rotates the SVIDs that are due and drops the expired ones; publishes when anything changed. */
  async rotate(): Promise<void> {
    let changed = (await this.signDue()) > 0;
    if (this.dropExpired()) changed = true;
    if (changed) this.publish();
  }

  /** When `rotate()` has work next: the earliest rotation or expiry (undefined: nothing cached). */
  nextDeadline(): number | undefined {
    let next: number | undefined = this.missing > 0 ? Math.max(this.options.now(), this.retryAt) : undefined;
    for (const s of this.svids.values()) {
      const t = Math.min(Math.max(s.rotateAt, this.retryAt), s.expiresAt);
      if (next === undefined || t < next) next = t;
    }
    return next;
  }

  /** Whether some entry has no SVID (signing failed or pending). */
  get missing(): number {
    return this.entries.filter((e) => !this.svids.has(e.wire.id)).length;
  }

  /** The current SVID of each entry that has one (tests, status). */
  currentSvids(): Map<string, X509Svid> {
    return new Map([...this.svids].map(([id, s]) => [id, s.svid]));
  }

  get entryCount(): number {
    return this.entries.length;
  }

  // ----- IdentityProvider

  identitiesFor(selectors: readonly Selector[]): X509Identities | undefined {
    const key = selectorKey(selectors);
    const hit = this.answers.get(key);
    if (hit !== undefined) return hit ?? undefined;
    const bundle = this.x509Bundle;
    let result: X509Identities | null = null;
    if (bundle !== undefined) {
      const svids = matchingEntries(this.entries, selectors)
        .map((e) => this.svids.get(e.wire.id)?.svid)
        .filter((s): s is X509Svid => s !== undefined);
      if (svids.length > 0) result = { svids, bundle, federated: [] };
    }
    if (this.answers.size > 10_000) this.answers.clear();
    this.answers.set(key, result);
    return result ?? undefined;
  }

  async jwtSvidFor(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
  ): Promise<IssuedJwtSvid[]> {
    let entries = matchingEntries(this.entries, selectors);
    if (spiffeId !== undefined) entries = entries.filter((e) => e.wire.spiffeId === spiffeId);
    const seen = new Set<string>();
    const unique = entries.filter((e) => {
      if (seen.has(e.wire.spiffeId)) return false;
      seen.add(e.wire.spiffeId);
      return true;
    });
    const aud = [...new Set(audience)].sort();
    const out = await Promise.all(unique.map((e) => this.jwtFor(e.wire, aud)));
    return out.map((j, i) => {
      const hint = unique[i]?.wire.hint;
      return { spiffeId: j.spiffeId, token: j.token, ...(hint ? { hint } : {}) };
    });
  }

  jwtBundles(): readonly JwtBundle[] {
    return this.jwtBundleList;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The current bundle (undefined before the first sync). */
  get trustBundle(): SpiffeBundle | undefined {
    return this.bundle;
  }

  // ----- internals

  private entriesKey(): string {
    return this.entries
      .map(
        (e) => `${e.wire.id}@${e.wire.revision}:${e.wire.spiffeId}:${e.selectors.join(",")}:${e.wire.hint}`,
      )
      .join("\n");
  }

  private dropExpired(): boolean {
    const now = this.options.now();
    let dropped = false;
    for (const [id, s] of [...this.svids]) {
      if (s.expiresAt <= now) {
        this.svids.delete(id);
        dropped = true;
        this.options.log(
          `agent: the X.509-SVID of ${s.spiffeId} (entry ${id}) expired without a successor; workloads lose it`,
        );
      }
    }
    for (const [k, j] of [...this.jwts]) if (j.expiresAt <= now) this.jwts.delete(k);
    return dropped;
  }

  /** Signs SVIDs for entries without one, with a changed revision or ID, or due for rotation. */
  private async signDue(): Promise<number> {
    const now = this.options.now();
    const due = this.entries.filter((e) => {
      const s = this.svids.get(e.wire.id);
      return (
        s === undefined ||
        s.revision !== e.wire.revision ||
        s.spiffeId !== e.wire.spiffeId ||
        s.rotateAt <= now
      );
    });
    let signed = 0;
    for (let i = 0; i < due.length; i += this.options.batchSize) {
      const batch = due.slice(i, i + this.options.batchSize);
      signed += await this.signBatch(batch);
    }
    return signed;
  }

  private async signBatch(batch: readonly ParsedEntry[]): Promise<number> {
    const keys = await Promise.all(batch.map(() => newKeyAndCsr()));
    let response: SignResponse;
    try {
      response = await this.options.sign({
        requests: batch.map((e, i) => ({ entryId: e.wire.id, csr: (keys[i] as { csr: string }).csr })),
      });
    } catch (err) {
      this.retryAt = this.options.now() + this.options.retryMs;
      this.options.log(
        `agent: cannot get ${batch.length} workload SVID(s) signed: ${(err as Error).message}`,
      );
      return 0;
    }
    const byId = new Map(batch.map((e, i) => [e.wire.id, { entry: e, key: keys[i]?.privateKey }]));
    let signed = 0;
    for (const s of response.svids ?? []) {
      const req = byId.get(s.entryId);
      if (req === undefined || req.key === undefined) {
        this.options.log(
          `agent: the server signed an SVID for entry ${s.entryId}, which was not asked for; ignored`,
        );
        continue;
      }
      byId.delete(s.entryId);
      try {
        const certs = s.certificates.map((b64) => new X509Certificate(Buffer.from(b64, "base64")));
        const hint = req.entry.wire.hint === "" ? undefined : req.entry.wire.hint;
        const svid = X509Svid.fromParts(certs, req.key, hint);
        if (!svid.id.equals(SpiffeId.parse(req.entry.wire.spiffeId))) {
          throw new Error(`it names ${svid.id}, not ${req.entry.wire.spiffeId}`);
        }
        this.svids.set(s.entryId, this.schedule(svid, req.entry.wire));
        signed++;
      } catch (err) {
        this.options.log(
          `agent: the SVID signed for entry ${s.entryId} is unusable: ${(err as Error).message}`,
        );
      }
    }
    for (const id of byId.keys()) this.options.log(`agent: the server returned no SVID for entry ${id}`);
    if (signed < batch.length) this.retryAt = this.options.now() + this.options.retryMs;
    return signed;
  }

  private schedule(svid: X509Svid, entry: WireEntry): CachedSvid {
    const now = this.options.now();
    const expiresAt = Date.parse(svid.leaf.validTo);
    const remaining = Math.max(0, expiresAt - now);
    const jitter = Math.min(0.5, Math.max(0, this.options.jitter)) * this.options.random();
    return {
      svid,
      revision: entry.revision,
      spiffeId: entry.spiffeId,
      rotateAt: now + remaining * (0.5 - jitter),
      expiresAt,
    };
  }

  private async jwtFor(entry: WireEntry, audience: readonly string[]): Promise<CachedJwt> {
    const key = `${entry.id}\n${entry.revision}\n${audience.join("\n")}`;
    const now = this.options.now();
    const hit = this.jwts.get(key);
    if (hit !== undefined && hit.refreshAt > now) return hit;
    const pending = this.jwtInFlight.get(key);
    if (pending !== undefined) return pending;
    const p = (async () => {
      const res = await this.options.mintJwt({ entryId: entry.id, audience });
      if (res.spiffeId !== entry.spiffeId) {
        throw new Error(`the server minted a JWT-SVID for ${res.spiffeId}, not for ${entry.spiffeId}`);
      }
      const issued = this.options.now();
      const expiresAt = Date.parse(res.expiresAt);
      const cached: CachedJwt = {
        token: res.token,
        spiffeId: res.spiffeId,
        expiresAt,
        refreshAt: issued + Math.max(0, expiresAt - issued) / 2,
      };
      if (this.entries.some((e) => e.wire.id === entry.id)) {
        if (this.jwts.size >= this.options.maxJwtSvids) {
          const oldest = this.jwts.keys().next();
          if (!oldest.done) this.jwts.delete(oldest.value);
        }
        this.jwts.delete(key);
        this.jwts.set(key, cached);
      }
      return cached;
    })();
    this.jwtInFlight.set(key, p);
    try {
      return await p;
    } finally {
      this.jwtInFlight.delete(key);
    }
  }

  private publish(): void {
    this.answers.clear();
    this.generation++;
    notifyListeners(this.listeners);
  }
}
