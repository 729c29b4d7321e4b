import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { tessera } from "../helpers/cli.js";
import { oracle } from "../helpers/paths.js";

const lab = oracle("..", "lab", "seed");
const files = (...names: string[]) => names.flatMap((n) => ["-f", join(lab, n)]);
const base = files("00-namespace.yaml", "01-workloads.yaml", "outside-client.yaml", "other-client.yaml");
const strict = files("02-mtls-strict.yaml");
const allowSleep = files("03-default-deny.yaml", "04-allow-sleep-to-httpbin.yaml");
const url = "httpbin.default.svc.cluster.local:8000";
const dir = mkdtempSync(join(tmpdir(), "tessera-can-mesh-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function outcome(args: string[]): { status: number | null; outcome: string; stdout: string } {
  const r = tessera(["can", ...args, "-o", "json", "-q"]);
  assert.ok(r.status === 0 || r.status === 1, r.stderr);
  return { status: r.status, outcome: JSON.parse(r.stdout).outcome, stdout: r.stdout };
}

describe("tessera can: callers outside the input and mesh settings", () => {
  it("an mTLS caller by principal is authorized like the pod it names", () => {
    const sleep = outcome([
      ...base,
      ...strict,
      ...allowSleep,
      "--from-principal",
      "spiffe://cluster.local/ns/default/sa/sleep",
      url,
      "--path",
      "/headers",
    ]);
    assert.deepEqual([sleep.status, sleep.outcome], [0, "forwarded"]);
    const other = outcome([
      ...base,
      ...strict,
      ...allowSleep,
      "--from-principal",
      "spiffe://cluster.local/ns/default/sa/other",
      url,
    ]);
    assert.deepEqual([other.status, other.outcome], [1, "http-403"]);
  });

  it("a peer of an untrusted trust domain fails the handshake; an alias makes it trusted and `cluster.local` in policies covers it", () => {
    const args = [
      ...base,
      ...strict,
      ...allowSleep,
      "--from-principal",
      "spiffe://partner.org/ns/default/sa/sleep",
      url,
    ];
    assert.equal(outcome(args).outcome, "handshake-failed");
    const aliased = outcome([...args, "--trust-domain-alias", "partner.org"]);
    assert.deepEqual([aliased.status, aliased.outcome], [0, "forwarded"]);
  });

  it("a plaintext caller is accepted under PERMISSIVE and reset under STRICT", () => {
    assert.equal(outcome([...base, "--plaintext-from", "10.9.9.9", url]).outcome, "forwarded");
    assert.equal(
      outcome([...base, ...strict, "--plaintext-from", "10.9.9.9", url]).outcome,
      "connection-reset",
    );
  });

  it("CUSTOM policies are decided by what the provider answers", () => {
    const custom = join(dir, "custom.yaml");
    writeFileSync(
      custom,
      [
        "apiVersion: security.istio.io/v1",
        "kind: AuthorizationPolicy",
        "metadata: {name: ext, namespace: default}",
        "spec:",
        "  selector: {matchLabels: {app: httpbin}}",
        "  action: CUSTOM",
        "  provider: {name: ext-authz}",
        "  rules: [{to: [{operation: {paths: ['/headers']}}]}]",
      ].join("\n"),
    );
    const args = [...base, "-f", custom, "sleep", url, "--path", "/headers"];
    assert.equal(outcome([...args, "--ext-authz", "deny"]).outcome, "http-403");
    assert.equal(outcome([...args, "--ext-authz", "allow"]).outcome, "forwarded");
  });

  it("the ztunnel profile enforces L4 only, for ambient namespaces", () => {
    const ambient = join(dir, "ambient.yaml");
    writeFileSync(
      ambient,
      [
        "apiVersion: v1",
        "kind: Namespace",
        "metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}",
        "---",
        "apiVersion: security.istio.io/v1",
        "kind: AuthorizationPolicy",
        "metadata: {name: l4, namespace: default}",
        "spec:",
        "  selector: {matchLabels: {app: httpbin}}",
        "  rules: [{from: [{source: {principals: ['cluster.local/ns/default/sa/sleep']}}]}]",
      ].join("\n"),
    );
    const args = [
      "-f",
      join(lab, "01-workloads.yaml"),
      "-f",
      join(lab, "other-client.yaml"),
      "-f",
      ambient,
      "--profile",
      "ztunnel",
    ];
    assert.equal(outcome([...args, "sleep", url]).outcome, "forwarded");
    assert.equal(outcome([...args, "notsleep", url]).outcome, "tcp-closed");
  });

  it("prints the outcome and every layer's decision in text, and refuses contradictory callers", () => {
    const r = tessera([
      "can",
      ...base,
      ...strict,
      ...allowSleep,
      "sleep",
      url,
      "--method",
      "POST",
      "--path",
      "/post",
      "-q",
    ]);
    assert.equal(r.status, 1);
    assert.match(
      r.stdout,
      /^DENIED default\/sleep\[Deployment\] => default\/httpbin\[Deployment\] : TCP 80 POST \/post\n {2}outcome: 403 RBAC: access denied\n/,
    );
    assert.match(r.stdout, /ingress PeerAuthentication: allowed by default\/default-strict/);
    assert.match(r.stdout, /ingress AuthorizationPolicy: denied/);
    assert.equal(
      tessera([
        "can",
        ...base,
        "--from-principal",
        "spiffe://cluster.local/ns/a/sa/b",
        "--plaintext-from",
        "1.2.3.4",
        url,
      ]).status,
      2,
    );
    assert.equal(tessera(["can", ...base, "--from-principal", "not-an-id", url]).status, 2);
    assert.equal(
      tessera(["can", ...base, "--from-principal", "spiffe://cluster.local/ns/a/sa/b", "sleep", url]).status,
      2,
    );
  });
});
