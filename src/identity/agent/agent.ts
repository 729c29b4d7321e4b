/**
 * The agent: the node's identity with the identity server and the workloads' source of SVIDs.
 *
 *   start():  load the agent SVID persisted in the data directory (a restart renews it, it never
 *             attests again: join tokens are single-use), or attest with the join token or by
 *             x509pop (proof of possession of the node certificate's key); then
 *             sync once and start the loops.
 *   renewal:  the agent SVID is renewed at half its lifetime (new key each time) and persisted
 *             (key 0600); when the server refuses (banned, deleted) the agent keeps what it has.
 *   sync:     every `syncIntervalMs`, the authorized entries and the bundle; the cache signs
 *             what is new or changed and evicts what is gone.
 *   rotation: a timer at the cache's next deadline rotates workload SVIDs at half-life and
 *             drops SVIDs that expire without a successor (workloads then lose them).
 *
 * The Agent is the IdentityProvider of the WorkloadApiServer (it delegates to its SvidCache).
 * stop() clears every timer and waits for the work in flight: nothing dangles.
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JwtBundle } from "../../spiffe/bundle/jwtbundle.js";
import { SpiffeBundle } from "../../spiffe/bundle/spiffebundle.js";
import { SpiffeId } from "../../spiffe/id.js";
import { parseCertificates, parsePrivateKey, X509Svid } from "../../spiffe/x509svid.js";
import type { AgentSvidResponse } from "../api.js";
import type { Selector } from "./attestor.js";
import { SvidCache } from "./cache.js";
import { newKeyAndCsr } from "./csr.js";
import type { IdentityProvider, IssuedJwtSvid, X509Identities } from "./identity-provider.js";
import { AgentApiError, type ServerClient } from "./server-client.js";

export interface AgentOptions {
  /** Holds the agent SVID (agent-svid.pem), its key (agent-svid.key, 0600) and the bundle (bundle.json). */
  dataDir: string;
  server: ServerClient;
  /** Used only when the data directory holds no usable agent SVID. Never logged. */
  joinToken?: string;
  /**
   * x509pop node attestation (instead of a join token): the node certificate chain (leaf
   * first) and its private key. Used when the data directory holds no usable agent SVID; unlike
   * a join token it can attest again whenever needed.
   */
  x509pop?: { certificates: readonly X509Certificate[]; privateKey: KeyObject };
  /** How often entries are synced (default 5000 ms). */
  syncIntervalMs?: number;
  /** Rotation jitter, as a fraction of the lifetime (default 0.1). */
  jitter?: number;
  /** Retry delay after a failed renewal or signing (default 1000 ms). */
  retryMs?: number;
  log?: (message: string) => void;
}

export const AGENT_FILES = {
  svid: "agent-svid.pem",
  key: "agent-svid.key",
  bundle: "bundle.json",
} as const;

/** An agent ID for logs: the join token in `.../join_token/<token>` is shortened. */
export function redactAgentId(id: string): string {
  return id.replace(/(\/join_token\/)([^/]{0,4})[^/]*$/, (_m, p: string, head: string) => `${p}${head}…`);
}

/** Why the agent cannot start; the message says what to do. */
export class AgentStartError extends Error {
  override readonly name = "AgentStartError";
}

async function writePrivate(path: string, data: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, data, { mode: 0o600, flag: "wx" });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

export class Agent implements IdentityProvider {
  readonly dataDir: string;
  readonly cache: SvidCache;
  private readonly server: ServerClient;
  private readonly joinToken: string | undefined;
  private readonly x509pop: AgentOptions["x509pop"];
  private readonly syncIntervalMs: number;
  private readonly retryMs: number;
  private readonly log: (message: string) => void;
  private svid: X509Svid | undefined;
  private bundle: SpiffeBundle | undefined;
  private renewAt = 0;
  private state: "new" | "running" | "stopped" = "new";
  private readonly timers = new Set<NodeJS.Timeout>();
  private syncTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private rotateTimer: NodeJS.Timeout | undefined;
  /** Serializes sync, rotation and renewal. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Counters, for status and tests. */
  readonly stats = { syncs: 0, syncFailures: 0, renewals: 0, renewalFailures: 0, attestations: 0 };
  /** The last error the server answered (e.g. banned), if any since the last success. */
  lastError: AgentApiError | undefined;

