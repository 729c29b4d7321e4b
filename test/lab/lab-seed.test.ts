import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { tessera } from "../helpers/cli.js";
import { oracle } from "../helpers/paths.js";

/**
 * The zero-trust lab (../shared/lab/seed/STEPS.md), applied step by step: `tessera can`
 * must predict what the Istio sidecar mesh answers at every step.
 */
const lab = oracle("..", "lab", "seed");
const base = ["00-namespace.yaml", "01-workloads.yaml", "outside-client.yaml", "other-client.yaml"];
const url = "httpbin.default.svc.cluster.local:8000";

interface Step {
  step: string;
  applied: string[];
  caller: string;
  method: string;
  path: string;
  /** As STEPS.md states it. */
  expected: "200" | "403" | "connection reset";
}

const steps: Step[] = [
  { step: "1", applied: [], caller: "sleep", method: "GET", path: "/headers", expected: "200" },
  {
    step: "1b",
    applied: [],
    caller: "legacy/legacy-client",
    method: "GET",
    path: "/headers",
    expected: "200",
  },
  {
    step: "2",
    applied: ["02-mtls-strict.yaml"],
    caller: "sleep",
    method: "GET",
    path: "/headers",
    expected: "200",
  },
  {
    step: "2b",
    applied: ["02-mtls-strict.yaml"],
    caller: "legacy/legacy-client",
    method: "GET",
    path: "/headers",
    expected: "connection reset",
  },
  {
    step: "3",
    applied: ["02-mtls-strict.yaml", "03-default-deny.yaml"],
    caller: "sleep",
    method: "GET",
    path: "/headers",
    expected: "403",
  },
  ...(["4", "4b", "4c"] as const).map((step) => ({
    step,
    applied: ["02-mtls-strict.yaml", "03-default-deny.yaml", "04-allow-sleep-to-httpbin.yaml"],
    caller: step === "4c" ? "notsleep" : "sleep",
    method: step === "4b" ? "POST" : "GET",
    path: step === "4b" ? "/post" : "/headers",
    expected: (step === "4" ? "200" : "403") as Step["expected"],
  })),
];

const OUTCOME_OF: Record<Step["expected"], string> = {
  "200": "forwarded",
  "403": "http-403",
  "connection reset": "connection-reset",
};

describe("the zero-trust lab, step by step", () => {
  for (const s of steps) {
    it(`step ${s.step}: ${s.caller} ${s.method} ${s.path} -> ${s.expected}`, () => {
      const files = [...base, ...s.applied].flatMap((f) => ["-f", join(lab, f)]);
      const r = tessera([
        "can",
        ...files,
        s.caller,
        url,
        "--method",
        s.method,
        "--path",
        s.path,
        "-o",
        "json",
        "-q",
      ]);
      assert.equal(r.status, s.expected === "200" ? 0 : 1, r.stdout + r.stderr);
      const out = JSON.parse(r.stdout) as {
        allowed: boolean;
        outcome: string;
        checks: Array<{ outcomeText?: string }>;
      };
      assert.equal(out.outcome, OUTCOME_OF[s.expected]);
      if (s.expected === "403") assert.equal(out.checks[0]?.outcomeText, "403 RBAC: access denied");
    });
  }

  it("default-deny NetworkPolicy without DNS egress: the lookup is what fails, naming the policy", () => {
    const files = [...base, "02-mtls-strict.yaml"].flatMap((f) => ["-f", join(lab, f)]);
    const deny = join(lab, "netpol-default-deny.yaml");
    // The lab's default deny is for namespace secure-workloads: apply the same policy to default.
    const text = readFileSync(deny, "utf8").replace("namespace: secure-workloads", "namespace: default");
    const r = tessera(
      ["can", ...files, "-f", "-", "sleep", url, "--path", "/headers", "-o", "json", "-q"],
      text,
    );
    assert.equal(r.status, 1, r.stderr);
    const out = JSON.parse(r.stdout) as {
      outcome: string;
      checks: Array<{
        trace: Array<{ layer: string; direction: string; allowed: boolean; isolatedBy?: string[] }>;
      }>;
    };
    assert.equal(out.outcome, "dns-blocked");
    const refusal = out.checks[0]?.trace.find((t) => !t.allowed);
    assert.deepEqual(
      { layer: refusal?.layer, direction: refusal?.direction, isolatedBy: refusal?.isolatedBy },
      { layer: "NetworkPolicy", direction: "egress", isolatedBy: ["default/default-deny-all"] },
    );
  });
});
