import { type Diagnostics, displayValue } from "../../../kube/errors.js";
import type { PolicyObject } from "../../../kube/objects.js";
import { type LabelSelector, type Requirement, selectorFromRequirements } from "../../../kube/selector.js";
import type { PolicyRef } from "../../netpol/model.js";
import {
  checkKindAndApiVersion,
  type Fail,
  isObj,
  matchLabelsEntries,
  type Obj,
  reportersFor,
  specMap,
} from "../security-object.js";
import { isPathTemplate, MATCH_ANY_TEMPLATE, MATCH_ONE_TEMPLATE, parsePrefix } from "./match.js";
import {
  AUTHZ_ACTIONS,
  type AuthorizationPolicy,
  type AuthzAction,
  type Condition,
  type Operation,
  type Rule,
  type Source,
  type TargetRef,
} from "./model.js";

/**
 * Validates an AuthorizationPolicy as the API server (CRD schema) and istiod's webhook
 * (`pkg/config/validation` `ValidateAuthorizationPolicy`, `pkg/config/security`) would, and
 * returns its model. Throws InputError (file:line, object) for what Istio refuses, and a few
 * things Istio accepts but that never do what they say (a `*` in the middle of a value, which
 * Envoy matches literally). Warns (Diagnostics) for valid but surprising policies.
 *
 * `obj.annotations` (metadata.annotations) carries `istio.io/dry-run`.
 */

const SPEC_FIELDS = ["selector", "targetRef", "targetRefs", "action", "provider", "rules"];
const RULE_FIELDS = ["from", "to", "when"];
const SOURCE_FIELDS = [
  "principals",
  "notPrincipals",
  "requestPrincipals",
  "notRequestPrincipals",
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "ipBlocks",
  "notIpBlocks",
  "remoteIpBlocks",
  "notRemoteIpBlocks",
  "trustDomains",
  "notTrustDomains",
] as const;
const OPERATION_FIELDS = [
  "hosts",
  "notHosts",
  "ports",
  "notPorts",
  "methods",
  "notMethods",
  "paths",
  "notPaths",
] as const;
const DRY_RUN = "istio.io/dry-run";

/** Target kinds a policy may reference (group "" is core). */
const TARGET_KINDS: readonly { group: string; kind: string }[] = [
  { group: "", kind: "Service" },
  { group: "networking.istio.io", kind: "ServiceEntry" },
  { group: "gateway.networking.k8s.io", kind: "Gateway" },
  { group: "gateway.networking.k8s.io", kind: "GatewayClass" },
];

/** An AuthorizationPolicy object as the parser reads it: a PolicyObject plus its annotations. */
/** A policy object as the loader gives it; `annotations` carries `istio.io/dry-run`. */
export type AuthzPolicyObject = PolicyObject;

/** Go's strconv.ParseBool. */
function parseGoBool(v: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  return undefined;
}

function stringList(raw: unknown, field: string, fail: Fail): string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) return fail("invalid-field", `${field} must be a list of strings`);
  return raw.map((v, i) => {
    if (typeof v !== "string") {
      return fail(
        "invalid-value",
        `${field}[${i}]: ${displayValue(v)} is not a string${
          typeof v === "number" || typeof v === "boolean" ? ` (quote it: "${displayValue(v)}")` : ""
        }`,
      );
    }
    return v;
  });
}

/**
 * A `*` only means something at the start (suffix match), at the end (prefix match) or alone
 * (presence); anywhere else Envoy matches it literally, which is never what the author meant.
 */
function checkWildcards(values: readonly string[], field: string, fail: Fail): void {
  values.forEach((v, i) => {
    if (v === "*" || !v.includes("*")) return;
    const inner = v.startsWith("*") ? v.slice(1) : v.endsWith("*") ? v.slice(0, -1) : v;
    if (inner.includes("*")) {
      fail(
        "invalid-wildcard",
        `${field}[${i}]: "${v}" has a "*" that is neither the whole value nor only at its start or end; Istio supports exact, prefix ("abc*"), suffix ("*abc") and presence ("*") matches, and Envoy would match this "*" literally`,
      );
    }
  });
}

