/**
 * A minimal identity server for agent tests: the Agent API of src/identity/api.ts over node:https
 * with a TestCa, so that agent tests do not depend on the real server. Join tokens are single
 * use; agents can be banned (every mTLS call then answers 403 `agent-banned`); entries, TTLs and
 * the presented server ID are fields the test changes.
 */
import { generateKeyPairSync, type KeyObject, type X509Certificate } from "node:crypto";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import type {
  AgentSvidResponse,
  ApiError,
  JwtRequest,
  JwtResponse,
  SignRequest,
  SignResponse,
  SyncResponse,
  WireEntry,
} from "../../../src/identity/api.js";
import { AGENT_API } from "../../../src/identity/api.js";
import { parseCsr } from "../../../src/identity/server/ca/csr.js";
import { SpiffeBundle } from "../../../src/spiffe/bundle/spiffebundle.js";
import { SpiffeId, TrustDomain } from "../../../src/spiffe/id.js";
import { signJwtSvid } from "../../../src/spiffe/jwtsvid.js";
import { peerChain } from "../../../src/spiffe/tls.js";
import { type KeyPair, TestCa } from "../../spiffe/testca.js";

export const TD = "example.org";

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface FakeAgentApiOptions {
  /** The SPIFFE ID the server presents (default spiffe://example.org/spire/server). */
  serverId?: string;
}

export class FakeAgentApi {
  readonly tokens = new Set<string>();
  readonly agents = new Map<string, { banned: boolean }>();
  entries: WireEntry[] = [];
  agentTtlMs = 60 * 60_000;
  workloadTtlMs = 60 * 60_000;
  jwtTtlMs = 5 * 60_000;
  readonly calls = { attest: 0, renew: 0, sync: 0, sign: 0, signed: 0, jwt: 0 };
  private server!: https.Server;
  private readonly jwtKey: KeyObject;
  private readonly jwtPublic: KeyObject;
  private readonly dummy: KeyPair;

  private constructor(
    readonly ca: TestCa,
    private readonly serverTls: { key: string; cert: string },
  ) {
    const jwt = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.jwtKey = jwt.privateKey;
    this.jwtPublic = jwt.publicKey;
    const d = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.dummy = { type: "ec-p256", privateKey: d.privateKey, publicKey: d.publicKey };
  }

  static async start(options: FakeAgentApiOptions = {}): Promise<FakeAgentApi> {
    const ca = await TestCa.create(TD);
    const s = await ca.issueSvid(options.serverId ?? `spiffe://${TD}/spire/server`);
    const api = new FakeAgentApi(ca, { key: s.privateKeyPem, cert: s.certificatesPem });
    await api.listen();
    return api;
  }

  get address(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The CA's PEM: what `--trust-bundle` is given. */
  get caPem(): string {
    return this.ca.certificate.toString();
  }

  bundleText(): string {
    return SpiffeBundle.create(TrustDomain.parse(TD), {
      x509Authorities: this.ca.authorities,
      jwtAuthorities: [["jwt-1", this.jwtPublic]],
    }).marshal();
  }

  newToken(): string {
    const t = `tok-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
    this.tokens.add(t);
    return t;
  }

  ban(agentId: string): void {
    const a = this.agents.get(agentId);
    if (a) a.banned = true;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  addEntry(spiffeId: string, selectors: string[], extra: Partial<WireEntry> = {}): WireEntry {
    const e: WireEntry = {
      id: `e-${this.entries.length + 1}-${Math.random().toString(36).slice(2, 8)}`,
      spiffeId,
      parentId: `spiffe://${TD}/spire/agent`,
      selectors,
      x509SvidTtlSeconds: Math.round(this.workloadTtlMs / 1000),
      jwtSvidTtlSeconds: Math.round(this.jwtTtlMs / 1000),
      dnsNames: [],
      hint: "",
      admin: false,
      downstream: false,
      revision: 1,
      ...extra,
    };
    this.entries.push(e);
    return e;
  }

  removeEntry(id: string): void {
    this.entries = this.entries.filter((e) => e.id !== id);
  }

  // ----- serving

