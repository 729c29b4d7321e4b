import { type Diagnostics, displayValue } from "../../kube/errors.js";
import type { Labels } from "../../kube/labels.js";
import { objectName, type PolicyObject } from "../../kube/objects.js";
import { type LabelSelector, type Requirement, selectorFromRequirements } from "../../kube/selector.js";
import type { PolicyRef } from "../netpol/model.js";
import { DEFAULT_MESH, type MeshConfig, type MeshRequest, type MeshTarget, principalOf } from "./mesh.js";
import {
  checkKindAndApiVersion,
  type Fail,
  isObj,
  matchLabelsEntries,
  type Obj,
  reportersFor,
  specMap,
} from "./security-object.js";

/**
 * Istio PeerAuthentication (security.istio.io v1 / v1beta1): which mTLS mode a workload's
 * sidecar enforces on an inbound port, and whether it admits a connection.
 *
 * Semantics follow istiod (`pilot/pkg/security/authn/policy_applier.go`
 * `ComposePeerAuthentication`, `pilot/pkg/model/authentication.go`):
 * - a policy without selector (or with empty `matchLabels`) is namespace-level, or mesh-level in
 *   the root namespace; a policy with a selector is workload-level, except in the root
 *   namespace, where istiod ignores it;
 * - the narrowest level with a mode wins: workload > namespace > mesh > Istio's default
 *   PERMISSIVE; UNSET (or no `mtls`) inherits from the level above;
 * - within a level the oldest policy wins (creationTimestamp, then name, then namespace: istiod's
 *   `sortConfigByCreationTime`); a policy without creationTimestamp counts as oldest (Go's zero
 *   time, which is what istiod sees for a config read from a file);
 * - `portLevelMtls` comes from the winning workload policy only, keyed by the container port;
 *   an UNSET port entry inherits the workload's effective mode.
 */

export type MtlsMode = "UNSET" | "DISABLE" | "PERMISSIVE" | "STRICT";
/** A mode after inheritance: UNSET has been resolved. */
export type EffectiveMtlsMode = Exclude<MtlsMode, "UNSET">;
/** Which level decided: a policy's, or Istio's default when none set a mode. */
export type MtlsLevel = "workload" | "namespace" | "mesh" | "default";

export const MTLS_MODES: readonly MtlsMode[] = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

export interface PeerAuthentication {
  readonly ref: PolicyRef;
  /** Undefined: no selector, or a selector with empty matchLabels (Istio treats both alike). */
  readonly selector: LabelSelector | undefined;
  readonly mode: MtlsMode;
  /** Container port → mode, as written (UNSET entries kept: they inherit). */
  readonly portLevel: ReadonlyMap<number, MtlsMode>;
  /** metadata.creationTimestamp in ms since the epoch; undefined when absent (oldest). */
  readonly created: number | undefined;
}

export interface EffectiveMtls {
  readonly mode: EffectiveMtlsMode;
  /** The policy whose setting decided; absent when Istio's default applied. */
  readonly policy?: PolicyRef;
  readonly level: MtlsLevel;
  /** True when a `portLevelMtls` entry of the winning workload policy decided. */
  readonly portLevel: boolean;
  readonly detail: string;
}

export interface ConnectionAdmission {
  readonly admitted: boolean;
  /** Why the sidecar refused: a reset (plaintext under STRICT) or a failed mTLS handshake. */
  readonly outcome?: "connection-reset" | "handshake-failed";
  /**
   * The peer identity the authorization layer sees (`td/ns/x/sa/y`): the principal of an
   * admitted mTLS connection; undefined for plaintext, and under DISABLE (see admitConnection).
   */
  readonly peer: string | undefined;
  readonly detail: string;
}

const SPEC_FIELDS = new Set(["selector", "mtls", "portLevelMtls"]);
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

const refName = (ref: PolicyRef): string => `${ref.namespace}/${ref.name}`;