function checkNotEmpty(values: readonly string[], field: string, fail: Fail): void {
  values.forEach((v, i) => {
    if (v === "") fail("empty-value", `${field}[${i}]: empty value not allowed`);
  });
}

function checkIps(values: readonly string[], field: string, fail: Fail): void {
  values.forEach((v, i) => {
    if (parsePrefix(v) === undefined) {
      fail(
        "invalid-ip",
        v.includes("/")
          ? `${field}[${i}]: bad CIDR range (${v}): expected an address and a prefix length such as 10.0.0.0/16 or 2001:db8::/32`
          : `${field}[${i}]: bad IP address (${v}): expected an IPv4 or IPv6 address or a CIDR`,
      );
    }
  });
}

function checkPorts(values: readonly string[], field: string, fail: Fail): void {
  values.forEach((v, i) => {
    if (!/^\d+$/.test(v) || Number(v) > 65535) {
      fail(
        "invalid-port",
        `${field}[${i}]: bad port (${v}): ports are numbers 0-65535 written as strings; named ports are not supported`,
      );
    }
  });
}

/** Istio's CheckValidPathTemplate, plus Envoy's rule that `{**}` is the last operator. */
function checkPaths(values: readonly string[], field: string, fail: Fail): void {
  const unsupported = /\/\{\w+=\*\*?\}|\{\w*\}|\/\*\*?|\*\*?\//;
  values.forEach((v, i) => {
    if (!isPathTemplate(v)) {
      if (v.includes("{") || v.includes("}")) {
        fail(
          "invalid-path-template",
          `${field}[${i}]: invalid or unsupported path template "${v}": only {*} (one segment) and {**} (any number of segments) are supported, without named variables; Envoy would match the braces literally`,
        );
      }
      if (v !== "*" && v.includes("*")) {
        const inner = v.startsWith("*") ? v.slice(1) : v.endsWith("*") ? v.slice(0, -1) : v;
        if (inner.includes("*")) {
          fail(
            "invalid-wildcard",
            `${field}[${i}]: "${v}" has a "*" inside the path; use a path template ({*} for one segment, {**} for any number) or a prefix ("/a/*") or suffix ("*.txt") match`,
          );
        }
      }
      return;
    }
    if (unsupported.test(v)) {
      fail(
        "invalid-path-template",
        `${field}[${i}]: invalid or unsupported path template "${v}": only {*} and {**} are supported, without named variables, {} or bare * / ** segments`,
      );
    }
    if (!v.startsWith("/")) {
      fail("invalid-path-template", `${field}[${i}]: path template "${v}" must start with "/"`);
    }
    const any = v.indexOf(MATCH_ANY_TEMPLATE);
    if (any >= 0) {
      const after = v.slice(any + MATCH_ANY_TEMPLATE.length);
      if (after.includes(MATCH_ONE_TEMPLATE) || after.includes(MATCH_ANY_TEMPLATE)) {
        fail(
          "invalid-path-template",
          `${field}[${i}]: path template "${v}": {**} must be the last operator (Envoy refuses the template and the listener)`,
        );
      }
    }
    // A template is matched whole: a leftover `*` outside {*} / {**} is literal in Envoy.
    const rest = v.split(MATCH_ANY_TEMPLATE).join("").split(MATCH_ONE_TEMPLATE).join("");
    if (rest.includes("*") || rest.includes("{") || rest.includes("}")) {
      fail(
        "invalid-path-template",
        `${field}[${i}]: invalid or unsupported path template "${v}": "*", "{" and "}" may only appear as {*} or {**}`,
      );
    }
  });
}

function checkServiceAccounts(values: readonly string[], field: string, fail: Fail): void {
  values.forEach((v, i) => {
    if (v === "") fail("empty-value", `${field}[${i}]: empty value not allowed`);
    const parts = v.split("/");
    if (parts.length > 2 || parts.some((p) => p === "")) {
      fail(
        "invalid-service-account",
        `${field}[${i}]: "${v}" must be "<name>" (in the policy's namespace) or "<namespace>/<name>"`,
      );
    }
    if (v.includes("*")) {
      fail(
        "invalid-service-account",
        `${field}[${i}]: "${v}": wildcards are not supported in serviceAccounts (use principals or namespaces)`,
      );
    }
  });
}

