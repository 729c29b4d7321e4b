/**
 * The agent's client of the identity server's Agent API (src/identity/api.ts): JSON over TLS.
 *
 * Trust in the server, in three stages:
 *
 *  1. Bootstrap with `trustBundle` (the server CA's certificates, `--trust-bundle FILE`): the
 *     server's chain must verify against them, and its SPIFFE ID must be
 *     `spiffe://<td>/spire/server` (td from `trustDomain` when given).
 *  2. Bootstrap with `insecureBootstrap` (`--insecure-bootstrap`): the first connection accepts
 *     the chain the server presents WITHOUT verifying it against any authority; only its shape is
 *     checked (a well-formed X.509-SVID whose ID is `spiffe://<td>/spire/server`) before the join
 *     token is sent. RISK: anyone who can intercept that first connection (DNS, ARP, a rogue
 *     host on the path) can impersonate the server, take the join token and hand the agent a
 *     bundle of its own choosing, i.e. issue every workload on this host identities the attacker
 *     controls. Use it only on a network you trust for the first start, or prefer
 *     --trust-bundle. After attestation the presented chain must verify against the bundle
 *     the server returned (this catches misconfiguration, not an attacker).
 *  3. After attestation (`setIdentity`): mutual TLS with the agent's X.509-SVID; the server's
 *     SVID must verify against the trust domain's current bundle (updated on every sync) and
 *     be `spiffe://<td>/spire/server`.
 *
 * Every request uses a fresh connection carrying the SVID current at that moment, so rotation of
 * either side needs no reconnection logic. Errors are AgentApiError with the server's stable
 * `code` (or `unreachable`/`bad-response`) and a message that says what to do next.
 */
import { type KeyObject, sign as signData, type X509Certificate } from "node:crypto";
import * as http from "node:http";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { AuthorizationError, type Authorizer } from "../../spiffe/authorizer.js";
import { X509Bundle, type X509BundleSource } from "../../spiffe/bundle/x509bundle.js";
import { type SpiffeId, TrustDomain } from "../../spiffe/id.js";
import { peerChain, verifyPeer } from "../../spiffe/tls.js";
import { validateX509SvidChain, type X509Svid } from "../../spiffe/x509svid.js";
import {
  AGENT_API,
  type AgentSvidResponse,
  type ApiError,
  type JwtRequest,
  type JwtResponse,
  type SignRequest,
  type SignResponse,
  type SyncResponse,
  type X509PopChallenge,
} from "../api.js";

