/**
 * What the Workload API server needs from the rest of the agent: the identities a workload's
 * selectors entitle it to, JWT-SVIDs on demand, the JWT bundles, and a signal when any of it
 * changes. The agent's sync and cache (entries and SVIDs from the identity server) implement
 * IdentityProvider; StaticIdentityProvider below is an in-memory one for tests, benchmarks and
 * local runs.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { JwtBundle } from "../../spiffe/bundle/jwtbundle.js";
import type { X509Bundle } from "../../spiffe/bundle/x509bundle.js";
import { SpiffeId } from "../../spiffe/id.js";
import { signJwtSvid } from "../../spiffe/jwtsvid.js";
import { X509Svid } from "../../spiffe/x509svid.js";
import { formatSelector, matchingEntries, parseSelector, type Selector, selectorKey } from "./attestor.js";

/** The X.509 state of one workload: what FetchX509SVID and FetchX509Bundles send. */
export interface X509Identities {
  /** The workload's X.509-SVIDs, the default one first; `X509Svid.hint` is sent as the hint. */
  readonly svids: readonly X509Svid[];
  /** The bundle of the agent's own trust domain. */
  readonly bundle: X509Bundle;
  /** Bundles of the trust domains the workload federates with. */
  readonly federated: readonly X509Bundle[];
}

/** One JWT-SVID as FetchJWTSVID returns it. */
export interface IssuedJwtSvid {
  readonly spiffeId: string;
  /** The compact token. Never log it. */
  readonly token: string;
  readonly hint?: string;
}

