import type { PolicyRef } from "../../netpol/model.js";
import type { MeshConfig, MeshRequest, MeshTarget } from "../mesh.js";
import {
  expandPrincipals,
  expandTrustDomains,
  headerMatch,
  headerNameOf,
  headerValue,
  hostMatch,
  ipBlockMatch,
  methodMatch,
  namespaceMatchSidecar,
  pathMatch,
  portMatch,
  positiveNegative,
  principalMatch,
  type RequestFacts,
  requestFacts,
  serviceAccountMatchSidecar,
  serviceAccountMatchZtunnel,
  stringMatch,
  trustDomainBundle,
  trustDomainMatch,
  ztunnelPrincipal,
} from "./match.js";
import {
  type AuthorizationPolicy,
  type AuthzAction,
  type Condition,
  envoyRuleName,
  isHttpOnlyConditionKey,
  type Operation,
  type Rule,
  refName,
  ruleHasHttpOnly,
  ruleHasZtunnelUnsupported,
  type Source,
} from "./model.js";

export type AuthzStep = "custom" | "deny" | "no-allow-policy" | "allow" | "no-allow-match";

/** The verdict for one request, with what decided it. */
export interface AuthzDecision {
  allowed: boolean;
  /** The evaluation-order step that decided (Istio's API doc: CUSTOM, DENY, no ALLOW, ALLOW, else deny). */
  step: AuthzStep;
  /** The deciding policy, when a policy decided (custom, deny, allow). */
  policy?: PolicyRef;
  /** Its rule, 0-based. */
  rule?: number;
  action?: "ALLOW" | "DENY" | "CUSTOM";
  /** The CUSTOM (ext_authz) provider that was asked, when one was. */
  provider?: string;
  /** AUDIT rules that matched (they never change the verdict). */
  audits: { policy: PolicyRef; rule: number }[];
  /** One sentence for people. */
  detail: string;
}

/** The label Gateway API puts on the pods of a gateway (istiod attaches targetRef policies to them). */
export const GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name";

/**
 * Does the policy apply to the workload (istiod's `ListAuthorizationPolicies` and
 * `WorkloadPolicyMatcher.ShouldAttachPolicy`)? Same namespace or the root namespace; the
 * selector's labels a subset of the workload's; a policy with targetRef(s) never applies to a
 * sidecar or ztunnel, only to the Gateway API gateway it names.
 */
export function policyApplies(policy: AuthorizationPolicy, target: MeshTarget, mesh: MeshConfig): boolean {
  const ns = policy.ref.namespace;
  if (ns !== target.namespace && ns !== mesh.rootNamespace) return false;
  const gatewayName = Object.hasOwn(target.labels, GATEWAY_NAME_LABEL)
    ? target.labels[GATEWAY_NAME_LABEL]
    : undefined;
  const selected = policy.selector === undefined || policy.selector.matches(target.labels);
  if (gatewayName === undefined || mesh.profile === "ztunnel") {
    return policy.targetRefs.length === 0 && selected;
  }
  // A Gateway API gateway pod: targetRefs bind, else the selector (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY).
  if (policy.targetRefs.length === 0) return selected;
  return policy.targetRefs.some(
    (r) =>
      ns === target.namespace &&
      (r.namespace === undefined || r.namespace === target.namespace) &&
      r.group === "gateway.networking.k8s.io" &&
      r.kind === "Gateway" &&
      r.name === gatewayName,
  );
}

/** Which policies take part for this data plane: dry-run never; ztunnel enforces ALLOW and DENY only. */
export function policyTakesPart(policy: AuthorizationPolicy, mesh: MeshConfig): boolean {
  if (policy.dryRun) return false;
  return mesh.profile !== "ztunnel" || policy.action === "ALLOW" || policy.action === "DENY";
}

/** One rule of one policy, in evaluation order; rule undefined: the policy has no rules (never matches). */
export interface RuleEntry {
  readonly policy: AuthorizationPolicy;
  readonly index: number;
  readonly rule: Rule | undefined;
}

function ztunnelGroup(p: AuthorizationPolicy, mesh: MeshConfig): number {
  if (p.selector !== undefined) return 2;
  return p.ref.namespace === mesh.rootNamespace ? 1 : 0;
}