/**
 * Validates a PeerAuthentication as the API server (the CRD schema and its CEL rules, istio/api
 * `security/v1beta1/peer_authentication.proto`, `type/v1beta1/selector.proto`) and istiod's
 * webhook (`pkg/config/validation` `ValidatePeerAuthentication`) would, and returns its model.
 * Throws InputError (file:line, object) for what Istio refuses; warns (Diagnostics) for what is
 * valid but surprising or weaker than STRICT. `mesh` gives the root namespace (default
 * `istio-system`) for the root-namespace warnings.
 */
export function parsePeerAuthentication(
  obj: PolicyObject,
  diag: Diagnostics,
  mesh: MeshConfig = DEFAULT_MESH,
): PeerAuthentication {
  const { fail, warn } = reportersFor(obj, "PeerAuthentication", diag);
  checkKindAndApiVersion(obj, "PeerAuthentication", fail);

  let created: number | undefined;
  if (obj.creationTimestamp !== undefined) {
    const t = RFC3339.test(obj.creationTimestamp) ? Date.parse(obj.creationTimestamp) : Number.NaN;
    if (Number.isNaN(t)) {
      fail(
        "invalid-creation-timestamp",
        `metadata.creationTimestamp "${obj.creationTimestamp}" is not an RFC 3339 time (such as 2024-01-01T00:00:00Z)`,
      );
    }
    created = t;
  }

  const spec = specMap(obj, fail);
  for (const k of Object.keys(spec)) {
    if (SPEC_FIELDS.has(k)) continue;
    const hint =
      k === "targetRef" || k === "targetRefs"
        ? " (PeerAuthentication selects workloads with selector.matchLabels; it has no targetRef)"
        : k.toLowerCase() === "mtls" || k.toLowerCase() === "portlevelmtls"
          ? ` (did you mean "${k.toLowerCase() === "mtls" ? "mtls" : "portLevelMtls"}"?)`
          : " (expected selector, mtls or portLevelMtls)";
    fail("unknown-field", `spec.${k}: unknown field${hint}; the API server refuses it`);
  }

  // selector (Istio's WorkloadSelector: matchLabels only).
  let selector: LabelSelector | undefined;
  let selectorWritten = false;
  const rawSelector = spec.selector;
  if (rawSelector !== undefined && rawSelector !== null) {
    selectorWritten = true;
    const requirements: Requirement[] = [];
    for (const [k, v] of matchLabelsEntries(rawSelector, fail)) {
      if (k === "") fail("invalid-selector", "spec.selector.matchLabels: key must not be empty");
      if (k.includes("*"))
        fail(
          "invalid-selector",
          `spec.selector.matchLabels: wildcard not allowed in label key match ("${k}")`,
        );
      if (typeof v !== "string") {
        fail(
          "invalid-selector",
          `spec.selector.matchLabels["${k}"]: ${displayValue(v)} is not a string (quote it: "${displayValue(v)}")`,
        );
      }
      const value = v as string;
      if (value.includes("*"))
        fail(
          "invalid-selector",
          `spec.selector.matchLabels["${k}"]: wildcard not allowed in label value match ("${value}")`,
        );
      if (value.length > 63)
        fail("invalid-selector", `spec.selector.matchLabels["${k}"]: value longer than 63 characters`);
      requirements.push({ key: k, operator: "In", values: [value] });
    }
    if (requirements.length > 0) selector = selectorFromRequirements(requirements);
  }
  const inRoot = obj.namespace === mesh.rootNamespace;
  if (selectorWritten && selector === undefined) {
    warn(
      "empty-selector",
      `spec.selector has no matchLabels: Istio treats it as no selector, so this policy applies to ${
        inRoot ? "the whole mesh" : `every workload in namespace ${obj.namespace}`
      } (workload selector specified without labels)`,
    );
  }

  const mode = parseMtls(spec.mtls, "spec.mtls", fail);

  // portLevelMtls
  const portLevel = new Map<number, MtlsMode>();
  const rawPorts = spec.portLevelMtls;
  if (rawPorts !== undefined && rawPorts !== null) {
    if (!isObj(rawPorts))
      fail("invalid-port-level-mtls", "spec.portLevelMtls must be a map of port to {mode}");
    const entries = Object.entries(rawPorts as Obj);
    if (entries.length === 0)
      fail("invalid-port-level-mtls", "spec.portLevelMtls, if defined, must have at least one port");
    for (const [key, value] of entries) {
      const port = /^[0-9]{1,5}$/.test(key) ? Number(key) : Number.NaN;
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        fail("invalid-port", `spec.portLevelMtls: port "${key}" must be a number between 1 and 65535`);
      if (portLevel.has(port)) fail("invalid-port", `spec.portLevelMtls: port ${port} is listed twice`);
      portLevel.set(port, parseMtls(value, `spec.portLevelMtls[${key}]`, fail));
    }
    if (selector === undefined) {
      fail(
        "port-level-mtls-without-selector",
        `portLevelMtls requires selector: spec.portLevelMtls applies only to a workload policy; add spec.selector.matchLabels naming the workload (a ${
          inRoot ? "mesh" : "namespace"
        }-level policy cannot have port-level mTLS)`,
      );
    }
  }

  const ignored = inRoot && selector !== undefined;
  if (ignored) {
    warn(
      "root-namespace-selector-ignored",
      `a PeerAuthentication with a selector in the root namespace ${mesh.rootNamespace} is ignored by Istio: it applies to no workload. Drop the selector for a mesh-wide policy, or move it to the workload's namespace`,
    );
  } else {
    const weak: string[] = [];
    if (mode === "DISABLE" || mode === "PERMISSIVE") weak.push(`mtls.mode ${mode}`);
    for (const [port, m] of [...portLevel].sort((a, b) => a[0] - b[0])) {
      if (m === "DISABLE" || m === "PERMISSIVE") weak.push(`portLevelMtls[${port}] ${m}`);
    }
    if (weak.length > 0) {
      warn(
        "mtls-not-strict",
        `${weak.join(", ")}: plaintext connections are accepted without a peer identity; zero trust needs STRICT mTLS`,
      );
    }
  }

  return {
    ref: { kind: "PeerAuthentication", namespace: obj.namespace, name: obj.name, source: obj.source },
    selector,
    mode,
    portLevel,
    created,
  };
}

