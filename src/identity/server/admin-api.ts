/**
 * The Admin API (api.ts ADMIN_API): JSON over HTTP on a Unix socket. Who may call it is decided
 * by file permissions: the socket is 0600 in a 0700 directory (the data directory), so only
 * the server's user (and root) can connect. Nothing else authenticates callers.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import type http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createConnection } from "node:net";
import type { TrustDomain } from "../../spiffe/id.js";
import { SpiffeId } from "../../spiffe/id.js";
import { ADMIN_API } from "../api.js";
import type { Datastore } from "../store/datastore.js";
import type { AttestedAgent, EntryChanges, NewEntry } from "../store/model.js";
import { formatSelector } from "../store/validate.js";
import {
  ApiFailure,
  badRequest,
  readJsonBody,
  sendFailure,
  sendJson,
  sendText,
  toWireEntry as toWire,
} from "./http.js";
import { joinTokenAgentId, secretTag } from "./node-attestation.js";
import type { SharedCa } from "./shared-ca.js";

const MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_JOIN_TOKEN_TTL_SECONDS = 600;

export interface AdminApiOptions {
  readonly store: Datastore;
  readonly ca: SharedCa;
  readonly trustDomain: TrustDomain;
  readonly log: (line: string) => void;
  /** Called after the CA changed (prepare/activate): the server renews its own SVID. */
  readonly onCaChange: () => Promise<void>;
}

export function wireAgent(a: AttestedAgent) {
  return {
    spiffeId: a.spiffeId,
    attestationType: a.attestationType,
    serialNumber: a.serialNumber,
    expiresAt: a.expiresAt.toISOString(),
    banned: a.banned,
    selectors: a.selectors.map(formatSelector),
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
  };
}

function dateField(v: unknown, name: string): Date {
  if (typeof v !== "string" || Number.isNaN(Date.parse(v)))
    badRequest(`"${name}" must be an ISO 8601 time, e.g. 2030-01-01T00:00:00Z`);
  return new Date(v);
}

const ENTRY_FIELDS = [
  "spiffeId",
  "parentId",
  "selectors",
  "x509SvidTtlSeconds",
  "jwtSvidTtlSeconds",
  "dnsNames",
  "hint",
  "admin",
  "downstream",
  "expiresAt",
] as const;

