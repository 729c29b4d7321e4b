/**
 * AuthorizationPolicy validation: every error Istio's webhook (or the API server) raises, and the
 * ones Tessera adds for values Envoy would match literally, is an InputError naming the file,
 * line and object; valid but surprising policies get a warning with a stable code.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { policyObjectOf } from "../../../src/kube/cluster.js";
import { Diagnostics, InputError } from "../../../src/kube/errors.js";
import { parseObjects } from "../../../src/kube/load.js";
import type { AuthorizationPolicy } from "../../../src/policy/istio/authz/model.js";
import { parseAuthorizationPolicy } from "../../../src/policy/istio/authz/parse.js";

const FILE = "policies/authz.yaml";

/** The policy under test is the second document, so its line is not 1. */
function yamlOf(spec: string, meta = ""): string {
  return `apiVersion: v1
kind: ConfigMap
metadata: {name: filler}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: foo
${meta}spec:
${spec
  .split("\n")
  .map((l) => `  ${l}`)
  .join("\n")}
`;
}

function parse(spec: string, meta = ""): { policy: AuthorizationPolicy; diag: Diagnostics } {
  const raw = parseObjects({ name: FILE, text: yamlOf(spec, meta) })[1];
  assert.ok(raw);
  const diag = new Diagnostics();
  return { policy: parseAuthorizationPolicy(policyObjectOf(raw), diag), diag };
}

function expectError(spec: string, code: string, contains: string | RegExp, meta = ""): void {
  assert.throws(
    () => parse(spec, meta),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `not an InputError: ${String(e)}`);
      assert.equal(e.code, code, e.describe());
      const text = e.describe();
      assert.ok(text.startsWith(`${FILE}:5: AuthorizationPolicy foo/p: `), text);
      if (typeof contains === "string")
        assert.ok(text.includes(contains), `${text}\n  should contain: ${contains}`);
      else assert.match(text, contains);
      return true;
    },
  );
}

function expectWarning(spec: string, code: string, meta = ""): void {
  const { diag } = parse(spec, meta);
  const w = diag.warnings.find((x) => x.code === code);
  assert.ok(w, `no ${code} warning; got ${diag.warnings.map((x) => x.code).join(", ") || "none"}`);
  assert.deepEqual(w.source, { file: FILE, line: 5 });
  assert.equal(w.object, "AuthorizationPolicy foo/p");
}

function expectNoWarning(spec: string, code: string): void {
  const { diag } = parse(spec);
  assert.equal(
    diag.warnings.find((x) => x.code === code),
    undefined,
    `unexpected ${code}`,
  );
}

describe("AuthorizationPolicy: valid input", () => {
  it("reads every field", () => {
    const { policy, diag } = parse(
      `selector:
  matchLabels: {app: web}
action: ALLOW
rules:
- from:
  - source:
      principals: [cluster.local/ns/a/sa/b]
      notNamespaces: [bad]
  to:
  - operation:
      ports: ["8080"]
      paths: [/api/*, "/v{*}/items/{**}"]
  when:
  - key: request.headers[X-Token]
    values: [abc*]`,
    );
    assert.equal(policy.action, "ALLOW");
    assert.equal(policy.ref.namespace, "foo");
    assert.equal(policy.ref.name, "p");
    assert.deepEqual(policy.ref.source, { file: FILE, line: 5 });
    assert.ok(policy.selector?.matches({ app: "web", x: "y" }));
    assert.equal(policy.dryRun, false);
    assert.notEqual(policy.rules, "none");
    const rule = (policy.rules as readonly import("../../../src/policy/istio/authz/model.js").Rule[])[0];
    assert.ok(rule);
    assert.deepEqual(rule.from[0]?.principals, ["cluster.local/ns/a/sa/b"]);
    assert.deepEqual(rule.to[0]?.ports, ["8080"]);
    assert.deepEqual(rule.when[0], { key: "request.headers[X-Token]", values: ["abc*"], notValues: [] });
    assert.deepEqual(diag.warnings, []);
  });

  it("spec: {} is an ALLOW policy without rules (allow nothing)", () => {
    const { policy } = parse("{}");
    assert.equal(policy.action, "ALLOW");
    assert.equal(policy.rules, "none");
  });

  it("rules: [{}] is one rule that matches everything", () => {
    const { policy } = parse("rules:\n- {}");
    assert.deepEqual(policy.rules, [{ index: 0, from: [], to: [], when: [] }]);
  });

  it("a CUSTOM policy keeps its provider", () => {
    const { policy } = parse(
      "action: CUSTOM\nprovider: {name: ext-authz}\nrules:\n- to:\n  - operation: {paths: [/admin*]}",
    );
    assert.equal(policy.provider, "ext-authz");
  });

  it("targetRef binds the policy to a Gateway", () => {
    const { policy } = parse(
      "targetRefs:\n- {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\nrules:\n- {}",
    );
    assert.deepEqual(policy.targetRefs, [
      { group: "gateway.networking.k8s.io", kind: "Gateway", name: "gw", namespace: undefined },
    ]);
  });

  it("the dry-run annotation", () => {
    const { policy } = parse("rules:\n- {}", "  annotations: {istio.io/dry-run: 'true'}\n");
    assert.equal(policy.dryRun, true);
  });
});

