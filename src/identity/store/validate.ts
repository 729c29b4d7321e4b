/**
 * The rules stored data must follow. Each failure is a StoreError `invalid` that names the
 * field, what is wrong and what would be right.
 */
import { createHash } from "node:crypto";
import { SpiffeError } from "../../spiffe/errors.js";
import { SpiffeId } from "../../spiffe/id.js";
import { StoreError } from "./datastore.js";
import {
  DEFAULT_JWT_SVID_TTL_SECONDS,
  DEFAULT_X509_SVID_TTL_SECONDS,
  type EntryChanges,
  type Jwk,
  type KeyKind,
  type KeyState,
  type NewEntry,
  type NodeAttestationType,
  type Selector,
} from "./model.js";

export const MAX_SELECTOR_TYPE_LENGTH = 64;
/** Bytes (UTF-8): selectors are indexed, and PostgreSQL index rows are limited to about 2.7 kB. */
export const MAX_SELECTOR_VALUE_BYTES = 1024;
export const MAX_SELECTORS = 64;
export const MAX_DNS_NAMES = 64;
export const MAX_HINT_LENGTH = 1024;
/** About 68 years: TTLs are 32-bit seconds. */
export const MAX_TTL_SECONDS = 2 ** 31 - 1;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SELECTOR_TYPE = /^[A-Za-z0-9_.-]+$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function invalid(message: string): never {
  throw new StoreError("invalid", message);
}

/** `type:value` split at the first colon: `k8s:ns:default` is type `k8s`, value `ns:default`. */
export function parseSelector(input: Selector | string, field = "selector"): Selector {
  let type: unknown;
  let value: unknown;
  if (typeof input === "string") {
    const colon = input.indexOf(":");
    if (colon < 0) {
      invalid(`${field} ${JSON.stringify(input)} has no ':': write it as type:value, e.g. unix:uid:1000`);
    }
    type = input.slice(0, colon);
    value = input.slice(colon + 1);
  } else if (typeof input === "object" && input !== null) {
    type = input.type;
    value = input.value;
  } else {
    invalid(`${field} must be a "type:value" string or a {type, value} object`);
  }
  if (typeof type !== "string" || type === "") {
    invalid(`${field} has an empty type: write it as type:value, e.g. unix:uid:1000`);
  }
  if (type.length > MAX_SELECTOR_TYPE_LENGTH || !SELECTOR_TYPE.test(type)) {
    invalid(
      `${field} type ${JSON.stringify(type.slice(0, MAX_SELECTOR_TYPE_LENGTH))} must be 1-${MAX_SELECTOR_TYPE_LENGTH} letters, digits, '_', '.' or '-' (no ':')`,
    );
  }
  if (typeof value !== "string" || value === "") {
    invalid(`${field} "${type}:" has an empty value: write it as type:value, e.g. unix:uid:1000`);
  }
  if (Buffer.byteLength(value, "utf8") > MAX_SELECTOR_VALUE_BYTES) {
    invalid(`${field} "${type}:..." has a value longer than ${MAX_SELECTOR_VALUE_BYTES} bytes`);
  }
  return { type, value };
}

export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

function compareSelectors(a: Selector, b: Selector): number {
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.value !== b.value) return a.value < b.value ? -1 : 1;
  return 0;
}

/** Parsed, sorted by type then value, duplicates removed. */
export function normalizeSelectors(
  input: readonly (Selector | string)[] | undefined,
  field: string,
  options: { required: boolean },
): Selector[] {
  if (input === undefined) input = [];
  if (!Array.isArray(input)) invalid(`${field} must be a list of "type:value" selectors`);
  if (options.required && input.length === 0) {
    invalid(`${field} is empty: give at least one selector (type:value), e.g. unix:uid:1000`);
  }
  if (input.length > MAX_SELECTORS) invalid(`${field} has more than ${MAX_SELECTORS} selectors`);
  const parsed = input.map((s, i) => parseSelector(s, `${field}[${i}]`)).sort(compareSelectors);
  return parsed.filter((s, i) => i === 0 || compareSelectors(s, parsed[i - 1] as Selector) !== 0);
}

/** True when every selector of `subset` is in `of`. */
export function selectorsSubsetOf(subset: readonly Selector[], of: readonly Selector[]): boolean {
  const have = new Set(of.map(formatSelector));
  return subset.every((s) => have.has(formatSelector(s)));
}

/** Parses and normalizes a SPIFFE ID (lowercase scheme and trust domain). */
export function normalizeSpiffeId(text: unknown, field: string): SpiffeId {
  if (typeof text !== "string")
    invalid(`${field} must be a SPIFFE ID string (spiffe://<trust domain>/<path>)`);
  try {
    return SpiffeId.parse(text);
  } catch (e) {
    if (e instanceof SpiffeError) {
      invalid(`${field} ${JSON.stringify(text.slice(0, 200))} is not a SPIFFE ID: ${e.message}`);
    }
    throw e;
  }
}