/** A failed Agent API call: HTTP status (0 when no answer came) and the server's stable code. */
export class AgentApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AgentApiError";
  }

  /** The server refused this agent for good (banned, deleted, unknown): retrying will not help. */
  get refused(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

export interface ServerClientOptions {
  /** `HOST:PORT` (IPv6 as `[::1]:8081`). */
  address: string;
  /** The server CA's certificates (bootstrap stage 1). */
  trustBundle?: readonly X509Certificate[];
  /** Accept the server's first presented chain unverified (bootstrap stage 2; see the risk above). */
  insecureBootstrap?: boolean;
  /** The expected trust domain, when known before attestation. */
  trustDomain?: TrustDomain;
  /** Per request (connect + answer), default 10 s. */
  timeoutMs?: number;
}

/** Largest response body accepted (a sync of many entries). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export function parseServerAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(
      `server address ${JSON.stringify(address)} is not HOST:PORT (e.g. 127.0.0.1:8081 or [::1]:8081)`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/** The server's ID must be `spiffe://<td>/spire/server` (`td` fixed when known). */
function serverAuthorizer(td: () => TrustDomain | undefined): Authorizer {
  return (peer) => {
    const want = td();
    if (peer.path !== "/spire/server" || (want !== undefined && !peer.trustDomain.equals(want))) {
      const expected = want ? `spiffe://${want.name}/spire/server` : "spiffe://<trust domain>/spire/server";
      throw new AuthorizationError(
        "identity-server-id",
        `the server presented ${peer.toString()}, not the identity server's ID ${expected}: check --server, or that it is a Tessera identity server`,
      );
    }
  };
}

export class ServerClient {
  readonly host: string;
  readonly port: number;
  private readonly timeoutMs: number;
  private readonly insecure: boolean;
  private trustDomain: TrustDomain | undefined;
  /** What verifies the server: the bootstrap CA (any td) or the trust domain's bundle. */
  private bundleSource: X509BundleSource | undefined;
  private authorities: readonly X509Certificate[] = [];
  private svid: X509Svid | undefined;
  /** The chain the server presented during an insecure bootstrap, checked once the bundle is known. */
  private bootstrapChain: X509Certificate[] | undefined;

  constructor(options: ServerClientOptions) {
    const { host, port } = parseServerAddress(options.address);
    this.host = host;
    this.port = port;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.insecure = options.insecureBootstrap === true;
    this.trustDomain = options.trustDomain;
    if (options.trustBundle !== undefined && options.trustBundle.length > 0) {
      const certs = [...options.trustBundle];
      this.authorities = certs;
      // The CA file names no trust domain: its certificates anchor whichever the server claims
      // (the authorizer pins the domain once it is known).
      this.bundleSource = { getX509BundleForTrustDomain: (td) => X509Bundle.fromCertificates(td, certs) };
    }
  }

  /** Whether the server can be verified (a bootstrap bundle, or an identity with its bundle). */
  get canVerifyServer(): boolean {
    return this.bundleSource !== undefined;
  }

  /**
   * From now on: mutual TLS with `svid`, the server verified against `bundle` (its trust
   * domain's X.509 authorities). Called after attestation, renewal and every bundle change.
   */
  setIdentity(svid: X509Svid, bundle: X509Bundle): void {
    if (!svid.id.trustDomain.equals(bundle.trustDomain)) {
      throw new Error(
        `the agent SVID ${svid.id} and the bundle of ${bundle.trustDomain.name} differ in trust domain`,
      );
    }
    this.svid = svid;
    this.trustDomain = svid.id.trustDomain;
    this.authorities = bundle.authorities;
    this.bundleSource = bundle;
  }

  /**
   * After an insecure bootstrap: the chain the server presented then must verify against the
   * bundle it returned. Throws otherwise (the agent must not trust that bundle).
   */
  checkBootstrap(bundle: X509Bundle): void {
    const chain = this.bootstrapChain;
    this.bootstrapChain = undefined;
    if (chain === undefined) return;
    try {
      verifyPeer(
        chain,
        bundle,
        serverAuthorizer(() => bundle.trustDomain),
      );
    } catch (err) {
      throw new AgentApiError(
        0,
        "bootstrap-mismatch",
        `the server's certificate does not verify against the trust bundle it sent (${(err as Error).message}); refusing it. Start the agent with --trust-bundle (the server CA's PEM) instead of --insecure-bootstrap`,
      );
    }
  }

  // ----- the Agent API

  /** Node attestation with a join token; `csr` is the agent key's CSR (base64 DER). */
  attest(token: string, csr: string): Promise<AgentSvidResponse> {
    return this.call<AgentSvidResponse>(
      "POST",
      AGENT_API.attest,
      { method: "join_token", token, csr },
      false,
    );
  }

  /**
   * Node attestation by x509pop: sends the node certificate chain (leaf first), signs the
   * server's nonce (its base64-decoded bytes) with the node key (ECDSA or RSA with SHA-256,
   * Ed25519/Ed448 pure) and sends the signature with `csr` (the agent key's CSR, base64 DER).
   */
  async attestX509Pop(
    certificates: readonly X509Certificate[],
    nodeKey: KeyObject,
    csr: string,
  ): Promise<AgentSvidResponse> {
    const chain = certificates.map((c) => c.raw.toString("base64"));
    const challenge = await this.call<X509PopChallenge>(
      "POST",
      AGENT_API.attest,
      { method: "x509pop", certificates: chain },
      false,
    );
    if (typeof challenge.nonce !== "string" || challenge.nonce === "") {
      throw new AgentApiError(0, "bad-response", `${AGENT_API.attest}: the server sent no x509pop nonce`);
    }
    const signature = signX509PopNonce(challenge.nonce, nodeKey);
    return this.call<AgentSvidResponse>(
      "POST",
      AGENT_API.attest,
      { method: "x509pop_response", certificates: chain, nonce: challenge.nonce, signature, csr },
      false,
    );
  }

  renew(csr: string): Promise<AgentSvidResponse> {
    return this.call<AgentSvidResponse>("POST", AGENT_API.renew, { csr }, true);
  }

  sync(): Promise<SyncResponse> {
    return this.call<SyncResponse>("GET", AGENT_API.sync, undefined, true);
  }

  sign(request: SignRequest): Promise<SignResponse> {
    return this.call<SignResponse>("POST", AGENT_API.sign, request, true);
  }

  jwt(request: JwtRequest): Promise<JwtResponse> {
    return this.call<JwtResponse>("POST", AGENT_API.jwt, request, true);
  }

  // ----- transport

  private describe(): string {
    return `${isIP(this.host) === 6 ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** A TLS connection whose server identity is verified (or, in insecure bootstrap, shaped right). */
  private connect(mtls: boolean): Promise<tls.TLSSocket> {
    const svid = this.svid;
    if (mtls && svid === undefined) {
      return Promise.reject(new AgentApiError(0, "no-identity", "the agent has no SVID yet: attest first"));
    }
    const source = this.bundleSource;
    if (source === undefined && !this.insecure) {
      return Promise.reject(
        new AgentApiError(
          0,
          "no-trust",
          "the agent cannot verify the server: pass --trust-bundle FILE (the server CA's PEM, `tessera bundle show` on the server prints it) or --insecure-bootstrap",
        ),
      );
    }
    const authorize = serverAuthorizer(() => this.trustDomain);
    const identity = mtls && svid !== undefined ? svid.marshal() : undefined;
    return new Promise((resolve, reject) => {
      let verified = false;
      let failure: Error | undefined;
      const socket = tls.connect({
        host: this.host,
        port: this.port,
        ...(isIP(this.host) === 0 ? { servername: this.host } : {}),
        minVersion: "TLSv1.2",
        ...(identity ? { key: identity.privateKey, cert: identity.certificates } : {}),
        ...(source
          ? { ca: this.authorities.map((c) => c.toString()), rejectUnauthorized: true }
          : { rejectUnauthorized: false }),
        // Runs during the handshake, before any request byte is written.
        checkServerIdentity: (_host, cert) => {
          if (source === undefined) return undefined;
          try {
            verifyPeer(peerChain(cert), source, authorize);
            verified = true;
            return undefined;
          } catch (e) {
            failure = e instanceof Error ? e : new Error(String(e));
            return failure;
          }
        },
      });
      const timer = setTimeout(() => {
        socket.destroy(new Error(`no TLS handshake within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        // OpenSSL's own chain check fails before checkServerIdentity runs: its codes name it.
        const certProblem = /CERT|VERIFY|SIGNATURE|ISSUER/.test(
          String((err as NodeJS.ErrnoException).code ?? ""),
        );
        const why = failure ?? err;
        const code = failure || certProblem ? "server-not-trusted" : "unreachable";
        const next =
          failure || certProblem
            ? "check --server and --trust-bundle (the server CA's PEM)"
            : "check that the identity server runs and that --server HOST:PORT is right";
        reject(
          new AgentApiError(
            0,
            code,
            `cannot connect to the identity server at ${this.describe()}: ${why.message}; ${next}`,
            { cause: why },
          ),
        );
      };
      socket.once("error", fail);
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        socket.off("error", fail);
        if (source === undefined) {
          // Insecure bootstrap: only the shape of the chain and the ID can be checked now.
          try {
            const chain = peerChain(socket.getPeerCertificate(true));
            const id: SpiffeId = validateX509SvidChain(chain);
            authorize(id, chain);
            this.bootstrapChain = chain;
          } catch (e) {
            failure = e instanceof Error ? e : new Error(String(e));
            fail(failure);
            return;
          }
        } else if (!verified) {
          fail(new Error("the server identity was not verified"));
          return;
        }
        resolve(socket);
      });
    });
  }

  private async call<T>(method: "GET" | "POST", path: string, body: unknown, mtls: boolean): Promise<T> {
    const socket = await this.connect(mtls);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8");
    return new Promise<T>((resolve, reject) => {
      const req = http.request({
        method,
        path,
        host: this.host,
        port: this.port,
        createConnection: () => socket,
        headers: {
          host: this.describe(),
          accept: "application/json",
          ...(payload
            ? { "content-type": "application/json", "content-length": String(payload.length) }
            : {}),
        },
      });
      const timer = setTimeout(
        () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      const done = (err: Error | undefined, value?: T) => {
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err);
        else resolve(value as T);
      };
      req.once("error", (err) =>
        done(
          err instanceof AgentApiError
            ? err
            : new AgentApiError(
                0,
                "unreachable",
                `${method} ${path} at ${this.describe()} failed: ${err.message}`,
                { cause: err },
              ),
        ),
      );
      req.once("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(
              new AgentApiError(
                0,
                "bad-response",
                `${path}: the answer is larger than ${MAX_RESPONSE_BYTES} bytes`,
              ),
            );
            return;
          }
          chunks.push(c);
        });
        res.once("error", (err) => done(err));
        res.once("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          let json: unknown;
          try {
            json = text === "" ? undefined : JSON.parse(text);
          } catch {
            json = undefined;
          }
          if (status >= 200 && status < 300) {
            if (json === undefined || json === null || typeof json !== "object") {
              done(
                new AgentApiError(
                  status,
                  "bad-response",
                  `${path}: the server's answer is not a JSON object`,
                ),
              );
              return;
            }
            done(undefined, json as T);
            return;
          }
          const e = (json ?? {}) as Partial<ApiError>;
          const code = typeof e.code === "string" ? e.code : `http-${status}`;
          const message = typeof e.message === "string" ? e.message : `HTTP ${status}`;
          done(new AgentApiError(status, code, `the identity server refused ${path}: ${message}`));
        });
      });
      req.end(payload);
    });
  }
}

/** Reads a trust domain name, for options. */
export function trustDomainOf(name: string | undefined): TrustDomain | undefined {
  return name === undefined || name === "" ? undefined : TrustDomain.parse(name);
}

/** The x509pop proof: the nonce's bytes signed with the node key (base64). */
export function signX509PopNonce(nonce: string, nodeKey: KeyObject): string {
  const type = nodeKey.asymmetricKeyType;
  const alg = type === "ed25519" || type === "ed448" ? null : "sha256";
  return signData(alg, Buffer.from(nonce, "base64"), nodeKey).toString("base64");
}