describe("AuthorizationPolicy: errors (file:line, object, message)", () => {
  it("DENY without rules", () => {
    expectError("action: DENY", "deny-without-rules", "DENY action without `rules` is meaningless");
    expectError("action: DENY\nrules: []", "deny-without-rules", "add an empty rule `{}`");
  });

  it("CUSTOM without rules or without provider", () => {
    expectError(
      "action: CUSTOM\nprovider: {name: x}",
      "custom-without-rules",
      "CUSTOM action without `rules`",
    );
    expectError("action: CUSTOM\nrules:\n- {}", "custom-without-provider", "provider.name");
  });

  it("provider on a non-CUSTOM policy", () => {
    expectError(
      "action: DENY\nprovider: {name: x}\nrules:\n- {}",
      "provider-without-custom",
      "non CUSTOM action, found DENY",
    );
  });

  it("CUSTOM with identity fields", () => {
    expectError(
      "action: CUSTOM\nprovider: {name: x}\nrules:\n- from:\n  - source: {namespaces: [a]}",
      "custom-unsupported",
      "not supported with CUSTOM action",
    );
    expectError(
      "action: CUSTOM\nprovider: {name: x}\nrules:\n- when:\n  - {key: source.principal, values: [a]}",
      "custom-unsupported",
      "source.principal is currently not supported with CUSTOM action",
    );
  });

  it("selector together with targetRef(s)", () => {
    const sel = "selector:\n  matchLabels: {app: a}\n";
    expectError(
      `${sel}targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\nrules:\n- {}`,
      "selector-and-target-ref",
      "only one of targetRefs or workloadSelector",
    );
    expectError(
      `${sel}targetRefs:\n- {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\nrules:\n- {}`,
      "selector-and-target-ref",
      "only one of targetRefs or workloadSelector",
    );
  });

  it("bad targetRefs", () => {
    expectError("targetRef: {kind: Pod, name: x}", "invalid-target-ref", "targetRef must be to one of");
    expectError(
      "targetRef: {group: gateway.networking.k8s.io, kind: Gateway}",
      "invalid-target-ref",
      "name must be set",
    );
    expectError(
      "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: other}",
      "invalid-target-ref",
      "cross namespace referencing is not supported",
    );
  });

  it("bad selectors", () => {
    expectError(
      "selector:\n  matchExpressions: [{key: app, operator: Exists}]\nrules:\n- {}",
      "invalid-selector",
      "matchLabels only",
    );
    expectError(
      "selector:\n  matchLabels: {app: 'we*'}\nrules:\n- {}",
      "invalid-selector",
      "wildcard is not supported",
    );
  });

  it("empty from / to lists and empty entries", () => {
    expectError("rules:\n- from: []", "invalid-rule", "`from` must not be empty, found at rule 0");
    expectError("rules:\n- to: []", "invalid-rule", "`to` must not be empty, found at rule 0");
    expectError(
      "rules:\n- from:\n  - {}",
      "missing-source",
      "spec.rules[0].from[0]: `from.source` must not be nil",
    );
    expectError("rules:\n- from:\n  - source: {}", "empty-source", "`from.source` must not be empty");
    expectError("rules:\n- to:\n  - {}", "missing-operation", "`to.operation` must not be nil");
    expectError("rules:\n- to:\n  - operation: {}", "empty-operation", "`to.operation` must not be empty");
    expectError("rules:\n- null", "invalid-rule", "`rule` must not be nil");
  });

  it("bad paths and path templates", () => {
    const op = (paths: string) => `rules:\n- to:\n  - operation:\n      paths: ${paths}`;
    expectError(op('["/{id}/x"]'), "invalid-path-template", "invalid or unsupported path template");
    expectError(op('["/{id=*}/x"]'), "invalid-path-template", "invalid or unsupported path template");
    expectError(op('["/a/**/{*}"]'), "invalid-path-template", "invalid or unsupported path template");
    expectError(op('["/{**}/b/{*}"]'), "invalid-path-template", "{**} must be the last operator");
    expectError(op('["{*}/a"]'), "invalid-path-template", 'must start with "/"');
    expectError(op('["/a/*/b"]'), "invalid-wildcard", "path template");
    expectError(op('[""]'), "empty-value", "spec.rules[0].to[0].operation.paths[0]: empty value not allowed");
  });

  it("a * in the middle of a value", () => {
    expectError(
      "rules:\n- from:\n  - source:\n      principals: ['*/ns/a/sa/*']",
      "invalid-wildcard",
      "spec.rules[0].from[0].source.principals[0]",
    );
    expectError(
      "rules:\n- to:\n  - operation:\n      hosts: ['a*b.com']",
      "invalid-wildcard",
      "Envoy would match",
    );
  });

  it("ports must be numbers, written as strings", () => {
    expectError("rules:\n- to:\n  - operation:\n      ports: [http]", "invalid-port", "bad port (http)");
    expectError(
      "rules:\n- to:\n  - operation:\n      notPorts: ['70000']",
      "invalid-port",
      "bad port (70000)",
    );
    expectError("rules:\n- to:\n  - operation:\n      ports: [8080]", "invalid-value", 'quote it: "8080"');
    expectError(
      "rules:\n- when:\n  - {key: destination.port, values: ['x']}",
      "invalid-port",
      "spec.rules[0].when[0].values[0]: bad port (x)",
    );
  });

  it("bad ipBlocks", () => {
    expectError(
      "rules:\n- from:\n  - source:\n      ipBlocks: [10.0.0.0/33]",
      "invalid-ip",
      "bad CIDR range (10.0.0.0/33)",
    );
    expectError(
      "rules:\n- from:\n  - source:\n      notIpBlocks: [10.0.0.256]",
      "invalid-ip",
      "bad IP address (10.0.0.256)",
    );
    expectError(
      "rules:\n- from:\n  - source:\n      remoteIpBlocks: [010.0.0.1]",
      "invalid-ip",
      "bad IP address",
    );
    expectError(
      "rules:\n- when:\n  - {key: source.ip, notValues: [nope]}",
      "invalid-ip",
      "when[0].notValues[0]",
    );
  });

  it("bad serviceAccounts", () => {
    expectError(
      "rules:\n- from:\n  - source:\n      serviceAccounts: [a/b/c]",
      "invalid-service-account",
      '"<namespace>/<name>"',
    );
    expectError(
      "rules:\n- from:\n  - source:\n      serviceAccounts: ['ns/*']",
      "invalid-service-account",
      "wildcards",
    );
    expectError(
      "rules:\n- from:\n  - source:\n      serviceAccounts: [a/b]\n      namespaces: [a]",
      "invalid-source",
      "cannot set serviceAccounts with namespaces or principals",
    );
  });

  it("empty values", () => {
    expectError(
      "rules:\n- from:\n  - source:\n      principals: ['']",
      "empty-value",
      "empty value not allowed",
    );
  });

  it("when: unknown and malformed keys, missing values", () => {
    expectError(
      "rules:\n- when:\n  - {key: source.user, values: [a]}",
      "unknown-condition-key",
      "unknown attribute: source.user",
    );
    expectError(
      "rules:\n- when:\n  - {key: request.headers, values: [a]}",
      "invalid-condition-key",
      "should have format request.headers[name]",
    );
    expectError(
      "rules:\n- when:\n  - {key: 'destination.labels[app]', values: [a]}",
      "invalid-condition-key",
      "replaced by the workload selector",
    );
    expectError(
      "rules:\n- when:\n  - {key: destination.namespace, values: [a]}",
      "invalid-condition-key",
      "metadata.namespace",
    );
    expectError(
      "rules:\n- when:\n  - {key: source.ip}",
      "invalid-condition",
      "at least one of `values` or `notValues`",
    );
    expectError("rules:\n- when:\n  - {values: [a]}", "invalid-condition", "`key` must not be empty");
  });

  it("bad action, kind, apiVersion and unknown fields", () => {
    expectError(
      "action: allow\nrules:\n- {}",
      "invalid-action",
      '"allow" is not one of ALLOW, DENY, CUSTOM, AUDIT',
    );
    expectError("rule:\n- {}", "unknown-field", "spec.rule: unknown field");
    expectError(
      "rules:\n- from:\n  - source:\n      Principals: [a]",
      "unknown-field",
      'did you mean "principals"',
    );
    const raw = parseObjects({
      name: FILE,
      text: yamlOf("rules:\n- {}").replace("security.istio.io/v1", "security.istio.io/v1alpha1"),
    })[1];
    assert.ok(raw);
    assert.throws(
      () => parseAuthorizationPolicy(policyObjectOf(raw), new Diagnostics()),
      (e: unknown) =>
        e instanceof InputError && e.code === "invalid-api-version" && e.describe().startsWith(`${FILE}:5:`),
    );
  });
});