/** `spiffe://<td>/spire/server`: the parent of node alias entries and agent entries. */
export function serverIdOf(id: SpiffeId): string {
  return `spiffe://${id.trustDomain.name}/spire/server`;
}

function isReservedPath(path: string): boolean {
  return path === "/spire/server" || path === "/spire/agent" || path.startsWith("/spire/agent/");
}

export function checkTtl(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0 || value > MAX_TTL_SECONDS) {
    invalid(
      `${field} must be a whole number of seconds above 0 (and at most ${MAX_TTL_SECONDS}), not ${String(value)}: e.g. 3600 for one hour`,
    );
  }
  return value;
}

export function checkDnsNames(input: readonly string[] | undefined, field: string): string[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) invalid(`${field} must be a list of DNS names`);
  if (input.length > MAX_DNS_NAMES) invalid(`${field} has more than ${MAX_DNS_NAMES} names`);
  const out: string[] = [];
  input.forEach((raw, i) => {
    if (typeof raw !== "string") invalid(`${field}[${i}] must be a string`);
    const name = raw.toLowerCase();
    const labels = name.startsWith("*.") ? name.slice(2).split(".") : name.split(".");
    if (name.length === 0 || name.length > 253 || !labels.every((l) => DNS_LABEL.test(l))) {
      invalid(
        `${field}[${i}] ${JSON.stringify(raw.slice(0, 253))} is not a DNS name: use labels of letters, digits and '-' separated by '.', optionally starting with '*.'`,
      );
    }
    if (!out.includes(name)) out.push(name);
  });
  return out;
}

export function checkDate(value: unknown, field: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) invalid(`${field} must be a valid Date`);
  return value;
}

function checkBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") invalid(`${field} must be true or false`);
  return value;
}

function checkHint(value: unknown, field: string): string {
  if (typeof value !== "string") invalid(`${field} must be a string`);
  if (value.length > MAX_HINT_LENGTH) invalid(`${field} is longer than ${MAX_HINT_LENGTH} characters`);
  return value;
}

export function checkUuid(value: unknown, field: string): string {
  if (typeof value !== "string" || !UUID.test(value.toLowerCase())) {
    invalid(
      `${field} ${JSON.stringify(String(value).slice(0, 64))} is not a UUID (e.g. 3f2c1e9a-0b7d-4c1e-9a57-2d6f8b1c0e44)`,
    );
  }
  return value.toLowerCase();
}

/** The fields of an entry that the caller sets, checked and normalized. */
export interface EntryFields {
  spiffeId: string;
  parentId: string;
  selectors: Selector[];
  x509SvidTtlSeconds: number;
  jwtSvidTtlSeconds: number;
  dnsNames: string[];
  hint: string;
  admin: boolean;
  downstream: boolean;
  expiresAt: Date | undefined;
}

function checkEntryIds(spiffeIdText: string, parentIdText: string): { spiffeId: string; parentId: string } {
  const spiffeId = normalizeSpiffeId(spiffeIdText, "spiffeId");
  const parentId = normalizeSpiffeId(parentIdText, "parentId");
  if (spiffeId.isRoot()) {
    invalid(`spiffeId ${spiffeId} has no path: an entry names a workload, e.g. ${spiffeId}/ns/prod/sa/web`);
  }
  if (isReservedPath(spiffeId.path)) {
    invalid(
      `spiffeId ${spiffeId} is reserved for the server and its agents: choose another path, e.g. ${spiffeId.trustDomain.idString()}/workload/web`,
    );
  }
  if (!spiffeId.trustDomain.equals(parentId.trustDomain)) {
    invalid(
      `parentId ${parentId} is in trust domain ${parentId.trustDomain}, spiffeId in ${spiffeId.trustDomain}: an entry's parent must be in the same trust domain`,
    );
  }
  if (spiffeId.equals(parentId))
    invalid(`spiffeId and parentId are both ${spiffeId}: an entry cannot be its own parent`);
  return { spiffeId: spiffeId.toString(), parentId: parentId.toString() };
}

export function checkNewEntry(input: NewEntry): EntryFields {
  if (typeof input !== "object" || input === null) invalid("an entry must be an object");
  const ids = checkEntryIds(input.spiffeId, input.parentId);
  return {
    ...ids,
    selectors: normalizeSelectors(input.selectors, "selectors", { required: true }),
    x509SvidTtlSeconds: checkTtl(
      input.x509SvidTtlSeconds ?? DEFAULT_X509_SVID_TTL_SECONDS,
      "x509SvidTtlSeconds",
    ),
    jwtSvidTtlSeconds: checkTtl(input.jwtSvidTtlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS, "jwtSvidTtlSeconds"),
    dnsNames: checkDnsNames(input.dnsNames, "dnsNames"),
    hint: checkHint(input.hint ?? "", "hint"),
    admin: checkBoolean(input.admin ?? false, "admin"),
    downstream: checkBoolean(input.downstream ?? false, "downstream"),
    expiresAt: input.expiresAt === undefined ? undefined : checkDate(input.expiresAt, "expiresAt"),
  };
}