function parseMtls(raw: unknown, field: string, fail: Fail): MtlsMode {
  if (raw === undefined || raw === null) return "UNSET";
  if (!isObj(raw)) return fail("invalid-mtls", `${field} must be a map such as {mode: STRICT}`);
  for (const k of Object.keys(raw)) {
    if (k !== "mode") fail("unknown-field", `${field}.${k}: unknown field (expected mode)`);
  }
  const mode = raw.mode;
  if (mode === undefined || mode === null) return "UNSET";
  if (typeof mode === "string" && (MTLS_MODES as readonly string[]).includes(mode)) return mode as MtlsMode;
  const upper = typeof mode === "string" ? mode.toUpperCase() : undefined;
  const hint =
    upper !== undefined && (MTLS_MODES as readonly string[]).includes(upper)
      ? ` (did you mean "${upper}"?)`
      : "";
  return fail(
    "invalid-mtls-mode",
    `${field}.mode: "${displayValue(mode)}" is not a valid mTLS mode${hint}; expected one of ${MTLS_MODES.join(", ")}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Composition

type PolicyLevel = Exclude<MtlsLevel, "default">;

/** The level of a policy, or undefined when istiod ignores it (selector in the root namespace). */
export function levelOf(p: PeerAuthentication, mesh: MeshConfig): PolicyLevel | undefined {
  const inRoot = p.ref.namespace === mesh.rootNamespace;
  if (p.selector === undefined) return inRoot ? "mesh" : "namespace";
  return inRoot ? undefined : "workload";
}

/** Oldest first: creationTimestamp (absent = oldest), then name, then namespace. */
export function olderFirst(a: PeerAuthentication, b: PeerAuthentication): number {
  const ta = a.created ?? Number.NEGATIVE_INFINITY;
  const tb = b.created ?? Number.NEGATIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.ref.name !== b.ref.name) return a.ref.name < b.ref.name ? -1 : 1;
  if (a.ref.namespace !== b.ref.namespace) return a.ref.namespace < b.ref.namespace ? -1 : 1;
  return 0;
}

/** The winning policy of each level for one workload (the inputs of ComposePeerAuthentication). */
export interface PeerAuthnWinners {
  readonly mesh: PeerAuthentication | undefined;
  readonly namespace: PeerAuthentication | undefined;
  readonly workload: PeerAuthentication | undefined;
}

const LEVELS: readonly PolicyLevel[] = ["mesh", "namespace", "workload"];

function describePolicy(level: PolicyLevel, p: PeerAuthentication): string {
  return `${level}-level PeerAuthentication ${refName(p.ref)}`;
}

/**
 * ComposePeerAuthentication for one port: mesh, then namespace, then workload, each replacing
 * the mode unless UNSET; then the workload policy's entry for the port, unless UNSET.
 */
export function composeMtls(winners: PeerAuthnWinners, port: number): EffectiveMtls {
  let mode: EffectiveMtlsMode = "PERMISSIVE";
  let decider: { level: PolicyLevel; policy: PeerAuthentication } | undefined;
  const unset: string[] = [];
  for (const level of LEVELS) {
    const p = winners[level];
    if (p === undefined) continue;
    if (p.mode === "UNSET") {
      unset.push(`the ${describePolicy(level, p)}`);
      continue;
    }
    mode = p.mode;
    decider = { level, policy: p };
    unset.length = 0; // only UNSET levels below the decider inherit from it
  }
  const w = winners.workload;
  const portMode = w?.portLevel.get(port);
  if (w !== undefined && portMode !== undefined) {
    if (portMode !== "UNSET") {
      return {
        mode: portMode,
        policy: w.ref,
        level: "workload",
        portLevel: true,
        detail: `${portMode} from portLevelMtls[${port}] of the ${describePolicy("workload", w)} (container port ${port})`,
      };
    }
    unset.push(
      `${winners.workload?.mode === "UNSET" ? "its" : `the workload policy's`} portLevelMtls[${port}]`,
    );
  }
  const listed =
    unset.length <= 1 ? (unset[0] ?? "") : `${unset.slice(0, -1).join(", ")} and ${unset[unset.length - 1]}`;
  const isUnset = unset.length > 1 ? "are UNSET" : "is UNSET";
  const inherits =
    unset.length > 0 ? `; ${listed} ${isUnset} and ${unset.length > 1 ? "inherit" : "inherits"} it` : "";
  if (decider === undefined) {
    const none =
      winners.mesh === undefined && winners.namespace === undefined && winners.workload === undefined;
    const detail = none
      ? "PERMISSIVE: no PeerAuthentication applies to this workload (Istio's default)"
      : `PERMISSIVE: Istio's default, as no applicable PeerAuthentication sets a mode (${listed} ${isUnset})`;
    return { mode: "PERMISSIVE", level: "default", portLevel: false, detail };
  }
  return {
    mode,
    policy: decider.policy.ref,
    level: decider.level,
    portLevel: false,
    detail: `${mode} from the ${describePolicy(decider.level, decider.policy)}${inherits}`,
  };
}

