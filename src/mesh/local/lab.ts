import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import { alignColumns, apply, down, type Say, statusCodeCurl, up } from "./mesh.js";

/** The lab's files (STEPS.md), and Tessera's own DNS step files. */
export const BASE_FILES = [
  "00-namespace.yaml",
  "01-workloads.yaml",
  "outside-client.yaml",
  "other-client.yaml",
];
const URL_BASE = "http://httpbin.default.svc.cluster.local:8000";
const CLI = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
const DNS_DIR = fileURLToPath(new URL("../../../../examples/zero-trust-lab/dns", import.meta.url));

export type Expected = "200" | "403" | "connection reset" | "could not resolve host";

export interface LabStep {
  readonly step: string;
  /** Files applied live before this step (paths relative to the lab directory, or absolute). */
  readonly apply: readonly string[];
  readonly caller: string;
  readonly method: string;
  readonly path: string;
  readonly expected: Expected;
}

/** Every step of STEPS.md in order, then the DNS mistake and its fix. */
export function labSteps(): LabStep[] {
  const get = (
    step: string,
    caller: string,
    applyFiles: string[] = [],
    expected: Expected = "200",
  ): LabStep => ({
    step,
    apply: applyFiles,
    caller,
    method: "GET",
    path: "/headers",
    expected,
  });
  return [
    get("1", "sleep"),
    get("1b", "legacy/legacy-client"),
    get("2", "sleep", ["02-mtls-strict.yaml"]),
    get("2b", "legacy/legacy-client", [], "connection reset"),
    get("3", "sleep", ["03-default-deny.yaml"], "403"),
    get("4", "sleep", ["04-allow-sleep-to-httpbin.yaml"]),
    { step: "4b", apply: [], caller: "sleep", method: "POST", path: "/post", expected: "403" },
    get("4c", "notsleep", [], "403"),
    get("5", "sleep", [join(DNS_DIR, "05-egress-without-dns.yaml")], "could not resolve host"),
    get("5b", "sleep", [join(DNS_DIR, "06-allow-dns.yaml")]),
  ];
}

/** What curl's exit code and status code mean, in STEPS.md's words. */
export function observed(exit: number, statusCode: string): string {
  if (exit === 0) return statusCode;
  if (exit === 56 || exit === 35) return "connection reset";
  if (exit === 6) return "could not resolve host";
  if (exit === 28) return "timeout";
  if (exit === 7) return "connection refused";
  if (exit === 52) return "empty reply";
  return `curl exit ${exit}`;
}

const PREDICTED: Record<string, string> = {
  forwarded: "200",
  "http-403": "403",
  "connection-reset": "connection reset",
  "dns-blocked": "could not resolve host",
  dropped: "timeout",
  "handshake-failed": "connection reset",
  "tcp-closed": "empty reply",
};

/** `tessera can` for the step, on the same files: what the engine predicts offline. */
function predict(
  labDir: string,
  applied: readonly string[],
  s: LabStep,
): { outcome: string; text: string; why: string } {
  const files = [...BASE_FILES, ...applied].flatMap((f) => ["-f", resolvePath(labDir, f)]);
  const r = spawnSync(
    process.execPath,
    [
      CLI,
      "can",
      ...files,
      s.caller,
      `httpbin.default.svc.cluster.local:8000`,
      "--method",
      s.method,
      "--path",
      s.path,
      "-o",
      "json",
      "-q",
    ],
    { encoding: "utf8" },
  );
  try {
    const out = JSON.parse(r.stdout) as {
      outcome: string;
      checks: Array<{
        trace: Array<{
          allowed: boolean;
          policy?: string;
          isolatedBy?: string[];
          layer: string;
          default?: string;
        }>;
      }>;
    };
    const denial = out.checks.flatMap((c) => c.trace).find((t) => !t.allowed);
    const why = denial
      ? `${denial.layer}: ${denial.policy ?? denial.isolatedBy?.join(", ") ?? denial.default ?? "default"}`
      : "";
    return { outcome: out.outcome, text: PREDICTED[out.outcome] ?? out.outcome, why };
  } catch {
    return { outcome: "error", text: `tessera can failed: ${r.stderr.trim()}`, why: "" };
  }
}

export interface LabRow {
  readonly step: string;
  readonly request: string;
  readonly expected: string;
  readonly actual: string;
  readonly predicted: string;
  readonly why: string;
  readonly pass: boolean;
}

/** Runs curl in the caller's pod and reports what it saw. */
async function request(stateDir: string, s: LabStep): Promise<string> {
  const argv = statusCodeCurl(`${URL_BASE}${s.path}`, 5, s.method);
  // Through `tessera exec`, as a person would run it, capturing curl's output.
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "exec", s.caller, "--", ...argv], {
      env: { ...process.env, TESSERA_STATE_DIR: stateDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve(observed(code ?? 1, out.trim())));
  });
}

/**
 * The zero-trust lab end to end: brings the lab's workloads up, applies each step's manifests
 * live, makes the step's request from inside the caller's pod and compares what happened with
 * STEPS.md and with `tessera can`'s prediction. Returns the rows; every row must pass.
 */
export async function runLab(
  labDir: string,
  stateDir: string,
  say: Say,
  options: { keep?: boolean } = {},
): Promise<LabRow[]> {
  for (const f of BASE_FILES) {
    if (!existsSync(join(labDir, f))) throw new Error(`${labDir} is not a lab directory: ${f} is missing`);
  }
  await up(
    stateDir,
    BASE_FILES.map((f) => join(labDir, f)),
    say,
  );
  const rows: LabRow[] = [];
  const applied: string[] = [];
  try {
    for (const s of labSteps()) {
      if (s.apply.length > 0) {
        const paths = s.apply.map((f) => resolvePath(labDir, f));
        await apply(stateDir, paths, () => undefined);
        applied.push(...s.apply);
      }
      const actual = await request(stateDir, s);
      const prediction = predict(labDir, applied, s);
      const row: LabRow = {
        step: s.step,
        request: `${s.caller}: ${s.method} ${s.path}`,
        expected: s.expected,
        actual,
        predicted: prediction.text,
        why: prediction.why,
        pass: actual === s.expected && prediction.text === s.expected,
      };
      rows.push(row);
      say(
        `step ${row.step.padEnd(3)} ${row.pass ? "PASS" : "FAIL"}  ${row.request}  expected ${row.expected}, got ${row.actual}, tessera can: ${row.predicted}`,
      );
    }
  } finally {
    if (!options.keep) await down(stateDir, () => undefined);
  }
  return rows;
}

export function labTable(rows: readonly LabRow[]): string {
  const header = ["STEP", "REQUEST", "EXPECTED", "ACTUAL", "TESSERA CAN", "DECIDED BY", "RESULT"];
  const table = [
    header,
    ...rows.map((r) => [
      r.step,
      r.request,
      r.expected,
      r.actual,
      r.predicted,
      r.why || "-",
      r.pass ? "PASS" : "FAIL",
    ]),
  ];
  return `${alignColumns(table).join("\n")}\n`;
}
