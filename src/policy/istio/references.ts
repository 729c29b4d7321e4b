import type { Diagnostics } from "../../kube/errors.js";
import { type Cluster, objectName } from "../../kube/objects.js";
import type { AuthorizationPolicy } from "./authz/model.js";
import type { MeshConfig } from "./mesh.js";

function exact(value: string): boolean {
  return !value.includes("*");
}

/**
 * Warnings for AuthorizationPolicies that are valid but name things the input does not have:
 * a selector that matches no pod in its scope, a namespace or a principal's service account that
 * no pod has. Such a policy usually carries a typo, and an ALLOW that matches nobody denies.
 * Only exact values are checked (patterns may match what is not deployed yet), and only
 * principals of the mesh's own trust domain (other trust domains live elsewhere).
 */
export function warnDanglingReferences(
  policies: readonly AuthorizationPolicy[],
  cluster: Cluster,
  mesh: MeshConfig,
  diag: Diagnostics,
): void {
  if (cluster.pods.length === 0) return;
  const identities = new Set(cluster.pods.map((p) => `${p.namespace}/${p.serviceAccount}`));
  const localDomains = new Set(["cluster.local", mesh.trustDomain, ...mesh.trustDomainAliases]);
  for (const p of policies) {
    const object = objectName("AuthorizationPolicy", p.ref.namespace, p.ref.name);
    const warn = (code: string, message: string) => diag.warn(code, message, p.ref.source, object);
    const selector = p.selector;
    if (selector && p.targetRefs.length === 0) {
      const inScope = cluster.pods.filter(
        (pod) => p.ref.namespace === mesh.rootNamespace || pod.namespace === p.ref.namespace,
      );
      if (!inScope.some((pod) => selector.matches(pod.labels))) {
        warn(
          "selector-matches-nothing",
          "spec.selector matches no pod of the input: this policy applies to nothing",
        );
      }
    }
    if (p.rules === "none") continue;
    for (const rule of p.rules) {
      for (const source of rule.from) {
        for (const ns of [...source.namespaces, ...source.notNamespaces]) {
          if (exact(ns) && !cluster.namespaces.has(ns)) {
            warn(
              "unknown-namespace",
              `rule ${rule.index} names namespace "${ns}", which has no pod in the input`,
            );
          }
        }
        for (const principal of [...source.principals, ...source.notPrincipals]) {
          const m = /^([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
          if (!m || !exact(principal) || !localDomains.has(m[1] as string)) continue;
          if (!identities.has(`${m[2]}/${m[3]}`)) {
            warn(
              "unknown-principal",
              `rule ${rule.index} names principal "${principal}", but no pod of the input runs as service account ${m[3]} in namespace ${m[2]}`,
            );
          }
        }
      }
    }
  }
}
