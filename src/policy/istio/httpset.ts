import {
  headerMatch,
  hostMatch,
  isPathTemplate,
  MATCH_ANY_TEMPLATE,
  MATCH_ONE_TEMPLATE,
  methodMatch,
  normalizePath,
  type PathNormalization,
  parsePattern,
  pathMatch,
  positiveNegative,
} from "./authz/match.js";

/**
 * Sets of HTTP requests, as AuthorizationPolicy rules carve them out of what a destination
 * accepts once the L4 part (peer, port, addresses) is decided: the L7 part of a mesh summary.
 *
 * A set is `deny` and `allow` lists of request matches in Istio's own vocabulary (`methods`,
 * `notPaths`, `request.headers[...]` as `headers`, patterns as written: exact, `prefix*`,
 * `*suffix`, `*`, path templates). A request is in the set when it matches no `deny` entry
 * and, if `allow` is given, some `allow` entry; absent `allow` means any request.
 *
 * Matching uses the evaluator's own primitives (match.ts), so a set answers exactly as the
 * AuthorizationPolicy evaluators do. Equality and inclusion of sets are decided on witnesses:
 * for each field, one value per distinct answer pattern of the field's patterns (exact values,
 * and prefix + fresh character + suffix for every prefix/suffix pair): exact for exact, prefix,
 * suffix and presence patterns; path templates (`{*}`, `{**}`) are sampled, not decided.
 * The domain is what a sidecar sees: a non-empty method, a non-empty path as normalized by the
 * mesh, any host (compared case-insensitively), headers present or absent.
 */

