import { formatIPv4 } from "../../kube/ip.js";
import type { Pod } from "../../kube/objects.js";
import { MAX_PORT, MIN_PORT } from "../connset.js";
import * as iv from "../intervals.js";
import type { Endpoint, Flow, HttpRequest } from "../model.js";
import type { PolicyRef } from "../netpol/model.js";
import { headerNameOf, portMatch, positiveNegative, type RequestFacts, requestFacts } from "./authz/match.js";
import {
  type AuthorizationPolicy,
  type Condition,
  isHttpOnlyConditionKey,
  type Operation,
  type Rule,
} from "./authz/model.js";
import {
  type AuthzDecision,
  entryMatches,
  orderEntries,
  policyApplies,
  policyTakesPart,
} from "./authz/reference.js";
import {
  type HeaderMatch,
  type HttpMatch,
  type HttpRequests,
  isAllRequests,
  isNoRequests,
  NO_REQUESTS,
  normalizeRequest,
  requestsEqual,
  requestsHold,
  simplifyRequests,
} from "./httpset.js";
import type { IstioMesh } from "./layer.js";
import { type MeshConfig, type MeshRequest, type MeshTarget, principalOf } from "./mesh.js";
import { type EffectiveMtls, trustDomainOf, trustedDomains } from "./peerauthn.js";

/**
 * What the mesh lets from one source to one destination pod, over every TCP port: the ports cut
 * at every port the destination's policies name (AuthorizationPolicy `ports`/`notPorts` and
 * `destination.port`, PeerAuthentication `portLevelMtls`, Service port declarations), and per
 * segment the peer authentication verdict, whether opaque TCP passes, and which HTTP requests
 * pass. UDP and SCTP never meet the mesh's proxies (they capture TCP only).
 *
 * It answers exactly as IstioMesh.decide does for every port and request (a property test
 * holds it to that).
 */

/** How the destination's proxy handles a port: declared TCP (or ztunnel), declared HTTP, or sniffed. */
export type PortHandling = "tcp" | "http" | "sniffed";

/** A rule that carves HTTP requests, for explanations. */
export interface RuleContribution {
  readonly action: "ALLOW" | "DENY" | "CUSTOM";
  readonly policy: PolicyRef;
  readonly rule: number;
  /** The requests the rule matches (ORed); one entry with no field: every request. */
  readonly matches: readonly HttpMatch[];
}

export interface MeshSegment {
  readonly start: number;
  readonly end: number;
  readonly handling: PortHandling;
  readonly mtls: EffectiveMtls;
  /** Whether the destination's proxy admits the connection, and the sentence saying why. */
  readonly admitted: boolean;
  readonly admission: string;
  /** Opaque TCP (tcp and sniffed ports, when admitted): the authorization decision. */
  readonly tcp?: AuthzDecision;
  /** HTTP requests that pass (http and sniffed ports; none when not admitted). */
  readonly http?: HttpRequests;
  /** For HTTP: the rules that carve requests, and the ALLOW policies that apply. */
  readonly rules?: readonly RuleContribution[];
  readonly allowPolicies?: readonly PolicyRef[];
}

/** TCP ports where only some HTTP requests pass (and no opaque TCP). */
export interface L7Constraint {
  /** TCP port intervals. */
  readonly ports: iv.Intervals;
  readonly http: HttpRequests;
  /** How the destination normalizes paths before matching them (for comparisons). */
  readonly pathNormalization: MeshConfig["pathNormalization"];
}

const FULL: iv.Intervals = [MIN_PORT, MAX_PORT];

export class MeshSummary {
  /** TCP ports where something passes (opaque TCP or some HTTP request). */
  readonly tcpAllowed: iv.Intervals;
  /** Ports where something passes, but only HTTP requests (some or all of them). */
  readonly constraints: readonly L7Constraint[];

  constructor(
    /** False: the mesh does not apply (no mesh, or the destination has no proxy). */
    readonly applies: boolean,
    readonly segments: readonly MeshSegment[],
    private readonly mesh: MeshConfig,
  ) {
    if (!applies) {
      this.tcpAllowed = FULL;
      this.constraints = [];
      return;
    }
    const open: [number, number][] = [];
    const constrained: { ports: [number, number][]; http: HttpRequests }[] = [];
    const mode = mesh.pathNormalization;
    for (const s of segments) {
      const httpOpen = s.http !== undefined && !isNoRequests(s.http, mode);
      const tcpOpen = s.tcp?.allowed === true;
      if (!httpOpen && !tcpOpen) continue;
      open.push([s.start, s.end]);
      // Opaque TCP passing means every HTTP request passes too: nothing to say then.
      if (tcpOpen || s.http === undefined) continue;
      if (s.handling === "http" && isAllRequests(s.http, mode)) continue;
      const same = constrained.find((c) => requestsEqual(c.http, s.http as HttpRequests, mode));
      if (same) same.ports.push([s.start, s.end]);
      else constrained.push({ ports: [[s.start, s.end]], http: s.http });
    }
    this.tcpAllowed = iv.fromRanges(open);
    this.constraints = constrained.map((c) => ({
      ports: iv.fromRanges(c.ports),
      http: c.http,
      pathNormalization: mode,
    }));
  }