describe("AuthorizationPolicy: warnings", () => {
  it("a DENY rule with only HTTP fields denies all TCP in scope", () => {
    expectWarning("action: DENY\nrules:\n- to:\n  - operation: {methods: [POST]}", "deny-http-only-on-tcp");
    expectWarning(
      "action: DENY\nrules:\n- from:\n  - source: {requestPrincipals: ['*']}",
      "deny-http-only-on-tcp",
    );
    expectNoWarning(
      "action: DENY\nrules:\n- to:\n  - operation: {methods: [POST], ports: ['8080']}",
      "deny-http-only-on-tcp",
    );
    expectNoWarning("action: DENY\nrules:\n- from:\n  - source: {namespaces: [a]}", "deny-http-only-on-tcp");
  });

  it("AUDIT needs an audit provider to show anything", () => {
    expectWarning("action: AUDIT\nrules:\n- {}", "audit-no-provider");
  });

  it("dry-run policies are never enforced", () => {
    expectWarning("rules:\n- {}", "dry-run", "  annotations: {istio.io/dry-run: 'true'}\n");
    expectWarning("rules:\n- {}", "invalid-dry-run", "  annotations: {istio.io/dry-run: 'yes'}\n");
  });

  it("an empty selector selects everything", () => {
    expectWarning("selector: {}\nrules:\n- {}", "empty-selector");
  });

  it("methods are upper case", () => {
    expectWarning("rules:\n- to:\n  - operation: {methods: [get]}", "method-case");
    expectNoWarning("rules:\n- to:\n  - operation: {methods: [GET]}", "method-case");
  });

  it("paths that can never match", () => {
    expectWarning("rules:\n- to:\n  - operation: {paths: [admin]}", "path-never-matches");
    expectWarning("rules:\n- to:\n  - operation: {paths: ['/a?b=1']}", "path-never-matches");
    expectNoWarning("rules:\n- to:\n  - operation: {paths: ['*.txt', /a]}", "path-never-matches");
  });

  it("a DENY on an exact host without its host:* pattern", () => {
    expectWarning("action: DENY\nrules:\n- to:\n  - operation: {hosts: [example.com]}", "host-without-port");
    expectNoWarning(
      "action: DENY\nrules:\n- to:\n  - operation: {hosts: [example.com, 'example.com:*']}",
      "host-without-port",
    );
  });

  it("targetRef policies never reach sidecars", () => {
    expectWarning(
      "targetRefs:\n- {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\nrules:\n- {}",
      "target-ref-not-sidecar",
    );
  });
});