export class AdminApi {
  constructor(private readonly o: AdminApiOptions) {}

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#route(req, res).catch((e) => {
      if (
        !(e instanceof ApiFailure) &&
        !(e instanceof Error && e.name === "StoreError") &&
        !(e instanceof Error && e.name === "CaError")
      ) {
        this.o.log(`admin api: ${req.method} ${req.url}: ${e instanceof Error ? e.message : String(e)}`);
      }
      sendFailure(res, e);
    });
  };

  #entryInput(body: Record<string, unknown>, partial: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(body)) {
      if (k === "revision" && partial) continue;
      if (!(ENTRY_FIELDS as readonly string[]).includes(k))
        badRequest(`unknown entry field "${k}": fields are ${ENTRY_FIELDS.join(", ")}`);
    }
    for (const k of ENTRY_FIELDS) {
      if (!(k in body)) continue;
      const v = body[k];
      if (k === "expiresAt") out[k] = v === null ? (partial ? null : undefined) : dateField(v, k);
      else out[k] = v;
    }
    if (typeof out.spiffeId === "string") {
      let id: SpiffeId;
      try {
        id = SpiffeId.parse(out.spiffeId);
      } catch (e) {
        return badRequest(
          `"spiffeId" ${JSON.stringify(out.spiffeId.slice(0, 200))} is not a SPIFFE ID: ${(e as Error).message}`,
          "invalid",
        );
      }
      if (!id.memberOf(this.o.trustDomain)) {
        badRequest(
          `"spiffeId" ${id} is not in this server's trust domain ${this.o.trustDomain.name}: use spiffe://${this.o.trustDomain.name}/...`,
          "invalid",
        );
      }
    }
    return out;
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://admin");
    const path = url.pathname;
    const method = req.method ?? "GET";
    const { store } = this.o;
    const notAllowed = (allowed: string): never => {
      throw new ApiFailure(405, "method-not-allowed", `${path} takes ${allowed}`, { allow: allowed });
    };

    if (path === ADMIN_API.health) return sendJson(res, 200, { status: "ok" });

    if (path === ADMIN_API.entries) {
      if (method === "GET") {
        const filter = {
          ...(url.searchParams.get("spiffeId")
            ? { spiffeId: url.searchParams.get("spiffeId") as string }
            : {}),
          ...(url.searchParams.get("parentId")
            ? { parentId: url.searchParams.get("parentId") as string }
            : {}),
        };
        const entries = await store.listEntries(filter);
        return sendJson(res, 200, { entries: entries.map((e) => toWire(e)) });
      }
      if (method === "POST") {
        const input = this.#entryInput(await readJsonBody(req, MAX_BODY_BYTES), false);
        const entry = await store.createEntry(input as unknown as NewEntry);
        this.o.log(`entry created: ${entry.id} ${entry.spiffeId}`);
        return sendJson(res, 201, toWire(entry));
      }
      return notAllowed("GET, POST");
    }

    if (path.startsWith(ADMIN_API.entry)) {
      const id = decodeURIComponent(path.slice(ADMIN_API.entry.length));
      if (id === "") badRequest("give an entry ID");
      if (method === "GET") return sendJson(res, 200, toWire(await store.getEntry(id)));
      if (method === "PATCH") {
        const body = await readJsonBody(req, MAX_BODY_BYTES);
        const revision = body.revision;
        if (typeof revision !== "number" || !Number.isSafeInteger(revision)) {
          badRequest(
            '"revision" must be the entry\'s current revision (see entry show): it guards against lost updates',
          );
        }
        const changes = this.#entryInput(body, true) as EntryChanges;
        const entry = await store.updateEntry(id, revision, changes);
        this.o.log(`entry updated: ${entry.id} revision ${entry.revision}`);
        return sendJson(res, 200, toWire(entry));
      }
      if (method === "DELETE") {
        const r = url.searchParams.get("revision");
        await store.deleteEntry(id, r === null ? undefined : Number(r));
        this.o.log(`entry deleted: ${id}`);
        return sendJson(res, 200, { deleted: id });
      }
      return notAllowed("GET, PATCH, DELETE");
    }

    if (path === ADMIN_API.joinTokens) {
      if (method === "POST") {
        const body = await readJsonBody(req, MAX_BODY_BYTES);
        const ttl = body.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_SECONDS;
        if (typeof ttl !== "number") badRequest('"ttlSeconds" must be a number of seconds');
        const created = await store.createJoinToken(ttl);
        this.o.log(
          `join token created: ${secretTag(created.token)} expires ${created.expiresAt.toISOString()}`,
        );
        return sendJson(res, 201, {
          token: created.token,
          spiffeId: joinTokenAgentId(this.o.trustDomain, created.token),
          expiresAt: created.expiresAt.toISOString(),
        });
      }
      if (method === "GET") {
        const tokens = await store.listJoinTokens();
        return sendJson(res, 200, {
          joinTokens: tokens.map((t) => ({
            tokenHash: t.tokenHash,
            expiresAt: t.expiresAt.toISOString(),
            used: t.used,
            createdAt: t.createdAt.toISOString(),
          })),
        });
      }
      return notAllowed("GET, POST");
    }

    if (path === ADMIN_API.agents) {
      if (method !== "GET") return notAllowed("GET");
      const banned = url.searchParams.get("banned");
      const agents = await store.listAgents(banned === null ? {} : { banned: banned === "true" });
      return sendJson(res, 200, { agents: agents.map(wireAgent) });
    }

    if (path.startsWith(ADMIN_API.agent)) {
      let rest = path.slice(ADMIN_API.agent.length);
      const ban = rest.endsWith("/ban");
      if (ban) rest = rest.slice(0, -"/ban".length);
      const id = decodeURIComponent(rest);
      if (id === "") badRequest("give an agent SPIFFE ID");
      if (ban) {
        if (method !== "POST") return notAllowed("POST");
        const agent = await store.banAgent(id);
        this.o.log(
          `agent banned: ${agent.spiffeId.includes("/join_token/") ? secretTag(agent.spiffeId) : agent.spiffeId}`,
        );
        return sendJson(res, 200, wireAgent(agent));
      }
      if (method === "GET") return sendJson(res, 200, wireAgent(await store.getAgent(id)));
      if (method === "DELETE") {
        await store.deleteAgent(id);
        this.o.log(`agent deleted: ${id.includes("/join_token/") ? secretTag(id) : id}`);
        return sendJson(res, 200, { deleted: id });
      }
      return notAllowed("GET, DELETE");
    }

    if (path === ADMIN_API.bundle) {
      if (method !== "GET") return notAllowed("GET");
      await this.o.ca.refresh();
      const format = url.searchParams.get("format") ?? "pem";
      const bundle = this.o.ca.bundle();
      if (format === "pem")
        return sendText(res, 200, "application/x-pem-file", bundle.x509Bundle().marshal());
      if (format === "spiffe") return sendText(res, 200, "application/json", `${bundle.marshal()}\n`);
      return badRequest(`format ${JSON.stringify(format)} is not pem or spiffe`);
    }

    if (path === ADMIN_API.caPrepare || path === ADMIN_API.caActivate) {
      if (method !== "POST") return notAllowed("POST");
      if (path === ADMIN_API.caPrepare) await this.o.ca.change((ca) => ca.prepare());
      else await this.o.ca.change((ca) => ca.activate());
      await this.o.onCaChange();
      this.o.log(
        `CA ${path === ADMIN_API.caPrepare ? "prepared" : "activated"}: bundle sequence ${this.o.ca.bundle().sequence}`,
      );
      return sendJson(res, 200, this.caStatus());
    }

    throw new ApiFailure(
      404,
      "not-found",
      `no such Admin API path ${path}: see ADMIN_API in src/identity/api.ts`,
    );
  }

  caStatus() {
    const ca = this.o.ca.ca;
    const a = ca.x509Authorities;
    const info = (x: (typeof a)["active"]) => ({
      keyId: x.keyId,
      notBefore: x.notBefore.toISOString(),
      notAfter: x.notAfter.toISOString(),
    });
    return {
      trustDomain: ca.trustDomain.name,
      sequence: String(this.o.ca.bundle().sequence ?? 0n),
      active: info(a.active),
      prepared: a.prepared ? info(a.prepared) : null,
      old: a.old.map(info),
      jwt: { active: ca.jwtKeys.active.kid, prepared: ca.jwtKeys.prepared?.kid ?? null },
    };
  }
}

/**
 * Listens on `socketPath` with mode 0600. A stale socket file (no server answers) is removed;
 * a live one means another server uses this data directory: refused.
 */
export async function listenAdminSocket(server: http.Server, socketPath: string): Promise<void> {
  if (existsSync(socketPath)) {
    if (!lstatSync(socketPath).isSocket()) {
      throw new Error(
        `${socketPath} exists and is not a socket: move it away or give another --admin-socket`,
      );
    }
    const live = await new Promise<boolean>((resolve) => {
      const c = createConnection(socketPath);
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (live) {
      throw new Error(
        `another server is already listening on ${socketPath}: stop it, or use another --data-dir`,
      );
    }
    unlinkSync(socketPath);
  }
  const oldUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldUmask);
  }
  chmodSync(socketPath, 0o600);
}