  segmentAt(port: number): MeshSegment | undefined {
    return this.segments.find((s) => s.start <= port && port <= s.end);
  }

  /**
   * Whether a TCP connection on the port passes the mesh: an HTTP request when `http` is
   * given, opaque TCP otherwise (on a declared HTTP port the proxy parses it as a request all
   * the same: GET / with no host, as IstioMesh.requestOf assumes).
   */
  passes(port: number, http?: HttpRequest): boolean {
    if (!this.applies) return true;
    const s = this.segmentAt(port);
    if (s === undefined || !s.admitted) return false;
    if (s.handling === "tcp" || (s.handling === "sniffed" && http === undefined))
      return s.tcp?.allowed === true;
    const request = http ?? { method: "GET", path: "/", host: "", headers: {} };
    return requestsHold(s.http ?? NO_REQUESTS, normalizeRequest(request, this.mesh.pathNormalization));
  }
}

/** Ports the destination's applicable policies and declarations name: where answers may change. */
function cutPorts(
  mesh: IstioMesh,
  dst: Pod,
  target: MeshTarget,
  applying: readonly AuthorizationPolicy[],
): number[] {
  const out = new Set<number>();
  const add = (v: string) => {
    if (!/^\d+$/.test(v)) return;
    const n = Number(v);
    if (n >= MIN_PORT && n <= MAX_PORT) out.add(n);
  };
  for (const p of applying) {
    if (p.rules === "none") continue;
    for (const r of p.rules) {
      for (const o of r.to) for (const v of [...o.ports, ...o.notPorts]) add(v);
      for (const c of r.when)
        if (c.key === "destination.port") for (const v of [...c.values, ...c.notValues]) add(v);
    }
  }
  for (const port of mesh.peerAuthn.winners(target).workload?.portLevel.keys() ?? []) out.add(port);
  for (const port of mesh.declaredPorts(dst)) out.add(port);
  return [...out].sort((a, b) => a - b);
}

function segmentsOf(cuts: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  let start = MIN_PORT;
  for (const c of cuts) {
    if (c > start) out.push([start, c - 1]);
    out.push([c, c]);
    start = c + 1;
  }
  if (start <= MAX_PORT) out.push([start, MAX_PORT]);
  return out;
}

/** The policies that take part for the destination, by action, in evaluation order. */
export function applyingPolicies(
  policies: readonly AuthorizationPolicy[],
  target: MeshTarget,
  mesh: MeshConfig,
): AuthorizationPolicy[] {
  return policies.filter((p) => policyTakesPart(p, mesh) && policyApplies(p, target, mesh));
}

/**
 * The HTTP requests a rule matches once its L4 part is decided for this peer and port:
 * undefined when the L4 part (sources, ports, L4 conditions, JWT fields) rules it out.
 */
function ruleMatches(
  policy: AuthorizationPolicy,
  rule: Rule,
  facts: RequestFacts,
  port: number,
  mesh: MeshConfig,
): HttpMatch[] | undefined {
  const l4: Rule = {
    index: rule.index,
    from: rule.from,
    to: [],
    when: rule.when.filter((c) => !isHttpOnlyConditionKey(c.key)),
  };
  if (!entryMatches({ policy, index: rule.index, rule: l4 }, facts, mesh)) return undefined;
  const headers: HeaderMatch[] = [];
  for (const c of rule.when) {
    if (!isHttpOnlyConditionKey(c.key)) continue;
    const name = headerNameOf(c.key);
    // request.auth.*: no JWT is modelled, so a value never matches (a notValue always does).
    if (name === undefined) {
      if (!positiveNegative(c.values, c.notValues, () => false)) return undefined;
      continue;
    }
    headers.push(headerMatchOf(name, c));
  }
  const ops: (Operation | undefined)[] =
    rule.to.length === 0
      ? [undefined]
      : rule.to.filter((o) => positiveNegative(o.ports, o.notPorts, (v) => portMatch(v, port)));
  if (ops.length === 0) return undefined;
  return ops.map((o) => operationMatch(o, headers));
}

function headerMatchOf(name: string, c: Condition): HeaderMatch {
  return {
    name,
    ...(c.values.length > 0 ? { values: c.values } : {}),
    ...(c.notValues.length > 0 ? { notValues: c.notValues } : {}),
  };
}

