import { displayValue, InputError, type SourceRef } from "./errors.js";
import { type Labels, labelKeyProblem, labelValueProblem } from "./labels.js";

export type SelectorOperator = "In" | "NotIn" | "Exists" | "DoesNotExist";

export interface Requirement {
  key: string;
  operator: SelectorOperator;
  values: readonly string[];
}

/**
 * A compiled metav1.LabelSelector: matchLabels and matchExpressions ANDed. An empty selector
 * matches everything; callers decide what an absent selector means.
 */
export interface LabelSelector {
  readonly requirements: readonly Requirement[];
  readonly matchesAll: boolean;
  /** A canonical text form: equal selectors have equal keys. */
  readonly key: string;
  matches(labels: Labels): boolean;
}

const OPERATORS: readonly SelectorOperator[] = ["In", "NotIn", "Exists", "DoesNotExist"];

function requirementMatches(r: Requirement, labels: Labels): boolean {
  // Own labels only: a key such as "constructor" must not find Object.prototype's member on a
  // labels object that has a prototype.
  const value = Object.hasOwn(labels, r.key) ? labels[r.key] : undefined;
  switch (r.operator) {
    case "In":
      return value !== undefined && r.values.includes(value);
    case "NotIn":
      return value === undefined || !r.values.includes(value);
    case "Exists":
      return value !== undefined;
    case "DoesNotExist":
      return value === undefined;
  }
}

export function selectorFromRequirements(requirements: Requirement[]): LabelSelector {
  const sorted = [...requirements].sort((a, b) =>
    a.key === b.key ? a.operator.localeCompare(b.operator) : a.key < b.key ? -1 : 1,
  );
  const key = sorted.map((r) => `${r.key} ${r.operator} (${[...r.values].sort().join(",")})`).join(";");
  return {
    requirements: sorted,
    matchesAll: sorted.length === 0,
    key,
    matches(labels: Labels): boolean {
      for (const r of sorted) if (!requirementMatches(r, labels)) return false;
      return true;
    },
  };
}

export const MATCH_ALL: LabelSelector = selectorFromRequirements([]);

/**
 * Parses a LabelSelector with the API server's validation: keys and values must be valid
 * labels, operators known, In/NotIn need values, Exists/DoesNotExist must have none.
 */
export function parseSelector(raw: unknown, field: string, source: SourceRef, object: string): LabelSelector {
  if (raw === null || raw === undefined) return MATCH_ALL;
  const fail = (code: string, message: string): never => {
    throw new InputError(code, `selector error: ${field}: ${message}`, source, object);
  };
  if (typeof raw !== "object" || Array.isArray(raw)) fail("invalid-selector", "must be a map");
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k !== "matchLabels" && k !== "matchExpressions") {
      fail("invalid-selector", `unknown field "${k}" (expected matchLabels or matchExpressions)`);
    }
  }
  const requirements: Requirement[] = [];
  const matchLabels = obj.matchLabels;
  if (matchLabels !== undefined && matchLabels !== null) {
    if (typeof matchLabels !== "object" || Array.isArray(matchLabels))
      fail("invalid-selector", "matchLabels must be a map");
    for (const [k, v] of Object.entries(matchLabels as Record<string, unknown>)) {
      const keyProblem = labelKeyProblem(k);
      if (keyProblem) fail("invalid-selector", `key: Invalid value: "${k}": ${keyProblem}`);
      if (typeof v === "object" && v !== null)
        fail("invalid-selector", `matchLabels["${k}"] must be a string`);
      const value = v === null || v === undefined ? "" : String(v);
      const valueProblem = labelValueProblem(value);
      if (valueProblem)
        fail("invalid-selector", `values[0][${k}]: Invalid value: "${value}": ${valueProblem}`);
      requirements.push({ key: k, operator: "In", values: [value] });
    }
  }
  const expressions = obj.matchExpressions;
  if (expressions !== undefined && expressions !== null) {
    if (!Array.isArray(expressions)) fail("invalid-selector", "matchExpressions must be a list");
    (expressions as unknown[]).forEach((e, i) => {
      const at = `matchExpressions[${i}]`;
      if (typeof e !== "object" || e === null || Array.isArray(e))
        fail("invalid-selector", `${at} must be a map`);
      const expr = e as Record<string, unknown>;
      const key = expr.key;
      if (typeof key !== "string") fail("invalid-selector", `${at}.key is required`);
      const keyProblem = labelKeyProblem(key as string);
      if (keyProblem) fail("invalid-selector", `${at}.key: Invalid value: "${key}": ${keyProblem}`);
      const op = expr.operator;
      if (typeof op !== "string" || !OPERATORS.includes(op as SelectorOperator)) {
        fail(
          "invalid-selector-operator",
          `${at}.operator: "${displayValue(op)}" is not a valid label selector operator (expected one of ${OPERATORS.join(", ")})`,
        );
      }
      const operator = op as SelectorOperator;
      const rawValues = expr.values ?? [];
      if (!Array.isArray(rawValues)) fail("invalid-selector", `${at}.values must be a list`);
      const values = (rawValues as unknown[]).map((v, j) => {
        if (typeof v === "object" && v !== null)
          fail("invalid-selector", `${at}.values[${j}] must be a string`);
        return v === null || v === undefined ? "" : String(v);
      });
      if ((operator === "In" || operator === "NotIn") && values.length === 0) {
        fail("invalid-selector", `${at}.values: must be specified when operator is ${operator}`);
      }
      if ((operator === "Exists" || operator === "DoesNotExist") && values.length > 0) {
        fail("invalid-selector", `${at}.values: may not be specified when operator is ${operator}`);
      }
      for (const v of values) {
        const valueProblem = labelValueProblem(v);
        if (valueProblem) fail("invalid-selector", `${at}.values: Invalid value: "${v}": ${valueProblem}`);
      }
      requirements.push({ key: key as string, operator, values });
    });
  }
  return selectorFromRequirements(requirements);
}

function describeRequirement(r: Requirement): string {
  if (r.operator === "Exists") return r.key;
  if (r.operator === "DoesNotExist") return `!${r.key}`;
  if (r.operator === "In" && r.values.length === 1) return `${r.key}=${r.values[0]}`;
  return `${r.key} ${r.operator.toLowerCase()} (${r.values.join(",")})`;
}

/** `app=web,tier in (a,b)`: the kubectl form, for explanations. */
export function describeSelector(sel: LabelSelector): string {
  return sel.matchesAll ? "{}" : sel.requirements.map(describeRequirement).join(",");
}
