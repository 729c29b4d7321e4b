/**
 * Workload attestation: what the agent learns about the process at the other end of a Workload
 * API connection, as selectors (`unix:uid:1000`, later `k8s:ns:default`, ...). Registration
 * entries are bound to selectors; a workload gets the identities of the entries whose selectors
 * are all among its own.
 *
 * An attestor is a plug-in point: the unix attestor (unix-attestor.ts) reads /proc; a Kubernetes
 * attestor (pod from cgroup, kubelet) comes later behind the same interface.
 */

/** A selector: `type` names the attestor (`unix`), `value` the fact (`uid:1000`). */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

/** The caller as the kernel saw it when it connected (SO_PEERCRED): effective uid and gid. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export interface WorkloadAttestor {
  /** The selector type this attestor produces (`unix`, `k8s`). */
  readonly name: string;
  /**
   * The selectors of process `pid`. Rejects when the process cannot be examined; the caller
   * then refuses the request (fail closed).
   */
  attest(pid: number, creds: PeerCredentials): Promise<Selector[]>;
}

export type AttestationErrorReason =
  /** The kernel gave no usable peer credentials for the connection. */
  | "no-peer-credentials"
  /** An attestor could not examine the process. */
  | "attestor-failed"
  /** The process that connected is gone (exited). */
  | "process-exited"
  /** The PID now belongs to another process (start time changed). */
  | "pid-reused"
  /** The process now runs as another user or group than the one that connected. */
  | "owner-changed";

/** Why a caller could not be attested. The Workload API answers PermissionDenied with the message. */
export class AttestationError extends Error {
  readonly code: string;

  constructor(
    readonly reason: AttestationErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AttestationError";
    this.code = `attestation:${reason}`;
  }
}

/** `unix:uid:1000` (the first colon separates type and value). */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** Parses `type:value`; both parts must be non-empty. */
export function parseSelector(text: string): Selector {
  const colon = text.indexOf(":");
  if (colon <= 0 || colon === text.length - 1) {
    throw new TypeError(
      `selector ${JSON.stringify(text)} is not of the form type:value (e.g. unix:uid:1000)`,
    );
  }
  return { type: text.slice(0, colon), value: text.slice(colon + 1) };
}

/** A stable key of a selector set (sorted, deduplicated), for caches. */
export function selectorKey(selectors: readonly Selector[]): string {
  return [...new Set(selectors.map(formatSelector))].sort().join("\n");
}

/**
 * The entries a workload with these selectors is entitled to, in their order: those whose
 * selectors (`type:value`) are all among the workload's (SPIRE's rule). An entry without
 * selectors matches nothing.
 */
export function matchingEntries<T extends { readonly selectors: readonly string[] }>(
  entries: readonly T[],
  workload: readonly Selector[],
): T[] {
  const have = new Set(workload.map(formatSelector));
  return entries.filter((e) => e.selectors.length > 0 && e.selectors.every((s) => have.has(s)));
}

/**
 * Runs every attestor on the process and returns the union of their selectors (deduplicated,
 * in attestor order). Any attestor's failure fails the whole attestation: a partial set of
 * selectors could match an entry meant to be narrower.
 */
export async function attestWorkload(
  attestors: readonly WorkloadAttestor[],
  creds: PeerCredentials,
): Promise<Selector[]> {
  const results = await Promise.all(
    attestors.map(async (a) => {
      try {
        return await a.attest(creds.pid, creds);
      } catch (err) {
        if (err instanceof AttestationError) throw err;
        const why = err instanceof Error ? err.message : String(err);
        throw new AttestationError(
          "attestor-failed",
          `workload attestor "${a.name}" failed for pid ${creds.pid}: ${why}`,
          { cause: err },
        );
      }
    }),
  );
  const seen = new Set<string>();
  const out: Selector[] = [];
  for (const list of results) {
    for (const s of list) {
      const key = formatSelector(s);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(s);
    }
  }
  return out;
}