/** `a[b]` map keys (request.headers[x], request.auth.claims[x], experimental...[x]). */
function validMapKey(key: string): boolean {
  const open = key.indexOf("[");
  return key.endsWith("]") && open > 0 && open < key.length - 2;
}

const SIMPLE_KEYS = new Set([
  "source.ip",
  "remote.ip",
  "source.namespace",
  "source.serviceAccount",
  "source.principal",
  "request.auth.principal",
  "request.auth.audiences",
  "request.auth.presenter",
  "destination.ip",
  "destination.port",
  "connection.sni",
]);

/** Istio's ValidateAttribute for one `when` key and its values. */
function checkCondition(
  key: string,
  values: readonly string[],
  field: string,
  fail: Fail,
  policyNamespace: string,
): void {
  checkNotEmpty(values, field, fail);
  const mapKey = (prefix: string) => {
    if (!validMapKey(key))
      fail("invalid-condition-key", `${field}: bad key (${key}): should have format ${prefix}[name]`);
  };
  if (key.startsWith("request.headers")) mapKey("request.headers");
  else if (key.startsWith("request.experimental.inline.headers"))
    mapKey("request.experimental.inline.headers");
  else if (key.startsWith("request.auth.claims")) mapKey("request.auth.claims");
  else if (key.startsWith("experimental.envoy.filters.")) mapKey("experimental.envoy.filters.<filter>");
  else if (key === "source.ip" || key === "remote.ip" || key === "destination.ip")
    checkIps(values, field, fail);
  else if (key === "destination.port") checkPorts(values, field, fail);
  else if (key === "source.serviceAccount") checkServiceAccounts(values, field, fail);
  else if (SIMPLE_KEYS.has(key)) checkWildcards(values, field, fail);
  else unknownConditionKey(key, field, fail, policyNamespace);
}

function unknownConditionKey(key: string, field: string, fail: Fail, policyNamespace: string): never {
  if (key === "destination.namespace") {
    fail(
      "invalid-condition-key",
      `${field}: attribute ${key} is replaced by the metadata.namespace (the policy applies in namespace ${policyNamespace})`,
    );
  }
  if (key.startsWith("destination.labels"))
    fail("invalid-condition-key", `${field}: attribute ${key} is replaced by the workload selector`);
  if (key === "destination.name" || key === "destination.user")
    fail("invalid-condition-key", `${field}: deprecated attribute ${key}: only supported in v1alpha1`);
  fail(
    "unknown-condition-key",
    `${field}: unknown attribute: ${key} (expected request.headers[...], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[...], destination.ip, destination.port, connection.sni or experimental.envoy.filters.*)`,
  );
}

function unknownFields(o: Obj, allowed: readonly string[], field: string, fail: Fail): void {
  for (const k of Object.keys(o)) {
    if (allowed.includes(k)) continue;
    const near = allowed.find((a) => a.toLowerCase() === k.toLowerCase());
    fail(
      "unknown-field",
      `${field}.${k}: unknown field${near ? ` (did you mean "${near}"?)` : ` (expected ${allowed.join(", ")})`}; the API server refuses it`,
    );
  }
}

function parseSelectorField(raw: unknown, fail: Fail): { selector: LabelSelector; empty: boolean } {
  const requirements: Requirement[] = [];
  for (const [k, v] of matchLabelsEntries(raw, fail)) {
    if (k === "")
      fail("invalid-selector", "spec.selector.matchLabels: empty key is not supported in selector");
    if (typeof v !== "string") {
      fail(
        "invalid-selector",
        `spec.selector.matchLabels["${k}"]: ${displayValue(v)} is not a string (quote it: "${displayValue(v)}")`,
      );
    }
    if (k.includes("*") || (v as string).includes("*"))
      fail(
        "invalid-selector",
        `spec.selector.matchLabels: wildcard is not supported in selector: "${k}=${v}"`,
      );
    if ((v as string).length > 63)
      fail("invalid-selector", `spec.selector.matchLabels["${k}"]: value longer than 63 characters`);
    requirements.push({ key: k, operator: "In", values: [v as string] });
  }
  return { selector: selectorFromRequirements(requirements), empty: requirements.length === 0 };
}