/**
 * The winners for a workload, found the obvious way: every policy is looked at and the oldest
 * of each level kept. The reference for CompiledPeerAuthn.
 */
export function selectWinners(
  policies: readonly PeerAuthentication[],
  target: MeshTarget,
  mesh: MeshConfig,
): PeerAuthnWinners {
  const best: Record<PolicyLevel, PeerAuthentication | undefined> = {
    mesh: undefined,
    namespace: undefined,
    workload: undefined,
  };
  for (const p of policies) {
    const level = levelOf(p, mesh);
    if (level === undefined) continue;
    if (level === "namespace" && p.ref.namespace !== target.namespace) continue;
    if (level === "workload" && (p.ref.namespace !== target.namespace || !p.selector?.matches(target.labels)))
      continue;
    const current = best[level];
    if (current === undefined || olderFirst(p, current) < 0) best[level] = p;
  }
  return best;
}

/**
 * The mTLS mode a workload's sidecar enforces on a container port, and which policy decided.
 * Slow and direct: it scans every policy. Use CompiledPeerAuthn on hot paths.
 */
export function effectiveMtls(
  policies: readonly PeerAuthentication[],
  target: MeshTarget,
  port: number,
  mesh: MeshConfig,
): EffectiveMtls {
  return composeMtls(selectWinners(policies, target, mesh), port);
}

