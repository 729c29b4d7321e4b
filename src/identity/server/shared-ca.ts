/**
 * The server's CA, kept in the datastore so that a restart keeps it and several replicas on one
 * PostgreSQL database share it.
 *
 * Storage: each version of the CA (`CertificateAuthority.exportState()`, JSON) is one record of
 * the datastore's CA keys, id `ca-state:<version, 12 digits>`, kind x509, its certificate the
 * active authority, its "private key" the state JSON armored as
 * `-----BEGIN TESSERA CA STATE PRIVATE KEY-----` (so the store seals it with its key encryption
 * key like any private key). Writing version N+1 is a compare-and-set: `putCaKey` refuses an
 * existing id, so of two replicas changing the CA at once exactly one wins; the other reloads
 * the winner's state and retries. Every change is made on a copy and swapped in only once
 * stored: no SVID is ever signed by an authority that is not in the database.
 *
 * The published bundle is the datastore's bundle record (`putBundle`, sequence +1 per write),
 * rewritten whenever the CA's authorities change; its `spiffe_sequence` is the record's.
 */
import { createPublicKey, type JsonWebKey, type KeyObject, X509Certificate } from "node:crypto";
import { SpiffeBundle } from "../../spiffe/bundle/spiffebundle.js";
import { TrustDomain } from "../../spiffe/id.js";
import { type Datastore, isStoreError } from "../store/datastore.js";
import type { BundleContent, BundleRecord, CaKey, Jwk } from "../store/model.js";
import {
  type CaKeyType,
  type CaState,
  CertificateAuthority,
  type RotationResult,
  type UpstreamCaOptions,
} from "./ca/ca.js";
import { ApiFailure } from "./http.js";

export const CA_STATE_PREFIX = "ca-state:";
const ARMOR = "TESSERA CA STATE PRIVATE KEY";
/** Versions kept besides the newest (for a replica that reads while another writes). */
const KEEP_VERSIONS = 2;
export const DEFAULT_REFRESH_HINT_SECONDS = 300;

export interface SharedCaOptions {
  readonly trustDomain: string;
  readonly caTtlSeconds?: number;
  readonly keyType?: CaKeyType;
  readonly upstream?: UpstreamCaOptions;
  readonly refreshHintSeconds?: number;
  readonly clock?: () => Date;
}

