import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BASE_FILES } from "../../src/mesh/local/lab.js";
import { statusCodeCurl } from "../../src/mesh/local/mesh.js";
import { tessera as runTessera } from "../helpers/cli.js";
import { oracle } from "../helpers/paths.js";

/**
 * The zero-trust lab live (issue: the lab end to end as Tessera's main job): real namespaces,
 * identities, sidecars and packet filters on this machine. Its outcomes are Istio's
 * (STEPS.md), and every live result must equal `tessera can`'s offline prediction, over the
 * lab and over random policy sets on the same pods.
 */
const lab = oracle("..", "lab", "seed");
const base = BASE_FILES.map((f) => join(lab, f));

function requireRoot(): void {
  assert.equal(
    process.getuid?.(),
    0,
    "the live lab needs root (network namespaces, nftables, uids): run the tests as root",
  );
}

function tessera(args: string[], stateDir: string) {
  return runTessera(args, undefined, { env: { TESSERA_STATE_DIR: stateDir }, timeoutMs: 300_000 });
}

describe("tessera lab: every step of STEPS.md live, equal to tessera can", () => {
  it("passes every step, the DNS mistake included", () => {
    requireRoot();
    const state = mkdtempSync(join(tmpdir(), "tessera-lab-"));
    // The pods' uids must reach the mesh's state directory.
    chmodSync(state, 0o755);
    try {
      const r = tessera(["lab", lab, "--state-dir", join(state, "mesh")], state);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /all 10 steps PASS/);
      for (const step of ["1 ", "1b", "2 ", "2b", "3 ", "4 ", "4b", "4c", "5 ", "5b"]) {
        assert.match(r.stdout, new RegExp(`^${step.trim()}\\s.*PASS$`, "m"), `step ${step}`);
      }
      assert.match(r.stdout, /^2b .*connection reset\s+connection reset\s+connection reset/m);
      assert.match(r.stdout, /^5 .*could not resolve host.*default\/default-deny-egress/m);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

/** A small deterministic generator, so a failure names a reproducible policy set. */
function* randomPolicySets(seed: number, count: number): Generator<{ name: string; yaml: string }> {
  let x = seed;
  const next = (n: number) => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  const modes = ["PERMISSIVE", "STRICT", "DISABLE"];
  const authz = [
    "",
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: allow-nothing, namespace: default }\nspec: {}\n",
    'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: allow-sleep-get, namespace: default }\nspec:\n  selector: { matchLabels: { app: httpbin } }\n  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }], to: [{ operation: { methods: ["GET"] } }] }]\n',
    'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: deny-post, namespace: default }\nspec:\n  action: DENY\n  rules: [{ to: [{ operation: { methods: ["POST"] } }] }]\n',
    'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: allow-default-ns, namespace: default }\nspec:\n  rules: [{ from: [{ source: { namespaces: ["default"] } }] }]\n',
  ];
  const netpol = [
    "",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: httpbin-from-sleep, namespace: default }\nspec:\n  podSelector: { matchLabels: { app: httpbin } }\n  ingress: [{ from: [{ podSelector: { matchLabels: { app: sleep } } }] }]\n",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: httpbin-port-81-only, namespace: default }\nspec:\n  podSelector: { matchLabels: { app: httpbin } }\n  ingress: [{ ports: [{ port: 81 }] }]\n",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: httpbin-from-legacy, namespace: default }\nspec:\n  podSelector: { matchLabels: { app: httpbin } }\n  ingress: [{ from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: legacy } } }] }]\n",
  ];
  for (let i = 0; i < count; i++) {
    const m = modes[next(modes.length)] as string;
    const a = next(authz.length);
    const n = next(netpol.length);
    const docs = [
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: default }\nspec: { mtls: { mode: ${m} } }\n`,
      authz[a] as string,
      netpol[n] as string,
    ].filter((d) => d !== "");
    yield { name: `mode ${m}, authz #${a}, netpol #${n}`, yaml: docs.join("---\n") };
  }
}

const OUTCOME_TEXT: Record<string, string> = {
  forwarded: "200",
  "http-403": "403",
  "connection-reset": "reset",
  dropped: "timeout",
  "dns-blocked": "no-dns",
};

function live(exit: number, code: string): string {
  if (exit === 0) return code;
  if (exit === 56 || exit === 35) return "reset";
  if (exit === 28) return "timeout";
  if (exit === 6) return "no-dns";
  return `curl-exit-${exit}`;
}

describe("live equals offline over random policy sets on the lab's pods", () => {
  let state: string;
  let stateDir: string;
  before(() => {
    requireRoot();
    state = mkdtempSync(join(tmpdir(), "tessera-live-"));
    chmodSync(state, 0o755);
    stateDir = join(state, "mesh");
    const r = tessera(["up", ...base, "--state-dir", stateDir], state);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => {
    if (stateDir) tessera(["down", "--state-dir", stateDir], state);
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it("agrees on every request of 6 random policy sets", () => {
    const mismatches: string[] = [];
    let compared = 0;
    for (const set of randomPolicySets(7, 6)) {
      const file = join(state, "policies.yaml");
      writeFileSync(file, set.yaml);
      const applied = tessera(["apply", "--replace", file, "--state-dir", stateDir], state);
      assert.equal(applied.status, 0, applied.stderr);
      for (const caller of ["sleep", "notsleep", "legacy/legacy-client"]) {
        for (const method of ["GET", "POST"]) {
          const url = "http://httpbin.default.svc.cluster.local:8000/anything";
          const r = tessera(
            ["exec", caller, "--state-dir", stateDir, "--", ...statusCodeCurl(url, 2, method)],
            state,
          );
          const got = live(r.status ?? 1, r.stdout.trim());
          const can = tessera(
            [
              "can",
              ...base.flatMap((f) => ["-f", f]),
              "-f",
              file,
              caller,
              "httpbin.default.svc.cluster.local:8000",
              "--method",
              method,
              "--path",
              "/anything",
              "-o",
              "json",
              "-q",
            ],
            state,
          );
          const predicted = OUTCOME_TEXT[(JSON.parse(can.stdout) as { outcome: string }).outcome] ?? "?";
          compared++;
          if (got !== predicted)
            mismatches.push(`${set.name}: ${caller} ${method}: live ${got}, tessera can ${predicted}`);
        }
      }
    }
    assert.deepEqual(mismatches, []);
    assert.equal(compared, 36);
  });
});
