/**
 * `tessera connectivity` and `tessera diff` through the mesh, on examples/mesh-lab: STRICT mTLS
 * in namespace default, allow-nothing, sleep may GET httpbin; orders serves HTTP on 8080 (GET
 * and POST from namespace default, never /admin*) and TCP metrics on 9090; legacy-client has
 * no sidecar. Every output format carries the L7 part, and txt stays np-guard readable.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConnectionSet } from "../../src/policy/connset.js";
import { tessera } from "../helpers/cli.js";
import { parseTxt } from "../helpers/connlist.js";
import { repoRoot } from "../helpers/paths.js";

const lab = join(repoRoot, "examples", "mesh-lab");
const SLEEP_HTTPBIN = "default/sleep[Deployment] => default/httpbin[Deployment] : TCP 80 (HTTP GET)";
const SLEEP_ORDERS =
  "default/sleep[Deployment] => default/orders[Deployment] : TCP 8080,9090 (TCP 8080: HTTP GET|POST but not /admin*)";

describe("tessera connectivity through the mesh", () => {
  const txt = tessera(["connectivity", "-q", lab]);
  const lines = txt.stdout.trim().split("\n");

  it("prints what each pair may exchange, with the HTTP requests where only some pass", () => {
    assert.equal(txt.status, 0, txt.stderr);
    assert.ok(lines.includes(SLEEP_HTTPBIN), txt.stdout);
    assert.ok(lines.includes(SLEEP_ORDERS), txt.stdout);
    assert.ok(
      lines.includes(
        "default/notsleep[Deployment] => default/orders[Deployment] : TCP 8080,9090 (TCP 8080: HTTP GET|POST but not /admin*)",
      ),
    );
    // notsleep is not allowed by httpbin's ALLOW; legacy-client (plaintext) is reset by STRICT;
    // outside callers too.
    for (const src of [
      "default/notsleep[Deployment]",
      "legacy/legacy-client[Deployment]",
      "0.0.0.0-255.255.255.255[External]",
    ])
      assert.ok(!lines.some((l) => l.startsWith(`${src} => default/httpbin`)), src);
    // Destinations without a proxy: the mesh does not apply.
    assert.ok(
      lines.includes("default/sleep[Deployment] => legacy/legacy-client[Deployment] : All Connections"),
    );
    assert.deepEqual(lines, [...lines].sort());
  });

  it("keeps SRC => DST : CONN readable by np-guard-style parsers, the L7 part after CONN", () => {
    for (const l of parseTxt(txt.stdout)) {
      const conn = l.conn.replace(/ \(.*\)$/, "");
      assert.doesNotThrow(() => ConnectionSet.parse(conn), l.conn);
    }
  });

  it("json: conn as printed, and a machine-readable l7 member", () => {
    const r = tessera(["connectivity", "-q", lab, "-o", "json"]);
    assert.equal(r.status, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as { src: string; dst: string; conn: string; l7?: unknown }[];
    assert.deepEqual(
      rows.map((x) => `${x.src} => ${x.dst} : ${x.conn}`),
      lines.map((l) => l.replace(/ \(.*\)$/, "")),
    );
    const find = (src: string, dst: string) => rows.find((x) => x.src === src && x.dst === dst);
    assert.deepEqual(find("default/sleep[Deployment]", "default/httpbin[Deployment]"), {
      src: "default/sleep[Deployment]",
      dst: "default/httpbin[Deployment]",
      conn: "TCP 80",
      l7: [{ ports: "80", http: { allow: [{ methods: ["GET"] }], deny: [] } }],
    });
    assert.deepEqual(find("default/sleep[Deployment]", "default/orders[Deployment]")?.l7, [
      { ports: "8080", http: { allow: [{ methods: ["GET", "POST"] }], deny: [{ paths: ["/admin*"] }] } },
    ]);
    assert.ok(!("l7" in (find("default/sleep[Deployment]", "legacy/legacy-client[Deployment]") ?? {})));
  });

  it("csv and md: an l7 column; dot: the L7 part in the edge label", () => {
    const csv = tessera(["connectivity", "-q", lab, "-o", "csv"]).stdout.trim().split("\n");
    assert.equal(csv[0], "src,dst,conn,l7");
    assert.ok(csv.includes("default/sleep[Deployment],default/httpbin[Deployment],TCP 80,HTTP GET"));
    assert.ok(
      csv.includes(
        'default/sleep[Deployment],default/orders[Deployment],"TCP 8080,9090",TCP 8080: HTTP GET|POST but not /admin*',
      ),
    );
    assert.ok(csv.includes("default/sleep[Deployment],legacy/legacy-client[Deployment],All Connections,"));
    const md = tessera(["connectivity", "-q", lab, "-o", "md"]).stdout;
    assert.ok(md.startsWith("| src | dst | conn | l7 |\n|-----|-----|------|----|\n"));
    assert.ok(md.includes("| default/sleep[Deployment] | default/httpbin[Deployment] | TCP 80 | HTTP GET |"));
    assert.ok(md.includes("| TCP 8080,9090 | TCP 8080: HTTP GET\\|POST but not /admin* |"));
    const dot = tessera(["connectivity", "-q", lab, "-o", "dot"]).stdout;
    assert.ok(
      dot.includes('"default/sleep[Deployment]" -> "default/httpbin[Deployment]" [label="TCP 80 (HTTP GET)"'),
    );
  });

  it("--explain names the PeerAuthentication mode and policy and the AuthorizationPolicy rules", () => {
    const r = tessera(["connectivity", "-q", lab, "--focus", "default/httpbin", "--explain"]);
    assert.equal(r.status, 0, r.stderr);
    const pair = r.stdout
      .split("\n\n")
      .find((b) => b.startsWith("default/sleep[Deployment] => default/httpbin"));
    assert.ok(pair, r.stdout);
    assert.match(pair, /allowed: TCP 80 \(HTTP GET\)/);
    assert.match(
      pair,
      /mesh \(PeerAuthentication\) TCP 80: STRICT from the namespace-level PeerAuthentication default\/default-strict; mTLS mode STRICT -> mTLS peer cluster\.local\/ns\/default\/sa\/sleep accepted/,
    );
    assert.match(
      pair,
      /mesh \(AuthorizationPolicy\) TCP 80 \[HTTP\]: ALLOW default\/allow-sleep-to-httpbin rule\[0\] allows GET; ALLOW policies apply \(default\/allow-nothing, default\/allow-sleep-to-httpbin\), so other requests are denied => HTTP GET/,
    );
    const legacy = r.stdout
      .split("\n\n")
      .find((b) => b.startsWith("legacy/legacy-client[Deployment] => default/httpbin"));
    assert.match(legacy ?? "", /mTLS mode STRICT -> plaintext connection reset/);
    const json = JSON.parse(
      tessera(["connectivity", "-q", lab, "--focus", "default/httpbin", "--explain", "-o", "json"]).stdout,
    ) as { src: string; dst: string; allowed: string; mesh?: { steps: Record<string, unknown>[] } }[];
    const j = json.find(
      (p) => p.src === "default/sleep[Deployment]" && p.dst === "default/httpbin[Deployment]",
    );
    assert.equal(j?.allowed, "TCP 80 (HTTP GET)");
    const steps = j?.mesh?.steps ?? [];
    assert.deepEqual(steps[0], {
      layer: "PeerAuthentication",
      ports: "80",
      mode: "STRICT",
      policy: "default/default-strict",
      level: "namespace",
      admitted: true,
      detail: "mTLS mode STRICT -> mTLS peer cluster.local/ns/default/sa/sleep accepted",
    });
    assert.deepEqual((steps[1]?.http as { rules?: unknown[] } | undefined)?.rules, [
      { action: "ALLOW", policy: "default/allow-sleep-to-httpbin", rule: 0, matches: [{ methods: ["GET"] }] },
    ]);
  });

  it("an input without a mesh prints exactly as before (no l7 column, no mesh lines)", () => {
    const shop = join(repoRoot, "examples", "zero-trust-shop");
    assert.equal(tessera(["connectivity", "-q", shop, "-o", "csv"]).stdout.split("\n")[0], "src,dst,conn");
    assert.ok(!tessera(["connectivity", "-q", shop, "-o", "json"]).stdout.includes('"l7"'));
    assert.ok(!tessera(["connectivity", "-q", shop, "--explain"]).stdout.includes("mesh"));
  });
});

describe("tessera diff through the mesh", () => {
  const dir = mkdtempSync(join(tmpdir(), "tessera-mesh-diff-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const variant = (name: string, edit: (policies: string) => string, file = "20-mesh-policies.yaml") => {
    const d = join(dir, name);
    cpSync(lab, d, { recursive: true });
    const f = join(d, file);
    writeFileSync(f, edit(readFileSync(f, "utf8")));
    return d;
  };

  it("a change only in the HTTP requests is a changed pair", () => {
    const wider = variant("get-post", (t) => t.replace('methods: ["GET"]', 'methods: ["GET", "POST"]'));
    const r = tessera(["diff", "-q", lab, wider]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stdout,
      "Connectivity diff:\ndiff-type: changed, source: default/sleep[Deployment], destination: default/httpbin[Deployment], ref1: TCP 80 (HTTP GET), ref2: TCP 80 (HTTP GET|POST)\n",
    );
  });

  it("the same requests written another way are no change", () => {
    const same = variant("rewritten", (t) =>
      t.replace('methods: ["GET"]', 'methods: ["GET", "PUT"]\n            notMethods: ["PUT"]'),
    );
    const r = tessera(["diff", "-q", lab, same]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "Connectivity diff:\n");
  });

  it("a DENY with an HTTP field on every port closes the TCP port: changed pairs", () => {
    const unscoped = variant(
      "deny-everywhere",
      (t) =>
        t.replace(
          '            ports: ["8080"]\n            paths: ["/admin*"]',
          '            paths: ["/admin*"]',
        ),
      "40-orders.yaml",
    );
    const r = tessera(["diff", "-q", lab, unscoped, "-o", "json"]);
    assert.equal(r.status, 0, r.stderr);
    const entries = JSON.parse(r.stdout) as {
      diffType: string;
      src: string;
      dst: string;
      ref1: string;
      ref2: string;
    }[];
    assert.deepEqual(
      entries.map((e) => [e.diffType, e.src, e.dst, e.ref2]),
      ["default/httpbin", "default/notsleep", "default/sleep"].map((w) => [
        "changed",
        `${w}[Deployment]`,
        "default/orders[Deployment]",
        "TCP 8080 (HTTP GET|POST but not /admin*)",
      ]),
    );
  });
});