function parseTargetRef(raw: unknown, field: string, policyNamespace: string, fail: Fail): TargetRef {
  if (!isObj(raw)) return fail("invalid-target-ref", `${field} must be a map (group, kind, name)`);
  unknownFields(raw, ["group", "kind", "name", "namespace"], field, fail);
  const str = (k: string): string | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") return fail("invalid-target-ref", `${field}.${k} must be a string`);
    return v;
  };
  const group = str("group") ?? "";
  const kind = str("kind") ?? "";
  const name = str("name") ?? "";
  const namespace = str("namespace");
  if (name === "") fail("invalid-target-ref", `${field}: targetRef name must be set`);
  if (namespace !== undefined && namespace !== "" && namespace !== policyNamespace) {
    fail(
      "invalid-target-ref",
      `${field}: targetRef namespace "${namespace}" is not the policy's namespace (${policyNamespace}); cross namespace referencing is not supported`,
    );
  }
  const canonical = (g: string) => (g === "" || g === "core" ? "" : g);
  if (!TARGET_KINDS.some((t) => t.kind === kind && t.group === canonical(group))) {
    fail(
      "invalid-target-ref",
      `${field}: targetRef must be to one of Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway or gateway.networking.k8s.io/GatewayClass, but was ${group}/${kind}`,
    );
  }
  return { group, kind, name, namespace: namespace === "" ? undefined : namespace };
}

/**
 * The string lists of a `from[].source` or `to[].operation` (absent lists are empty), after
 * refusing a nil or non-map entry, unknown fields, and an entry with no list set.
 */
function entryLists<K extends string>(
  raw: unknown,
  field: string,
  entry: "from.source" | "to.operation",
  fields: readonly K[],
  fail: Fail,
): Record<K, string[]> {
  const name = entry === "from.source" ? "source" : "operation";
  if (raw === undefined || raw === null)
    return fail(`missing-${name}`, `${field}: \`${entry}\` must not be nil`);
  if (!isObj(raw)) return fail(`invalid-${name}`, `${field}.${name} must be a map`);
  const f = `${field}.${name}`;
  unknownFields(raw, fields, f, fail);
  const lists = {} as Record<K, string[]>;
  for (const k of fields) lists[k] = stringList(raw[k], `${f}.${k}`, fail) ?? [];
  if (fields.every((k) => lists[k].length === 0))
    fail(
      `empty-${name}`,
      `${f}: \`${entry}\` must not be empty (set at least one field, or remove the entry)`,
    );
  return lists;
}

function parseSource(raw: unknown, field: string, action: AuthzAction, fail: Fail): Source {
  const lists = entryLists(raw, field, "from.source", SOURCE_FIELDS, fail);
  const f = `${field}.source`;
  const identity = ["principals", "notPrincipals", "namespaces", "notNamespaces"] as const;
  if (
    identity.some((k) => lists[k].length > 0) &&
    (lists.serviceAccounts.length > 0 || lists.notServiceAccounts.length > 0)
  ) {
    fail("invalid-source", `${f}: cannot set serviceAccounts with namespaces or principals`);
  }
  if (action === "CUSTOM") {
    for (const k of [
      "namespaces",
      "notNamespaces",
      "serviceAccounts",
      "notServiceAccounts",
      "principals",
      "notPrincipals",
      "requestPrincipals",
      "notRequestPrincipals",
    ] as const) {
      if (lists[k].length > 0)
        fail(
          "custom-unsupported",
          `${f}.${k}: From.${k[0]?.toUpperCase()}${k.slice(1)} is currently not supported with CUSTOM action`,
        );
    }
  }
  for (const k of ["ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"] as const) {
    checkNotEmpty(lists[k], `${f}.${k}`, fail);
    checkIps(lists[k], `${f}.${k}`, fail);
  }
  for (const k of ["serviceAccounts", "notServiceAccounts"] as const)
    checkServiceAccounts(lists[k], `${f}.${k}`, fail);
  for (const k of [
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "trustDomains",
    "notTrustDomains",
  ] as const) {
    checkNotEmpty(lists[k], `${f}.${k}`, fail);
    checkWildcards(lists[k], `${f}.${k}`, fail);
  }
  return lists;
}

