import { type Diagnostics, InputError } from "../../kube/errors.js";
import { objectName, type PolicyObject } from "../../kube/objects.js";

/**
 * What validating a security.istio.io object (AuthorizationPolicy, PeerAuthentication) starts
 * with: how to refuse and warn about it, its kind and apiVersion, `spec` being a map, and the
 * shape of Istio's WorkloadSelector (`spec.selector`, matchLabels only).
 */

export type Obj = Record<string, unknown>;
/** Refuses the object: throws InputError with its file:line and name. */
export type Fail = (code: string, message: string) => never;
/** A Diagnostics warning about the object, with its file:line and name. */
export type Warn = (code: string, message: string) => void;

export function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export type SecurityKind = "AuthorizationPolicy" | "PeerAuthentication";

const API_VERSIONS = new Set(["security.istio.io/v1", "security.istio.io/v1beta1"]);
/** The CRD's limit on matchLabels entries (istio/api WorkloadSelector, MaxProperties). */
const MAX_MATCH_LABELS = 4096;

/** `fail` and `warn` for one object of `kind`. */
export function reportersFor(
  obj: PolicyObject,
  kind: SecurityKind,
  diag: Diagnostics,
): { fail: Fail; warn: Warn } {
  const object = objectName(kind, obj.namespace, obj.name);
  return {
    fail: (code, message) => {
      throw new InputError(code, message, obj.source, object);
    },
    warn: (code, message) => diag.warn(code, message, obj.source, object),
  };
}

/** Refuses an object of another kind, or of an apiVersion the API server does not serve for it. */
export function checkKindAndApiVersion(obj: PolicyObject, kind: SecurityKind, fail: Fail): void {
  if (obj.kind !== kind) fail("invalid-kind", `kind ${obj.kind} is not ${kind}`);
  if (!API_VERSIONS.has(obj.apiVersion)) {
    fail(
      "invalid-api-version",
      `apiVersion "${obj.apiVersion}" is not served for ${kind} (expected security.istio.io/v1 or security.istio.io/v1beta1)`,
    );
  }
}

/** `spec` as a map; an absent (or null) spec is an empty one. */
export function specMap(obj: PolicyObject, fail: Fail): Obj {
  if (obj.spec !== undefined && obj.spec !== null && !isObj(obj.spec))
    fail("invalid-spec", "spec must be a map");
  return isObj(obj.spec) ? obj.spec : {};
}

/**
 * The entries of `spec.selector.matchLabels` as written (none when absent), after refusing a
 * selector that is not a map, has other fields than matchLabels, or too many labels. The caller
 * checks each key and value.
 */
export function matchLabelsEntries(rawSelector: unknown, fail: Fail): [string, unknown][] {
  if (!isObj(rawSelector)) return fail("invalid-selector", "spec.selector must be a map with matchLabels");
  for (const k of Object.keys(rawSelector)) {
    if (k === "matchLabels") continue;
    fail(
      "invalid-selector",
      k === "matchExpressions"
        ? "spec.selector.matchExpressions: Istio's WorkloadSelector has matchLabels only"
        : `spec.selector.${k}: unknown field (Istio's WorkloadSelector has matchLabels only)`,
    );
  }
  const ml = rawSelector.matchLabels;
  if (ml === undefined || ml === null) return [];
  if (!isObj(ml)) fail("invalid-selector", "spec.selector.matchLabels must be a map of strings");
  const entries = Object.entries(ml as Obj);
  if (entries.length > MAX_MATCH_LABELS)
    fail("invalid-selector", `spec.selector.matchLabels: more than ${MAX_MATCH_LABELS} labels`);
  return entries;
}
