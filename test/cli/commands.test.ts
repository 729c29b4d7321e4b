import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { tessera } from "../helpers/cli.js";
import { repoRoot } from "../helpers/paths.js";

const shop = join(repoRoot, "examples", "zero-trust-shop");

describe("tessera connectivity", () => {
  it("lists the example shop's connections", () => {
    const r = tessera(["connectivity", shop]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.ok(lines.includes("shop/frontend[Deployment] => shop/cart[Deployment] : TCP 7070"));
    assert.ok(lines.includes("shop/cart[Deployment] => kube-system/coredns[DaemonSet] : TCP 53,UDP 53"));
    assert.ok(lines.includes("payments/api[Deployment] => 203.0.113.0-203.0.113.255[External] : TCP 443"));
    assert.ok(!lines.some((l) => l.startsWith("shop/catalog[Deployment] => shop/redis")));
    assert.deepEqual(lines, [...lines].sort());
  });

  it("prints the same connections in every format", () => {
    const json = JSON.parse(tessera(["connectivity", shop, "-o", "json"]).stdout) as Array<
      Record<string, string>
    >;
    const txt = tessera(["connectivity", shop]).stdout.trim().split("\n");
    assert.deepEqual(
      json.map((c) => `${c.src} => ${c.dst} : ${c.conn}`),
      txt,
    );
    const csv = tessera(["connectivity", shop, "-o", "csv"]).stdout.trim().split("\n");
    assert.equal(csv[0], "src,dst,conn");
    assert.ok(csv.includes('shop/cart[Deployment],kube-system/coredns[DaemonSet],"TCP 53,UDP 53"'));
    const md = tessera(["connectivity", shop, "-o", "md"]).stdout;
    assert.ok(md.includes("| shop/frontend[Deployment] | shop/cart[Deployment] | TCP 7070 |"));
    const dot = tessera(["connectivity", shop, "-o", "dot"]).stdout;
    assert.ok(dot.startsWith("digraph {"));
    assert.ok(dot.includes('"shop/frontend[Deployment]" -> "shop/cart[Deployment]" [label="TCP 7070"'));
  });

  it("reads stdin with -f - and combines -f with paths", () => {
    const text = ["00-namespaces.yaml", "10-workloads.yaml", "20-default-deny.yaml", "30-allow.yaml"]
      .map((f) => readFileSync(join(shop, f), "utf8"))
      .join("\n---\n");
    const r = tessera(["connectivity", "-f", "-"], text);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, tessera(["connectivity", shop]).stdout);
  });

  it("focuses on one workload", () => {
    const r = tessera(["connectivity", shop, "--focus", "shop/redis"]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.ok(lines.length > 0 && lines.every((l) => l.includes("shop/redis[StatefulSet]")));
    const bad = tessera(["connectivity", shop, "--focus", "shop/nope"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /no such workload/);
  });

  it("explains each pair with the deciding policies and rules", () => {
    const r = tessera(["connectivity", shop, "--focus", "shop/redis", "--explain"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /shop\/catalog\[Deployment\] => shop\/redis\[StatefulSet\]\n {2}allowed: No Connections\n {2}denied: {2}All Connections\n {2}egress \(NetworkPolicy\): isolated by shop\/default-deny, shop\/allow-dns-egress, shop\/backends; shop\/backends egress rule 0 allows TCP 6379\n {2}ingress \(NetworkPolicy\): denied by default, isolated by shop\/default-deny, shop\/redis and no rule matches the peer/,
    );
    const json = JSON.parse(
      tessera(["connectivity", shop, "--focus", "shop/redis", "--explain", "-o", "json"]).stdout,
    );
    const pair = json.find(
      (p: { src: string; dst: string }) =>
        p.src === "shop/cart[Deployment]" && p.dst === "shop/redis[StatefulSet]",
    );
    assert.equal(pair.allowed, "TCP 6379");
    assert.deepEqual(pair.sides[1].rules, [{ policy: "shop/redis", rule: 0, conn: "TCP 6379" }]);
  });
});

describe("tessera can", () => {
  it("allows and names both rules; exit 0", () => {
    const r = tessera(["can", "-f", shop, "shop/frontend", "shop/cart:7070"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        "ALLOWED shop/frontend[Deployment] => shop/cart[Deployment] : TCP 7070",
        "  egress  NetworkPolicy: allowed by shop/frontend egress rule 0",
        "  ingress NetworkPolicy: allowed by shop/backends ingress rule 0",
        "",
      ].join("\n"),
    );
  });

  it("denies with the isolating policies; exit 1", () => {
    const r = tessera(["can", "-f", shop, "shop/catalog", "shop/redis", "--port", "6379"]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^DENIED shop\/catalog\[Deployment\] => shop\/redis\[StatefulSet\] : TCP 6379/);
    assert.match(r.stdout, /ingress NetworkPolicy: denied by default: .*\(shop\/default-deny, shop\/redis\)/);
  });

  it("maps a Service port to the target container port", () => {
    const r = tessera(["can", "-f", shop, "shop/frontend", "payments.payments.svc.cluster.local:443"]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ALLOWED shop\/frontend\[Deployment\] => payments\/api\[Deployment\] : TCP 8443/);
    assert.match(r.stdout, /Service payments\/payments port 443 -> targetPort https = 8443/);
    const wrongPort = tessera(["can", "-f", shop, "shop/frontend", "cart.shop:80"]);
    assert.equal(wrongPort.status, 2);
    assert.match(wrongPort.stderr, /has no TCP port 80/);
  });

  it("decides flows from and to external IPs, and other protocols", () => {
    assert.equal(tessera(["can", "-f", shop, "198.51.100.7", "shop/frontend:8080"]).status, 0);
    assert.equal(tessera(["can", "-f", shop, "10.1.2.3", "shop/frontend:8080"]).status, 1);
    assert.equal(tessera(["can", "-f", shop, "payments/api", "203.0.113.9:443"]).status, 0);
    assert.equal(
      tessera(["can", "-f", shop, "shop/cart", "kube-system/coredns:53", "--protocol", "udp"]).status,
      0,
    );
    assert.equal(
      tessera(["can", "-f", shop, "shop/cart", "kube-system/coredns:53", "--protocol", "sctp"]).status,
      1,
    );
  });

  it("without a port, prints what is allowed", () => {
    const r = tessera(["can", "-f", shop, "shop/cart", "kube-system/coredns"]);
    assert.equal(r.status, 0);
    assert.match(
      r.stdout,
      /^ALLOWED shop\/cart\[Deployment\] => kube-system\/coredns\[DaemonSet\]: TCP 53,UDP 53/,
    );
  });

  it("refuses unknown endpoints and bad ports with exit 2", () => {
    assert.equal(tessera(["can", "-f", shop, "shop/nope", "shop/cart:7070"]).status, 2);
    assert.equal(tessera(["can", "-f", shop, "shop/frontend", "shop/cart:70000"]).status, 2);
    assert.equal(tessera(["can", "-f", shop, "shop/frontend", "shop/cart", "--protocol", "icmp"]).status, 2);
    assert.equal(tessera(["can", "shop/frontend", "shop/cart"]).status, 2);
  });

  it("answers json", () => {
    const r = tessera(["can", "-f", shop, "shop/frontend", "shop/cart:7070", "-o", "json"]);
    const out = JSON.parse(r.stdout);
    assert.equal(out.allowed, true);
    assert.deepEqual(
      out.checks[0].trace.map((s: { direction: string; policy: string; rule: number }) => [
        s.direction,
        s.policy,
        s.rule,
      ]),
      [
        ["egress", "shop/frontend", 0],
        ["ingress", "shop/backends", 0],
      ],
    );
  });
});

describe("tessera diff", () => {
  const dir = mkdtempSync(join(tmpdir(), "tessera-diff-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reports added, removed and changed pairs by meaning", () => {
    const base = ["00-namespaces.yaml", "10-workloads.yaml", "20-default-deny.yaml", "30-allow.yaml"].map(
      (f) => readFileSync(join(shop, f), "utf8"),
    );
    const before = join(dir, "before.yaml");
    const afterFile = join(dir, "after.yaml");
    writeFileSync(before, base.join("\n---\n"));
    // Let catalog reach redis too, and drop the payments egress to the card processor.
    const changed = base
      .join("\n---\n")
      .replace(
        "            matchLabels: { app: cart }\n      ports:\n        - { port: redis }",
        "            matchLabels: { tier: api }\n      ports:\n        - { port: redis }",
      )
      .replace("            cidr: 203.0.113.0/24", "            cidr: 203.0.113.0/25");
    assert.notEqual(changed, base.join("\n---\n"));
    writeFileSync(afterFile, changed);
    const r = tessera(["diff", before, afterFile, "-q"]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "Connectivity diff:");
    assert.ok(
      lines.includes(
        "diff-type: added, source: shop/catalog[Deployment], destination: shop/redis[StatefulSet], ref1: No Connections, ref2: TCP 6379",
      ),
      r.stdout,
    );
    assert.ok(
      lines.includes(
        "diff-type: removed, source: payments/api[Deployment], destination: 203.0.113.128-203.0.113.255[External], ref1: TCP 443, ref2: No Connections",
      ),
      r.stdout,
    );
    assert.equal(tessera(["diff", before, before]).stdout, "Connectivity diff:\n");
    assert.equal(tessera(["diff", before]).status, 2);
  });
});