function parseOperation(raw: unknown, field: string, fail: Fail): Operation {
  const lists = entryLists(raw, field, "to.operation", OPERATION_FIELDS, fail);
  const f = `${field}.operation`;
  for (const k of OPERATION_FIELDS) checkNotEmpty(lists[k], `${f}.${k}`, fail);
  checkPorts(lists.ports, `${f}.ports`, fail);
  checkPorts(lists.notPorts, `${f}.notPorts`, fail);
  checkPaths(lists.paths, `${f}.paths`, fail);
  checkPaths(lists.notPaths, `${f}.notPaths`, fail);
  for (const k of ["hosts", "notHosts", "methods", "notMethods"] as const)
    checkWildcards(lists[k], `${f}.${k}`, fail);
  return lists;
}

function parseCondition(raw: unknown, field: string, action: AuthzAction, ns: string, fail: Fail): Condition {
  if (!isObj(raw)) return fail("invalid-condition", `${field} must be a map (key, values, notValues)`);
  unknownFields(raw, ["key", "values", "notValues"], field, fail);
  const key = raw.key;
  if (key === undefined || key === null || key === "")
    return fail("invalid-condition", `${field}: \`key\` must not be empty`);
  if (typeof key !== "string") return fail("invalid-condition", `${field}.key must be a string`);
  const values = stringList(raw.values, `${field}.values`, fail) ?? [];
  const notValues = stringList(raw.notValues, `${field}.notValues`, fail) ?? [];
  if (values.length === 0 && notValues.length === 0)
    fail(
      "invalid-condition",
      `${field}: at least one of \`values\` or \`notValues\` must be set for key ${key}`,
    );
  checkCondition(key, values, `${field}.values`, fail, ns);
  checkCondition(key, notValues, `${field}.notValues`, fail, ns);
  if (
    action === "CUSTOM" &&
    (key === "source.namespace" ||
      key === "source.serviceAccount" ||
      key === "source.principal" ||
      key.startsWith("request.auth."))
  ) {
    fail("custom-unsupported", `${field}: ${key} is currently not supported with CUSTOM action`);
  }
  return { key, values, notValues };
}

/** Source fields a TCP connection can match: all but the request principals (they need a JWT). */
const TCP_SOURCE_FIELDS = SOURCE_FIELDS.filter(
  (k) => k !== "requestPrincipals" && k !== "notRequestPrincipals",
);

function parseRule(raw: unknown, index: number, action: AuthzAction, ns: string, fail: Fail): Rule {
  const field = `spec.rules[${index}]`;
  if (raw === null || raw === undefined) return fail("invalid-rule", `${field}: \`rule\` must not be nil`);
  if (!isObj(raw)) return fail("invalid-rule", `${field} must be a map (from, to, when)`);
  unknownFields(raw, RULE_FIELDS, field, fail);
  const list = (k: string): unknown[] | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) return fail("invalid-rule", `${field}.${k} must be a list`);
    if (v.length === 0 && k !== "when")
      return fail(
        "invalid-rule",
        `${field}.${k}: \`${k}\` must not be empty, found at rule ${index} (remove it to match any ${k === "from" ? "source" : "operation"})`,
      );
    return v;
  };
  const from = (list("from") ?? []).map((f, i) => {
    const at = `${field}.from[${i}]`;
    if (!isObj(f))
      return fail("invalid-rule", `${at}: \`from\` must not be nil (expected a map with source)`);
    unknownFields(f, ["source"], at, fail);
    return parseSource(f.source, at, action, fail);
  });
  const to = (list("to") ?? []).map((t, i) => {
    const at = `${field}.to[${i}]`;
    if (!isObj(t))
      return fail("invalid-rule", `${at}: \`to\` must not be nil (expected a map with operation)`);
    unknownFields(t, ["operation"], at, fail);
    return parseOperation(t.operation, at, fail);
  });
  const when = (list("when") ?? []).map((c, i) => parseCondition(c, `${field}.when[${i}]`, action, ns, fail));
  return { index, from, to, when };
}

