/**
 * The identity server: datastore, CA, Agent API (TLS on `bind`) and Admin API (Unix socket).
 *
 * Data directory (0700, created if absent): `datastore.db` (SQLite, unless `datastoreUrl` names
 * another database) and `admin.sock`. The CA lives in the datastore (see shared-ca.ts), so a
 * restart keeps it, and replicas on one PostgreSQL database share it; each replica runs the
 * rotation timer, and the database decides which replica's change wins.
 *
 * The server's own TLS certificate is an X.509-SVID `spiffe://<td>/spire/server` with a key
 * generated in memory at start and renewed at half its life (not at a CA change: see #renewServerSvid).
 */
import { createPublicKey, generateKeyPair, type KeyObject, X509Certificate } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { SpiffeBundle } from "../../spiffe/bundle/spiffebundle.js";
import { TrustDomain } from "../../spiffe/id.js";
import { parseCertificates } from "../../spiffe/x509svid.js";
import type { Datastore } from "../store/datastore.js";
import { openStore } from "../store/open.js";
import { AdminApi, listenAdminSocket } from "./admin-api.js";
import { AgentApi, DEFAULT_AGENT_SVID_TTL_SECONDS } from "./agent-api.js";
import type { CaKeyType, UpstreamCaOptions } from "./ca/ca.js";
import { X509PopAttestor } from "./node-attestation.js";
import { DEFAULT_SIGN_RATE_LIMIT, type RateLimit, TokenBuckets } from "./rate-limit.js";
import { SharedCa } from "./shared-ca.js";

const generateKeyPairAsync = promisify(generateKeyPair);

export const DEFAULT_BIND = "127.0.0.1:8081";
export const DEFAULT_TRUST_DOMAIN = "cluster.local";
export const DEFAULT_ROTATION_INTERVAL_SECONDS = 10;
export const SERVER_SVID_TTL_SECONDS = 3600;

export interface IdentityServerOptions {
  /** Holds datastore.db (SQLite default) and admin.sock. Created 0700 if absent. */
  readonly dataDir: string;
  readonly trustDomain?: string;
  /** host:port of the Agent API; port 0 picks one (see `agentAddress`). */
  readonly bind?: string;
  /** Default sqlite://<dataDir>/datastore.db; postgres://... for replicas sharing one database. */
  readonly datastoreUrl?: string;
  /** 32 bytes sealing CA keys in the datastore (AES-256-GCM). */
  readonly keyEncryptionKey?: Uint8Array;
  /** Default <dataDir>/admin.sock. */
  readonly adminSocketPath?: string;
  readonly upstream?: UpstreamCaOptions;
  /** PEM roots of node certificates for x509pop attestation; absent: x509pop disabled. */
  readonly x509popCaPem?: string;
  readonly caTtlSeconds?: number;
  readonly caKeyType?: CaKeyType;
  readonly agentSvidTtlSeconds?: number;
  readonly rotationIntervalSeconds?: number;
  readonly signRateLimit?: RateLimit;
  readonly log?: (line: string) => void;
  readonly clock?: () => Date;
}

function parseBind(bind: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(bind);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new Error(
      `--bind ${JSON.stringify(bind)} is not host:port (e.g. 127.0.0.1:8081, [::1]:8081, 0.0.0.0:8081)`,
    );
  }
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Creates the data directory 0700; refuses one that others can enter or read. */
function prepareDataDir(dir: string, log: (l: string) => void): void {
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    return;
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`--data-dir ${dir} is not a directory`);
  if ((st.mode & 0o077) !== 0) {
    if (typeof process.getuid === "function" && st.uid === process.getuid()) {
      chmodSync(dir, 0o700);
      log(`data directory ${dir} was accessible to other users: its mode is now 0700`);
    } else {
      throw new Error(
        `--data-dir ${dir} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}): use a directory only the server's user can enter (chmod 700)`,
      );
    }
  }
}

