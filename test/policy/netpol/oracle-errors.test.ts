/**
 * netpol-analyzer's invalid-input scenarios (../shared/oracles/netpol-analyzer-errors, read in
 * place). netpol-analyzer stops with a fatal error on each; Tessera must refuse the same inputs
 * with one clear line (`error: FILE:LINE: Kind ns/name: message`, exit 2, no connection list),
 * except where Tessera deliberately answers differently (workload split, see below).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { cliPath, oracle } from "../../helpers/paths.js";

const root = oracle("netpol-analyzer-errors");

interface Scenario {
  name: string;
  family: string;
  contains: string;
}

/** The README table: `| scenario | family | netpol-analyzer error contains |`. */
function readScenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const line of readFileSync(join(root, "README.md"), "utf8").split(/\r?\n/)) {
    const m = /^\|\s*([^|\s]+)\s*\|\s*([^|\s]+)\s*\|\s*(.*?)\s*\|\s*$/.exec(line);
    if (!m || m[1] === "scenario" || /^-+$/.test(m[1] as string)) continue;
    const contains = (m[3] as string).replace(/^`+\s?|\s?`+$/g, "");
    out.push({ name: m[1] as string, family: m[2] as string, contains });
  }
  return out;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function connectivity(dir: string): Run {
  const r = spawnSync(process.execPath, [cliPath, "connectivity", dir], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertNoCrash(r: Run): void {
  assert.notEqual(r.status, 70, `internal error (exit 70):\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/);
  assert.doesNotMatch(r.stderr, / {4}at /, `stack trace on stderr:\n${r.stderr}`);
}

/**
 * What our message must say for each refused `np` scenario: the gist of netpol-analyzer's
 * substring (our wording differs), the file and line of the offending object (its document
 * start, or the directory for a directory-level error, line 0), and the object named.
 */
interface Refusal {
  gist: RegExp[];
  file: string;
  line: number;
  object?: string;
}

const REFUSED: Record<string, Refusal> = {
  "bad_netpols/subdir1": {
    gist: [/CIDR error: invalid CIDR address/, /ipBlock\.cidr "A"/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/shippingservice-netpol",
  },
  "bad_netpols/subdir2": {
    gist: [/selector error/, /key: Invalid value: "app@b"/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/shippingservice-netpol",
  },
  "bad_netpols/subdir3": {
    gist: [/cannot have both IPBlock and PodSelector\/NamespaceSelector set/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/shippingservice-netpol",
  },
  "bad_netpols/subdir4": {
    gist: [/cannot have empty rule peer/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/shippingservice-netpol",
  },
  "bad_netpols/subdir6": {
    gist: [/named port error: cannot convert named port for an IP destination/, /"abc"/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/shippingservice-netpol",
  },
  "bad_netpols/subdir7": {
    gist: [/selector error/, /"\$backendservice"/],
    file: "resources.yaml",
    line: 145,
    object: "NetworkPolicy default/frontend-netpol",
  },
  bad_path_namespace_with_same_name: {
    gist: [/Namespace "blue" already exists/, /objects\.yaml:2/],
    file: "objects.yaml",
    line: 9,
    object: "Namespace blue",
  },
  "bad_yamls/subdir2": {
    gist: [/no Kubernetes manifests/, /recognized file extensions are \.yaml, \.yml, \.json/],
    file: "input",
    line: 0,
  },
  "malformed-pod-example-4": {
    gist: [/kind is missing in/],
    file: "pods.json",
    line: 1,
  },
  np_bad_path_test_1: {
    gist: [/NetworkPolicy "default\/backend-netpol" already exists/, /netpols\.yaml:1\)/],
    file: "netpols.yaml",
    line: 24,
    object: "NetworkPolicy default/backend-netpol",
  },
  np_bad_path_test_2: {
    gist: [/endPort field cannot be defined if the port field is defined as a named \(string\) port/],
    file: "netpols.yaml",
    line: 1,
    object: "NetworkPolicy default/backend-netpol",
  },
  np_test_with_empty_port_range: {
    gist: [/port range 10-1 is illegal/, /end may not be less than start/],
    file: "netpol.yaml",
    line: 1,
    object: "NetworkPolicy ns1/egress-empty-port-range",
  },
};

/**
 * Pods of one owner with labels that a policy tells apart: netpol-analyzer refuses; Tessera
 * splits the workload into one peer per distinct pod group and warns `workload-split`. The
 * expected connections are worked out by hand from the YAML (comments below).
 */
interface Split {
  workload: string;
  groups: string[];
  connections: string[];
}

const IS = "default/internal-security[Pod]";
const IS_CMD = `${IS}{app=command-selector,tier=agent}`;
const IS_QRY = `${IS}{app=query-selector,tier=analyzer}`;
const COG = "demo/cog-agents[DaemonSet]";
const COG_UI = `${COG}{app=bank-ui-selector}`;
const COG_QRY = `${COG}{app=account-query-selector}`;
const COG_CMD = `${COG}{app=account-command-selector}`;
const ALL_IPS = "0.0.0.0-255.255.255.255[External]";

const SPLIT: Record<string, Split> = {
  // pod-1 (app=command-selector, tier=agent) and pod-2 (app=query-selector, tier=analyzer) share
  // the kind-less owner internal-security; pod-3 has no owner. The one policy selects every pod
  // of default for Ingress and allows only pods with app In (query-selector) on TCP 90. No
  // policy isolates egress, and no ipBlock admits external sources.
  example_pods_w_same_owner_and_labels_gap_with_bad_match_expression: {
    workload: IS,
    groups: [IS_CMD, IS_QRY],
    connections: [
      `${IS_CMD} => ${ALL_IPS} : All Connections`,
      `${IS_QRY} => ${ALL_IPS} : All Connections`,
      `${IS_QRY} => ${IS_CMD} : TCP 90`,
      `${IS_QRY} => default/pod-3[Pod] : TCP 90`,
      `default/pod-3[Pod] => ${ALL_IPS} : All Connections`,
    ],
  },
  // Three pods of DaemonSet demo/cog-agents differ in app. ui-to-command isolates the
  // account-command pods for Ingress, allowing only app=bank-ui-selector (all ports);
  // query-to-ui isolates the account-query pods for Egress, allowing only app=bank-ui-selector
  // on TCP 8080. Everything else is unisolated.
  "semanticDiff-same-topologies-illegal-podlist": {
    workload: COG,
    groups: [COG_UI, COG_QRY, COG_CMD],
    connections: [
      `${ALL_IPS} => ${COG_QRY} : All Connections`,
      `${ALL_IPS} => ${COG_UI} : All Connections`,
      `${COG_CMD} => ${ALL_IPS} : All Connections`,
      `${COG_CMD} => ${COG_QRY} : All Connections`,
      `${COG_CMD} => ${COG_UI} : All Connections`,
      `${COG_QRY} => ${COG_UI} : TCP 8080`,
      `${COG_UI} => ${ALL_IPS} : All Connections`,
      `${COG_UI} => ${COG_CMD} : All Connections`,
      `${COG_UI} => ${COG_QRY} : All Connections`,
    ],
  },
};

const NOT_IN_SCOPE =
  "AdminNetworkPolicy and BaselineAdminNetworkPolicy are not analyzed by this version: they are skipped with a warning unknown-kind, so their validation errors are not reported";

const scenarios = readScenarios();
const np = scenarios.filter((s) => s.family === "np");
const anp = scenarios.filter((s) => s.family === "anp-banp");

function lineText(file: string, line: number): string {
  return readFileSync(file, "utf8").split(/\r?\n/)[line - 1] ?? "";
}

describe("netpol-analyzer invalid-input scenarios (oracle)", () => {
  it("reads the README table: np and anp-banp scenarios, every one with an input directory", () => {
    assert.ok(np.length >= 14, `np scenarios: ${np.length}`);
    assert.ok(anp.length >= 30, `anp-banp scenarios: ${anp.length}`);
    assert.equal(np.length + anp.length, scenarios.length, "only the two families");
    for (const s of scenarios) {
      assert.ok(existsSync(join(root, s.name, "input")), `${s.name}/input`);
      const expected = readFileSync(join(root, s.name, "expected-error.txt"), "utf8").trim();
      assert.ok(expected.includes(s.contains.trim()) || s.contains.includes(expected), s.name);
    }
  });

  it("has an expectation for every np scenario", () => {
    for (const s of np) assert.ok(REFUSED[s.name] || SPLIT[s.name], `no expectation for ${s.name}`);
    for (const name of [...Object.keys(REFUSED), ...Object.keys(SPLIT)]) {
      assert.ok(
        np.some((s) => s.name === name),
        `${name} is not an np scenario of the README`,
      );
    }
  });

  describe("family np: refused with one clear error line, exit 2", () => {
    for (const s of np) {
      const want = REFUSED[s.name];
      if (!want) continue;
      it(`${s.name}: ${s.contains}`, () => {
        const input = join(root, s.name, "input");
        const r = connectivity(input);
        assertNoCrash(r);
        assert.equal(r.status, 2, `exit status; stderr:\n${r.stderr}`);
        assert.equal(r.stdout, "", "no connection list");
        assert.ok(r.stderr.startsWith("error: "), r.stderr);
        const lines = r.stderr.split("\n").filter((l) => l !== "");
        assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
        const message = lines[0] as string;

        const m = /^error: (.+?):(\d+): (.*)$/.exec(message);
        assert.ok(m, `error: FILE:LINE: ... (got ${message})`);
        const [, file, lineText_, rest] = m as unknown as [string, string, string, string];
        const line = Number(lineText_);
        const path = resolve(file);
        assert.ok(existsSync(path), `named file exists: ${path}`);
        assert.ok(!relative(input, path).startsWith(".."), `${path} is inside ${input}`);
        assert.equal(basename(path), want.file, message);
        assert.equal(line, want.line, message);
        if (line === 0) {
          assert.ok(statSync(path).isDirectory(), "line 0 only for a directory-level error");
        } else {
          // The line is where the offending object starts (its document or list item).
          assert.match(lineText(path, line), /^(\s*-\s+)?("?apiVersion"?|"?kind"?|\{)/, `${path}:${line}`);
        }
        if (want.object) assert.ok(rest.startsWith(`${want.object}: `), `names ${want.object}: ${message}`);
        for (const g of want.gist) assert.match(message, g);
      });
    }
  });

  describe("family np: pods of one owner told apart by a selector are split, not refused", () => {
    for (const s of np) {
      const want = SPLIT[s.name];
      if (!want) continue;
      it(`${s.name}: ${want.workload} analyzed as ${want.groups.length} groups`, () => {
        const r = connectivity(join(root, s.name, "input"));
        assertNoCrash(r);
        assert.equal(r.status, 0, `exit status; stderr:\n${r.stderr}`);
        assert.doesNotMatch(r.stderr, /^error/m);
        const warnings = r.stderr.split("\n").filter((l) => l.startsWith("warning workload-split: "));
        assert.equal(warnings.length, 1, r.stderr);
        const warning = warnings[0] as string;
        assert.ok(warning.includes(`: ${want.workload}: `), warning);
        assert.match(warning, /:\d+: /, "the warning names file:line");
        assert.ok(warning.includes(`analyzed as ${want.groups.length} groups`), warning);
        for (const g of want.groups) assert.ok(warning.includes(g), `${g} in ${warning}`);

        const got = r.stdout.split("\n").filter((l) => l !== "");
        assert.deepEqual([...got].sort(), [...want.connections].sort());
        // Every group is a peer of the output, and the unsplit workload is not.
        for (const g of want.groups)
          assert.ok(
            got.some((l) => l.includes(g)),
            `${g} in the output`,
          );
        assert.ok(
          got.every((l) => !l.split(" => ").some((side) => side.split(" : ")[0] === want.workload)),
          "the unsplit workload is not a peer",
        );
      });
    }
  });

  describe(`family anp-banp: not in scope (${NOT_IN_SCOPE})`, () => {
    for (const s of anp) {
      it(`${s.name}: does not crash; skips the admin policies with a warning`, () => {
        const input = join(root, s.name, "input");
        const text = readdirSync(input)
          .map((f) => readFileSync(join(input, f), "utf8"))
          .join("\n");
        const kinds = ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"].filter((k) =>
          new RegExp(`^\\s*-?\\s*"?kind"?\\s*:\\s*"?${k}"?\\s*$`, "m").test(text),
        );
        assert.ok(kinds.length > 0, "the input holds an admin policy");
        const r = connectivity(input);
        assertNoCrash(r);
        assert.ok(r.status === 0 || r.status === 2, `exit ${r.status}:\n${r.stderr}`);
        if (r.status === 0) {
          for (const k of kinds) {
            assert.match(
              r.stderr,
              new RegExp(`^warning unknown-kind: .*:\\d+: skipped \\d+ object\\(s\\) of kind ${k}:`, "m"),
            );
          }
          assert.ok(r.stdout.length > 0, "a connection list");
        } else {
          // Refused for a reason of the core kinds (e.g. two objects with the same name).
          assert.equal(r.stdout, "");
          assert.match(r.stderr, /^error: .+:\d+: \S.*\n$/);
        }
      });
    }
  });
});
