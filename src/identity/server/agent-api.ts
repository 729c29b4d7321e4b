/**
 * The Agent API (api.ts AGENT_API): JSON over TLS. The listener asks for a client certificate
 * but accepts any handshake (requestCert, rejectUnauthorized false) so that `/attest` works
 * without one; every other call verifies the client chain itself, per request, with
 * `verifyPeer` against the trust domain's current bundle, and then checks the agent in the
 * datastore: known, not banned, presenting the agent SVID it was last issued (serial).
 *
 * The server never sees a workload private key: it signs CSRs, and only for SPIFFE IDs of
 * entries the calling agent is authorized for (`listEntriesForAgent`). Signing is rate-limited
 * per agent (token buckets). A refused request changes nothing: all CSRs of a sign request are
 * checked before any is signed, and a join token is spent only after the CSR parsed.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { AuthorizationError } from "../../spiffe/authorizer.js";
import { SpiffeError } from "../../spiffe/errors.js";
import type { SpiffeId, TrustDomain } from "../../spiffe/id.js";
import { peerChain, verifyPeer } from "../../spiffe/tls.js";
import {
  AGENT_API,
  type AgentSvidResponse,
  type JwtResponse,
  type SignResponse,
  type SyncResponse,
} from "../api.js";
import { type Datastore, isStoreError } from "../store/datastore.js";
import type { AttestedAgent, RegistrationEntry } from "../store/model.js";
import { parseCsr } from "./ca/csr.js";
import {
  ApiFailure,
  badRequest,
  base64Field,
  readJsonBody,
  sendFailure,
  sendJson,
  stringField,
  toWireEntry,
} from "./http.js";
import { type AttestedNode, attestJoinToken, secretTag, type X509PopAttestor } from "./node-attestation.js";
import type { TokenBuckets } from "./rate-limit.js";
import type { SharedCa } from "./shared-ca.js";

export const DEFAULT_AGENT_SVID_TTL_SECONDS = 3600;
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const MAX_SIGN_REQUESTS = 500;

export interface AgentApiOptions {
  readonly store: Datastore;
  readonly ca: SharedCa;
  readonly trustDomain: TrustDomain;
  readonly x509pop?: X509PopAttestor;
  readonly agentSvidTtlSeconds: number;
  readonly signLimiter: TokenBuckets;
  readonly clock: () => Date;
  readonly log: (line: string) => void;
}

interface Caller {
  readonly id: SpiffeId;
  readonly agent: AttestedAgent;
}

function normalSerial(s: string): string {
  return s.toUpperCase().replace(/^0+(?=.)/, "");
}

/** Agent IDs in logs: a join token agent's ID carries its (spent) token; log a tag of it instead. */
function shownAgent(id: string): string {
  const m = /^(.*\/spire\/agent\/join_token\/)(.+)$/.exec(id);
  return m ? `${m[1]}<${secretTag(m[2] as string)}>` : id;
}

export class AgentApi {
  constructor(private readonly o: AgentApiOptions) {}

