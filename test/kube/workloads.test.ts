import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clusterFromObjects } from "../../src/kube/index.js";

const pod = (name: string, owner?: { kind?: string; name: string }, extra: object = {}) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name,
    namespace: "ns",
    labels: { app: name },
    ...(owner ? { ownerReferences: [{ ...owner, controller: true, apiVersion: "apps/v1", uid: "u" }] } : {}),
  },
  spec: { containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
  ...extra,
});

const workload = (kind: string, name: string, owner?: { kind: string; name: string }) => ({
  apiVersion: "apps/v1",
  kind,
  metadata: {
    name,
    namespace: "ns",
    ...(owner ? { ownerReferences: [{ ...owner, controller: true }] } : {}),
  },
  spec:
    kind === "CronJob"
      ? {
          jobTemplate: {
            spec: { template: { metadata: { labels: { app: name } }, spec: { containers: [] } } },
          },
        }
      : {
          template: {
            metadata: { labels: { app: name } },
            spec: { serviceAccountName: `${name}-sa`, containers: [] },
          },
        },
});

describe("workloads: pods grouped by top-level owner in the input", () => {
  it("names pods by the top-level owner present, or by the owner reference when it is absent", () => {
    const { cluster } = clusterFromObjects([
      workload("Deployment", "web"),
      workload("ReplicaSet", "web-abc", { kind: "Deployment", name: "web" }),
      pod("web-abc-1", { kind: "ReplicaSet", name: "web-abc" }),
      pod("web-abc-2", { kind: "ReplicaSet", name: "web-abc" }),
      pod("api-xyz-1", { kind: "ReplicaSet", name: "api-xyz" }),
      pod("bare"),
      pod("kube-proxy-node1", { kind: "Node", name: "node1" }),
      pod("pod-1", { name: "internal" }),
      pod("pod-2", { name: "internal" }),
    ]);
    assert.deepEqual(
      cluster.workloads.map((w) => [w.id, w.pods.map((p) => p.name)]),
      [
        ["ns/api-xyz[ReplicaSet]", ["api-xyz-1"]],
        ["ns/bare[Pod]", ["bare"]],
        ["ns/internal[Pod]", ["pod-1", "pod-2"]],
        ["ns/kube-proxy-node1[Pod]", ["kube-proxy-node1"]],
        ["ns/web[Deployment]", ["web-abc-1", "web-abc-2"]],
      ],
    );
    assert.ok(cluster.pods.every((p) => !p.fromTemplate));
  });

  it("lets a template stand for the pods of a workload that has none in the input", () => {
    const { cluster } = clusterFromObjects([
      workload("Deployment", "d"),
      workload("StatefulSet", "s"),
      workload("DaemonSet", "ds"),
      workload("CronJob", "cj"),
      workload("Job", "cj-123", { kind: "CronJob", name: "cj" }),
      workload("ReplicationController", "rc"),
    ]);
    assert.deepEqual(
      cluster.workloads.map((w) => [w.id, w.pods.length, w.pods[0]?.fromTemplate, w.pods[0]?.labels.app]),
      [
        ["ns/cj[CronJob]", 1, true, "cj"],
        ["ns/d[Deployment]", 1, true, "d"],
        ["ns/ds[DaemonSet]", 1, true, "ds"],
        ["ns/rc[ReplicationController]", 1, true, "rc"],
        ["ns/s[StatefulSet]", 1, true, "s"],
      ],
    );
    assert.equal(cluster.workloads.find((w) => w.name === "d")?.pods[0]?.serviceAccount, "d-sa");
  });

  it("reads pod IPs, container ports and the service account (default when empty)", () => {
    const { cluster } = clusterFromObjects([
      pod("a", undefined, { status: { podIP: "10.1.2.3" } }),
      pod("b", undefined, { status: { podIPs: [{ ip: "fd00::1" }, { ip: "10.1.2.4" }] } }),
    ]);
    const [a, b] = cluster.pods;
    assert.equal(a?.ip, 0x0a010203);
    assert.equal(b?.ip, 0x0a010204);
    assert.deepEqual(a?.ports, [{ name: "http", port: 8080, protocol: "TCP" }]);
    assert.equal(a?.serviceAccount, "default");
  });
});