export interface HeaderMatch {
  /** Lower-case header name. */
  readonly name: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

/** A conjunction: every listed field matches. No field: any request. */
export interface HttpMatch {
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  readonly headers?: readonly HeaderMatch[];
}

/** Requests matching no `deny` entry and, when `allow` is given, some `allow` entry. */
export interface HttpRequests {
  readonly allow?: readonly HttpMatch[];
  readonly deny: readonly HttpMatch[];
}

export const ALL_REQUESTS: HttpRequests = Object.freeze({ deny: Object.freeze([]) });
export const NO_REQUESTS: HttpRequests = Object.freeze({ allow: Object.freeze([]), deny: Object.freeze([]) });

/** An HTTP request with the path already normalized as the sidecar matches it. */
export interface NormalizedRequest {
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly host: string | undefined;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
}

export function normalizeRequest(
  r: { method?: string; path?: string; host?: string; headers?: Readonly<Record<string, string>> },
  mode: PathNormalization,
): NormalizedRequest {
  return {
    method: r.method,
    path: r.path === undefined ? undefined : normalizePath(r.path, mode),
    host: r.host,
    headers: r.headers ?? {},
  };
}

// ---------------------------------------------------------------------------------------------
// Fields

type FieldKind = "method" | "path" | "host" | "header";

function fieldMatch(kind: FieldKind, pattern: string, value: string | undefined): boolean {
  switch (kind) {
    case "method":
      return methodMatch(pattern, value);
    case "path":
      return pathMatch(pattern, value);
    case "host":
      return hostMatch(pattern, value);
    case "header":
      return headerMatch(pattern, value);
  }
}

/** One field constraint of a match: positive and negative patterns over one request value. */
interface Constraint {
  readonly key: string;
  readonly kind: FieldKind;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

function constraintHolds(c: Constraint, value: string | undefined): boolean {
  return positiveNegative(c.values, c.notValues, (p) => fieldMatch(c.kind, p, value));
}

const list = (x: readonly string[] | undefined): readonly string[] => x ?? [];

function constraintsOf(m: HttpMatch): Constraint[] {
  const out: Constraint[] = [];
  const add = (key: string, kind: FieldKind, values: readonly string[], notValues: readonly string[]) => {
    if (values.length > 0 || notValues.length > 0) out.push({ key, kind, values, notValues });
  };
  add("method", "method", list(m.methods), list(m.notMethods));
  add("path", "path", list(m.paths), list(m.notPaths));
  add("host", "host", list(m.hosts), list(m.notHosts));
  for (const h of m.headers ?? []) add(`header:${h.name}`, "header", list(h.values), list(h.notValues));
  return out;
}

function requestValue(r: NormalizedRequest, key: string): string | undefined {
  if (key === "method") return r.method;
  if (key === "path") return r.path;
  if (key === "host") return r.host;
  const name = key.slice("header:".length);
  return Object.hasOwn(r.headers, name) ? r.headers[name] : undefined;
}

export function matchHolds(m: HttpMatch, r: NormalizedRequest): boolean {
  return constraintsOf(m).every((c) => constraintHolds(c, requestValue(r, c.key)));
}

/** Whether the set holds the request (its path already normalized). */
export function requestsHold(set: HttpRequests, r: NormalizedRequest): boolean {
  if (set.deny.some((m) => matchHolds(m, r))) return false;
  return set.allow === undefined || set.allow.some((m) => matchHolds(m, r));
}

// ---------------------------------------------------------------------------------------------
// Witnesses

const FRESH_CANDIDATES = "qzxjkvwy0123456789abcdefghilmnoprstu";

function freshChar(texts: readonly string[]): string {
  for (const ch of FRESH_CANDIDATES) if (!texts.some((t) => t.includes(ch))) return ch;
  // Every candidate appears somewhere: a character outside every text.
  for (let code = 0x4e00; ; code++) {
    const ch = String.fromCharCode(code);
    if (!texts.some((t) => t.includes(ch))) return ch;
  }
}

function instantiateTemplate(template: string, one: string, any: string): string {
  return template.replaceAll(MATCH_ANY_TEMPLATE, any).replaceAll(MATCH_ONE_TEMPLATE, one);
}

/**
 * Values of one field such that every value of the domain answers every given pattern as one of
 * them does: exact values, prefix + fresh + suffix for each prefix and suffix (or none), and
 * the empty value and absence where the domain has them.
 */
function fieldWitnesses(
  kind: FieldKind,
  patterns: readonly string[],
  mode: PathNormalization,
): (string | undefined)[] {
  const exact: string[] = [];
  const prefixes = [""];
  const suffixes = [""];
  const templates: string[] = [];
  const lower = kind === "host";
  for (const raw of patterns) {
    if (kind === "path" && isPathTemplate(raw)) {
      templates.push(raw);
      continue;
    }
    const p = parsePattern(raw);
    const text = lower ? p.text.toLowerCase() : p.text;
    if (p.kind === "exact") exact.push(text);
    else if (p.kind === "prefix") prefixes.push(text);
    else if (p.kind === "suffix") suffixes.push(text);
  }
  const f = freshChar([...exact, ...prefixes, ...suffixes, ...templates]);
  const out = new Set<string>(exact);
  for (const p of prefixes) for (const s of suffixes) out.add(`${p}${f}${s}`);
  for (const t of templates) {
    for (const any of ["", f, `${f}/${f}`]) out.add(instantiateTemplate(t, f, any));
  }
  const values: (string | undefined)[] = [];
  for (const w of out) {
    if (kind === "method" && w === "") continue;
    if (kind === "path" && (w === "" || normalizePath(w, mode) !== w)) continue;
    values.push(w);
  }
  if (kind === "host" || kind === "header") values.push("");
  if (kind === "header") values.push(undefined);
  return [...new Set(values)];
}

// ---------------------------------------------------------------------------------------------
// Deciding over witnesses

const LIMIT = 2_000_000;

/**
 * The product of the fields' witness classes, for a family of sets: calls `visit` with a
 * function telling whether a match (by index among `matches`) holds. Returns false when the
 * space is too large to enumerate.
 */
function enumerate(
  matches: readonly HttpMatch[],
  mode: PathNormalization,
  visit: (holds: (matchIndex: number) => boolean) => boolean,
): boolean {
  const perMatch = matches.map(constraintsOf);
  const constraints = perMatch.flat();
  const keys = [...new Set(constraints.map((c) => c.key))].sort();
  const classes: (readonly boolean[])[][] = [];
  let size = 1;
  for (const key of keys) {
    const own = constraints.filter((c) => c.key === key);
    const kind = (own[0] as Constraint).kind;
    const patterns = own.flatMap((c) => [...c.values, ...c.notValues]);
    const seen = new Map<string, boolean[]>();
    for (const w of fieldWitnesses(kind, patterns, mode)) {
      const v = constraints.map((c) => (c.key === key ? constraintHolds(c, w) : true));
      seen.set(v.map((b) => (b ? "1" : "0")).join(""), v);
    }
    classes.push([...seen.values()]);
    size *= seen.size;
    if (size > LIMIT) return false;
  }
  const offsets: number[] = [];
  let n = 0;
  for (const m of perMatch) {
    offsets.push(n);
    n += m.length;
  }
  const keyOf = constraints.map((c) => keys.indexOf(c.key));
  const idx = keys.map(() => 0);
  const total = size;
  for (let i = 0; i < total; i++) {
    let rest = i;
    for (let k = keys.length - 1; k >= 0; k--) {
      const len = (classes[k] as boolean[][]).length;
      idx[k] = rest % len;
      rest = Math.floor(rest / len);
    }
    const holdsConstraint = (ci: number) => {
      const k = keyOf[ci] as number;
      return ((classes[k] as boolean[][])[idx[k] as number] as boolean[])[ci] === true;
    };
    const holds = (mi: number) => {
      const start = offsets[mi] as number;
      const count = (perMatch[mi] as Constraint[]).length;
      for (let ci = start; ci < start + count; ci++) if (!holdsConstraint(ci)) return false;
      return true;
    };
    if (!visit(holds)) return true;
  }
  return true;
}

function setHoldsWith(set: HttpRequests, base: number, holds: (i: number) => boolean): boolean {
  for (let i = 0; i < set.deny.length; i++) if (holds(base + i)) return false;
  if (set.allow === undefined) return true;
  const a = base + set.deny.length;
  for (let i = 0; i < set.allow.length; i++) if (holds(a + i)) return true;
  return false;
}

const matchesOf = (s: HttpRequests): HttpMatch[] => [...s.deny, ...(s.allow ?? [])];

/**
 * Compares two sets request by request over witnesses: `relation` gets (in a, in b) and says
 * whether that combination is acceptable. Undefined when the space is too large.
 */
function compareSets(
  a: HttpRequests,
  b: HttpRequests,
  mode: PathNormalization,
  relation: (inA: boolean, inB: boolean) => boolean,
): boolean | undefined {
  const ma = matchesOf(a);
  let ok = true;
  const done = enumerate([...ma, ...matchesOf(b)], mode, (holds) => {
    const x = setHoldsWith(a, 0, holds);
    const y = setHoldsWith(b, ma.length, holds);
    if (!relation(x, y)) ok = false;
    return ok;
  });
  return done ? ok : undefined;
}

const canonical = (s: HttpRequests) => JSON.stringify(s);

export function requestsEqual(a: HttpRequests, b: HttpRequests, mode: PathNormalization): boolean {
  if (a === b || canonical(a) === canonical(b)) return true;
  return compareSets(a, b, mode, (x, y) => x === y) ?? false;
}

/** Every request of `a` is in `b`. */
export function requestsSubset(a: HttpRequests, b: HttpRequests, mode: PathNormalization): boolean {
  if (b.allow === undefined && b.deny.length === 0) return true;
  return compareSets(a, b, mode, (x, y) => !x || y) ?? false;
}

export function isAllRequests(s: HttpRequests, mode: PathNormalization): boolean {
  return requestsEqual(s, ALL_REQUESTS, mode);
}

export function isNoRequests(s: HttpRequests, mode: PathNormalization): boolean {
  return s.allow?.length === 0 || requestsEqual(s, NO_REQUESTS, mode);
}

// ---------------------------------------------------------------------------------------------
// Simplification (for people; the meaning never changes)

const isExactList = (kind: FieldKind, values: readonly string[]) =>
  values.every((v) => !v.includes("*") && !(kind === "path" && isPathTemplate(v)));

/** A constraint's simplest equivalent form; undefined when it holds for no value of the domain. */
function simplifyConstraint(c: Constraint, mode: PathNormalization): Constraint | undefined | "any" {
  let { values, notValues } = c;
  if (values.length > 0 && isExactList(c.kind, values) && notValues.length > 0) {
    values = values.filter((v) => !notValues.some((p) => fieldMatch(c.kind, p, v)));
    notValues = [];
    if (values.length === 0) return undefined;
  }
  values = [...new Set(values)];
  notValues = [...new Set(notValues)];
  const simplified = { ...c, values, notValues };
  const witnesses = fieldWitnesses(c.kind, [...values, ...notValues], mode);
  const answers = witnesses.map((w) => constraintHolds(simplified, w));
  if (answers.every((x) => !x)) return undefined;
  if (answers.every((x) => x)) return "any";
  return simplified;
}

/** The match with constraints simplified; undefined when it matches no request. */
export function simplifyMatch(m: HttpMatch, mode: PathNormalization): HttpMatch | undefined {
  const out: {
    methods?: readonly string[];
    notMethods?: readonly string[];
    paths?: readonly string[];
    notPaths?: readonly string[];
    hosts?: readonly string[];
    notHosts?: readonly string[];
    headers?: HeaderMatch[];
  } = {};
  for (const c of constraintsOf(m)) {
    const s = simplifyConstraint(c, mode);
    if (s === undefined) return undefined;
    if (s === "any") continue;
    const pos = s.values.length > 0 ? s.values : undefined;
    const neg = s.notValues.length > 0 ? s.notValues : undefined;
    if (c.kind === "header") {
      const h: { name: string; values?: readonly string[]; notValues?: readonly string[] } = {
        name: c.key.slice("header:".length),
      };
      if (pos) h.values = pos;
      if (neg) h.notValues = neg;
      out.headers = [...(out.headers ?? []), h];
      continue;
    }
    const [p, n] =
      c.kind === "method"
        ? (["methods", "notMethods"] as const)
        : c.kind === "path"
          ? (["paths", "notPaths"] as const)
          : (["hosts", "notHosts"] as const);
    if (pos) out[p] = pos;
    if (neg) out[n] = neg;
  }
  return out;
}

const isEmptyMatch = (m: HttpMatch) => constraintsOf(m).length === 0;

function dedupe(ms: readonly HttpMatch[]): HttpMatch[] {
  const seen = new Set<string>();
  return ms.filter((m) => {
    const k = JSON.stringify(m);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * The same set, written simply: matches simplified, empty ones dropped, a deny of everything
 * or an allow of everything recognized, and the whole set recognized as all or none.
 */
export function simplifyRequests(s: HttpRequests, mode: PathNormalization): HttpRequests {
  const deny = dedupe(s.deny.map((m) => simplifyMatch(m, mode)).filter((m): m is HttpMatch => !!m));
  if (deny.some(isEmptyMatch)) return NO_REQUESTS;
  let allow: HttpMatch[] | undefined;
  if (s.allow !== undefined) {
    allow = dedupe(s.allow.map((m) => simplifyMatch(m, mode)).filter((m): m is HttpMatch => !!m));
    if (allow.length === 0) return NO_REQUESTS;
    if (allow.some(isEmptyMatch)) allow = undefined;
  }
  const out: HttpRequests = allow === undefined ? { deny } : { allow, deny };
  if (deny.length === 0 && allow === undefined) return ALL_REQUESTS;
  if (isAllRequests(out, mode)) return ALL_REQUESTS;
  if (isNoRequests(out, mode)) return NO_REQUESTS;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text for people

function alternatives(values: readonly string[]): string {
  return values.join("|");
}

/** `GET|PUT /api* host=example.com x-user=alice`; `method!=GET path!=/admin*`; `any request`. */
export function describeMatch(m: HttpMatch): string {
  const parts: string[] = [];
  if (m.methods) parts.push(alternatives(m.methods));
  if (m.notMethods) parts.push(`method!=${alternatives(m.notMethods)}`);
  if (m.paths) parts.push(alternatives(m.paths));
  if (m.notPaths) parts.push(`path!=${alternatives(m.notPaths)}`);
  if (m.hosts) parts.push(`host=${alternatives(m.hosts)}`);
  if (m.notHosts) parts.push(`host!=${alternatives(m.notHosts)}`);
  for (const h of m.headers ?? []) {
    if (h.values) parts.push(`${h.name}=${alternatives(h.values)}`);
    if (h.notValues) parts.push(`${h.name}!=${alternatives(h.notValues)}`);
  }
  return parts.length === 0 ? "any request" : parts.join(" ");
}

/**
 * `HTTP GET /info*, POST /data`, `HTTP all but DELETE`, `HTTP GET /api* but not GET /api/admin*`,
 * `HTTP only` (every request, and no other TCP traffic), `no HTTP request`.
 */
export function describeRequests(s: HttpRequests): string {
  if (s.allow?.length === 0) return "no HTTP request";
  const allow = s.allow === undefined ? undefined : s.allow.map(describeMatch).join(", ");
  const deny = s.deny.map(describeMatch).join(", ");
  if (allow === undefined) return deny === "" ? "HTTP only" : `HTTP all but ${deny}`;
  return deny === "" ? `HTTP ${allow}` : `HTTP ${allow} but not ${deny}`;
}
