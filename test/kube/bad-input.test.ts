/**
 * Bad input through the CLI: every case gives exit 2, nothing on stdout and one line on stderr,
 * `error: FILE:LINE: Kind ns/name: message`, where LINE is where the offending object starts
 * (its document, or its item in a List). Valid objects of kinds Tessera does not analyze are
 * skipped with a warning, never an error.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cliPath } from "../helpers/paths.js";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function tessera(args: readonly string[], input?: string): Run {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: "utf8", input });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `body` with a fresh temporary directory, removed afterwards. */
function withTempDir<T>(body: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bad-input-"));
  try {
    return body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Exit 2, empty stdout, exactly one stderr line `error: FILE:LINE: [OBJECT: ]...` matching gist. */
function assertBadInput(
  r: Run,
  where: { file: string; line: number; object?: string },
  gist: RegExp,
): string {
  assert.notEqual(r.status, 70, `internal error:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, / {4}at /, "no stack trace");
  assert.equal(r.status, 2, `exit 2; stderr:\n${r.stderr}`);
  assert.equal(r.stdout, "", "no connection list");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
  const message = lines[0] as string;
  const prefix = `error: ${where.file}:${where.line}: ${where.object ? `${where.object}: ` : ""}`;
  assert.ok(message.startsWith(prefix), `expected "${prefix}..." got:\n${message}`);
  assert.match(message, gist);
  return message;
}

/** A Namespace and a Pod (lines 1-10), then a comment; the object under test starts on line 12. */
const PREFIX = [
  "apiVersion: v1",
  "kind: Namespace",
  "metadata:",
  "  name: shop",
  "---",
  "apiVersion: v1",
  "kind: Pod",
  "metadata: {name: web, namespace: shop, labels: {app: web}}",
  "spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}",
  "---",
  "# the object under test",
];
const BAD_LINE = PREFIX.length + 1;

/** A NetworkPolicy shop/np with the given spec lines (indented under `spec:`). */
function netpol(spec: string[], name = "np"): string[] {
  return [
    "apiVersion: networking.k8s.io/v1",
    "kind: NetworkPolicy",
    "metadata:",
    `  name: ${name}`,
    "  namespace: shop",
    "spec:",
    ...spec.map((l) => `  ${l}`),
  ];
}

const text = (lines: string[]) => `${lines.join("\n")}\n`;

/** Writes PREFIX + the object to a file and runs `connectivity` on it. */
function checkObject(
  objectLines: string[],
  gist: RegExp,
  object: string | null = "NetworkPolicy shop/np",
): string {
  return withTempDir((dir) => {
    const file = join(dir, "cluster.yaml");
    writeFileSync(file, text([...PREFIX, ...objectLines]));
    return assertBadInput(
      tessera(["connectivity", file]),
      { file, line: BAD_LINE, object: object ?? undefined },
      gist,
    );
  });
}

describe("bad input through the CLI: one clear error line, exit 2", () => {
  describe("YAML", () => {
    it("malformed YAML (a tab as indentation) names the broken line", () => {
      withTempDir((dir) => {
        const file = join(dir, "bad.yaml");
        writeFileSync(file, text([...PREFIX, "apiVersion: v1", "kind: Pod", "metadata:", "\tname: x"]));
        assertBadInput(
          tessera(["connectivity", file]),
          { file, line: BAD_LINE + 3 },
          /malformed YAML or JSON: .*[Tt]ab/,
        );
      });
    });

    it("malformed YAML (an unclosed flow sequence before the next document) points inside the broken document", () => {
      withTempDir((dir) => {
        const file = join(dir, "bad.yaml");
        const lines = [
          ...PREFIX,
          "apiVersion: v1",
          "kind: Pod",
          "metadata: {name: p, labels: [unclosed",
          "---",
          "kind: Pod",
        ];
        writeFileSync(file, text(lines));
        const r = tessera(["connectivity", file]);
        const m = /^error: .*:(\d+): /.exec(r.stderr);
        const line = Number(m?.[1]);
        // Somewhere in the document that holds the error: from its start to the unclosed line.
        assert.ok(
          line >= BAD_LINE && line <= BAD_LINE + 2,
          `line ${line} in ${BAD_LINE}-${BAD_LINE + 2}:\n${r.stderr}`,
        );
        assertBadInput(r, { file, line }, /malformed YAML or JSON/);
      });
    });

    it("malformed JSON names the file and a line inside it", () => {
      withTempDir((dir) => {
        const file = join(dir, "pods.json");
        writeFileSync(file, '{\n  "kind": "Pod",\n  "metadata": {"name": "a"\n}\n');
        const r = tessera(["connectivity", file]);
        const line = Number(/^error: .*:(\d+): /.exec(r.stderr)?.[1]);
        assert.ok(line >= 1 && line <= 4, `line ${line}:\n${r.stderr}`);
        assertBadInput(r, { file, line }, /malformed YAML or JSON/);
      });
    });

    it("-f - with bad YAML on stdin names <stdin> and a line of the input", () => {
      const input = "apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n";
      const r = tessera(["connectivity", "-f", "-"], input);
      const line = Number(/^error: <stdin>:(\d+): /.exec(r.stderr)?.[1]);
      assert.ok(line >= 1 && line <= 3, `a line of the 3-line input, got ${line}:\n${r.stderr}`);
      assertBadInput(r, { file: "<stdin>", line }, /malformed YAML or JSON/);
    });

    it("a document without kind", () => {
      checkObject(["apiVersion: v1", "metadata: {name: nameless}"], /field kind is missing/, null);
    });

    it("a document that is not a map", () => {
      checkObject(["- just", "- a list"], /must be a Kubernetes object/, null);
    });

    it("a bad item of a List names the item's line", () => {
      withTempDir((dir) => {
        const file = join(dir, "list.yaml");
        const lines = [
          "apiVersion: v1",
          "kind: List",
          "items:",
          "- apiVersion: v1",
          "  kind: Pod",
          "  metadata: {name: ok}",
          "- apiVersion: networking.k8s.io/v1",
          "  kind: NetworkPolicy",
          "  metadata: {name: np}",
          "  spec:",
          "    podSelector: {}",
          "    ingress: [{ports: [{port: 70000}]}]",
        ];
        writeFileSync(file, text(lines));
        assertBadInput(
          tessera(["connectivity", file]),
          { file, line: 7, object: "NetworkPolicy default/np" },
          /port: 70000 is out of range 1-65535/,
        );
      });
    });

    it("an invalid label key on an item of a PodList (kind implied) names the item's line", () => {
      withTempDir((dir) => {
        const file = join(dir, "pods.yaml");
        const lines = [
          "apiVersion: v1",
          "kind: PodList",
          "items:",
          "  - metadata: {name: a, namespace: shop}",
          "  - metadata:",
          "      name: b",
          "      namespace: shop",
          '      labels: {"bad key": x}',
        ];
        writeFileSync(file, text(lines));
        assertBadInput(
          tessera(["connectivity", file]),
          { file, line: 5, object: "Pod shop/b" },
          /metadata\.labels: key "bad key"/,
        );
      });
    });
  });

  describe("NetworkPolicy", () => {
    it("an invalid CIDR", () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- from:", "  - ipBlock: {cidr: 10.0.0.0/33}"]),
        /CIDR error: invalid CIDR address: spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr "10\.0\.0\.0\/33"/,
      );
    });

    it("an except outside its CIDR", () => {
      checkObject(
        netpol([
          "podSelector: {}",
          "egress:",
          "- to:",
          "  - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}",
        ]),
        /except\[0\] "10\.1\.0\.0\/24" must be a strict subset of cidr 10\.0\.0\.0\/16/,
      );
    });

    it("an unknown selector operator", () => {
      checkObject(
        netpol(["podSelector:", "  matchExpressions:", "  - {key: app, operator: Includes, values: [web]}"]),
        /selector error: spec\.podSelector: .*"Includes" is not a valid label selector operator/,
      );
    });

    it("a named port with endPort", () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- ports:", "  - {port: http, endPort: 9090}"]),
        /endPort field cannot be defined if the port field is defined as a named \(string\) port/,
      );
    });

    for (const port of [0, 70000]) {
      it(`an out-of-range port: ${port}`, () => {
        checkObject(
          netpol(["podSelector: {}", "ingress:", "- ports:", `  - {port: ${port}}`]),
          new RegExp(`spec\\.ingress\\[0\\]\\.ports\\[0\\]\\.port: ${port} is out of range 1-65535`),
        );
      });
    }

    it("a port that is neither a number nor a name (true)", () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- ports:", "  - {port: true}"]),
        /spec\.ingress\[0\]\.ports\[0\]\.port: true must be a port number \(1-65535\) or a port name/,
      );
    });

    it("an endPort below its port", () => {
      checkObject(
        netpol(["podSelector: {}", "egress:", "- ports:", "  - {port: 9090, endPort: 8080}"]),
        /port range 9090-8080 is illegal/,
      );
    });

    it("two NetworkPolicies of one name in one namespace: the second is named, with the first's line", () => {
      withTempDir((dir) => {
        const file = join(dir, "netpols.yaml");
        const first = netpol(["podSelector: {}"]);
        const lines = [...PREFIX, ...first, "---", ...netpol(["podSelector: {matchLabels: {app: web}}"])];
        writeFileSync(file, text(lines));
        const secondLine = BAD_LINE + first.length + 1;
        assertBadInput(
          tessera(["connectivity", file]),
          { file, line: secondLine, object: "NetworkPolicy shop/np" },
          new RegExp(
            `NetworkPolicy "shop/np" already exists \\(first at ${escapeRegExp(file)}:${BAD_LINE}\\)`,
          ),
        );
      });
    });

    it("the same name in two files: the error names the second file", () => {
      withTempDir((dir) => {
        mkdirSync(join(dir, "a"));
        mkdirSync(join(dir, "b"));
        writeFileSync(join(dir, "a", "one.yaml"), text(netpol(["podSelector: {}"])));
        writeFileSync(join(dir, "b", "two.yaml"), text(["# again", "---", ...netpol(["podSelector: {}"])]));
        assertBadInput(
          tessera(["connectivity", dir]),
          { file: join(dir, "b", "two.yaml"), line: 3, object: "NetworkPolicy shop/np" },
          /already exists \(first at .*one\.yaml:1\)/,
        );
      });
    });

    it("an empty peer {}", () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- from:", "  - {}"]),
        /rule NetworkPolicyPeer error: cannot have empty rule peer \(spec\.ingress\[0\]\.from\[0\]\)/,
      );
    });

    it("an ipBlock together with a podSelector", () => {
      checkObject(
        netpol([
          "podSelector: {}",
          "egress:",
          "- to:",
          "  - ipBlock: {cidr: 10.0.0.0/8}",
          "    podSelector: {}",
        ]),
        /cannot have both IPBlock and PodSelector\/NamespaceSelector set \(spec\.egress\[0\]\.to\[0\]\)/,
      );
    });

    it("an invalid label key in matchLabels", () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- from:", "  - podSelector: {matchLabels: {'app/': web}}"]),
        /selector error: spec\.ingress\[0\]\.from\[0\]\.podSelector: key: Invalid value: "app\/"/,
      );
    });

    it('an invalid protocol "ICMP"', () => {
      checkObject(
        netpol(["podSelector: {}", "ingress:", "- ports:", "  - {protocol: ICMP, port: 80}"]),
        /spec\.ingress\[0\]\.ports\[0\]\.protocol: "ICMP" is not TCP, UDP or SCTP/,
      );
    });

    it('policyTypes "Sideways"', () => {
      checkObject(
        netpol(["podSelector: {}", "policyTypes: [Ingress, Sideways]"]),
        /spec\.policyTypes: "Sideways" is not Ingress or Egress/,
      );
    });
  });

  describe("paths", () => {
    it("a directory with no YAML or JSON files", () => {
      withTempDir((dir) => {
        writeFileSync(join(dir, "notes.txt"), "kind: Pod\n");
        writeFileSync(join(dir, "cluster.xml"), "<pods/>\n");
        assertBadInput(
          tessera(["connectivity", dir]),
          { file: dir, line: 0 },
          /no Kubernetes manifests in directory .*: recognized file extensions are \.yaml, \.yml, \.json/,
        );
      });
    });

    it("a missing path", () => {
      withTempDir((dir) => {
        const missing = join(dir, "nope.yaml");
        assertBadInput(
          tessera(["connectivity", missing]),
          { file: missing, line: 0 },
          /no such file or directory/,
        );
      });
    });
  });
});

describe("kinds Tessera does not analyze: a warning, exit 0", () => {
  it("a ServiceAccount, a CustomResourceDefinition and a custom resource are skipped with unknown-kind", () => {
    withTempDir((dir) => {
      const file = join(dir, "mixed.yaml");
      const lines = [
        ...PREFIX,
        "apiVersion: v1",
        "kind: ServiceAccount",
        "metadata: {name: web, namespace: shop}",
        "---",
        "apiVersion: apiextensions.k8s.io/v1",
        "kind: CustomResourceDefinition",
        "metadata: {name: widgets.example.com}",
        "spec: {group: example.com, names: {kind: Widget, plural: widgets}, scope: Namespaced}",
        "---",
        "apiVersion: example.com/v1",
        "kind: Widget",
        "metadata: {name: w1, namespace: shop}",
        "spec: {whatever: [1, 2, {deep: true}]}",
        "---",
        "apiVersion: example.com/v1",
        "kind: Widget",
        "metadata: {name: w2, namespace: shop}",
      ];
      writeFileSync(file, text(lines));
      const r = tessera(["connectivity", file]);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /^error/m);
      const warn = (kind: string, count: number, line: number) =>
        assert.ok(
          r.stderr.includes(
            `warning unknown-kind: ${file}:${line}: skipped ${count} object(s) of kind ${kind}: not analyzed by this version\n`,
          ),
          `${kind} warning in:\n${r.stderr}`,
        );
      warn("ServiceAccount", 1, BAD_LINE);
      warn("CustomResourceDefinition", 1, BAD_LINE + 4);
      warn("Widget", 2, BAD_LINE + 9);
      // The pod is still analyzed.
      assert.match(r.stdout, /shop\/web\[Pod\]/);
    });
  });
});
