import type { LabelSelector } from "../../../kube/selector.js";
import type { PolicyRef } from "../../netpol/model.js";

/**
 * Istio AuthorizationPolicy (security.istio.io v1 / v1beta1), parsed and validated, values kept
 * as written (`*` patterns, CIDRs and ports stay strings): the evaluators decide what they mean,
 * the reference one directly and the compiled one after compiling them.
 */

export type AuthzAction = "ALLOW" | "DENY" | "CUSTOM" | "AUDIT";

export const AUTHZ_ACTIONS: readonly AuthzAction[] = ["ALLOW", "DENY", "CUSTOM", "AUDIT"];

/** `spec.targetRef` / `spec.targetRefs[]`: binds the policy to a gateway, waypoint or Service. */
export interface TargetRef {
  /** As written; "" is the core group. */
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  /** As written (Istio refuses any other namespace than the policy's). */
  readonly namespace: string | undefined;
}

/** `rules[].from[].source`. Absent lists are empty. */
export interface Source {
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  readonly serviceAccounts: readonly string[];
  readonly notServiceAccounts: readonly string[];
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
  readonly remoteIpBlocks: readonly string[];
  readonly notRemoteIpBlocks: readonly string[];
  /** Extended-channel fields. */
  readonly trustDomains: readonly string[];
  readonly notTrustDomains: readonly string[];
}

/** `rules[].to[].operation`. Absent lists are empty. */
export interface Operation {
  readonly hosts: readonly string[];
  readonly notHosts: readonly string[];
  /** Decimal strings, validated 0-65535. */
  readonly ports: readonly string[];
  readonly notPorts: readonly string[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

/** `rules[].when[]`. */
export interface Condition {
  /** As written: `request.headers[x-foo]`, `source.ip`, ... */
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

export interface Rule {
  /** Position in `spec.rules`, from 0 (what Istio names `rule[i]`). */
  readonly index: number;
  /** Empty: any source (the field was absent). */
  readonly from: readonly Source[];
  /** Empty: any operation (the field was absent). */
  readonly to: readonly Operation[];
  /** ANDed. */
  readonly when: readonly Condition[];
}

export interface AuthorizationPolicy {
  readonly ref: PolicyRef;
  readonly action: AuthzAction;
  /** `spec.provider.name` (CUSTOM only). */
  readonly provider: string | undefined;
  /**
   * `spec.selector.matchLabels`; undefined when absent. An empty `matchLabels` selects every
   * workload (Istio warns about it).
   */
  readonly selector: LabelSelector | undefined;
  /**
   * `spec.targetRef` and `spec.targetRefs`. Non-empty: the policy is bound to gateways,
   * waypoints or Services and never applies to a sidecar or ztunnel.
   */
  readonly targetRefs: readonly TargetRef[];
  /** "none": `spec: {}` or no rules, a policy that never matches (ALLOW and AUDIT only). */
  readonly rules: readonly Rule[] | "none";
  /** The `istio.io/dry-run` annotation is true: the policy is evaluated but never enforced. */
  readonly dryRun: boolean;
}

/** `when` keys that need an HTTP request (headers, JWT claims). */
export function isHttpOnlyConditionKey(key: string): boolean {
  return (
    key.startsWith("request.headers") ||
    key.startsWith("request.experimental.inline.headers") ||
    key.startsWith("request.auth.")
  );
}

/** `when` keys that ztunnel enforces; istiod treats every other key as an HTTP attribute for ztunnel. */
export const ZTUNNEL_CONDITION_KEYS: ReadonlySet<string> = new Set([
  "source.ip",
  "source.namespace",
  "source.principal",
  "destination.ip",
  "destination.port",
]);

/** Does the source use a field that ztunnel cannot enforce (istiod drops it for ztunnel)? */
export function sourceHasZtunnelUnsupported(s: Source): boolean {
  return (
    s.requestPrincipals.length > 0 ||
    s.notRequestPrincipals.length > 0 ||
    s.remoteIpBlocks.length > 0 ||
    s.notRemoteIpBlocks.length > 0 ||
    s.trustDomains.length > 0 ||
    s.notTrustDomains.length > 0
  );
}

export function sourceHasHttpOnly(s: Source): boolean {
  return s.requestPrincipals.length > 0 || s.notRequestPrincipals.length > 0;
}

export function operationHasHttpOnly(o: Operation): boolean {
  return (
    o.hosts.length > 0 ||
    o.notHosts.length > 0 ||
    o.methods.length > 0 ||
    o.notMethods.length > 0 ||
    o.paths.length > 0 ||
    o.notPaths.length > 0
  );
}

/** Does the rule use any HTTP-only field (so an ALLOW drops it on TCP)? */
export function ruleHasHttpOnly(rule: Rule): boolean {
  return (
    rule.from.some(sourceHasHttpOnly) ||
    rule.to.some(operationHasHttpOnly) ||
    rule.when.some((c) => isHttpOnlyConditionKey(c.key))
  );
}

/**
 * Does the rule use a field ztunnel cannot enforce (an HTTP field, a `when` key other than the
 * L4 ones, a source field istiod drops for ztunnel)? ztunnel never matches such an ALLOW rule.
 */
export function ruleHasZtunnelUnsupported(rule: Rule): boolean {
  return (
    rule.to.some(operationHasHttpOnly) ||
    rule.from.some(sourceHasZtunnelUnsupported) ||
    rule.when.some((c) => !ZTUNNEL_CONDITION_KEYS.has(c.key))
  );
}

/** Istio's rule name in Envoy RBAC: `ns[<ns>]-policy[<name>]-rule[<i>]`; Envoy evaluates rules in this order. */
export function envoyRuleName(ref: PolicyRef, rule: number): string {
  return `ns[${ref.namespace}]-policy[${ref.name}]-rule[${rule}]`;
}

/** `ns/name` for messages. */
export function refName(ref: PolicyRef): string {
  return `${ref.namespace}/${ref.name}`;
}