  constructor(options: AgentOptions) {
    this.dataDir = options.dataDir;
    this.server = options.server;
    this.joinToken = options.joinToken;
    this.x509pop = options.x509pop;
    if (this.x509pop !== undefined && this.joinToken !== undefined) {
      throw new TypeError("give the agent a join token or x509pop credentials, not both");
    }
    this.syncIntervalMs = options.syncIntervalMs ?? 5000;
    this.retryMs = options.retryMs ?? 1000;
    this.log = options.log ?? (() => undefined);
    this.cache = new SvidCache({
      sign: (req) => this.server.sign(req),
      mintJwt: (req) => this.server.jwt(req),
      jitter: options.jitter ?? 0.1,
      retryMs: this.retryMs,
      log: this.log,
    });
  }

  /** The agent's SPIFFE ID (after start). */
  get spiffeId(): SpiffeId | undefined {
    return this.svid?.id;
  }

  /** The agent's current X.509-SVID (after start). */
  get agentSvid(): X509Svid | undefined {
    return this.svid;
  }

  /**
   * Loads or obtains the agent SVID, syncs once (a failure there is logged, not fatal: the loop
   * retries) and starts the loops. Rejects with AgentStartError or AgentApiError when the agent
   * has no identity and cannot get one.
   */
  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("the agent was already started");
    this.state = "running";
    try {
      await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
      const loaded = await this.loadPersisted();
      if (!loaded) await this.attest();
      await this.serial(() => this.syncOnce());
      this.scheduleSync();
      this.scheduleRenewal();
      this.scheduleRotation();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops every loop and waits for the work in flight. Idempotent. */
  async stop(): Promise<void> {
    this.state = "stopped";
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.syncTimer = this.renewTimer = this.rotateTimer = undefined;
    await this.queue.catch(() => undefined);
  }

  /** Syncs now (tests, and the loop). */
  syncNow(): Promise<void> {
    return this.serial(() => this.syncOnce());
  }

  /** Renews the agent SVID now; rejects when the server refuses. */
  renewNow(): Promise<void> {
    return this.serial(() => this.renewOnce());
  }

  // ----- IdentityProvider (the Workload API server's view)

  identitiesFor(selectors: readonly Selector[]): X509Identities | undefined {
    return this.cache.identitiesFor(selectors);
  }

  jwtSvidFor(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
  ): Promise<IssuedJwtSvid[]> {
    return this.cache.jwtSvidFor(selectors, audience, spiffeId);
  }

  jwtBundles(): readonly JwtBundle[] {
    return this.cache.jwtBundles();
  }

  onChange(listener: () => void): () => void {
    return this.cache.onChange(listener);
  }

  // ----- identity

  private async loadPersisted(): Promise<boolean> {
    let certText: string;
    let keyText: string;
    let bundleText: string;
    try {
      [certText, keyText, bundleText] = await Promise.all([
        readFile(join(this.dataDir, AGENT_FILES.svid), "utf8"),
        readFile(join(this.dataDir, AGENT_FILES.key), "utf8"),
        readFile(join(this.dataDir, AGENT_FILES.bundle), "utf8"),
      ]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    let svid: X509Svid;
    let bundle: SpiffeBundle;
    try {
      svid = X509Svid.fromParts(parseCertificates(certText), parsePrivateKey(keyText));
      bundle = SpiffeBundle.parse(svid.id.trustDomain, bundleText);
    } catch (err) {
      throw new AgentStartError(
        `the agent identity in ${this.dataDir} is unreadable (${(err as Error).message}): remove ${AGENT_FILES.svid}, ${AGENT_FILES.key} and ${AGENT_FILES.bundle} there and start again with a new --join-token`,
      );
    }
    if (Date.parse(svid.leaf.validTo) <= Date.now()) {
      if (this.joinToken !== undefined || this.x509pop !== undefined) {
        this.log(
          `agent: the persisted agent SVID ${redactAgentId(svid.id.toString())} has expired; attesting again`,
        );
        return false;
      }
      throw new AgentStartError(
        `the agent SVID in ${this.dataDir} expired at ${new Date(svid.leaf.validTo).toISOString()}: the agent cannot renew it; start it with a new --join-token (create one on the server: tessera token generate)`,
      );
    }
    this.adopt(svid, bundle);
    this.log(`agent: resumed as ${redactAgentId(svid.id.toString())} from ${this.dataDir}`);
    return true;
  }

  private async attest(): Promise<void> {
    const pop = this.x509pop;
    if (pop === undefined && (this.joinToken === undefined || this.joinToken === "")) {
      throw new AgentStartError(
        `the agent has no identity in ${this.dataDir} yet: start it with --join-token TOKEN (create one on the identity server: tessera token generate) or --x509pop-cert FILE --x509pop-key FILE`,
      );
    }
    const { privateKey, csr } = await newKeyAndCsr();
    const res =
      pop !== undefined
        ? await this.server.attestX509Pop(pop.certificates, pop.privateKey, csr)
        : await this.server.attest(this.joinToken as string, csr);
    const { svid, bundle } = this.parseAgentSvid(res, privateKey);
    this.server.checkBootstrap(bundle.x509Bundle());
    await this.persist(svid, bundle);
    this.adopt(svid, bundle);
    this.stats.attestations++;
    this.log(`agent: attested as ${redactAgentId(svid.id.toString())}`);
  }

  private parseAgentSvid(
    res: AgentSvidResponse,
    privateKey: Parameters<typeof X509Svid.fromParts>[1],
  ): { svid: X509Svid; bundle: SpiffeBundle } {
    try {
      const certs = res.svid.map((b64) => new X509Certificate(Buffer.from(b64, "base64")));
      const svid = X509Svid.fromParts(certs, privateKey);
      if (svid.id.toString() !== SpiffeId.parse(res.spiffeId).toString()) {
        throw new Error(`the certificate names ${svid.id}, the answer ${res.spiffeId}`);
      }
      if (!svid.id.path.startsWith("/spire/agent/")) throw new Error(`${svid.id} is not an agent ID`);
      const bundle = SpiffeBundle.parse(svid.id.trustDomain, res.bundle);
      return { svid, bundle };
    } catch (err) {
      throw new AgentApiError(
        0,
        "bad-response",
        `the server's agent SVID is unusable: ${(err as Error).message}`,
      );
    }
  }

  private adopt(svid: X509Svid, bundle: SpiffeBundle): void {
    this.svid = svid;
    this.bundle = bundle;
    this.server.setIdentity(svid, bundle.x509Bundle());
    const from = Date.parse(svid.leaf.validFrom);
    const to = Date.parse(svid.leaf.validTo);
    const issued = Math.max(from, Math.min(Date.now(), to));
    this.renewAt = issued + (to - issued) / 2;
  }

  private async persist(svid: X509Svid, bundle: SpiffeBundle): Promise<void> {
    const pem = svid.marshal();
    await writePrivate(join(this.dataDir, AGENT_FILES.key), pem.privateKey);
    await writePrivate(join(this.dataDir, AGENT_FILES.svid), pem.certificates);
    await writePrivate(join(this.dataDir, AGENT_FILES.bundle), bundle.marshal());
  }

  private async renewOnce(): Promise<void> {
    const { privateKey, csr } = await newKeyAndCsr();
    try {
      const res = await this.server.renew(csr);
      const { svid, bundle } = this.parseAgentSvid(res, privateKey);
      if (this.svid !== undefined && !svid.id.equals(this.svid.id)) {
        throw new AgentApiError(0, "bad-response", `the renewed SVID names ${svid.id}, not ${this.svid.id}`);
      }
      await this.persist(svid, bundle);
      this.adopt(svid, bundle);
      this.stats.renewals++;
      this.lastError = undefined;
      this.log(`agent: renewed the agent SVID (valid until ${new Date(svid.leaf.validTo).toISOString()})`);
    } catch (err) {
      this.stats.renewalFailures++;
      if (err instanceof AgentApiError) this.lastError = err;
      throw err;
    }
  }

  private async syncOnce(): Promise<void> {
    if (this.state !== "running") return;
    try {
      const res = await this.server.sync();
      const td = this.svid?.id.trustDomain;
      if (td === undefined) return;
      let bundle: SpiffeBundle;
      try {
        bundle = SpiffeBundle.parse(td, res.bundle);
      } catch (err) {
        throw new AgentApiError(
          0,
          "bad-response",
          `the synced bundle is unusable: ${(err as Error).message}`,
        );
      }
      if (this.svid !== undefined && bundle.marshal() !== this.bundle?.marshal()) {
        this.bundle = bundle;
        this.server.setIdentity(this.svid, bundle.x509Bundle());
        await writePrivate(join(this.dataDir, AGENT_FILES.bundle), bundle.marshal());
      }
      await this.cache.update(Array.isArray(res.entries) ? res.entries : [], bundle);
      this.stats.syncs++;
      this.lastError = undefined;
    } catch (err) {
      this.stats.syncFailures++;
      if (err instanceof AgentApiError) this.lastError = err;
      this.log(`agent: sync failed: ${(err as Error).message}`);
      // What is cached keeps being served until it expires.
      await this.cache.rotate();
    } finally {
      this.scheduleRotation();
    }
  }

  // ----- loops

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private timer(delayMs: number, fn: () => void): NodeJS.Timeout | undefined {
    if (this.state !== "running") return undefined;
    // setTimeout's limit is 2^31-1 ms; a later deadline is re-armed when it fires.
    const t = setTimeout(
      () => {
        this.timers.delete(t);
        fn();
      },
      Math.min(Math.max(0, delayMs), 2 ** 31 - 1),
    );
    this.timers.add(t);
    return t;
  }

  private clear(t: NodeJS.Timeout | undefined): void {
    if (t === undefined) return;
    clearTimeout(t);
    this.timers.delete(t);
  }

  private scheduleSync(): void {
    this.clear(this.syncTimer);
    this.syncTimer = this.timer(this.syncIntervalMs, () => {
      void this.serial(() => this.syncOnce()).finally(() => this.scheduleSync());
    });
  }

  private scheduleRenewal(delayMs?: number): void {
    this.clear(this.renewTimer);
    const wait = delayMs ?? this.renewAt - Date.now();
    this.renewTimer = this.timer(wait, () => {
      if (Date.now() < this.renewAt && delayMs === undefined) {
        this.scheduleRenewal();
        return;
      }
      void this.serial(() => this.renewOnce()).then(
        () => this.scheduleRenewal(),
        (err: Error) => {
          this.log(`agent: cannot renew the agent SVID: ${err.message}`);
          const expires = this.svid ? Date.parse(this.svid.leaf.validTo) : Date.now();
          if (Date.now() >= expires) {
            this.log(
              "agent: the agent SVID has expired; workloads keep their SVIDs until each expires. Give the agent a new --join-token (after removing its data directory) to rejoin",
            );
          }
          // Retry: sooner when the refusal may be transient, at most every syncInterval otherwise.
          const retry = err instanceof AgentApiError && err.refused ? this.syncIntervalMs : this.retryMs;
          this.scheduleRenewal(retry);
        },
      );
    });
  }

  private scheduleRotation(): void {
    this.clear(this.rotateTimer);
    const next = this.cache.nextDeadline();
    if (next === undefined) return;
    this.rotateTimer = this.timer(next - Date.now(), () => {
      void this.serial(() => this.cache.rotate()).finally(() => this.scheduleRotation());
    });
  }
}
