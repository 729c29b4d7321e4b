import { InputError, type SourceRef } from "./errors.js";

export type Labels = Readonly<Record<string, string>>;

const NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why a label key is invalid (Kubernetes qualified name rules), or undefined when it is valid. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return "the prefix must be a DNS subdomain (lowercase alphanumerics, '-' and '.')";
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return "the name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";
  }
  return undefined;
}

/** Why a label value is invalid, or undefined when it is valid (empty is valid). */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63 || !NAME.test(value)) {
    return "a label value must be empty or 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";
  }
  return undefined;
}

/** Reads a `labels` map, checking keys and values; the result has no prototype. */
export function readLabels(raw: unknown, field: string, source: SourceRef, object: string): Labels {
  const out: Record<string, string> = Object.create(null);
  if (raw === undefined || raw === null) return out;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new InputError("invalid-labels", `${field} must be a map of strings`, source, object);
  }
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const keyProblem = labelKeyProblem(k);
    if (keyProblem)
      throw new InputError("invalid-label-key", `${field}: key "${k}": ${keyProblem}`, source, object);
    if (typeof v === "object" && v !== null) {
      throw new InputError(
        "invalid-label-value",
        `${field}: value of "${k}" must be a string`,
        source,
        object,
      );
    }
    // After the check above: String() throws on some maps (`{toString: 1}`).
    const value = v === null || v === undefined ? "" : typeof v === "string" ? v : String(v);
    const valueProblem = labelValueProblem(value);
    if (valueProblem) {
      throw new InputError(
        "invalid-label-value",
        `${field}: "${k}": value "${value}": ${valueProblem}`,
        source,
        object,
      );
    }
    out[k] = value;
  }
  return out;
}