/** The trust domain of a principal `td/ns/x/sa/y` (or SPIFFE ID), undefined if it has no path. */
export function trustDomainOf(principal: string): string | undefined {
  const p = principalOf(principal);
  const slash = p.indexOf("/");
  if (slash <= 0) return undefined;
  return p.slice(0, slash);
}

/** The trust domains whose peers the sidecar's handshake accepts: the mesh's and its aliases. */
export function trustedDomains(mesh: MeshConfig): readonly string[] {
  return [mesh.trustDomain, ...mesh.trustDomainAliases.filter((a) => a !== mesh.trustDomain)];
}

/**
 * Whether the destination sidecar admits a connection under the effective mode.
 *
 * - STRICT: a plaintext client is reset (Envoy has no plaintext filter chain).
 * - PERMISSIVE and STRICT: an mTLS client must present a certificate from a trusted trust
 *   domain (the mesh's or an alias; Istio matches the URI SAN against `spiffe://<td>/` for
 *   each); any other fails the handshake.
 * - DISABLE: the sidecar has no TLS filter chain and accepts the connection as plaintext.
 *   Istio's auto-mTLS client sends plaintext to such an endpoint (istiod marks it
 *   mTLS-disabled: `pilot/pkg/xds/endpoints/mtls_checker.go`), so an mTLS-capable client is
 *   admitted, but without a peer identity: authorization sees no principal.
 */
