import type { MeshConfig, MeshRequest, MeshTarget } from "../mesh.js";

/**
 * The matching primitives of Istio AuthorizationPolicy, as the Envoy RBAC config that istiod
 * generates (`pilot/pkg/security/authz/model/generator.go`, `matcher/*`) and ztunnel
 * (`src/rbac.rs`) decide them. Shared by the reference and the compiled evaluators.
 *
 * A value absent from the request (no peer identity, no header, no JWT) never matches a
 * positive field and always matches a negative one: `notPrincipals: ["*"]` matches plaintext.
 */

// ---------------------------------------------------------------------------------------------
// String patterns: exact, prefix `x*`, suffix `*x`, presence `*` (Envoy StringMatcher as istiod
// writes it: `*` becomes the regex `.+`, so it needs a non-empty value).

export type PatternKind = "any" | "prefix" | "suffix" | "exact";

export interface Pattern {
  readonly kind: PatternKind;
  /** The text without the `*`. */
  readonly text: string;
}

export function parsePattern(value: string): Pattern {
  if (value === "*") return { kind: "any", text: "" };
  if (value.startsWith("*")) return { kind: "suffix", text: value.slice(1) };
  if (value.endsWith("*")) return { kind: "prefix", text: value.slice(0, -1) };
  return { kind: "exact", text: value };
}

/** Envoy StringMatcher as istiod generates it from a policy value. Undefined never matches. */
export function stringMatch(pattern: string, value: string | undefined, ignoreCase = false): boolean {
  if (value === undefined) return false;
  const p = parsePattern(pattern);
  const v = ignoreCase ? value.toLowerCase() : value;
  const t = ignoreCase ? p.text.toLowerCase() : p.text;
  switch (p.kind) {
    case "any":
      return v.length > 0;
    case "prefix":
      return v.startsWith(t);
    case "suffix":
      return v.endsWith(t);
    case "exact":
      return v === t;
  }
}

/** A header `*`: presence (Envoy `present_match`), even with an empty value. */
export function headerMatch(pattern: string, value: string | undefined, ignoreCase = false): boolean {
  if (pattern === "*") return value !== undefined;
  return stringMatch(pattern, value, ignoreCase);
}

/** `values` any-match and `notValues` none-match; an empty list is no constraint. */
export function positiveNegative(
  values: readonly string[],
  notValues: readonly string[],
  pred: (v: string) => boolean,
): boolean {
  if (values.length > 0 && !values.some(pred)) return false;
  if (notValues.length > 0 && notValues.some(pred)) return false;
  return true;
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

// ---------------------------------------------------------------------------------------------
// Identities. A principal is `<td>/ns/<ns>/sa/<sa>` (the URI SAN without `spiffe://`).

export interface SpiffeParts {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** ztunnel's Identity: exactly `td/ns/<ns>/sa/<sa>`; anything else has no namespace or SA. */
export function spiffeParts(principal: string | undefined): SpiffeParts | undefined {
  if (principal === undefined) return undefined;
  const parts = principal.split("/");
  if (parts.length !== 5 || parts[1] !== "ns" || parts[3] !== "sa") return undefined;
  return {
    trustDomain: parts[0] as string,
    namespace: parts[2] as string,
    serviceAccount: parts[4] as string,
  };
}

/** Istio's `trustdomain.stringMatch`: the pattern may be on either side. */
function tdStringMatch(a: string, list: readonly string[]): boolean {
  const prefix = (s: string, p: string) => p.endsWith("*") && s.startsWith(p.slice(0, -1));
  const suffix = (s: string, p: string) => p.startsWith("*") && s.endsWith(p.slice(1));
  return list.some(
    (s) => a === s || s === "*" || prefix(a, s) || prefix(s, a) || suffix(a, s) || suffix(s, a),
  );
}

/** The mesh's trust domain bundle: the trust domain first, then its aliases. */
export function trustDomainBundle(mesh: MeshConfig): readonly string[] {
  return [mesh.trustDomain, ...mesh.trustDomainAliases];
}

/**
 * istiod's `Bundle.ReplaceTrustDomainAliases` (sidecar only): a 5-part principal whose trust
 * domain is in the bundle, or is `cluster.local` (a pointer to the local trust domain), becomes
 * one principal per bundle trust domain; `*` as trust domain, other trust domains and other
 * shapes are kept as written.
 */
export function expandPrincipals(values: readonly string[], bundle: readonly string[]): string[] {
  const out: string[] = [];
  for (const principal of values) {
    const parts = principal.split("/");
    if (parts.length !== 5 || parts[0] === "*") {
      out.push(principal);
      continue;
    }
    const td = parts[0] as string;
    if (!(tdStringMatch(td, bundle) || td === "cluster.local")) {
      out.push(principal);
      continue;
    }
    const rest = parts.slice(1).join("/");
    const generated: string[] = [];
    for (const bundleTd of bundle) {
      const p = td.startsWith("*") && bundleTd.endsWith(td.slice(1)) ? principal : `${bundleTd}/${rest}`;
      if (!generated.includes(p)) generated.push(p);
    }
    out.push(...generated);
  }
  return out;
}

/** istiod's `Bundle.ExpandTrustDomainAliases` for `trustDomains` values. */
export function expandTrustDomains(values: readonly string[], bundle: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const td of bundle.includes(v) ? bundle : [v]) if (!out.includes(td)) out.push(td);
  }
  return out;
}