  private listen(): Promise<void> {
    this.server = https.createServer(
      {
        ...this.serverTls,
        ca: [this.ca.certificate.toString()],
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          this.handle(req.url ?? "", req.socket as TLSSocket, Buffer.concat(chunks).toString("utf8")).then(
            (body) => {
              res.writeHead(200, { "content-type": "application/json" });
              res.end(JSON.stringify(body));
            },
            (err: unknown) => {
              const e = err instanceof HttpError ? err : new HttpError(500, "internal", String(err));
              const body: ApiError = { code: e.code, message: e.message };
              res.writeHead(e.status, { "content-type": "application/json" });
              res.end(JSON.stringify(body));
            },
          );
        });
      },
    );
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => resolve()));
  }

  private agentOf(socket: TLSSocket): string {
    if (!socket.authorized) throw new HttpError(401, "unauthenticated", "an agent SVID is required");
    const leaf = peerChain(socket.getPeerCertificate(true))[0];
    const uri = /URI:([^,\s]+)/.exec(leaf?.subjectAltName ?? "")?.[1];
    const agent = uri ? this.agents.get(uri) : undefined;
    if (uri === undefined || agent === undefined) throw new HttpError(403, "unknown-agent", "unknown agent");
    if (agent.banned) {
      throw new HttpError(
        403,
        "agent-banned",
        `agent ${uri} is banned: it must attest again with a new join token`,
      );
    }
    return uri;
  }

  private async certify(id: string, csrB64: string, ttlMs: number): Promise<X509Certificate> {
    const csr = parseCsr(Buffer.from(csrB64, "base64"));
    const now = Date.now();
    const issued = await this.ca.issue({
      extKeyUsage: ["serverAuth", "clientAuth"],
      uriSans: [id],
      key: { ...this.dummy, publicKey: csr.publicKey },
      notBefore: new Date(now - 1000),
      notAfter: new Date(now + ttlMs),
    });
    return issued.certificate;
  }

  private async agentSvid(id: string, csr: string): Promise<AgentSvidResponse> {
    const cert = await this.certify(id, csr, this.agentTtlMs);
    return { spiffeId: id, svid: [cert.raw.toString("base64")], bundle: this.bundleText() };
  }

  private async handle(url: string, socket: TLSSocket, text: string): Promise<unknown> {
    const body = text === "" ? {} : JSON.parse(text);
    switch (url) {
      case AGENT_API.attest: {
        this.calls.attest++;
        if (body.method !== "join_token" || !this.tokens.has(body.token)) {
          throw new HttpError(401, "invalid-join-token", "the join token is unknown, used or expired");
        }
        this.tokens.delete(body.token);
        const id = `spiffe://${TD}/spire/agent/join_token/${body.token}`;
        this.agents.set(id, { banned: false });
        return this.agentSvid(id, body.csr);
      }
      case AGENT_API.renew: {
        this.calls.renew++;
        const id = this.agentOf(socket);
        return this.agentSvid(id, body.csr);
      }
      case AGENT_API.sync: {
        this.calls.sync++;
        this.agentOf(socket);
        const res: SyncResponse = { entries: this.entries, bundle: this.bundleText() };
        return res;
      }
      case AGENT_API.sign: {
        this.calls.sign++;
        this.agentOf(socket);
        const req = body as SignRequest;
        const svids: SignResponse["svids"][number][] = [];
        for (const r of req.requests) {
          const e = this.entries.find((x) => x.id === r.entryId);
          if (!e) continue;
          const cert = await this.certify(e.spiffeId, r.csr, this.workloadTtlMs);
          this.calls.signed++;
          svids.push({
            entryId: e.id,
            spiffeId: e.spiffeId,
            certificates: [cert.raw.toString("base64")],
            expiresAt: new Date(cert.validTo).toISOString(),
          });
        }
        const res: SignResponse = { svids };
        return res;
      }
      case AGENT_API.jwt: {
        this.calls.jwt++;
        this.agentOf(socket);
        const req = body as JwtRequest;
        const e = this.entries.find((x) => x.id === req.entryId);
        if (!e) throw new HttpError(404, "unknown-entry", "no such entry");
        const expiresAt = new Date(Date.now() + this.jwtTtlMs);
        const token = await signJwtSvid({
          id: SpiffeId.parse(e.spiffeId),
          audience: req.audience,
          expiresAt,
          key: this.jwtKey,
          kid: "jwt-1",
        });
        const res: JwtResponse = { spiffeId: e.spiffeId, token, expiresAt: expiresAt.toISOString() };
        return res;
      }
      default:
        throw new HttpError(404, "not-found", `no route ${url}`);
    }
  }
}