  /** The request listener of the TLS server. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#route(req, res).catch((e) => {
      if (!(e instanceof ApiFailure) && !isStoreError(e) && !(e instanceof SpiffeError)) {
        this.o.log(`agent api: ${req.method} ${req.url}: ${e instanceof Error ? e.message : String(e)}`);
      }
      sendFailure(res, e);
    });
  };

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "").split("?")[0];
    const method = req.method ?? "GET";
    const expect = (m: string) => {
      if (method !== m) throw new ApiFailure(405, "method-not-allowed", `${path} takes ${m}`, { allow: m });
    };
    switch (path) {
      case AGENT_API.attest:
        expect("POST");
        return sendJson(res, 200, await this.#attest(await readJsonBody(req, MAX_BODY_BYTES)));
      case AGENT_API.renew: {
        expect("POST");
        const caller = await this.#authenticate(req);
        return sendJson(res, 200, await this.#renew(caller, await readJsonBody(req, MAX_BODY_BYTES)));
      }
      case AGENT_API.sync: {
        expect("GET");
        const caller = await this.#authenticate(req);
        return sendJson(res, 200, await this.#sync(caller));
      }
      case AGENT_API.sign: {
        expect("POST");
        const caller = await this.#authenticate(req);
        return sendJson(res, 200, await this.#sign(caller, await readJsonBody(req, MAX_BODY_BYTES)));
      }
      case AGENT_API.jwt: {
        expect("POST");
        const caller = await this.#authenticate(req);
        return sendJson(res, 200, await this.#jwt(caller, await readJsonBody(req, MAX_BODY_BYTES)));
      }
      default:
        throw new ApiFailure(
          404,
          "not-found",
          `no such Agent API path ${path}: see AGENT_API in src/identity/api.ts`,
        );
    }
  }

  /** Verifies the client's agent SVID against the current bundle and the agent's record. */
  async #authenticate(req: IncomingMessage): Promise<Caller> {
    const socket = req.socket as TLSSocket;
    const peer =
      typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate(true) : undefined;
    if (!peer?.raw) {
      throw new ApiFailure(
        401,
        "no-client-certificate",
        "this call needs the agent's X.509-SVID as the TLS client certificate: attest first (POST /agent/v1/attest)",
      );
    }
    const chain = peerChain(peer);
    let id: SpiffeId;
    try {
      id = verifyPeer(
        chain,
        this.o.ca.bundle(),
        (peerId) => {
          if (!peerId.memberOf(this.o.trustDomain) || !peerId.path.startsWith("/spire/agent/")) {
            throw new AuthorizationError(
              "agent-id",
              `${peerId} is not an agent of trust domain ${this.o.trustDomain.name}`,
            );
          }
        },
        this.o.clock(),
      );
    } catch (e) {
      throw new ApiFailure(
        401,
        "untrusted-client-certificate",
        `the client certificate is not a valid agent SVID of ${this.o.trustDomain.name}: ${(e as Error).message}; attest again if it expired`,
      );
    }
    let agent: AttestedAgent;
    try {
      agent = await this.o.store.getAgent(id.toString());
    } catch (e) {
      if (isStoreError(e, "not-found")) {
        throw new ApiFailure(
          403,
          "agent-unknown",
          "this agent is not registered (it was deleted): attest again to get a new agent SVID",
        );
      }
      throw e;
    }
    if (agent.banned) {
      throw new ApiFailure(
        403,
        "agent-banned",
        "this agent is banned: an administrator must delete it (tessera agent delete ID) before it can attest again",
      );
    }
    const presented = (chain[0] as NonNullable<(typeof chain)[0]>).serialNumber;
    if (normalSerial(presented) !== normalSerial(agent.serialNumber)) {
      throw new ApiFailure(
        403,
        "agent-svid-superseded",
        "this agent SVID is not the agent's newest one (it was renewed since): connect with the newest agent SVID",
      );
    }
    return { id, agent };
  }

  #checkCsr(value: unknown, what: string): Buffer {
    const der = base64Field(value, what);
    try {
      parseCsr(der);
    } catch (e) {
      throw new ApiFailure(
        400,
        (e as { code?: string }).code ?? "malformed-csr",
        `${what}: ${(e as Error).message}`,
      );
    }
    return der;
  }

  #agentSvid(spiffeId: string, csr: Buffer) {
    return this.o.ca.ca.signX509Svid({ csr, spiffeId, ttlSeconds: this.o.agentSvidTtlSeconds });
  }

  #svidResponse(spiffeId: string, certificates: readonly Buffer[]): AgentSvidResponse {
    return {
      spiffeId,
      svid: certificates.map((c) => c.toString("base64")),
      bundle: this.o.ca.bundle().marshal(),
    };
  }

  async #attest(body: Record<string, unknown>): Promise<AgentSvidResponse | { nonce: string }> {
    const method = body.method;
    let node: AttestedNode;
    let csr: Buffer;
    if (method === "join_token") {
      const token = stringField(body, "token", 256);
      csr = this.#checkCsr(body.csr, '"csr"');
      node = await attestJoinToken(this.o.store, this.o.trustDomain, token);
    } else if (method === "x509pop" || method === "x509pop_response") {
      const x = this.o.x509pop;
      if (!x) {
        throw new ApiFailure(
          400,
          "attestation-not-enabled",
          "x509pop attestation is not enabled on this server: start it with --x509pop-ca FILE, or attest with a join token",
        );
      }
      if (method === "x509pop") return x.challenge(body.certificates);
      csr = this.#checkCsr(body.csr, '"csr"');
      node = x.verify(body.certificates, body.nonce, body.signature);
    } else {
      return badRequest(
        '"method" must be "join_token", "x509pop" or "x509pop_response"',
        "unknown-attestation-method",
      );
    }
    const svid = this.#agentSvid(node.spiffeId, csr);
    const record = {
      serialNumber: svid.serialNumber,
      expiresAt: svid.notAfter,
      selectors: node.selectors,
    };
    try {
      await this.o.store.createAgent({
        spiffeId: node.spiffeId,
        attestationType: node.attestationType,
        ...record,
      });
    } catch (e) {
      if (!isStoreError(e, "already-exists")) throw e;
      // A node attesting again (x509pop after a restart): renew, unless it is banned.
      try {
        await this.o.store.updateAgentSerial(node.spiffeId, record);
      } catch (e2) {
        if (isStoreError(e2, "banned")) {
          throw new ApiFailure(
            403,
            "agent-banned",
            "this node's agent is banned: an administrator must delete it (tessera agent delete ID) before it can attest again",
          );
        }
        throw e2;
      }
    }
    this.o.log(`agent attested: ${shownAgent(node.spiffeId)} (${node.attestationType})`);
    return this.#svidResponse(node.spiffeId, svid.certificates);
  }

  async #renew(caller: Caller, body: Record<string, unknown>): Promise<AgentSvidResponse> {
    const csr = this.#checkCsr(body.csr, '"csr"');
    const id = caller.id.toString();
    const svid = this.#agentSvid(id, csr);
    try {
      await this.o.store.updateAgentSerial(id, {
        serialNumber: svid.serialNumber,
        expiresAt: svid.notAfter,
        expectedSerial: caller.agent.serialNumber,
      });
    } catch (e) {
      if (isStoreError(e, "banned"))
        throw new ApiFailure(403, "agent-banned", "this agent is banned: it cannot renew");
      if (isStoreError(e, "not-found"))
        throw new ApiFailure(403, "agent-unknown", "this agent was deleted: attest again");
      if (isStoreError(e, "conflict")) {
        throw new ApiFailure(
          409,
          "agent-svid-superseded",
          "the agent SVID was renewed concurrently: use the newest one",
        );
      }
      throw e;
    }
    return this.#svidResponse(id, svid.certificates);
  }

  async #entries(caller: Caller): Promise<Map<string, RegistrationEntry>> {
    const list = await this.o.store.listEntriesForAgent(caller.id.toString());
    return new Map(list.map((e) => [e.id, e]));
  }

  async #sync(caller: Caller): Promise<SyncResponse> {
    const entries = await this.#entries(caller);
    return { entries: [...entries.values()].map(toWireEntry), bundle: this.o.ca.bundle().marshal() };
  }

  #limit(caller: Caller, n: number): void {
    const wait = this.o.signLimiter.take(caller.id.toString(), n);
    if (wait > 0) {
      const limit = this.o.signLimiter.limit;
      throw new ApiFailure(
        429,
        "rate-limited",
        Number.isFinite(wait)
          ? `too many signing requests from this agent (limit ${limit.perSecond}/s, burst ${limit.burst}): retry in ${wait} s`
          : `one request may ask for at most ${limit.burst} signatures: split it`,
        Number.isFinite(wait) ? { "retry-after": String(wait) } : {},
      );
    }
  }

  async #sign(caller: Caller, body: Record<string, unknown>): Promise<SignResponse> {
    const requests = body.requests;
    if (!Array.isArray(requests) || requests.length === 0 || requests.length > MAX_SIGN_REQUESTS) {
      badRequest(`"requests" must be a list of 1 to ${MAX_SIGN_REQUESTS} {entryId, csr}`);
    }
    const entries = await this.#entries(caller);
    const checked = requests.map((r: unknown, i: number) => {
      if (typeof r !== "object" || r === null) badRequest(`requests[${i}] must be an object {entryId, csr}`);
      const { entryId, csr } = r as Record<string, unknown>;
      if (typeof entryId !== "string" || entryId === "")
        badRequest(`requests[${i}].entryId must be an entry ID`);
      const entry = entries.get(entryId);
      if (!entry) {
        throw new ApiFailure(
          403,
          "entry-not-authorized",
          `requests[${i}]: entry ${JSON.stringify(entryId.slice(0, 100))} is not one this agent is authorized for (unknown, expired, or parented to another agent): sync and use the entries it returns`,
        );
      }
      return { entry, csr: this.#checkCsr(csr, `requests[${i}].csr`) };
    });
    this.#limit(caller, checked.length);
    const ca = this.o.ca.ca;
    return {
      svids: checked.map(({ entry, csr }) => {
        const s = ca.signX509Svid({
          csr,
          spiffeId: entry.spiffeId,
          ttlSeconds: entry.x509SvidTtlSeconds,
          dnsNames: entry.dnsNames,
        });
        return {
          entryId: entry.id,
          spiffeId: s.spiffeId.toString(),
          certificates: s.certificates.map((c) => c.toString("base64")),
          expiresAt: s.notAfter.toISOString(),
        };
      }),
    };
  }

  async #jwt(caller: Caller, body: Record<string, unknown>): Promise<JwtResponse> {
    const entryId = stringField(body, "entryId", 200);
    const audience = body.audience;
    if (
      !Array.isArray(audience) ||
      audience.length === 0 ||
      audience.some((a) => typeof a !== "string" || a === "")
    ) {
      badRequest('"audience" must be a non-empty list of non-empty strings');
    }
    const entry = (await this.#entries(caller)).get(entryId);
    if (!entry) {
      throw new ApiFailure(
        403,
        "entry-not-authorized",
        "this agent is not authorized for that entry: sync and use the entries it returns",
      );
    }
    this.#limit(caller, 1);
    const jwt = await this.o.ca.ca.signJwtSvid({
      spiffeId: entry.spiffeId,
      audience: audience as string[],
      ttlSeconds: entry.jwtSvidTtlSeconds,
    });
    return { spiffeId: jwt.spiffeId.toString(), token: jwt.token, expiresAt: jwt.expiresAt.toISOString() };
  }
}
