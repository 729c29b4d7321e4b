import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildCluster } from "../../src/kube/cluster.js";
import { Diagnostics, InputError } from "../../src/kube/errors.js";
import { clusterFromText } from "../../src/kube/index.js";
import { parseObjects } from "../../src/kube/load.js";

const yaml = (lines: string[]) => `${lines.join("\n")}\n`;

describe("loading objects", () => {
  it("keeps the line of every document and of every List item", () => {
    const text = yaml([
      "apiVersion: v1",
      "kind: Namespace",
      "metadata: {name: a}",
      "---",
      "apiVersion: v1",
      "kind: PodList",
      "items:",
      "  - metadata: {name: p1, namespace: a}",
      "  - metadata: {name: p2, namespace: a}",
      "---",
      "apiVersion: v1",
      "kind: List",
      "items:",
      "- kind: Pod",
      "  apiVersion: v1",
      "  metadata: {name: p3}",
    ]);
    const raws = parseObjects({ name: "f.yaml", text });
    assert.deepEqual(
      raws.map((r) => [r.value.kind, (r.value.metadata as { name: string }).name, r.source.line]),
      [
        ["Namespace", "a", 1],
        ["Pod", "p1", 8],
        ["Pod", "p2", 9],
        ["Pod", "p3", 14],
      ],
    );
    assert.ok(raws.every((r) => r.source.file === "f.yaml"));
  });

  it("reads JSON", () => {
    const raws = parseObjects({
      name: "f.json",
      text: '{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"x"}}',
    });
    assert.equal(raws.length, 1);
    assert.equal(raws[0]?.value.kind, "Namespace");
  });

  it("refuses malformed YAML with the line of the problem", () => {
    const text = yaml(["kind: Pod", "metadata:", "  name: a", "  labels: {a: b", "spec: {}"]);
    assert.throws(
      () => parseObjects({ name: "bad.yaml", text }),
      (e: unknown) =>
        e instanceof InputError &&
        e.code === "malformed-yaml" &&
        e.source?.file === "bad.yaml" &&
        (e.source?.line ?? 0) >= 4,
    );
  });

  it("refuses an object without kind and names the file and line", () => {
    const raws = parseObjects({
      name: "k.yaml",
      text: yaml(["---", "apiVersion: v1", "metadata: {name: x}"]),
    });
    assert.throws(
      () => buildCluster(raws, new Diagnostics()),
      (e: unknown) =>
        e instanceof InputError && e.code === "missing-kind" && e.describe().startsWith("k.yaml:2:"),
    );
  });

  it("skips unknown kinds with one warning per kind", () => {
    const { cluster, diagnostics } = clusterFromText(
      yaml([
        "kind: ServiceAccount",
        "metadata: {name: a}",
        "---",
        "kind: ServiceAccount",
        "metadata: {name: b}",
        "---",
        "kind: Widget",
        "apiVersion: example.com/v1",
        "metadata: {name: w}",
      ]),
    );
    assert.equal(cluster.pods.length, 0);
    assert.deepEqual(
      diagnostics.warnings.map((w) => [w.code, w.message]),
      [
        ["unknown-kind", "skipped 2 object(s) of kind ServiceAccount: not analyzed by this version"],
        ["unknown-kind", "skipped 1 object(s) of kind Widget: not analyzed by this version"],
      ],
    );
  });

  it("refuses two objects of one kind with one name in one namespace", () => {
    assert.throws(
      () =>
        clusterFromText(
          yaml([
            "kind: Namespace",
            "metadata: {name: blue}",
            "---",
            "kind: Namespace",
            "metadata: {name: blue}",
          ]),
        ),
      (e: unknown) =>
        e instanceof InputError && e.code === "duplicate-object" && /already exists/.test(e.message),
    );
  });

  it("sets kubernetes.io/metadata.name on every namespace, given or implied", () => {
    const { cluster } = clusterFromText(
      yaml([
        "kind: Namespace",
        "metadata: {name: a, labels: {team: x}}",
        "---",
        "kind: Pod",
        "metadata: {name: p, namespace: b}",
      ]),
    );
    assert.deepEqual(
      { ...cluster.namespaces.get("a")?.labels },
      { team: "x", "kubernetes.io/metadata.name": "a" },
    );
    assert.deepEqual({ ...cluster.namespaces.get("b")?.labels }, { "kubernetes.io/metadata.name": "b" });
  });

  it("reads Services: selector, ports, numeric and named targetPorts", () => {
    const { cluster } = clusterFromText(
      yaml([
        "kind: Service",
        "metadata: {name: web, namespace: shop}",
        "spec:",
        "  selector: {app: web}",
        "  ports:",
        "  - {port: 80, targetPort: http}",
        "  - {port: 443, targetPort: 8443, protocol: TCP}",
        "  - {port: 53, protocol: UDP}",
      ]),
    );
    const svc = cluster.services[0];
    assert.deepEqual({ ...svc?.selector }, { app: "web" });
    assert.deepEqual(
      svc?.ports.map((p) => [p.port, p.protocol, p.targetPort]),
      [
        [80, "TCP", "http"],
        [443, "TCP", 8443],
        [53, "UDP", 53],
      ],
    );
  });
});
