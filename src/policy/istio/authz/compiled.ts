import type { Labels } from "../../../kube/labels.js";
import type { MeshConfig, MeshRequest, MeshTarget } from "../mesh.js";
import {
  escapeRegex,
  expandPrincipals,
  expandTrustDomains,
  headerNameOf,
  headerValue,
  type IpAddr,
  type IpPrefix,
  isPathTemplate,
  parsePattern,
  parsePrefix,
  pathTemplateRegex,
  prefixContains,
  type RequestFacts,
  requestFacts,
  splitServiceAccount,
  trustDomainBundle,
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
import {
  type AuthzDecision,
  allowRuleDroppedOnTcp,
  decisions,
  policyApplies,
  policyTakesPart,
} from "./reference.js";

/**
 * The same decisions as ReferenceAuthz, fast: policies indexed by namespace (plus the root
 * namespace), the policies and rule order for a workload computed once per namespace and label
 * set, every value compiled once (exact values in Sets, prefix and suffix lists, one regex per
 * field for namespaces, service accounts and path templates), and the request's derived values
 * (normalized path, parsed addresses) computed once per request.
 */

type Matcher = (f: RequestFacts) => boolean;
const NEVER: Matcher = () => false;
const ALWAYS: Matcher = () => true;

// ---------------------------------------------------------------------------------------------
// Compiled value sets.

/** A compiled list of patterns. `presence`: `*` matches any defined value (headers), else non-empty. */
class PatternSet {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly suffixes: string[] = [];
  private any = false;

  constructor(
    values: readonly string[],
    private readonly ignoreCase: boolean,
    private readonly presence: boolean,
  ) {
    for (const raw of values) {
      const p = parsePattern(raw);
      const t = ignoreCase ? p.text.toLowerCase() : p.text;
      if (p.kind === "any") this.any = true;
      else if (p.kind === "exact") this.exact.add(t);
      else if (p.kind === "prefix") this.prefixes.push(t);
      else this.suffixes.push(t);
    }
  }

  has(value: string | undefined): boolean {
    if (value === undefined) return false;
    if (this.any && (this.presence || value.length > 0)) return true;
    const v = this.ignoreCase ? value.toLowerCase() : value;
    if (this.exact.has(v)) return true;
    for (const p of this.prefixes) if (v.startsWith(p)) return true;
    for (const s of this.suffixes) if (v.endsWith(s)) return true;
    return false;
  }
}

/** values any-match and notValues none-match, from one "does this value match" compiler. */
function field<T>(
  values: readonly string[],
  notValues: readonly string[],
  compile: (vs: readonly string[]) => (x: T) => boolean,
  get: (f: RequestFacts) => T,
): Matcher | undefined {
  const pos = values.length > 0 ? compile(values) : undefined;
  const neg = notValues.length > 0 ? compile(notValues) : undefined;
  if (pos && neg) return (f) => pos(get(f)) && !neg(get(f));
  if (pos) return (f) => pos(get(f));
  if (neg) return (f) => !neg(get(f));
  return undefined;
}

function and(ms: readonly (Matcher | undefined)[]): Matcher {
  const list = ms.filter((m): m is Matcher => m !== undefined && m !== ALWAYS);
  if (list.some((m) => m === NEVER)) return NEVER;
  if (list.length === 0) return ALWAYS;
  if (list.length === 1) return list[0] as Matcher;
  if (list.length === 2) {
    const [a, b] = list as [Matcher, Matcher];
    return (f) => a(f) && b(f);
  }
  return (f) => {
    for (const m of list) if (!m(f)) return false;
    return true;
  };
}

function or(ms: readonly Matcher[]): Matcher {
  const list = ms.filter((m) => m !== NEVER);
  if (list.some((m) => m === ALWAYS)) return ALWAYS;
  if (list.length === 0) return NEVER;
  if (list.length === 1) return list[0] as Matcher;
  return (f) => {
    for (const m of list) if (m(f)) return true;
    return false;
  };
}

const patterns =
  (ignoreCase = false, presence = false) =>
  (vs: readonly string[]) => {
    const s = new PatternSet(vs, ignoreCase, presence);
    return (v: string | undefined) => s.has(v);
  };

const ipBlocks = (vs: readonly string[]) => {
  const prefixes = vs.map(parsePrefix).filter((p): p is IpPrefix => p !== undefined);
  return (ip: IpAddr | undefined) => {
    if (ip === undefined) return false;
    for (const p of prefixes) if (prefixContains(p, ip)) return true;
    return false;
  };
};

const ports = (vs: readonly string[]) => {
  const set = new Set(vs.filter((v) => /^\d+$/.test(v)).map(Number));
  return (port: number) => set.has(port);
};

const regexAlternatives = (build: (v: string) => string) => (vs: readonly string[]) => {
  const re = new RegExp(`^(?:${vs.map((v) => `(?:${build(v)})`).join("|")})$`);
  return (v: string | undefined) => v !== undefined && re.test(v);
};

const sidecarNamespaces = regexAlternatives((v) => `.*/ns/${v.split("*").map(escapeRegex).join(".*")}/.*`);

const sidecarServiceAccounts = (policyNs: string) =>
  regexAlternatives((v) => {
    const { ns, sa } = splitServiceAccount(v, policyNs);
    return `.+/ns/${escapeRegex(ns)}/(?:.+/|)sa/${escapeRegex(sa)}(?:/.+)?`;
  });

const paths = (vs: readonly string[]) => {
  const templates = vs.filter(isPathTemplate).map(pathTemplateRegex);
  const plain = new PatternSet(
    vs.filter((v) => !isPathTemplate(v)),
    false,
    false,
  );
  return (p: string | undefined) => {
    if (p === undefined) return false;
    if (plain.has(p)) return true;
    for (const t of templates) if (t.test(p)) return true;
    return false;
  };
};

const trustDomainSegment = (f: RequestFacts): string | undefined => {
  const p = f.principal;
  if (p === undefined) return undefined;
  const slash = p.indexOf("/");
  return slash < 0 ? undefined : p.slice(0, slash);
};

const trustDomains = (vs: readonly string[]) => {
  const any = vs.includes("*");
  const s = new PatternSet(
    vs.filter((v) => v !== "*"),
    false,
    false,
  );
  return (td: string | undefined) => td !== undefined && (any || s.has(td));
};

const nothing = () => () => false;

// ---------------------------------------------------------------------------------------------
// Sidecar rules: one matcher for HTTP requests, one for TCP connections.

function compileSidecarRule(
  policy: AuthorizationPolicy,
  rule: Rule,
  tcp: boolean,
  mesh: MeshConfig,
): Matcher {
  if (tcp && policy.action === "ALLOW" && ruleHasHttpOnly(rule)) return NEVER;
  const ns = policy.ref.namespace;
  const bundle = trustDomainBundle(mesh);
  const principal = (f: RequestFacts) => f.principal;

  const source = (s: Source): Matcher =>
    and([
      field(
        expandPrincipals(s.principals, bundle),
        expandPrincipals(s.notPrincipals, bundle),
        patterns(),
        principal,
      ),
      tcp ? undefined : field(s.requestPrincipals, s.notRequestPrincipals, nothing, principal),
      field(s.namespaces, s.notNamespaces, sidecarNamespaces, principal),
      field(s.serviceAccounts, s.notServiceAccounts, sidecarServiceAccounts(ns), principal),
      field(s.ipBlocks, s.notIpBlocks, ipBlocks, (f) => f.sourceIp),
      field(s.remoteIpBlocks, s.notRemoteIpBlocks, ipBlocks, (f) => f.sourceIp),
      field(
        expandTrustDomains(s.trustDomains, bundle),
        expandTrustDomains(s.notTrustDomains, bundle),
        trustDomains,
        trustDomainSegment,
      ),
    ]);
  const operation = (o: Operation): Matcher =>
    and([
      field(o.ports, o.notPorts, ports, (f) => f.port),
      tcp ? undefined : field(o.hosts, o.notHosts, patterns(true, true), (f) => f.host),
      tcp ? undefined : field(o.methods, o.notMethods, patterns(false, true), (f) => f.method),
      tcp ? undefined : field(o.paths, o.notPaths, paths, (f) => f.path),
    ]);
  const condition = (c: Condition): Matcher | undefined => {
    const k = c.key;
    const pn = <T>(compile: (vs: readonly string[]) => (x: T) => boolean, get: (f: RequestFacts) => T) =>
      field(c.values, c.notValues, compile, get);
    if (isHttpOnlyConditionKey(k)) {
      if (tcp) return undefined;
      const header = headerNameOf(k);
      if (header !== undefined) return pn(patterns(false, true), (f) => headerValue(f, header));
      return pn(nothing, principal);
    }
    switch (k) {
      case "source.ip":
      case "remote.ip":
        return pn(ipBlocks, (f) => f.sourceIp);
      case "destination.ip":
        return pn(ipBlocks, (f) => f.destinationIp);
      case "destination.port":
        return pn(ports, (f) => f.port);
      case "connection.sni":
        return pn(patterns(), (f) => f.sni);
      case "source.namespace":
        return pn(sidecarNamespaces, principal);
      case "source.serviceAccount":
        return pn(sidecarServiceAccounts(ns), principal);
      case "source.principal":
        return field(
          expandPrincipals(c.values, bundle),
          expandPrincipals(c.notValues, bundle),
          patterns(),
          principal,
        );
    }
    if (k.startsWith("experimental.envoy.filters.")) return pn(nothing, principal);
    return NEVER;
  };
  return and([
    rule.from.length > 0 ? or(rule.from.map(source)) : undefined,
    rule.to.length > 0 ? or(rule.to.map(operation)) : undefined,
    ...rule.when.map(condition),
  ]);
}

// ---------------------------------------------------------------------------------------------
// ztunnel rules.

const ztunnelNamespace = (f: RequestFacts) => f.identity?.namespace;

function compileZtunnelRule(policy: AuthorizationPolicy, rule: Rule): Matcher {
  if (policy.action === "ALLOW" && ruleHasZtunnelUnsupported(rule)) return NEVER;
  const ns = policy.ref.namespace;
  const operation = (o: Operation): Matcher =>
    o.ports.length === 0 && o.notPorts.length === 0
      ? NEVER
      : and([field(o.ports, o.notPorts, ports, (f) => f.port)]);
  const source = (s: Source): Matcher => {
    const sas = (vs: readonly string[]) => {
      const set = new Set(
        vs.map((v) => {
          const { ns: n, sa } = splitServiceAccount(v, ns);
          return `${n}/${sa}`;
        }),
      );
      return (id: RequestFacts["identity"]) =>
        id !== undefined && set.has(`${id.namespace}/${id.serviceAccount}`);
    };
    const fields = [
      field(s.ipBlocks, s.notIpBlocks, ipBlocks, (f) => f.sourceIp),
      field(s.serviceAccounts, s.notServiceAccounts, sas, (f) => f.identity),
      field(s.principals, s.notPrincipals, patterns(), ztunnelPrincipal),
      field(s.namespaces, s.notNamespaces, patterns(), ztunnelNamespace),
    ];
    return fields.every((m) => m === undefined) ? NEVER : and(fields);
  };
  const condition = (c: Condition): Matcher => {
    const pn = <T>(compile: (vs: readonly string[]) => (x: T) => boolean, get: (f: RequestFacts) => T) =>
      field(c.values, c.notValues, compile, get) ?? NEVER;
    switch (c.key) {
      case "source.ip":
        return pn(ipBlocks, (f) => f.sourceIp);
      case "destination.ip":
        return pn(ipBlocks, (f) => f.destinationIp);
      case "destination.port":
        return pn(ports, (f) => f.port);
      case "source.namespace":
        return pn(patterns(), ztunnelNamespace);
      case "source.principal":
        return pn(patterns(), ztunnelPrincipal);
      default:
        return NEVER;
    }
  };
  return and([
    rule.to.length > 0 ? or(rule.to.map(operation)) : undefined,
    rule.from.length > 0 ? or(rule.from.map(source)) : undefined,
    ...rule.when.map(condition),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Policies, plans, evaluation.

interface CompiledEntry {
  readonly policy: AuthorizationPolicy;
  readonly index: number;
  readonly http: Matcher;
  readonly tcp: Matcher;
  /** Sort key within an action: Envoy's policy name, or ztunnel's (group, name, rule). */
  readonly key: string;
}

interface CompiledPolicy {
  readonly policy: AuthorizationPolicy;
  readonly entries: readonly CompiledEntry[];
  /** An applying ALLOW rule uses fields a TCP connection cannot match (for the explanation). */
  readonly tcpDropped: boolean;
}

/** What applies to one workload (namespace + labels), in evaluation order. */
interface Plan {
  readonly audit: readonly CompiledEntry[];
  readonly custom: readonly CompiledEntry[];
  readonly customProviders: readonly string[];
  readonly deny: readonly CompiledEntry[];
  readonly allow: readonly CompiledEntry[];
  readonly allowPolicies: readonly AuthorizationPolicy[];
  readonly allowTcpDropped: boolean;
}

const PLAN_CACHE_LIMIT = 10_000;

export class CompiledAuthz {
  private readonly byNamespace = new Map<string, CompiledPolicy[]>();
  private readonly plans = new Map<string, Plan>();
  private readonly plansByTarget = new WeakMap<MeshTarget, Plan>();
  private readonly labelKeys = new WeakMap<Labels, string>();

  constructor(
    readonly policies: readonly AuthorizationPolicy[],
    private readonly mesh: MeshConfig,
  ) {
    const ztunnel = mesh.profile === "ztunnel";
    for (const policy of policies) {
      if (!policyTakesPart(policy, mesh)) continue;
      const group = policy.selector !== undefined ? 2 : policy.ref.namespace === mesh.rootNamespace ? 1 : 0;
      const keyOf = (index: number) =>
        ztunnel
          ? `${group}\u0000${refName(policy.ref)}\u0000${String(index).padStart(10, "0")}`
          : envoyRuleName(policy.ref, index);
      const entries: CompiledEntry[] =
        policy.rules === "none"
          ? [{ policy, index: 0, http: NEVER, tcp: NEVER, key: keyOf(0) }]
          : policy.rules.map((r) => {
              const http = ztunnel
                ? compileZtunnelRule(policy, r)
                : compileSidecarRule(policy, r, false, mesh);
              const tcp = ztunnel ? http : compileSidecarRule(policy, r, true, mesh);
              return { policy, index: r.index, http, tcp, key: keyOf(r.index) };
            });
      const tcpDropped = policy.rules !== "none" && policy.rules.some((r) => allowRuleDroppedOnTcp(r, mesh));
      const list = this.byNamespace.get(policy.ref.namespace);
      const cp = { policy, entries, tcpDropped };
      if (list) list.push(cp);
      else this.byNamespace.set(policy.ref.namespace, [cp]);
    }
  }

  private labelKey(labels: Labels): string {
    let k = this.labelKeys.get(labels);
    if (k === undefined) {
      k = Object.keys(labels)
        .sort()
        .map((name) => `${name}=${labels[name]}`)
        .join("\u0000");
      this.labelKeys.set(labels, k);
    }
    return k;
  }

  private planFor(target: MeshTarget): Plan {
    const byTarget = this.plansByTarget.get(target);
    if (byTarget) return byTarget;
    const key = `${target.namespace}\u0001${this.labelKey(target.labels)}`;
    let plan = this.plans.get(key);
    if (plan === undefined) {
      plan = this.buildPlan(target);
      if (this.plans.size >= PLAN_CACHE_LIMIT) this.plans.clear();
      this.plans.set(key, plan);
    }
    this.plansByTarget.set(target, plan);
    return plan;
  }

  private buildPlan(target: MeshTarget): Plan {
    const mesh = this.mesh;
    const candidates = [...(this.byNamespace.get(target.namespace) ?? [])];
    if (mesh.rootNamespace !== target.namespace)
      candidates.push(...(this.byNamespace.get(mesh.rootNamespace) ?? []));
    const applying = candidates.filter((cp) => policyApplies(cp.policy, target, mesh));
    const entries = (a: AuthzAction) =>
      applying
        .filter((cp) => cp.policy.action === a)
        .flatMap((cp) => cp.entries)
        .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    const allow = applying.filter((cp) => cp.policy.action === "ALLOW");
    return {
      audit: entries("AUDIT"),
      custom: entries("CUSTOM"),
      customProviders: [
        ...new Set(
          applying.filter((cp) => cp.policy.action === "CUSTOM").map((cp) => cp.policy.provider ?? ""),
        ),
      ].sort(),
      deny: entries("DENY"),
      allow: entries("ALLOW"),
      allowPolicies: allow.map((cp) => cp.policy),
      allowTcpDropped: allow.some((cp) => cp.tcpDropped),
    };
  }

  evaluate(target: MeshTarget, request: MeshRequest): AuthzDecision {
    return this.evaluateFacts(target, requestFacts(target, request, this.mesh), request.extAuthz);
  }

  /**
   * evaluate() on a request's facts, for a caller that derives them itself (a sidecar keeps what
   * its connection fixes and adds each request's). `extAuthz` is MeshRequest.extAuthz.
   */
  evaluateFacts(target: MeshTarget, f: RequestFacts, extAuthz: "allow" | "deny" | undefined): AuthzDecision {
    const mesh = this.mesh;
    const plan = this.planFor(target);
    const tcp = f.tcp;
    const first = (list: readonly CompiledEntry[]): CompiledEntry | undefined => {
      for (const e of list) if ((tcp ? e.tcp : e.http)(f)) return e;
      return undefined;
    };
    const audits: { policy: AuthorizationPolicy["ref"]; rule: number }[] = [];
    for (const e of plan.audit)
      if ((tcp ? e.tcp : e.http)(f)) audits.push({ policy: e.policy.ref, rule: e.index });
    const done = (d: AuthzDecision): AuthzDecision => {
      d.audits = audits;
      return d;
    };

    let provider: string | undefined;
    if (plan.custom.length > 0) {
      const custom = first(plan.custom);
      if (custom) {
        const ref = custom.policy.ref;
        if (plan.customProviders.length > 1)
          return done(decisions.customMultiple(ref, custom.index, plan.customProviders));
        provider = custom.policy.provider ?? "";
        const answer = extAuthz ?? mesh.extAuthz;
        if (answer === undefined) return done(decisions.customUnknown(ref, custom.index, provider));
        if (answer === "deny") return done(decisions.customDenied(ref, custom.index, provider));
      }
    }
    const deny = first(plan.deny);
    if (deny) return done(decisions.deny(deny.policy.ref, deny.index, provider));
    if (plan.allowPolicies.length === 0) return done(decisions.noAllowPolicy(provider));
    const allow = first(plan.allow);
    if (allow) return done(decisions.allow(allow.policy.ref, allow.index, provider));
    return done(decisions.noAllowMatch(plan.allowPolicies, tcp && plan.allowTcpDropped, provider));
  }
}