/** Sidecar `principals` / `source.principal`: the URI SAN against `spiffe://` + pattern. */
export function principalMatch(pattern: string, principal: string | undefined): boolean {
  return stringMatch(pattern, principal);
}

/** The sidecar's namespace regex `.*\/ns/<ns>/.*` over the principal (`*` in the value is `.*`). */
export function namespaceRegex(pattern: string): RegExp {
  const ns = pattern.split("*").map(escapeRegex).join(".*");
  return new RegExp(`^.*/ns/${ns}/.*$`);
}

export function namespaceMatchSidecar(pattern: string, principal: string | undefined): boolean {
  return principal !== undefined && namespaceRegex(pattern).test(principal);
}

/** `serviceAccounts` value → namespace and name; a bare name is in the policy's namespace. */
export function splitServiceAccount(value: string, policyNamespace: string): { ns: string; sa: string } {
  const slash = value.indexOf("/");
  return slash < 0
    ? { ns: policyNamespace, sa: value }
    : { ns: value.slice(0, slash), sa: value.slice(slash + 1) };
}

/**
 * The sidecar's service-account regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` (values matched
 * literally): extra `/k/v` attributes after the SA or between the namespace and `sa` are allowed.
 */
export function serviceAccountRegex(value: string, policyNamespace: string): RegExp {
  const { ns, sa } = splitServiceAccount(value, policyNamespace);
  return new RegExp(`^.+/ns/${escapeRegex(ns)}/(.+/|)sa/${escapeRegex(sa)}(/.+)?$`);
}

export function serviceAccountMatchSidecar(
  value: string,
  policyNamespace: string,
  principal: string | undefined,
): boolean {
  return principal !== undefined && serviceAccountRegex(value, policyNamespace).test(principal);
}

/** ztunnel's ServiceAccountMatch: namespace and name equal to the peer identity's. */
export function serviceAccountMatchZtunnel(
  value: string,
  policyNamespace: string,
  id: SpiffeParts | undefined,
): boolean {
  if (id === undefined) return false;
  const { ns, sa } = splitServiceAccount(value, policyNamespace);
  return id.namespace === ns && id.serviceAccount === sa;
}

/** `trustDomains`: the trust domain segment of the principal (Envoy: `spiffe://<td>/` prefix or regex). */
export function trustDomainMatch(pattern: string, principal: string | undefined): boolean {
  if (principal === undefined) return false;
  const slash = principal.indexOf("/");
  if (slash < 0) return false;
  const td = principal.slice(0, slash);
  return pattern === "*" ? true : stringMatch(pattern, td);
}

// ---------------------------------------------------------------------------------------------
// IP addresses and CIDRs (Go's netip syntax: no leading zeros, no zones).

export interface IpAddr {
  readonly v6: boolean;
  readonly n: bigint;
}

export interface IpPrefix {
  readonly v6: boolean;
  readonly bits: number;
  /** The address with host bits cleared. */
  readonly base: bigint;
}

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const o = Number(p);
    if (o > 255) return undefined;
    n = (n << 8n) | BigInt(o);
  }
  return n;
}