function operationMatch(o: Operation | undefined, headers: readonly HeaderMatch[]): HttpMatch {
  const m: Record<string, unknown> = {};
  if (o) {
    for (const k of ["methods", "notMethods", "paths", "notPaths", "hosts", "notHosts"] as const) {
      if (o[k].length > 0) m[k] = o[k];
    }
  }
  if (headers.length > 0) m.headers = headers;
  return m as HttpMatch;
}

/**
 * Which HTTP requests the destination's authorization lets through for this peer and port
 * (the request's L4 part in `request`): DENY rules (and CUSTOM ones whose provider refuses or is
 * unknown) subtract, ALLOW rules (when an ALLOW policy applies) bound; AUDIT never changes it.
 */
export function httpRequestsFor(
  applying: readonly AuthorizationPolicy[],
  target: MeshTarget,
  request: MeshRequest,
  mesh: MeshConfig,
): { http: HttpRequests; rules: RuleContribution[]; allowPolicies: PolicyRef[] } {
  const facts = requestFacts(
    target,
    { ...request, protocol: "http", method: "GET", path: "/", host: "", headers: {} },
    mesh,
  );
  const ofAction = (a: AuthorizationPolicy["action"]) => applying.filter((p) => p.action === a);
  const rules: RuleContribution[] = [];
  const collect = (action: "ALLOW" | "DENY" | "CUSTOM"): HttpMatch[] => {
    const out: HttpMatch[] = [];
    for (const e of orderEntries(ofAction(action), mesh)) {
      if (e.rule === undefined) continue;
      const ms = ruleMatches(e.policy, e.rule, facts, request.port, mesh);
      if (ms === undefined) continue;
      rules.push({ action, policy: e.policy.ref, rule: e.index, matches: ms });
      out.push(...ms);
    }
    return out;
  };
  const custom = ofAction("CUSTOM");
  const providers = new Set(custom.map((p) => p.provider ?? ""));
  const answer = request.extAuthz ?? mesh.extAuthz;
  // A CUSTOM rule that matches denies unless the one provider allows.
  const customDenies = custom.length > 0 && (providers.size > 1 || answer !== "allow");
  const deny = [...(customDenies ? collect("CUSTOM") : []), ...collect("DENY")];
  const allowPolicies = ofAction("ALLOW");
  const allow = allowPolicies.length === 0 ? undefined : collect("ALLOW");
  const raw: HttpRequests = allow === undefined ? { deny } : { allow, deny };
  return {
    http: simplifyRequests(raw, mesh.pathNormalization),
    rules,
    allowPolicies: allowPolicies.map((p) => p.ref),
  };
}

/** Computes the summary of what the mesh lets from `src` to the pod `dst`. */
export function summarizeMesh(mesh: IstioMesh, src: Endpoint, dst: Pod): MeshSummary {
  const config = mesh.mesh;
  if (!mesh.active || !mesh.inMesh(dst)) return new MeshSummary(false, [], config);
  const target = mesh.targetOf(dst);
  const applying = applyingPolicies(mesh.authz.policies, target, config);
  const segments: MeshSegment[] = [];
  for (const [start, end] of segmentsOf(cutPorts(mesh, dst, target, applying))) {
    const flow: Flow = { src, dst: { kind: "pod", pod: dst }, protocol: "TCP", port: start };
    const request = mesh.requestOf(flow, dst);
    const declared = config.profile === "ztunnel" ? "tcp" : mesh.portProtocolOf(dst, start);
    const handling: PortHandling = declared === undefined ? "sniffed" : declared;
    const { effective, admission } = mesh.peerAuthn.admit(target, request);
    const base = {
      start,
      end,
      handling,
      mtls: effective,
      admitted: admission.admitted,
      admission: admission.detail,
    };
    if (!admission.admitted) {
      segments.push(handling === "tcp" ? base : { ...base, http: NO_REQUESTS });
      continue;
    }
    const authzRequest: MeshRequest = { ...request, principal: admission.peer };
    const segment: {
      -readonly [K in keyof MeshSegment]: MeshSegment[K];
    } = { ...base };
    if (handling !== "http") {
      const { method: _m, path: _p, host: _h, headers: _hd, ...l4 } = authzRequest;
      segment.tcp = mesh.authz.evaluate(target, { ...l4, protocol: "tcp" });
    }
    if (handling !== "tcp") {
      const h = httpRequestsFor(applying, target, authzRequest, config);
      segment.http = h.http;
      segment.rules = h.rules;
      segment.allowPolicies = h.allowPolicies;
    }
    segments.push(segment);
  }
  return new MeshSummary(true, mergeSegments(segments, config), config);
}