export class IdentityServer {
  #store: Datastore;
  #ca: SharedCa;
  #agentServer: https.Server;
  #adminServer: http.Server;
  #timer: NodeJS.Timeout | undefined;
  #serverKey: KeyObject | undefined;
  #serverSvidRenewAt = 0;
  /** PEM chain of the server's current SVID. */
  #serverSvid: string | undefined;
  #tlsContextKey = "";
  #stopped = false;
  #ticking: Promise<void> | undefined;

  private constructor(
    readonly trustDomain: TrustDomain,
    readonly dataDir: string,
    readonly adminSocketPath: string,
    store: Datastore,
    ca: SharedCa,
    private readonly log: (line: string) => void,
    private readonly clock: () => Date,
  ) {
    this.#store = store;
    this.#ca = ca;
    // requestCert without rejectUnauthorized: /attest needs no client certificate; the other
    // calls verify it per request (agent-api.ts).
    this.#agentServer = https.createServer({
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
    });
    this.#adminServer = http.createServer();
  }

  static async start(options: IdentityServerOptions): Promise<IdentityServer> {
    const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
    const clock = options.clock ?? (() => new Date());
    const trustDomain = TrustDomain.parse(options.trustDomain ?? DEFAULT_TRUST_DOMAIN);
    const dataDir = resolve(options.dataDir);
    prepareDataDir(dataDir, log);
    const { host, port } = parseBind(options.bind ?? DEFAULT_BIND);
    const x509pop =
      options.x509popCaPem === undefined
        ? undefined
        : new X509PopAttestor(trustDomain, parseCertificates(options.x509popCaPem), clock);
    const store = await openStore(options.datastoreUrl ?? `sqlite://${join(dataDir, "datastore.db")}`, {
      ...(options.keyEncryptionKey ? { keyEncryptionKey: options.keyEncryptionKey } : {}),
    });
    let server: IdentityServer | undefined;
    try {
      const ca = await SharedCa.open(store, {
        trustDomain: trustDomain.name,
        ...(options.caTtlSeconds === undefined ? {} : { caTtlSeconds: options.caTtlSeconds }),
        ...(options.caKeyType === undefined ? {} : { keyType: options.caKeyType }),
        ...(options.upstream ? { upstream: options.upstream } : {}),
        clock,
      });
      await ca.rotateIfDue();
      server = new IdentityServer(
        trustDomain,
        dataDir,
        options.adminSocketPath ?? join(dataDir, "admin.sock"),
        store,
        ca,
        log,
        clock,
      );
      const agentApi = new AgentApi({
        store,
        ca,
        trustDomain,
        ...(x509pop ? { x509pop } : {}),
        agentSvidTtlSeconds: options.agentSvidTtlSeconds ?? DEFAULT_AGENT_SVID_TTL_SECONDS,
        signLimiter: new TokenBuckets(options.signRateLimit ?? DEFAULT_SIGN_RATE_LIMIT, () =>
          clock().getTime(),
        ),
        clock,
        log,
      });
      const self = server;
      const adminApi = new AdminApi({
        store,
        ca,
        trustDomain,
        log,
        onCaChange: () => self.#renewServerSvid(),
      });
      await server.#listen(agentApi, adminApi, host, port);
      const interval = (options.rotationIntervalSeconds ?? DEFAULT_ROTATION_INTERVAL_SECONDS) * 1000;
      server.#timer = setInterval(() => void server?.tick(), interval);
      server.#timer.unref();
      const a = server.agentAddress;
      log(
        `tessera server: trust domain ${trustDomain.name}, agent API https://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}, admin socket ${server.adminSocketPath}, datastore ${store.kind}, bundle sequence ${ca.bundle().sequence}`,
      );
      return server;
    } catch (e) {
      if (server) await server.stop().catch(() => undefined);
      else await store.close().catch(() => undefined);
      throw e;
    }
  }

  async #listen(agentApi: AgentApi, adminApi: AdminApi, host: string, port: number): Promise<void> {
    await this.#renewServerSvid(true);
    this.#agentServer.on("request", agentApi.handle);
    this.#agentServer.on("tlsClientError", () => undefined);
    this.#agentServer.keepAliveTimeout = 30_000;
    await new Promise<void>((res, rej) => {
      this.#agentServer.once("error", rej);
      this.#agentServer.listen(port, host, () => {
        this.#agentServer.off("error", rej);
        res();
      });
    });
    this.#adminServer.on("request", adminApi.handle);
    await listenAdminSocket(this.#adminServer, this.adminSocketPath);
  }

  /**
   * Issues the server's own SVID at half its life. A CA change does not re-issue it: agents
   * that have not yet synced the new root still verify the server with the SVID of the old CA
   * (still valid and still in the bundle), sync, and so learn the new root; re-issuing at once
   * would cut them off. A CA change only refreshes the trust store of the TLS context.
   */
  async #renewServerSvid(force = false): Promise<void> {
    const ca = this.#ca.ca;
    const now = this.clock().getTime();
    if (force || !this.#serverSvid || now >= this.#serverSvidRenewAt) {
      if (!this.#serverKey) {
        this.#serverKey = (await generateKeyPairAsync("ec", { namedCurve: "P-256" })).privateKey;
      }
      const svid = ca.signX509SvidFromKey(createPublicKey(this.#serverKey), {
        spiffeId: `${this.trustDomain.idString()}/spire/server`,
        ttlSeconds: SERVER_SVID_TTL_SECONDS,
      });
      this.#serverSvidRenewAt =
        svid.notBefore.getTime() + (svid.notAfter.getTime() - svid.notBefore.getTime()) / 2;
      this.#serverSvid = svid.certificates.map((c) => new X509Certificate(c).toString()).join("");
    }
    this.#applyTlsContext();
  }

  /** The TLS context: the current server SVID, and the current bundle as trust store. */
  #applyTlsContext(): void {
    const authorities = this.#ca.bundle().x509Authorities.map((c) => c.toString());
    const key = authorities.join("") + (this.#serverSvid ?? "");
    if (key === this.#tlsContextKey || !this.#serverKey || !this.#serverSvid) return;
    this.#tlsContextKey = key;
    this.#agentServer.setSecureContext({
      key: this.#serverKey.export({ type: "pkcs8", format: "pem" }) as string,
      cert: this.#serverSvid,
      ca: authorities,
      minVersion: "TLSv1.2" as const,
    });
  }

  /** One rotation step: picks up other replicas' changes, rotates the CA if due, renews the server SVID. */
  tick(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (!this.#ticking) {
      this.#ticking = (async () => {
        try {
          await this.#ca.refresh();
          const r = await this.#ca.rotateIfDue();
          if (r.prepared || r.activated) {
            this.log(
              `CA rotation: ${r.prepared ? "prepared the next authority" : ""}${r.prepared && r.activated ? ", " : ""}${r.activated ? "activated the next authority" : ""}; bundle sequence ${this.#ca.bundle().sequence}`,
            );
          }
          await this.#renewServerSvid();
          await this.#store.pruneJoinTokens(new Date(this.clock().getTime() - 24 * 3600_000));
        } catch (e) {
          this.log(`rotation: ${e instanceof Error ? e.message : String(e)} (retrying at the next tick)`);
        } finally {
          this.#ticking = undefined;
        }
      })();
    }
    return this.#ticking;
  }

  get agentAddress(): { host: string; port: number } {
    const a = this.#agentServer.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  get store(): Datastore {
    return this.#store;
  }

  get sharedCa(): SharedCa {
    return this.#ca;
  }

  bundle(): SpiffeBundle {
    return this.#ca.bundle();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#ticking?.catch(() => undefined);
    const close = (s: http.Server) =>
      new Promise<void>((res) => {
        if (!s.listening) return res();
        s.close(() => res());
        s.closeAllConnections();
      });
    await Promise.all([close(this.#agentServer), close(this.#adminServer)]);
    await this.#store.close();
  }
}