function parseV6(text: string): bigint | undefined {
  if (text.includes("%")) return undefined;
  let head = text;
  let tail4: bigint | undefined;
  const lastColon = text.lastIndexOf(":");
  if (lastColon >= 0 && text.slice(lastColon + 1).includes(".")) {
    tail4 = parseV4(text.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const dbl = head.indexOf("::");
  if (dbl >= 0 && head.indexOf("::", dbl + 1) >= 0) return undefined;
  const groupsOf = (s: string): string[] | undefined => {
    if (s === "") return [];
    const g = s.split(":");
    return g.every((x) => /^[0-9a-fA-F]{1,4}$/.test(x)) ? g : undefined;
  };
  let groups: string[];
  if (dbl >= 0) {
    const left = groupsOf(head.slice(0, dbl));
    const right = groupsOf(head.slice(dbl + 2));
    if (!left || !right || left.length + right.length > 7) return undefined;
    groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  } else {
    const g = groupsOf(head);
    if (g?.length !== 8) return undefined;
    groups = g;
  }
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(Number.parseInt(g, 16));
  if (tail4 !== undefined) n = (n & ~0xffffffffn) | tail4;
  return n;
}

export function parseIp(text: string): IpAddr | undefined {
  if (text.includes(":")) {
    const n = parseV6(text);
    return n === undefined ? undefined : { v6: true, n };
  }
  const n = parseV4(text);
  return n === undefined ? undefined : { v6: false, n };
}

/** A CIDR (`10.0.0.0/8`, host bits allowed) or a single address (a /32 or /128). */
export function parsePrefix(text: string): IpPrefix | undefined {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.v6 ? 128 : 32;
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > max) return undefined;
  }
  const shift = BigInt(max - bits);
  return { v6: ip.v6, bits, base: (ip.n >> shift) << shift };
}

export function prefixContains(prefix: IpPrefix, ip: IpAddr | undefined): boolean {
  if (ip === undefined || ip.v6 !== prefix.v6) return false;
  const shift = BigInt((prefix.v6 ? 128 : 32) - prefix.bits);
  return (ip.n >> shift) << shift === prefix.base;
}

export function ipBlockMatch(cidr: string, ip: IpAddr | undefined): boolean {
  const p = parsePrefix(cidr);
  return p !== undefined && prefixContains(p, ip);
}

// ---------------------------------------------------------------------------------------------
// Paths.

export type PathNormalization = MeshConfig["pathNormalization"];