/**
 * The order in which the data plane tries rules, which decides the reported policy and rule:
 * Envoy's RBAC filter keeps policies in a map sorted by name `ns[<ns>]-policy[<name>]-rule[<i>]`;
 * ztunnel takes namespace policies, then mesh-wide ones, then selector ones, rules in order.
 */
export function orderEntries(policies: readonly AuthorizationPolicy[], mesh: MeshConfig): RuleEntry[] {
  const entries: (RuleEntry & { key: string })[] = [];
  for (const p of policies) {
    if (p.rules === "none") {
      entries.push({ policy: p, index: 0, rule: undefined, key: envoyRuleName(p.ref, 0) });
    } else {
      for (const r of p.rules)
        entries.push({ policy: p, index: r.index, rule: r, key: envoyRuleName(p.ref, r.index) });
    }
  }
  if (mesh.profile === "ztunnel") {
    const rank = (e: RuleEntry) => ztunnelGroup(e.policy, mesh);
    entries.sort((a, b) => {
      const g = rank(a) - rank(b);
      if (g !== 0) return g;
      const an = refName(a.policy.ref);
      const bn = refName(b.policy.ref);
      if (an !== bn) return an < bn ? -1 : 1;
      return a.index - b.index;
    });
  } else {
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Sidecar (Envoy RBAC as istiod builds it).

/**
 * Rule matching on a sidecar. On a TCP connection the HTTP-only fields cannot be evaluated: in
 * an ALLOW policy such a rule is dropped (it never matches); in DENY, AUDIT and CUSTOM only the
 * field is dropped (a missing attribute counts as a match), which widens the rule.
 */
function sidecarRuleMatches(
  policy: AuthorizationPolicy,
  rule: Rule,
  f: RequestFacts,
  mesh: MeshConfig,
): boolean {
  if (f.tcp && policy.action === "ALLOW" && ruleHasHttpOnly(rule)) return false;
  const ns = policy.ref.namespace;
  if (rule.from.length > 0 && !rule.from.some((s) => sidecarSourceMatches(s, ns, f, mesh))) return false;
  if (rule.to.length > 0 && !rule.to.some((o) => sidecarOperationMatches(o, f))) return false;
  return rule.when.every((c) => sidecarConditionMatches(c, ns, f, mesh));
}

function principalsMatch(
  values: readonly string[],
  notValues: readonly string[],
  f: RequestFacts,
  mesh: MeshConfig,
) {
  const bundle = trustDomainBundle(mesh);
  return positiveNegative(expandPrincipals(values, bundle), expandPrincipals(notValues, bundle), (v) =>
    principalMatch(v, f.principal),
  );
}

function sidecarSourceMatches(s: Source, ns: string, f: RequestFacts, mesh: MeshConfig): boolean {
  const bundle = trustDomainBundle(mesh);
  return (
    principalsMatch(s.principals, s.notPrincipals, f, mesh) &&
    // No JWT is modelled: a request principal never matches (and on TCP the field is dropped).
    (f.tcp || positiveNegative(s.requestPrincipals, s.notRequestPrincipals, () => false)) &&
    positiveNegative(s.namespaces, s.notNamespaces, (v) => namespaceMatchSidecar(v, f.principal)) &&
    positiveNegative(s.serviceAccounts, s.notServiceAccounts, (v) =>
      serviceAccountMatchSidecar(v, ns, f.principal),
    ) &&
    positiveNegative(s.ipBlocks, s.notIpBlocks, (v) => ipBlockMatch(v, f.sourceIp)) &&
    // Without X-Forwarded-For or PROXY protocol the remote address is the peer address.
    positiveNegative(s.remoteIpBlocks, s.notRemoteIpBlocks, (v) => ipBlockMatch(v, f.sourceIp)) &&
    positiveNegative(
      expandTrustDomains(s.trustDomains, bundle),
      expandTrustDomains(s.notTrustDomains, bundle),
      (v) => trustDomainMatch(v, f.principal),
    )
  );
}

function sidecarOperationMatches(o: Operation, f: RequestFacts): boolean {
  return (
    positiveNegative(o.ports, o.notPorts, (v) => portMatch(v, f.port)) &&
    (f.tcp ||
      (positiveNegative(o.hosts, o.notHosts, (v) => hostMatch(v, f.host)) &&
        positiveNegative(o.methods, o.notMethods, (v) => methodMatch(v, f.method)) &&
        positiveNegative(o.paths, o.notPaths, (v) => pathMatch(v, f.path))))
  );
}

function sidecarConditionMatches(c: Condition, ns: string, f: RequestFacts, mesh: MeshConfig): boolean {
  const k = c.key;
  if (isHttpOnlyConditionKey(k)) {
    if (f.tcp) return true;
    const header = headerNameOf(k);
    if (header !== undefined) {
      const value = headerValue(f, header);
      return positiveNegative(c.values, c.notValues, (v) => headerMatch(v, value));
    }
    return positiveNegative(c.values, c.notValues, () => false); // request.auth.*: no JWT
  }
  const pn = (pred: (v: string) => boolean) => positiveNegative(c.values, c.notValues, pred);
  switch (k) {
    case "source.ip":
    case "remote.ip":
      return pn((v) => ipBlockMatch(v, f.sourceIp));
    case "destination.ip":
      return pn((v) => ipBlockMatch(v, f.destinationIp));
    case "destination.port":
      return pn((v) => portMatch(v, f.port));
    case "connection.sni":
      return pn((v) => stringMatch(v, f.sni));
    case "source.namespace":
      return pn((v) => namespaceMatchSidecar(v, f.principal));
    case "source.serviceAccount":
      return pn((v) => serviceAccountMatchSidecar(v, ns, f.principal));
    case "source.principal":
      return principalsMatch(c.values, c.notValues, f, mesh);
  }
  if (k.startsWith("experimental.envoy.filters.")) return pn(() => false); // no dynamic metadata modelled
  return false; // istiod skips a rule with an unknown attribute
}

// ---------------------------------------------------------------------------------------------
// ztunnel (istiod's conversion in pilot/pkg/serviceregistry/ambient/authorization.go, then
// src/rbac.rs): a rule is an AND of clauses (to, from, one per when), a clause an OR of matches;
// a match with no L4 field left is skipped, so a clause of such matches never matches.

function ztunnelRuleMatches(policy: AuthorizationPolicy, rule: Rule, f: RequestFacts): boolean {
  if (policy.action === "ALLOW" && ruleHasZtunnelUnsupported(rule)) return false;
  const ns = policy.ref.namespace;
  if (rule.to.length > 0 && !rule.to.some((o) => ztunnelOperationMatches(o, f))) return false;
  if (rule.from.length > 0 && !rule.from.some((s) => ztunnelSourceMatches(s, ns, f))) return false;
  return rule.when.every((c) => ztunnelConditionMatches(c, f));
}

function ztunnelOperationMatches(o: Operation, f: RequestFacts): boolean {
  if (o.ports.length === 0 && o.notPorts.length === 0) return false; // empty match
  return positiveNegative(o.ports, o.notPorts, (v) => portMatch(v, f.port));
}

function ztunnelSourceMatches(s: Source, ns: string, f: RequestFacts): boolean {
  const l4 = [
    s.ipBlocks,
    s.notIpBlocks,
    s.namespaces,
    s.notNamespaces,
    s.serviceAccounts,
    s.notServiceAccounts,
    s.principals,
    s.notPrincipals,
  ];
  if (l4.every((l) => l.length === 0)) return false; // empty match
  const principal = ztunnelPrincipal(f);
  return (
    positiveNegative(s.ipBlocks, s.notIpBlocks, (v) => ipBlockMatch(v, f.sourceIp)) &&
    positiveNegative(s.serviceAccounts, s.notServiceAccounts, (v) =>
      serviceAccountMatchZtunnel(v, ns, f.identity),
    ) &&
    positiveNegative(s.principals, s.notPrincipals, (v) => stringMatch(v, principal)) &&
    positiveNegative(s.namespaces, s.notNamespaces, (v) => stringMatch(v, f.identity?.namespace))
  );
}

function ztunnelConditionMatches(c: Condition, f: RequestFacts): boolean {
  const pn = (pred: (v: string) => boolean) => positiveNegative(c.values, c.notValues, pred);
  switch (c.key) {
    case "source.ip":
      return pn((v) => ipBlockMatch(v, f.sourceIp));
    case "destination.ip":
      return pn((v) => ipBlockMatch(v, f.destinationIp));
    case "destination.port":
      return pn((v) => portMatch(v, f.port));
    case "source.namespace":
      return pn((v) => stringMatch(v, f.identity?.namespace));
    case "source.principal": {
      const principal = ztunnelPrincipal(f);
      return pn((v) => stringMatch(v, principal));
    }
    default:
      return false; // an HTTP attribute: an empty match, skipped
  }
}

export function entryMatches(e: RuleEntry, f: RequestFacts, mesh: MeshConfig): boolean {
  if (e.rule === undefined) return false;
  return mesh.profile === "ztunnel"
    ? ztunnelRuleMatches(e.policy, e.rule, f)
    : sidecarRuleMatches(e.policy, e.rule, f, mesh);
}

// ---------------------------------------------------------------------------------------------
// Decisions (shared wording with the compiled evaluator).

const ruleText = (ref: PolicyRef, rule: number) => `${refName(ref)} rule[${rule}]`;

const STEP_OF_ACTION = { ALLOW: "allow", DENY: "deny", CUSTOM: "custom" } as const;

/** A verdict that rule `rule` of policy `ref` (of that action) decided. */
function ruleDecision(
  action: "ALLOW" | "DENY" | "CUSTOM",
  ref: PolicyRef,
  rule: number,
  detail: string,
): AuthzDecision {
  const step = STEP_OF_ACTION[action];
  return { allowed: action === "ALLOW", step, policy: ref, rule, action, audits: [], detail };
}

/** The decision, naming the CUSTOM provider that was asked, when one was. */
function askedProvider(d: AuthzDecision, provider: string | undefined): AuthzDecision {
  if (provider !== undefined) d.provider = provider;
  return d;
}

export const decisions = {
  customMultiple(ref: PolicyRef, rule: number, providers: readonly string[]): AuthzDecision {
    return ruleDecision(
      "CUSTOM",
      ref,
      rule,
      `CUSTOM ${ruleText(ref, rule)} matched, but the workload's CUSTOM policies name several providers (${providers.join(
        ", ",
      )}); without PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS istiod denies what their rules match.`,
    );
  },
  customUnknown(ref: PolicyRef, rule: number, provider: string): AuthzDecision {
    const detail = `CUSTOM ${ruleText(ref, rule)} sends the request to provider "${provider}", whose answer is unknown: denied (fail closed; give the provider's answer to decide).`;
    return askedProvider(ruleDecision("CUSTOM", ref, rule, detail), provider);
  },
  customDenied(ref: PolicyRef, rule: number, provider: string): AuthzDecision {
    const detail = `CUSTOM ${ruleText(ref, rule)} sent the request to provider "${provider}", which denied it.`;
    return askedProvider(ruleDecision("CUSTOM", ref, rule, detail), provider);
  },
  deny(ref: PolicyRef, rule: number, provider: string | undefined): AuthzDecision {
    const detail = `DENY ${ruleText(ref, rule)} matched: denied.`;
    return askedProvider(ruleDecision("DENY", ref, rule, detail), provider);
  },
  noAllowPolicy(provider: string | undefined): AuthzDecision {
    const detail = `${
      provider === undefined ? "" : `CUSTOM provider "${provider}" allowed the request; `
    }no DENY rule matched and no ALLOW policy applies to the workload: allowed.`;
    return askedProvider({ allowed: true, step: "no-allow-policy", audits: [], detail }, provider);
  },
  allow(ref: PolicyRef, rule: number, provider: string | undefined): AuthzDecision {
    const detail = `ALLOW ${ruleText(ref, rule)} matched: allowed.`;
    return askedProvider(ruleDecision("ALLOW", ref, rule, detail), provider);
  },
  noAllowMatch(
    allowPolicies: readonly AuthorizationPolicy[],
    tcpDropped: boolean,
    provider: string | undefined,
  ) {
    const names = allowPolicies.map((p) => refName(p.ref)).sort();
    const shown =
      names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
    const detail = `ALLOW policies apply (${shown}) but none of their rules matched${
      tcpDropped ? " (rules with HTTP-only fields never match a TCP connection)" : ""
    }: denied.`;
    return askedProvider({ allowed: false, step: "no-allow-match", audits: [], detail }, provider);
  },
};

/**
 * Does this data plane never match the ALLOW rule on a TCP connection: on a sidecar it uses an
 * HTTP-only field; on ztunnel, any field ztunnel cannot enforce?
 */
export function allowRuleDroppedOnTcp(rule: Rule, mesh: MeshConfig): boolean {
  return mesh.profile === "ztunnel" ? ruleHasZtunnelUnsupported(rule) : ruleHasHttpOnly(rule);
}

/** Do some applying ALLOW rules use HTTP-only fields while the request is TCP (for the explanation)? */
export function allowRulesDroppedOnTcp(
  allow: readonly AuthorizationPolicy[],
  f: RequestFacts,
  mesh: MeshConfig,
): boolean {
  if (!f.tcp) return false;
  return allow.some((p) => p.rules !== "none" && p.rules.some((r) => allowRuleDroppedOnTcp(r, mesh)));
}

/**
 * Istio AuthorizationPolicy evaluated directly, rule by rule, in the order the API documents:
 * CUSTOM (the provider decides what its rules match), then any matching DENY denies, then no
 * ALLOW policy allows, then a matching ALLOW allows, else deny. AUDIT never changes the verdict;
 * dry-run policies have no effect. Slow on purpose: the yardstick for CompiledAuthz.
 *
 * Profiles: `sidecar` is Envoy RBAC as istiod builds it (HTTP-only fields on a TCP port drop an
 * ALLOW rule, and only the field in DENY/AUDIT/CUSTOM); `ztunnel` is istiod's L4 conversion
 * evaluated as ztunnel does (CUSTOM and AUDIT unsupported, HTTP fields never match, a DENY
 * clause left without L4 fields is a no-op, no trust-domain alias rewriting). A CUSTOM rule on a
 * sidecar TCP port is treated like a gRPC ext_authz provider's: the provider is asked (an HTTP
 * provider would not be consulted on TCP at all). No JWT is modelled: `requestPrincipals` and
 * `request.auth.*` never match positively. The source namespace is the principal's, never
 * `request.sourceNamespace` (Istio derives it from the peer certificate).
 */
export class ReferenceAuthz {
  constructor(
    private readonly policies: readonly AuthorizationPolicy[],
    private readonly mesh: MeshConfig,
  ) {}

  evaluate(target: MeshTarget, request: MeshRequest): AuthzDecision {
    const mesh = this.mesh;
    const f = requestFacts(target, request, mesh);
    const applying = this.policies.filter((p) => policyTakesPart(p, mesh) && policyApplies(p, target, mesh));
    const ofAction = (a: AuthzAction) => applying.filter((p) => p.action === a);
    const firstMatch = (a: AuthzAction) =>
      orderEntries(ofAction(a), mesh).find((e) => entryMatches(e, f, mesh));

    const audits = orderEntries(ofAction("AUDIT"), mesh)
      .filter((e) => entryMatches(e, f, mesh))
      .map((e) => ({ policy: e.policy.ref, rule: e.index }));
    const done = (d: AuthzDecision): AuthzDecision => ({ ...d, audits });

    let provider: string | undefined;
    const custom = firstMatch("CUSTOM");
    if (custom) {
      const providers = [...new Set(ofAction("CUSTOM").map((p) => p.provider ?? ""))].sort();
      if (providers.length > 1)
        return done(decisions.customMultiple(custom.policy.ref, custom.index, providers));
      provider = custom.policy.provider ?? "";
      const answer = request.extAuthz ?? mesh.extAuthz;
      if (answer === undefined)
        return done(decisions.customUnknown(custom.policy.ref, custom.index, provider));
      if (answer === "deny") return done(decisions.customDenied(custom.policy.ref, custom.index, provider));
    }
    const deny = firstMatch("DENY");
    if (deny) return done(decisions.deny(deny.policy.ref, deny.index, provider));
    const allowPolicies = ofAction("ALLOW");
    if (allowPolicies.length === 0) return done(decisions.noAllowPolicy(provider));
    const allow = firstMatch("ALLOW");
    if (allow) return done(decisions.allow(allow.policy.ref, allow.index, provider));
    return done(
      decisions.noAllowMatch(allowPolicies, allowRulesDroppedOnTcp(allowPolicies, f, mesh), provider),
    );
  }
}