function armor(state: CaState): string {
  const b64 = Buffer.from(JSON.stringify(state), "utf8").toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${ARMOR}-----\n${lines.join("\n")}\n-----END ${ARMOR}-----\n`;
}

function unarmor(text: string, id: string): CaState {
  const m = new RegExp(`-----BEGIN ${ARMOR}-----([^-]*)-----END ${ARMOR}-----`).exec(text);
  if (!m) throw new Error(`CA key ${id} in the datastore is not a Tessera CA state`);
  return JSON.parse(Buffer.from((m[1] ?? "").replace(/\s+/g, ""), "base64").toString("utf8")) as CaState;
}

function versionOf(id: string): number {
  return Number(id.slice(CA_STATE_PREFIX.length));
}

function versionId(v: number): string {
  return `${CA_STATE_PREFIX}${String(v).padStart(12, "0")}`;
}

/** The bundle record content of a CA: its published X.509 authorities and JWT keys. */
export function bundleContentOf(ca: CertificateAuthority, refreshHintSeconds: number): BundleContent {
  const keys = ca.jwtKeys;
  const jwt = [keys.active, ...(keys.prepared ? [keys.prepared] : []), ...keys.old];
  return {
    trustDomain: ca.trustDomain.name,
    x509Authorities: ca.bundle().x509Authorities.map((c) => c.toString()),
    jwtAuthorities: jwt.map((k) => ({ ...(k.publicKey.export({ format: "jwk" }) as Jwk), kid: k.kid })),
    refreshHintSeconds,
  };
}

function sameContent(a: BundleContent, b: BundleContent): boolean {
  const x = (c: BundleContent) =>
    [...c.x509Authorities]
      .map((p) => p.trim())
      .sort()
      .join("|");
  const j = (c: BundleContent) =>
    c.jwtAuthorities
      .map((k) => k.kid)
      .sort()
      .join("|");
  return x(a) === x(b) && j(a) === j(b) && a.refreshHintSeconds === b.refreshHintSeconds;
}

/** The SPIFFE bundle of a stored bundle record. */
export function spiffeBundleOf(record: BundleRecord): SpiffeBundle {
  const td = TrustDomain.parse(record.trustDomain);
  const jwt: Array<[string, KeyObject]> = record.jwtAuthorities.map((k) => {
    const { kid, use: _use, alg: _alg, ...rest } = k as Jwk & { use?: unknown; alg?: unknown };
    return [kid, createPublicKey({ key: rest as JsonWebKey, format: "jwk" })];
  });
  return SpiffeBundle.create(td, {
    x509Authorities: record.x509Authorities.map((p) => new X509Certificate(p)),
    jwtAuthorities: jwt,
    sequence: record.sequence,
    refreshHintSeconds: record.refreshHintSeconds,
  });
}

export class SharedCa {
  #ca: CertificateAuthority;
  #version: number;
  #record: BundleRecord;
  #bundle: SpiffeBundle;
  #changing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: Datastore,
    private readonly options: SharedCaOptions,
    ca: CertificateAuthority,
    version: number,
    record: BundleRecord,
  ) {
    this.#ca = ca;
    this.#version = version;
    this.#record = record;
    this.#bundle = spiffeBundleOf(record);
  }

  /** Loads the newest stored CA, or creates and stores one (exactly one replica's wins). */
  static async open(store: Datastore, options: SharedCaOptions): Promise<SharedCa> {
    const td = TrustDomain.parse(options.trustDomain);
    for (let attempt = 0; attempt < 5; attempt++) {
      const latest = await latestState(store);
      let ca: CertificateAuthority;
      let version: number;
      if (latest) {
        ca = restoreCa(latest.state, options);
        version = latest.version;
      } else {
        ca = await CertificateAuthority.create({
          trustDomain: td,
          ...(options.caTtlSeconds === undefined ? {} : { caTtlSeconds: options.caTtlSeconds }),
          ...(options.keyType === undefined ? {} : { keyType: options.keyType }),
          ...(options.upstream === undefined ? {} : { upstream: options.upstream }),
          refreshHintSeconds: options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS,
          ...(options.clock ? { clock: options.clock } : {}),
        });
        version = 1;
        try {
          await putState(store, ca, version);
        } catch (e) {
          if (isStoreError(e, "already-exists")) continue; // another replica created it first
          throw e;
        }
      }
      const record = await publishBundle(
        store,
        ca,
        options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS,
      );
      return new SharedCa(store, options, ca, version, record);
    }
    throw new Error("could not load or create the CA: the datastore keeps changing; try again");
  }

  get ca(): CertificateAuthority {
    return this.#ca;
  }

  get version(): number {
    return this.#version;
  }

  /** The published bundle (the datastore's record). */
  bundle(): SpiffeBundle {
    return this.#bundle;
  }

  get bundleRecord(): BundleRecord {
    return this.#record;
  }

  /** Picks up a newer CA and bundle written by another replica. Returns true when the CA changed. */
  async refresh(): Promise<boolean> {
    return this.#serialize(async () => {
      const changed = await this.#reload();
      // Idempotent: writes only when the stored bundle lags the newest CA (a replica that
      // crashed between storing a CA version and publishing it).
      this.#setRecord(
        await publishBundle(
          this.store,
          this.#ca,
          this.options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS,
        ),
      );
      return changed;
    });
  }

  /** rotateIfDue on a copy; stored (and swapped in) when it changed something. */
  rotateIfDue(): Promise<RotationResult> {
    return this.change(
      (ca) => ca.rotateIfDue(),
      (r) => r.prepared || r.activated || r.pruned > 0,
    );
  }

  /**
   * Applies `fn` to a copy of the newest CA and stores it as the next version (when `changed`
   * says so), retrying on another replica's concurrent change; then republishes the bundle.
   */
  change<T>(
    fn: (ca: CertificateAuthority) => Promise<T> | T,
    changed: (r: T) => boolean = () => true,
  ): Promise<T> {
    return this.#serialize(async () => {
      for (let attempt = 0; attempt < 10; attempt++) {
        await this.#reload();
        const copy = restoreCa(this.#ca.exportState(), this.options);
        const result = await fn(copy);
        if (!changed(result)) return result;
        try {
          await putState(this.store, copy, this.#version + 1);
        } catch (e) {
          if (isStoreError(e, "already-exists")) continue;
          throw e;
        }
        this.#ca = copy;
        this.#version += 1;
        await this.#prune();
        this.#setRecord(
          await publishBundle(
            this.store,
            copy,
            this.options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS,
          ),
        );
        return result;
      }
      throw new ApiFailure(503, "ca-busy", "the CA keeps being changed by another replica: try again");
    });
  }

  #setRecord(record: BundleRecord): void {
    this.#record = record;
    this.#bundle = spiffeBundleOf(record);
  }

  async #reload(): Promise<boolean> {
    const latest = await latestState(this.store);
    if (!latest || latest.version <= this.#version) return false;
    this.#ca = restoreCa(latest.state, this.options);
    this.#version = latest.version;
    return true;
  }

  async #prune(): Promise<void> {
    const keys = await this.store.listCaKeys({ kind: "x509" });
    for (const k of keys) {
      if (k.id.startsWith(CA_STATE_PREFIX) && versionOf(k.id) < this.#version - KEEP_VERSIONS) {
        await this.store.deleteCaKey(k.id).catch(() => undefined);
      }
    }
  }

  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#changing.then(fn, fn);
    this.#changing = p.catch(() => undefined);
    return p;
  }
}

function restoreCa(state: CaState, options: SharedCaOptions): CertificateAuthority {
  if (state.trustDomain !== TrustDomain.parse(options.trustDomain).name) {
    throw new Error(
      `the datastore holds the CA of trust domain ${state.trustDomain}, not ${options.trustDomain}: start the server with --trust-domain ${state.trustDomain}, or use another data directory or datastore`,
    );
  }
  if (state.upstream && !options.upstream) {
    throw new Error(
      "the stored CA is signed by an upstream CA: start the server with --upstream-ca-cert and --upstream-ca-key",
    );
  }
  return CertificateAuthority.restore(state, {
    ...(options.upstream ? { upstream: options.upstream } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
}

async function latestState(store: Datastore): Promise<{ version: number; state: CaState } | undefined> {
  const keys: CaKey[] = (await store.listCaKeys({ kind: "x509" })).filter((k) =>
    k.id.startsWith(CA_STATE_PREFIX),
  );
  if (keys.length === 0) return undefined;
  keys.sort((a, b) => versionOf(b.id) - versionOf(a.id));
  const newest = keys[0] as CaKey;
  return { version: versionOf(newest.id), state: unarmor(newest.privateKeyPem, newest.id) };
}

async function putState(store: Datastore, ca: CertificateAuthority, version: number): Promise<void> {
  const active = ca.x509Authorities.active;
  await store.putCaKey({
    id: versionId(version),
    kind: "x509",
    state: "active",
    certificatePem: active.certificate.toString(),
    privateKeyPem: armor(ca.exportState()),
    notAfter: active.notAfter,
  });
}

/** Writes the CA's bundle content unless the stored record already has it (compare-and-set). */
async function publishBundle(
  store: Datastore,
  ca: CertificateAuthority,
  hint: number,
): Promise<BundleRecord> {
  const content = bundleContentOf(ca, hint);
  for (let attempt = 0; attempt < 100; attempt++) {
    const current = await store.getBundle(content.trustDomain);
    if (current && sameContent(current, content)) return current;
    try {
      return await store.putBundle(content, current?.sequence ?? 0n);
    } catch (e) {
      if (!isStoreError(e, "conflict") && !isStoreError(e, "already-exists")) throw e;
    }
  }
  throw new Error("could not publish the bundle: it keeps changing; try again");
}