/** Istio's webhook warning: a DENY rule with only HTTP attributes denies every TCP connection in scope. */
function denyAllTcp(rule: Rule): boolean {
  const fromExist = rule.from.length > 0;
  const toExist = rule.to.length > 0;
  const tcpInFrom = rule.from.some((s) => TCP_SOURCE_FIELDS.some((k) => s[k].length > 0));
  const tcpInTo = rule.to.some((o) => o.ports.length > 0 || o.notPorts.length > 0);
  return (fromExist && !toExist && !tcpInFrom) || (toExist && !tcpInTo);
}

/** Values Istio accepts that can never match, or that leave a DENY easy to bypass. */
function surprisingValues(
  rules: readonly Rule[],
  action: AuthzAction,
  warn: (code: string, m: string) => void,
): void {
  for (const r of rules) {
    r.to.forEach((o, i) => {
      const at = `spec.rules[${r.index}].to[${i}].operation`;
      for (const m of [...o.methods, ...o.notMethods]) {
        if (m !== m.toUpperCase()) {
          warn(
            "method-case",
            `${at}: method "${m}" is matched case-sensitively against the request's method, which is upper case ("${m.toUpperCase()}")`,
          );
        }
      }
      for (const p of [...o.paths, ...o.notPaths]) {
        if (!p.startsWith("/") && !p.startsWith("*")) {
          warn(
            "path-never-matches",
            `${at}: path "${p}" does not start with "/": it never matches a request path`,
          );
        } else if (p.includes("?") || p.includes("#")) {
          warn(
            "path-never-matches",
            `${at}: path "${p}" has a query or fragment, but paths are matched without the query string: it never matches`,
          );
        }
      }
      const hosts = action === "DENY" ? o.hosts : o.notHosts;
      for (const h of hosts) {
        if (h.includes("*") || h.includes(":")) continue;
        if (hosts.some((x) => x.toLowerCase() === `${h.toLowerCase()}:*`)) continue;
        warn(
          "host-without-port",
          `${at}: ${action === "DENY" ? "hosts" : "notHosts"} "${h}" matches only a Host header without port; a request to "${h}:<port>" is not ${
            action === "DENY" ? "denied" : "excluded"
          } (add "${h}:*")`,
        );
      }
    });
  }
}