/** The path without query string and fragment (what Envoy's `url_path` matcher sees). */
export function stripQuery(path: string): string {
  const q = path.search(/[?#]/);
  return q < 0 ? path : path.slice(0, q);
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** Decode %XX of unreserved characters, upper-case the hex of the others (RFC 3986 6.2.2). */
function normalizePercent(path: string): string {
  return path.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(Number.parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
}

/** RFC 3986 5.2.4 remove_dot_segments; `..` never climbs above the root. */
export function removeDotSegments(path: string): string {
  const segments = path.split("/");
  const out: string[] = [];
  const absolute = path.startsWith("/");
  for (let i = absolute ? 1 : 0; i < segments.length; i++) {
    const s = segments[i] as string;
    const last = i === segments.length - 1;
    if (s === ".") {
      if (last) out.push("");
    } else if (s === "..") {
      if (out.length > 0) out.pop();
      if (last) out.push("");
    } else {
      out.push(s);
    }
  }
  return (absolute ? "/" : "") + out.join("/");
}

/**
 * The path as the sidecar matches it, per meshConfig.pathNormalization: query stripped; BASE:
 * RFC 3986 normalization (backslashes become slashes, `%2E` decoded, dot segments removed);
 * MERGE_SLASHES: BASE then `//` → `/`; DECODE_AND_MERGE_SLASHES: `%2F` and `%5C` decoded first.
 */
export function normalizePath(rawPath: string, mode: PathNormalization): string {
  const path = stripQuery(rawPath);
  if (mode === "NONE") return path;
  // Most paths have nothing to normalize; a sidecar asks for every request.
  const merge = mode === "MERGE_SLASHES" || mode === "DECODE_AND_MERGE_SLASHES";
  if (
    !path.includes("%") &&
    !path.includes("\\") &&
    !path.includes("/.") &&
    !path.startsWith(".") &&
    !(merge && path.includes("//"))
  ) {
    return path;
  }
  return normalizePathFully(path, mode);
}

/** normalizePath without its shortcut for paths that are already normal, for the tests to compare. */
export function normalizePathFully(rawPath: string, mode: PathNormalization): string {
  let path = stripQuery(rawPath);
  if (mode === "NONE") return path;
  if (mode === "DECODE_AND_MERGE_SLASHES") path = path.replace(/%2[fF]/g, "/").replace(/%5[cC]/g, "\\");
  path = removeDotSegments(normalizePercent(path.replace(/\\/g, "/")));
  if (mode === "MERGE_SLASHES" || mode === "DECODE_AND_MERGE_SLASHES") path = path.replace(/\/{2,}/g, "/");
  return path;
}

export const MATCH_ONE_TEMPLATE = "{*}";
export const MATCH_ANY_TEMPLATE = "{**}";

export function isPathTemplate(path: string): boolean {
  return path.includes(MATCH_ONE_TEMPLATE) || path.includes(MATCH_ANY_TEMPLATE);
}

/** Envoy uri_template: `{*}` is one non-empty path segment, `{**}` zero or more segments. */
const SEGMENT_CHARS = "A-Za-z0-9\\-._~%!$&'()+,;:@=";

export function pathTemplateRegex(template: string): RegExp {
  let re = "";
  for (let i = 0; i < template.length; ) {
    if (template.startsWith(MATCH_ANY_TEMPLATE, i)) {
      re += `[${SEGMENT_CHARS}/]*`;
      i += MATCH_ANY_TEMPLATE.length;
    } else if (template.startsWith(MATCH_ONE_TEMPLATE, i)) {
      re += `[${SEGMENT_CHARS}]+`;
      i += MATCH_ONE_TEMPLATE.length;
    } else {
      re += escapeRegex(template[i] as string);
      i++;
    }
  }
  return new RegExp(`^${re}$`);
}

/** `paths` value against the normalized path (query already stripped). */
export function pathMatch(pattern: string, path: string | undefined): boolean {
  if (path === undefined) return false;
  if (isPathTemplate(pattern)) return pathTemplateRegex(pattern).test(path);
  return stringMatch(pattern, path);
}

/** `hosts`: case-insensitive, the port is part of the value; `*` is presence. */
export function hostMatch(pattern: string, host: string | undefined): boolean {
  return headerMatch(pattern, host, true);
}

/** `methods`: case-sensitive; `*` is presence. */
export function methodMatch(pattern: string, method: string | undefined): boolean {
  return headerMatch(pattern, method);
}

export function portMatch(value: string, port: number): boolean {
  return /^\d+$/.test(value) && Number(value) === port;
}

/** `request.headers[name]` → name (lower-case: header names are case-insensitive). */
export function headerNameOf(key: string): string | undefined {
  const m = /^request\.(?:experimental\.inline\.)?headers\[(.+)\]$/.exec(key);
  return m ? (m[1] as string).toLowerCase() : undefined;
}

// ---------------------------------------------------------------------------------------------
// The request, with every derived value computed once.

export interface RequestFacts {
  /** `td/ns/x/sa/y`; undefined for a plaintext peer. */
  readonly principal: string | undefined;
  /** ztunnel's view of the peer identity (exactly td/ns/x/sa/y). */
  readonly identity: SpiffeParts | undefined;
  readonly sourceIp: IpAddr | undefined;
  readonly destinationIp: IpAddr | undefined;
  readonly port: number;
  readonly tcp: boolean;
  readonly method: string | undefined;
  /** Normalized, query stripped. */
  readonly path: string | undefined;
  readonly host: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  /** The requested server name ("" when the client sent none). */
  readonly sni: string;
}

export function requestFacts(target: MeshTarget, request: MeshRequest, mesh: MeshConfig): RequestFacts {
  const principal = request.principal === "" ? undefined : request.principal;
  const dst = request.destinationIp ?? target.ip;
  const tcp = request.protocol === "tcp" || mesh.profile === "ztunnel";
  return {
    principal,
    identity: spiffeParts(principal),
    sourceIp: request.sourceIp === undefined ? undefined : parseIp(request.sourceIp),
    destinationIp: dst === undefined ? undefined : parseIp(dst),
    port: request.port,
    tcp,
    method: tcp ? undefined : request.method,
    path: tcp || request.path === undefined ? undefined : normalizePath(request.path, mesh.pathNormalization),
    host: tcp ? undefined : request.host,
    headers: tcp ? {} : (request.headers ?? {}),
    sni: request.sni ?? "",
  };
}

/** ztunnel's principal of the peer: `td/ns/x/sa/y` from its identity; undefined without one. */
export function ztunnelPrincipal(f: RequestFacts): string | undefined {
  const id = f.identity;
  return id === undefined ? undefined : `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** A header's value; own properties only. */
export function headerValue(facts: RequestFacts, name: string): string | undefined {
  return Object.hasOwn(facts.headers, name) ? facts.headers[name] : undefined;
}