export function admitConnection(
  effective: Pick<EffectiveMtls, "mode">,
  request: Pick<MeshRequest, "principal">,
  mesh: MeshConfig,
): ConnectionAdmission {
  const principal = request.principal === undefined ? undefined : principalOf(request.principal);
  const mode = effective.mode;
  if (mode === "DISABLE") {
    return {
      admitted: true,
      peer: undefined,
      detail:
        principal === undefined
          ? "mTLS mode DISABLE -> plaintext accepted"
          : `mTLS mode DISABLE -> plaintext accepted: the sidecar does not terminate mTLS here and an auto-mTLS client sends plaintext, so the peer ${principal} is not authenticated`,
    };
  }
  if (principal === undefined) {
    return mode === "STRICT"
      ? {
          admitted: false,
          outcome: "connection-reset",
          peer: undefined,
          detail: "mTLS mode STRICT -> plaintext connection reset",
        }
      : { admitted: true, peer: undefined, detail: "mTLS mode PERMISSIVE -> plaintext accepted" };
  }
  const td = trustDomainOf(principal);
  const trusted = trustedDomains(mesh);
  if (td === undefined || !trusted.includes(td)) {
    const aliases = mesh.trustDomainAliases.length > 0 ? mesh.trustDomainAliases.join(", ") : "none";
    return {
      admitted: false,
      outcome: "handshake-failed",
      peer: undefined,
      detail:
        td === undefined
          ? `mTLS mode ${mode} -> handshake failed: the peer identity "${principal}" is not a SPIFFE workload ID`
          : `mTLS mode ${mode} -> handshake failed: the peer ${principal} is in trust domain ${td}, which this mesh does not trust (trust domain ${mesh.trustDomain}, aliases: ${aliases})`,
    };
  }
  const via = td === mesh.trustDomain ? "" : ` (trust domain alias ${td})`;
  return {
    admitted: true,
    peer: principal,
    detail: `mTLS mode ${mode} -> mTLS peer ${principal} accepted${via}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Compiled form for the engine's hot path

interface Resolved {
  readonly winners: PeerAuthnWinners;
  /** The answer for every port without a portLevelMtls entry. */
  readonly base: EffectiveMtls;
  readonly perPort: Map<number, EffectiveMtls>;
}

const CACHE_LIMIT = 4096;

function labelsKey(namespace: string, labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return JSON.stringify([namespace, ...keys.flatMap((k) => [k, labels[k] ?? ""])]);
}

/**
 * The same answers as effectiveMtls, with policies indexed once: the mesh winner, one
 * namespace winner per namespace, workload policies per namespace sorted oldest first (the first
 * whose selector matches wins), and results cached per (namespace, labels).
 */
export class CompiledPeerAuthn {
  readonly mesh: MeshConfig;
  readonly policies: readonly PeerAuthentication[];
  private readonly meshWinner: PeerAuthentication | undefined;
  private readonly namespaceWinners = new Map<string, PeerAuthentication>();
  private readonly workloadPolicies = new Map<string, PeerAuthentication[]>();
  private readonly cache = new Map<string, Resolved>();

  /** With `diag`, warns about mesh- and namespace-level policies that an older one shadows. */
  constructor(policies: readonly PeerAuthentication[], mesh: MeshConfig = DEFAULT_MESH, diag?: Diagnostics) {
    this.mesh = mesh;
    this.policies = policies;
    const sorted = [...policies].sort(olderFirst);
    let meshWinner: PeerAuthentication | undefined;
    const shadowed = new Map<PeerAuthentication, { level: PolicyLevel; winner: PeerAuthentication }>();
    for (const p of sorted) {
      const level = levelOf(p, mesh);
      if (level === undefined) continue;
      if (level === "workload") {
        const list = this.workloadPolicies.get(p.ref.namespace);
        if (list) list.push(p);
        else this.workloadPolicies.set(p.ref.namespace, [p]);
        continue;
      }
      const winner = level === "mesh" ? meshWinner : this.namespaceWinners.get(p.ref.namespace);
      if (winner !== undefined) shadowed.set(p, { level, winner });
      else if (level === "mesh") meshWinner = p;
      else this.namespaceWinners.set(p.ref.namespace, p);
    }
    // In input order, as the user wrote them.
    for (const p of diag ? policies : []) {
      const s = shadowed.get(p);
      if (s === undefined) continue;
      diag?.warn(
        "peerauthn-shadowed",
        `ignored: the ${s.level}-level PeerAuthentication ${refName(s.winner.ref)} is older and wins (Istio applies one ${s.level}-level policy${
          s.level === "namespace" ? " per namespace" : ""
        }, the oldest)`,
        p.ref.source,
        objectName("PeerAuthentication", p.ref.namespace, p.ref.name),
      );
    }
    this.meshWinner = meshWinner;
  }

  /** The winning policy of each level for a workload. */
  winners(target: MeshTarget): PeerAuthnWinners {
    return this.resolve(target).winners;
  }

  effectiveMtls(target: MeshTarget, port: number): EffectiveMtls {
    const r = this.resolve(target);
    if (!r.winners.workload?.portLevel.has(port)) return r.base;
    let e = r.perPort.get(port);
    if (e === undefined) {
      e = Object.freeze(composeMtls(r.winners, port));
      r.perPort.set(port, e);
    }
    return e;
  }

  /** The effective mode for the request's port and whether the sidecar admits the connection. */
  admit(
    target: MeshTarget,
    request: MeshRequest,
  ): { effective: EffectiveMtls; admission: ConnectionAdmission } {
    const effective = this.effectiveMtls(target, request.port);
    return { effective, admission: admitConnection(effective, request, this.mesh) };
  }

  private readonly byTarget = new WeakMap<MeshTarget, Resolved>();

  private resolve(target: MeshTarget): Resolved {
    const known = this.byTarget.get(target);
    if (known) return known;
    const resolved = this.resolveByLabels(target);
    this.byTarget.set(target, resolved);
    return resolved;
  }

  private resolveByLabels(target: MeshTarget): Resolved {
    const key = labelsKey(target.namespace, target.labels);
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    let workload: PeerAuthentication | undefined;
    for (const p of this.workloadPolicies.get(target.namespace) ?? []) {
      if (p.selector?.matches(target.labels)) {
        workload = p;
        break;
      }
    }
    const winners: PeerAuthnWinners = {
      mesh: this.meshWinner,
      // Never the root namespace: its policies without selector are mesh-level.
      namespace: this.namespaceWinners.get(target.namespace),
      workload,
    };
    // A port without an entry gets the same answer whatever its number: compose once.
    const base = Object.freeze(composeMtls(winners, 0));
    const resolved: Resolved = { winners, base, perPort: new Map() };
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, resolved);
    return resolved;
  }
}