export interface IdentityProvider {
  /**
   * The identities of a workload with these selectors, or undefined when no entry matches.
   * Called on every request and after every change: keep it cheap (answer from a cache).
   * Returning the same object while nothing changed lets the server reuse its encoded response.
   */
  identitiesFor(selectors: readonly Selector[]): X509Identities | undefined;
  /**
   * JWT-SVIDs for the audience, one per identity of the workload (only `spiffeId`'s when
   * given); empty when the workload is entitled to none.
   */
  jwtSvidFor(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
  ): Promise<IssuedJwtSvid[]>;
  /** The JWT bundles (own and federated trust domains). Same object while nothing changed. */
  jwtBundles(): readonly JwtBundle[];
  /** Calls `listener` after every change of identities or bundles; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/**
 * Calls every listener (a snapshot: listeners may unsubscribe while called); a listener that
 * throws does not stop the others, its error is rethrown in a microtask.
 */
export function notifyListeners(listeners: Iterable<() => void>): void {
  for (const l of [...listeners]) {
    try {
      l();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// An in-memory provider

export interface StaticEntry {
  spiffeId: string;
  /** `unix:uid:1000` strings or Selector objects; at least one. All must be among the workload's. */
  selectors: readonly (string | Selector)[];
  hint?: string;
}

export interface StaticIdentityProviderOptions {
  /** The agent's own trust domain bundle. */
  bundle: X509Bundle;
  federated?: readonly X509Bundle[];
  /** Issues a fresh X.509-SVID for an ID (a CA, in tests TestCa). Called again on every rotate(). */
  issueX509Svid: (id: SpiffeId) => Promise<X509Svid>;
  /** Signs JWT-SVIDs; without it FetchJWTSVID fails. Its public key is the own JWT bundle. */
  jwtSigner?: { key: KeyObject; kid: string; ttlMs?: number };
  /** JWT bundles of other trust domains. */
  federatedJwtBundles?: readonly JwtBundle[];
  entries?: readonly StaticEntry[];
}

interface Entry {
  id: SpiffeId;
  /** `type:value` strings. */
  selectors: string[];
  hint: string | undefined;
  svid: X509Svid;
}

const DEFAULT_JWT_TTL_MS = 5 * 60_000;

/**
 * Entries bound to selector sets, each with an X.509-SVID issued up front. An entry matches a
 * workload when all of the entry's selectors are among the workload's (SPIRE's rule); a
 * workload gets every matching entry's SVID, in the order the entries were added.
 * `rotate()` issues new SVIDs for every entry and notifies the listeners.
 */
export class StaticIdentityProvider implements IdentityProvider {
  private entries: Entry[] = [];
  private bundle: X509Bundle;
  private federated: readonly X509Bundle[];
  private readonly issue: (id: SpiffeId) => Promise<X509Svid>;
  private readonly signer: { key: KeyObject; kid: string; ttlMs: number } | undefined;
  private federatedJwt: readonly JwtBundle[];
  private jwtBundleList: readonly JwtBundle[];
  private readonly listeners = new Set<() => void>();
  private readonly cache = new Map<string, X509Identities | null>();
  /** Serializes changes so that concurrent rotations and edits apply in call order. */
  private queue: Promise<unknown> = Promise.resolve();
  /** How many changes were published. */
  generation = 0;

  private constructor(options: StaticIdentityProviderOptions) {
    this.bundle = options.bundle;
    this.federated = [...(options.federated ?? [])];
    this.issue = options.issueX509Svid;
    this.signer = options.jwtSigner && {
      key: options.jwtSigner.key,
      kid: options.jwtSigner.kid,
      ttlMs: options.jwtSigner.ttlMs ?? DEFAULT_JWT_TTL_MS,
    };
    this.federatedJwt = [...(options.federatedJwtBundles ?? [])];
    this.jwtBundleList = this.buildJwtBundles();
  }

  /** Creates the provider and issues the SVIDs of the initial entries. */
  static async create(options: StaticIdentityProviderOptions): Promise<StaticIdentityProvider> {
    const p = new StaticIdentityProvider(options);
    const entries = await Promise.all((options.entries ?? []).map((e) => p.makeEntry(e)));
    p.entries = entries;
    return p;
  }

  // ----- IdentityProvider

  identitiesFor(selectors: readonly Selector[]): X509Identities | undefined {
    const key = selectorKey(selectors);
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const svids = matchingEntries(this.entries, selectors).map((e) => e.svid);
    const result: X509Identities | null =
      svids.length === 0 ? null : { svids, bundle: this.bundle, federated: this.federated };
    this.cache.set(key, result);
    return result ?? undefined;
  }

  async jwtSvidFor(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
  ): Promise<IssuedJwtSvid[]> {
    const ids = this.identitiesFor(selectors);
    if (ids === undefined) return [];
    let svids = ids.svids;
    if (spiffeId !== undefined) svids = svids.filter((s) => s.id.toString() === spiffeId);
    if (svids.length === 0) return [];
    const signer = this.signer;
    if (signer === undefined) throw new Error("this identity provider has no JWT signing key");
    const seen = new Set<string>();
    const out: IssuedJwtSvid[] = [];
    for (const svid of svids) {
      const id = svid.id.toString();
      if (seen.has(id)) continue;
      seen.add(id);
      const token = await signJwtSvid({
        id: svid.id,
        audience,
        expiresAt: new Date(Date.now() + signer.ttlMs),
        key: signer.key,
        kid: signer.kid,
      });
      out.push({ spiffeId: id, token, ...(svid.hint === undefined ? {} : { hint: svid.hint }) });
    }
    return out;
  }

  jwtBundles(): readonly JwtBundle[] {
    return this.jwtBundleList;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ----- changes

  /** Issues a new SVID for every entry, then publishes them all at once. */
  rotate(): Promise<void> {
    return this.change(async () => {
      const fresh = await Promise.all(this.entries.map((e) => this.reissue(e)));
      return () => {
        this.entries = fresh;
      };
    });
  }

  /** Adds an entry (its SVID issued first). */
  addEntry(entry: StaticEntry): Promise<void> {
    return this.change(async () => {
      const e = await this.makeEntry(entry);
      return () => {
        this.entries = [...this.entries, e];
      };
    });
  }

  /** Removes every entry of the SPIFFE ID; resolves to how many were removed. */
  async removeEntries(spiffeId: string): Promise<number> {
    const id = SpiffeId.parse(spiffeId);
    let removed = 0;
    await this.change(async () => () => {
      const keep = this.entries.filter((e) => !e.id.equals(id));
      removed = this.entries.length - keep.length;
      this.entries = keep;
    });
    return removed;
  }

  /** Replaces the own and federated X.509 bundles. */
  setBundles(bundle: X509Bundle, federated: readonly X509Bundle[] = this.federated): Promise<void> {
    return this.change(async () => () => {
      this.bundle = bundle;
      this.federated = [...federated];
    });
  }

  /** Replaces the federated JWT bundles. */
  setFederatedJwtBundles(bundles: readonly JwtBundle[]): Promise<void> {
    return this.change(async () => () => {
      this.federatedJwt = [...bundles];
      this.jwtBundleList = this.buildJwtBundles();
    });
  }

  /** The current SVIDs of every entry, in entry order (for tests and benchmarks). */
  currentSvids(): X509Svid[] {
    return this.entries.map((e) => e.svid);
  }

  /** Prepares a change (async), then applies it synchronously and notifies the listeners. */
  private change(prepare: () => Promise<() => void>): Promise<void> {
    const run = this.queue.then(async () => {
      const apply = await prepare();
      apply();
      this.cache.clear();
      this.generation++;
      notifyListeners(this.listeners);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private buildJwtBundles(): readonly JwtBundle[] {
    const own =
      this.signer === undefined
        ? []
        : [
            JwtBundle.fromAuthorities(this.bundle.trustDomain, [
              [this.signer.kid, createPublicKey(this.signer.key)],
            ]),
          ];
    return Object.freeze([...own, ...this.federatedJwt]);
  }

  private async makeEntry(entry: StaticEntry): Promise<Entry> {
    const id = SpiffeId.parse(entry.spiffeId);
    const selectors = entry.selectors.map((s) =>
      formatSelector(typeof s === "string" ? parseSelector(s) : s),
    );
    if (selectors.length === 0) throw new TypeError(`entry ${entry.spiffeId} needs at least one selector`);
    const e = { id, selectors, hint: entry.hint };
    return { ...e, svid: await this.issueFor(e) };
  }

  private async reissue(e: Entry): Promise<Entry> {
    return { ...e, svid: await this.issueFor(e) };
  }

  private async issueFor(e: { id: SpiffeId; hint: string | undefined }): Promise<X509Svid> {
    const svid = await this.issue(e.id);
    if (!svid.id.equals(e.id)) {
      throw new Error(`the issuer returned an SVID for ${svid.id}, not for ${e.id}`);
    }
    return svid.hint === e.hint ? svid : X509Svid.fromParts(svid.certificates, svid.privateKey, e.hint);
  }
}
