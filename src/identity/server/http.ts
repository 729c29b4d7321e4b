/**
 * What the Agent API and the Admin API share: JSON bodies with a size limit, the error body of
 * api.ts (`{code, message}` with an HTTP status), and the mapping of store and CA errors to it.
 * Error messages say what to do next and never hold keys or join tokens.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { WireEntry } from "../api.js";
import { StoreError } from "../store/datastore.js";
import type { RegistrationEntry } from "../store/model.js";
import { formatSelector } from "../store/validate.js";
import { CaError } from "./ca/errors.js";

/** A refusal with its HTTP status and stable code; the message is for people. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "ApiFailure";
  }
}

const STORE_STATUS: Record<StoreError["code"], number> = {
  invalid: 400,
  "not-found": 404,
  "already-exists": 409,
  conflict: 409,
  banned: 403,
  unavailable: 503,
};

/** Store, CA and API errors as `{status, code, message}`; anything else is a 500 without details. */
export function describeFailure(e: unknown): { status: number; code: string; message: string } {
  if (e instanceof ApiFailure) return { status: e.status, code: e.code, message: e.message };
  if (e instanceof StoreError) return { status: STORE_STATUS[e.code], code: e.code, message: e.message };
  if (e instanceof CaError) {
    const status =
      e.reason === "ca-expired" || e.reason === "no-upstream-key"
        ? 503
        : e.reason === "not-prepared"
          ? 409
          : 400;
    return { status, code: e.code, message: e.message };
  }
  return { status: 500, code: "internal", message: "internal server error: see the server log" };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, {
    "content-type": contentType,
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export function sendFailure(res: ServerResponse, e: unknown): void {
  const f = describeFailure(e);
  if (e instanceof ApiFailure) for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, f.status, { code: f.code, message: f.message });
}

/** Reads a JSON object body of at most `limit` bytes; 413 beyond, 400 when it is not a JSON object. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) {
    req.resume();
    throw new ApiFailure(
      413,
      "body-too-large",
      `the request body is larger than ${limit} bytes: send less per call`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      throw new ApiFailure(
        413,
        "body-too-large",
        `the request body is larger than ${limit} bytes: send less per call`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiFailure(400, "malformed-json", "the request body is not valid JSON: send a JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiFailure(400, "malformed-request", "the request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

export function badRequest(message: string, code = "malformed-request"): never {
  throw new ApiFailure(400, code, message);
}

/** A required non-empty string field. */
export function stringField(body: Record<string, unknown>, name: string, max = 1 << 20): string {
  const v = body[name];
  if (typeof v !== "string" || v === "") badRequest(`"${name}" must be a non-empty string`);
  if (v.length > max) badRequest(`"${name}" is longer than ${max} characters`);
  return v;
}

/** Standard base64 (api.ts: binary values are base64); refuses anything else. */
export function base64Field(value: unknown, what: string): Buffer {
  if (
    typeof value !== "string" ||
    value === "" ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(value.replace(/\s+/g, ""))
  ) {
    badRequest(`${what} must be standard base64 (DER bytes)`);
  }
  return Buffer.from(value, "base64");
}

export function toWireEntry(e: RegistrationEntry): WireEntry {
  return {
    id: e.id,
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: e.selectors.map(formatSelector),
    x509SvidTtlSeconds: e.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: e.jwtSvidTtlSeconds,
    dnsNames: [...e.dnsNames],
    hint: e.hint,
    admin: e.admin,
    downstream: e.downstream,
    ...(e.expiresAt ? { expiresAt: e.expiresAt.toISOString() } : {}),
    revision: e.revision,
  };
}
