/**
 * fast-check pieces shared by the Istio property tests (authz-properties, summary-properties):
 * field lists drawn from small pools, AuthorizationPolicy sources, operations, rules and whole
 * objects that Istio accepts (each test brings its own pools), and their parsing.
 */
import fc from "fast-check";
import { Diagnostics } from "../../../src/kube/errors.js";
import type { AuthorizationPolicy } from "../../../src/policy/istio/authz/model.js";
import { parseAuthorizationPolicy } from "../../../src/policy/istio/authz/parse.js";
import type { MeshConfig } from "../../../src/policy/istio/mesh.js";

export type Obj = Record<string, unknown>;

/** One or two values of the pool. */
export const sub = <T>(pool: readonly T[]) => fc.subarray([...pool], { minLength: 1, maxLength: 2 });

/** A field list, or nothing (mostly nothing, so that rules stay small and match often). */
export const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { freq: 3, nil: undefined });

/** The object without its undefined fields. */
export function compact(o: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

export const pathNormalizationArb = fc.constantFrom(
  "NONE",
  "BASE",
  "MERGE_SLASHES",
  "DECODE_AND_MERGE_SLASHES",
) as fc.Arbitrary<MeshConfig["pathNormalization"]>;

/** The CUSTOM provider's answer: unknown, allow or deny. */
export const extAuthzArb = fc.constantFrom(undefined, "allow", "deny") as fc.Arbitrary<
  "allow" | "deny" | undefined
>;

/**
 * A `rules[].from[].source` from drawn fields (undefined: not drawn): serviceAccounts drop
 * principals and namespaces (Istio refuses them together); `whenEmpty()` when nothing is left.
 */
export function istioSource(fields: Obj, whenEmpty: () => Obj): Obj {
  const out = compact(fields);
  if (out.serviceAccounts || out.notServiceAccounts) {
    delete out.principals;
    delete out.notPrincipals;
    delete out.namespaces;
    delete out.notNamespaces;
  }
  return Object.keys(out).length === 0 ? whenEmpty() : out;
}

export interface OperationPools {
  readonly hosts: readonly string[];
  readonly ports: readonly string[];
  readonly methods: readonly string[];
  readonly paths: readonly string[];
}

/** A `rules[].to[].operation` with lists from the pools; `whenEmpty()` when none was drawn. */
export function operationArbOf(pools: OperationPools, whenEmpty: () => Obj): fc.Arbitrary<Obj> {
  return fc
    .record({
      hosts: maybe(sub(pools.hosts)),
      notHosts: maybe(sub(pools.hosts)),
      ports: maybe(sub(pools.ports)),
      notPorts: maybe(sub(pools.ports)),
      methods: maybe(sub(pools.methods)),
      notMethods: maybe(sub(pools.methods)),
      paths: maybe(sub(pools.paths)),
      notPaths: maybe(sub(pools.paths)),
    })
    .map((o) => {
      const out = compact(o);
      return Object.keys(out).length === 0 ? whenEmpty() : out;
    });
}

/** A `rules[]` entry: optional `from`, `to` and `when` lists of one or two entries each. */
export function ruleArbOf(
  source: fc.Arbitrary<Obj>,
  operation: fc.Arbitrary<Obj>,
  condition: fc.Arbitrary<Obj>,
): fc.Arbitrary<Obj> {
  return fc
    .record({
      from: maybe(
        fc.array(
          source.map((source) => ({ source })),
          { minLength: 1, maxLength: 2 },
        ),
      ),
      to: maybe(
        fc.array(
          operation.map((operation) => ({ operation })),
          { minLength: 1, maxLength: 2 },
        ),
      ),
      when: maybe(fc.array(condition, { minLength: 1, maxLength: 2 })),
    })
    .map(compact);
}

const IDENTITY_FIELDS = new Set([
  "principals",
  "notPrincipals",
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "requestPrincipals",
  "notRequestPrincipals",
]);
const isIdentityKey = (k: string) =>
  k === "source.namespace" ||
  k === "source.principal" ||
  k === "source.serviceAccount" ||
  k.startsWith("request.auth.");

/** The rule without what Istio refuses in a CUSTOM policy (identity fields and `when` keys). */
export function customSafe(rule: Obj): Obj {
  const out: Obj = { ...rule };
  if (Array.isArray(rule.from)) {
    out.from = (rule.from as { source: Obj }[]).map(({ source }) => {
      const s: Obj = {};
      for (const [k, v] of Object.entries(source)) if (!IDENTITY_FIELDS.has(k)) s[k] = v;
      if (Object.keys(s).length === 0) s.ipBlocks = ["10.0.0.0/8"];
      return { source: s };
    });
  }
  if (Array.isArray(rule.when)) {
    const when = (rule.when as Obj[]).filter((c) => !isIdentityKey(c.key as string));
    if (when.length > 0) out.when = when;
    else delete out.when;
  }
  return out;
}

/** What a generated AuthorizationPolicy is made of. */
export interface AuthzChoices {
  readonly namespace: string;
  readonly name: string;
  readonly action: string;
  /** Named by a CUSTOM policy. */
  readonly provider: string;
  readonly selector: Obj | undefined;
  /** A Gateway's name; wins over the selector. */
  readonly targetRef?: string | undefined;
  readonly rules: Obj[] | undefined;
  readonly dryRun: boolean;
}

/**
 * An AuthorizationPolicy object Istio accepts: DENY and CUSTOM without rules get one match-all
 * rule, and CUSTOM names its provider and keeps only the rule parts it supports.
 */
export function authzPolicyObject(p: AuthzChoices): Obj {
  const spec: Obj = {};
  let rules = p.rules;
  if ((p.action === "DENY" || p.action === "CUSTOM") && rules === undefined) rules = [{}];
  if (p.action !== "ALLOW") spec.action = p.action;
  if (p.action === "CUSTOM") {
    spec.provider = { name: p.provider };
    rules = rules?.map(customSafe);
  }
  if (p.targetRef !== undefined) {
    spec.targetRef = { group: "gateway.networking.k8s.io", kind: "Gateway", name: p.targetRef };
  } else if (p.selector !== undefined) spec.selector = p.selector;
  if (rules !== undefined) spec.rules = rules;
  return {
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: {
      namespace: p.namespace,
      name: p.name,
      ...(p.dryRun ? { annotations: { "istio.io/dry-run": "true" } } : {}),
    },
    spec,
  };
}

/** Up to `max` objects with distinct namespace/name (two objects cannot share them). */
export const uniqueByName = <T extends Obj>(arb: fc.Arbitrary<T>, max: number) =>
  fc.uniqueArray(arb, {
    maxLength: max,
    selector: (o) => `${(o.metadata as Obj).namespace}/${(o.metadata as Obj).name}`,
  });

/** Generated AuthorizationPolicy objects, parsed (source: generated.yaml, line = position + 1). */
export function parsePolicies(objects: readonly Obj[]): AuthorizationPolicy[] {
  const diag = new Diagnostics();
  return objects.map((o, i) => {
    const meta = o.metadata as Obj;
    return parseAuthorizationPolicy(
      {
        kind: "AuthorizationPolicy",
        apiVersion: "security.istio.io/v1",
        namespace: meta.namespace as string,
        name: meta.name as string,
        spec: o.spec,
        source: { file: "generated.yaml", line: i + 1 },
        creationTimestamp: undefined,
        annotations: (meta.annotations ?? {}) as Record<string, string>,
      },
      diag,
    );
  });
}
