import type { Diagnostics } from "./errors.js";
import type { RawObject } from "./load.js";
import type { Cluster, Pod } from "./objects.js";

/** Cluster DNS as Kubernetes deploys it: pods labelled `k8s-app: kube-dns` in `kube-system`. */
export function clusterDnsPods(cluster: Cluster): Pod[] {
  return cluster.pods.filter((p) => p.namespace === "kube-system" && p.labels["k8s-app"] === "kube-dns");
}

/**
 * The objects of an assumed cluster DNS, for inputs that hold none: name resolution is the
 * first thing a request to a Service needs, and forgetting to allow it is the most common
 * mistake of a default-deny rollout, so it must be decided even when the manifests omit it.
 */
export function assumedClusterDns(diag: Diagnostics): RawObject[] {
  diag.warn(
    "assumed-cluster-dns",
    "no cluster DNS pods in the input: assuming kube-system/kube-dns pods labelled k8s-app=kube-dns serving UDP and TCP 53",
  );
  const source = { file: "<assumed cluster DNS>", line: 1 };
  return [
    { value: { apiVersion: "v1", kind: "Namespace", metadata: { name: "kube-system" } }, source },
    {
      value: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "kube-dns", namespace: "kube-system" },
        spec: {
          template: {
            metadata: { labels: { "k8s-app": "kube-dns" } },
            spec: {
              containers: [
                {
                  name: "coredns",
                  ports: [
                    { name: "dns", containerPort: 53, protocol: "UDP" },
                    { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                  ],
                },
              ],
            },
          },
        },
      },
      source,
    },
  ];
}