/** Joins adjacent segments that answer alike (same handling, mTLS verdict, TCP verdict and requests). */
function mergeSegments(segments: readonly MeshSegment[], mesh: MeshConfig): MeshSegment[] {
  const out: MeshSegment[] = [];
  const key = (s: MeshSegment) =>
    JSON.stringify([
      s.handling,
      s.mtls.mode,
      s.mtls.policy,
      s.mtls.detail,
      s.admitted,
      s.admission,
      s.tcp?.allowed,
      s.tcp?.policy,
      s.tcp?.rule,
      s.tcp?.detail,
      s.rules,
      s.allowPolicies,
    ]);
  for (const s of segments) {
    const last = out[out.length - 1];
    if (
      last &&
      last.end + 1 === s.start &&
      key(last) === key(s) &&
      (last.http === undefined) === (s.http === undefined) &&
      (last.http === undefined || requestsEqual(last.http, s.http as HttpRequests, mesh.pathNormalization))
    ) {
      out[out.length - 1] = { ...last, end: s.end };
      continue;
    }
    out.push(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Callers that the destination cannot tell apart

/** `when` keys whose value comes from the caller. */
const SOURCE_KEYS: ReadonlySet<string> = new Set([
  "source.ip",
  "remote.ip",
  "source.namespace",
  "source.principal",
  "source.serviceAccount",
]);

/**
 * What of a destination's policies depends on the caller: each applying rule's source part
 * (`from`, and `when` conditions on the caller), to be matched per caller. Two callers that
 * match the same source parts and present the same kind of identity (none, trusted,
 * untrusted) get the same summary from the destination.
 */
export interface CallerPlan {
  readonly rules: readonly { readonly entry: RuleEntry; readonly tcpToo: boolean }[];
  /** Some port runs with mTLS DISABLE: the rules see callers without their identity there. */
  readonly disable: boolean;
}

interface RuleEntry {
  readonly policy: AuthorizationPolicy;
  readonly index: number;
  readonly rule: Rule;
}

export function callerPlan(mesh: IstioMesh, dst: Pod): CallerPlan {
  const config = mesh.mesh;
  const target = mesh.targetOf(dst);
  const applying = applyingPolicies(mesh.authz.policies, target, config).filter((p) => p.action !== "AUDIT");
  const rules: { entry: RuleEntry; tcpToo: boolean }[] = [];
  for (const policy of applying) {
    if (policy.rules === "none") continue;
    for (const rule of policy.rules) {
      const source: Rule = {
        index: rule.index,
        from: rule.from,
        to: [],
        when: rule.when.filter((c) => SOURCE_KEYS.has(c.key)),
      };
      // JWT fields are the only source fields a TCP connection reads differently.
      const tcpToo = rule.from.some(
        (f) => f.requestPrincipals.length > 0 || f.notRequestPrincipals.length > 0,
      );
      rules.push({ entry: { policy, index: rule.index, rule: source }, tcpToo });
    }
  }
  const cuts = cutPorts(mesh, dst, target, applying);
  const disable = segmentsOf(cuts).some(
    ([start]) => mesh.peerAuthn.effectiveMtls(target, start).mode === "DISABLE",
  );
  return { rules, disable };
}

/** The caller as the destination's policies see it: a key equal for callers that get equal answers. */
export function callerSignature(mesh: IstioMesh, plan: CallerPlan, src: Endpoint, dst: Pod): string {
  const config = mesh.mesh;
  const srcPod = src.kind === "pod" ? src.pod : undefined;
  const identity = srcPod ? mesh.identityOf(srcPod) : undefined;
  const principal = identity === undefined ? undefined : principalOf(identity);
  const target = mesh.targetOf(dst);
  const sourceIp = src.kind === "ip" ? src.ip : srcPod?.ip;
  const base = sourceIp === undefined ? {} : { sourceIp: formatIPv4(sourceIp) };
  let kind = "none";
  if (principal !== undefined) {
    const td = trustDomainOf(principal);
    kind = td !== undefined && trustedDomains(config).includes(td) ? "trusted" : "untrusted";
  }
  const bits = (p: string | undefined): string => {
    const http = requestFacts(target, { ...base, principal: p, port: 0, protocol: "http" }, config);
    const tcp = requestFacts(target, { ...base, principal: p, port: 0, protocol: "tcp" }, config);
    let out = "";
    for (const r of plan.rules) {
      out += entryMatches(r.entry, http, config) ? "1" : "0";
      if (r.tcpToo) out += entryMatches(r.entry, tcp, config) ? "1" : "0";
    }
    return out;
  };
  const withIdentity = kind === "trusted" ? bits(principal) : "";
  const without = kind !== "trusted" || plan.disable ? bits(undefined) : "";
  return `${kind}:${withIdentity}:${without}`;
}