export function parseAuthorizationPolicy(obj: AuthzPolicyObject, diag: Diagnostics): AuthorizationPolicy {
  const { fail, warn } = reportersFor(obj, "AuthorizationPolicy", diag);
  checkKindAndApiVersion(obj, "AuthorizationPolicy", fail);
  const spec = specMap(obj, fail);
  unknownFields(spec, SPEC_FIELDS, "spec", fail);
  const ref: PolicyRef = {
    kind: "AuthorizationPolicy",
    namespace: obj.namespace,
    name: obj.name,
    source: obj.source,
  };

  // action
  let action: AuthzAction = "ALLOW";
  if (spec.action !== undefined && spec.action !== null) {
    if (typeof spec.action !== "string" || !AUTHZ_ACTIONS.includes(spec.action as AuthzAction)) {
      fail(
        "invalid-action",
        `spec.action: "${displayValue(spec.action)}" is not one of ALLOW, DENY, CUSTOM, AUDIT (upper case)`,
      );
    }
    action = spec.action as AuthzAction;
  }

  // selector / targetRef / targetRefs
  let selector: LabelSelector | undefined;
  if (spec.selector !== undefined && spec.selector !== null) {
    const s = parseSelectorField(spec.selector, fail);
    selector = s.selector;
    if (s.empty) {
      warn(
        "empty-selector",
        `spec.selector has no matchLabels (workload selector specified without labels): it selects every workload of namespace ${obj.namespace} (every namespace, in the root namespace)`,
      );
    }
  }
  const targetRefs: TargetRef[] = [];
  const hasSingle = spec.targetRef !== undefined && spec.targetRef !== null;
  if (hasSingle) targetRefs.push(parseTargetRef(spec.targetRef, "spec.targetRef", obj.namespace, fail));
  let pluralCount = 0;
  if (spec.targetRefs !== undefined && spec.targetRefs !== null) {
    if (!Array.isArray(spec.targetRefs)) fail("invalid-target-ref", "spec.targetRefs must be a list");
    const list = spec.targetRefs as unknown[];
    pluralCount = list.length;
    list.forEach((r, i) => {
      targetRefs.push(parseTargetRef(r, `spec.targetRefs[${i}]`, obj.namespace, fail));
    });
  }
  if ((selector ? 1 : 0) + (hasSingle ? 1 : 0) + (pluralCount > 0 ? 1 : 0) > 1) {
    fail(
      "selector-and-target-ref",
      "only one of targetRefs or workloadSelector can be set (spec.selector, spec.targetRef and spec.targetRefs are exclusive)",
    );
  }

  // provider
  let provider: string | undefined;
  if (spec.provider !== undefined && spec.provider !== null) {
    if (!isObj(spec.provider)) fail("invalid-provider", "spec.provider must be a map with name");
    const p = spec.provider as Obj;
    unknownFields(p, ["name"], "spec.provider", fail);
    if (p.name !== undefined && p.name !== null && typeof p.name !== "string")
      fail("invalid-provider", "spec.provider.name must be a string");
    provider = typeof p.name === "string" && p.name !== "" ? p.name : undefined;
    if (action !== "CUSTOM")
      fail("provider-without-custom", `\`provider\` must not be with non CUSTOM action, found ${action}`);
  }

  // rules
  let rawRules: unknown[] | undefined;
  if (spec.rules !== undefined && spec.rules !== null) {
    if (!Array.isArray(spec.rules)) fail("invalid-rules", "spec.rules must be a list");
    rawRules = spec.rules as unknown[];
  }
  const noRules = rawRules === undefined || rawRules.length === 0;
  if (action === "DENY" && noRules) {
    fail(
      "deny-without-rules",
      "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
    );
  }
  if (action === "CUSTOM") {
    if (noRules) {
      fail(
        "custom-without-rules",
        "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
      );
    }
    if (provider === undefined)
      fail(
        "custom-without-provider",
        "CUSTOM action needs `provider.name` (an extension provider of the mesh config)",
      );
  }
  const rules = noRules
    ? ("none" as const)
    : (rawRules as unknown[]).map((r, i) => parseRule(r, i, action, obj.namespace, fail));

  // dry-run
  let dryRun = false;
  const annotation = obj.annotations?.[DRY_RUN];
  if (annotation !== undefined) {
    const b = parseGoBool(annotation);
    if (b === undefined) {
      warn(
        "invalid-dry-run",
        `annotation ${DRY_RUN}: "${annotation}" is not a boolean (true/false); Istio treats it as false and enforces the policy`,
      );
    } else dryRun = b;
  }

  // warnings
  if (dryRun) {
    warn(
      "dry-run",
      `annotation ${DRY_RUN}=true: the policy is only evaluated for logs and metrics and never enforced (ztunnel ignores it unless dry-run support is enabled)`,
    );
  }
  if (action === "AUDIT") {
    warn(
      "audit-no-provider",
      "AUDIT only marks requests for an audit logging provider (a Telemetry resource with an extension provider); it never allows or denies, and without such a provider it has no visible effect",
    );
  }
  if (action === "DENY" && rules !== "none") {
    for (const r of rules) {
      if (denyAllTcp(r)) {
        warn(
          "deny-http-only-on-tcp",
          `spec.rules[${r.index}] uses only HTTP attributes in a DENY rule: the sidecar drops them on TCP ports, so it will deny all traffic to TCP ports under its scope; it is recommended to explicitly specify the port`,
        );
      }
    }
  }
  if (rules !== "none") surprisingValues(rules, action, warn);
  if (targetRefs.length > 0) {
    warn(
      "target-ref-not-sidecar",
      "the policy is bound with targetRef(s) to a gateway, waypoint or Service: sidecars and ztunnel never enforce it",
    );
  }

  return { ref, action, provider, selector, targetRefs, rules, dryRun };
}