/** Applies changes to current fields and checks the result. */
export function applyEntryChanges(current: EntryFields, changes: EntryChanges): EntryFields {
  if (typeof changes !== "object" || changes === null) invalid("entry changes must be an object");
  const ids = checkEntryIds(changes.spiffeId ?? current.spiffeId, changes.parentId ?? current.parentId);
  return {
    ...ids,
    selectors:
      changes.selectors === undefined
        ? current.selectors
        : normalizeSelectors(changes.selectors, "selectors", { required: true }),
    x509SvidTtlSeconds:
      changes.x509SvidTtlSeconds === undefined
        ? current.x509SvidTtlSeconds
        : checkTtl(changes.x509SvidTtlSeconds, "x509SvidTtlSeconds"),
    jwtSvidTtlSeconds:
      changes.jwtSvidTtlSeconds === undefined
        ? current.jwtSvidTtlSeconds
        : checkTtl(changes.jwtSvidTtlSeconds, "jwtSvidTtlSeconds"),
    dnsNames: changes.dnsNames === undefined ? current.dnsNames : checkDnsNames(changes.dnsNames, "dnsNames"),
    hint: changes.hint === undefined ? current.hint : checkHint(changes.hint, "hint"),
    admin: changes.admin === undefined ? current.admin : checkBoolean(changes.admin, "admin"),
    downstream:
      changes.downstream === undefined ? current.downstream : checkBoolean(changes.downstream, "downstream"),
    expiresAt:
      changes.expiresAt === undefined
        ? current.expiresAt
        : changes.expiresAt === null
          ? undefined
          : checkDate(changes.expiresAt, "expiresAt"),
  };
}

/** What makes two entries the same: SPIFFE ID, parent ID and selector set. */
export function entryIdentityHash(fields: Pick<EntryFields, "spiffeId" | "parentId" | "selectors">): string {
  return sha256Hex(JSON.stringify([fields.spiffeId, fields.parentId, fields.selectors.map(formatSelector)]));
}

export function checkAgentId(text: unknown, field = "agent ID"): string {
  const id = normalizeSpiffeId(text, field);
  if (!id.path.startsWith("/spire/agent/")) {
    invalid(
      `${field} ${id} is not an agent ID: agent IDs are ${id.trustDomain.idString()}/spire/agent/<attestor>/<...>`,
    );
  }
  return id.toString();
}

export function checkAttestationType(value: unknown): NodeAttestationType {
  if (value !== "join_token" && value !== "x509pop") {
    invalid(`attestationType ${JSON.stringify(value)} is not supported: use "join_token" or "x509pop"`);
  }
  return value;
}

export function checkSerial(value: unknown, field = "serialNumber"): string {
  if (typeof value !== "string" || !/^[0-9A-Za-z:]{1,128}$/.test(value)) {
    invalid(`${field} must be the certificate serial number as 1-128 hex or decimal digits`);
  }
  return value;
}

export function checkKeyKind(value: unknown): KeyKind {
  if (value !== "x509" && value !== "jwt") invalid(`kind ${JSON.stringify(value)} must be "x509" or "jwt"`);
  return value;
}

export function checkKeyState(value: unknown, field = "state"): KeyState {
  if (value !== "prepared" && value !== "active" && value !== "old") {
    invalid(`${field} ${JSON.stringify(value)} must be "prepared", "active" or "old"`);
  }
  return value;
}

export function checkKeyId(value: unknown): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9._:-]{1,128}$/.test(value)) {
    invalid("key id must be 1-128 letters, digits, '.', '_', ':' or '-'");
  }
  return value;
}

export function checkPem(value: unknown, label: string, field: string): string {
  const begin = `-----BEGIN ${label}-----`;
  if (typeof value !== "string" || !value.includes(begin) || !value.includes(`-----END ${label}-----`)) {
    invalid(`${field} must be PEM text with a ${begin} block`);
  }
  return value;
}

export function checkJwk(value: unknown, field: string): Jwk {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    invalid(`${field} must be a JWK object`);
  const jwk = value as Record<string, unknown>;
  if (typeof jwk.kid !== "string" || jwk.kid === "")
    invalid(`${field} has no "kid": every JWT authority needs one`);
  if (typeof jwk.kty !== "string" || jwk.kty === "") invalid(`${field} has no "kty"`);
  if ("d" in jwk || "p" in jwk || "q" in jwk || "k" in jwk) {
    invalid(`${field} (kid ${jwk.kid}) holds private key material: store only the public JWK`);
  }
  return jwk as Jwk;
}

export function checkTrustDomain(value: unknown): string {
  if (typeof value !== "string") invalid("trustDomain must be a trust domain name, e.g. example.org");
  const text = value.includes(":/") ? value : `spiffe://${value}`;
  const id = normalizeSpiffeId(text, "trustDomain");
  if (!id.isRoot())
    invalid(`trustDomain ${JSON.stringify(value)} must be a bare trust domain name, e.g. example.org`);
  return id.trustDomain.name;
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}
