/**
 * Property-based fuzzing of the input path: whatever the text or the object, loading and
 * compiling either succeed or throw InputError (the CLI turns it into one line and exit 2).
 * Any other exception would be an `internal error` (exit 70) for the user.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { buildCluster } from "../../src/kube/cluster.js";
import { Diagnostics, InputError } from "../../src/kube/errors.js";
import { clusterFromObjects } from "../../src/kube/index.js";
import { parseObjects } from "../../src/kube/load.js";
import { connectivity } from "../../src/policy/connectivity.js";
import { compile } from "../../src/policy/engine.js";

const RUNS = 400;

/** What every failure must look like; returns a short label for statistics. */
function expectInputError(e: unknown, context: string): string {
  if (!(e instanceof InputError)) {
    const what = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e);
    assert.fail(`not an InputError (${context}): ${what}`);
  }
  assert.equal(typeof e.describe(), "string");
  assert.ok(e.message.length > 0);
  assert.doesNotMatch(e.message, /\[object Object\]/, `unclear message: ${e.message}`);
  return e.code;
}

/** The whole offline pipeline, as `tessera connectivity` runs it. */
function analyze(cluster: ReturnType<typeof buildCluster>, diag: Diagnostics): void {
  const compiled = compile(cluster, diag);
  connectivity(cluster, compiled.engine, {}, diag);
}

function runText(name: string, text: string): void {
  try {
    const diag = new Diagnostics();
    analyze(buildCluster(parseObjects({ name, text }), diag), diag);
  } catch (e) {
    expectInputError(e, JSON.stringify(text));
    const err = e as InputError;
    // The line is one of the text (0 is for paths only).
    const lines = text.split("\n").length;
    assert.equal(err.source?.file, name);
    assert.ok(
      (err.source?.line ?? 0) >= 1 && (err.source?.line ?? 0) <= lines,
      `line ${err.source?.line} of a ${lines}-line text: ${err.describe()}`,
    );
  }
}

function runObjects(objects: object[]): void {
  try {
    const { cluster, diagnostics } = clusterFromObjects(objects);
    analyze(cluster, diagnostics);
  } catch (e) {
    expectInputError(e, JSON.stringify(objects));
  }
}

/** A valid cluster using most fields the loader and the NetworkPolicy parser read. */
const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: a, env: prod}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      serviceAccountName: web
      containers:
      - name: c
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 53, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: {app: db}
  ownerReferences: [{kind: StatefulSet, name: db, controller: true}]
spec:
  containers: [{name: db, ports: [{name: pg, containerPort: 5432}]}]
status: {podIP: 10.1.2.3}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: db}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [front, "x"]}
    - {key: app, operator: Exists}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchLabels: {team: a}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: pg}
    - {protocol: TCP, port: 6000, endPort: 6010}
  egress:
  - to: [{ipBlock: {cidr: "192.168.0.0/24"}}]
    ports: [{protocol: UDP, port: 53}]
  - {}
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: shop}
  spec: {podSelector: {}}
`;

/** Characters and tokens that matter to YAML, JSON and the fields we read. */
const TOKENS = [
  ":",
  ": ",
  "-",
  "- ",
  " ",
  "  ",
  "\n",
  "\t",
  "\r\n",
  "{",
  "}",
  "[",
  "]",
  ",",
  '"',
  "'",
  "#",
  "&a ",
  "*a",
  "!!binary ",
  "!!set ",
  "!!omap ",
  "!foo ",
  "<<: ",
  "? ",
  "|",
  ">",
  "---\n",
  "...\n",
  "%YAML 1.2\n",
  "~",
  "null",
  "true",
  "0",
  "-1",
  "65536",
  "1e400",
  ".nan",
  "0x50",
  "kind: ",
  "Pod",
  "NetworkPolicy",
  "List",
  "PodList",
  "items: ",
  "metadata: ",
  "name: ",
  "namespace: ",
  "labels: ",
  "spec: ",
  "podSelector: ",
  "matchExpressions: ",
  "operator: ",
  "ipBlock: ",
  "cidr: ",
  "except: ",
  "port: ",
  "endPort: ",
  "toString: ",
  "__proto__: ",
  "constructor",
  "10.0.0.0/8",
  "::/0",
  "é",
  "\u0000",
  "\uFEFF",
];

const tokenText = fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map((t) => t.join(""));

type Mutation = (text: string) => string;

const position = (text: string, at: number) => (text.length === 0 ? 0 : at % (text.length + 1));

/** Random edits of a text: delete, duplicate, replace, insert, re-indent or swap lines. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })).map(
    ([at, len]): Mutation =>
      (t) => {
        const p = position(t, at);
        return t.slice(0, p) + t.slice(p + len);
      },
  ),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 80 })).map(
    ([at, len]): Mutation =>
      (t) => {
        const p = position(t, at);
        return t.slice(0, p + len) + t.slice(p);
      },
  ),
  fc.tuple(fc.nat(), fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 3, unit: "binary" }))).map(
    ([at, s]): Mutation =>
      (t) => {
        const p = position(t, at);
        return t.slice(0, p) + s + t.slice(p + 1);
      },
  ),
  fc.tuple(fc.nat(), fc.constantFrom(...TOKENS)).map(
    ([at, s]): Mutation =>
      (t) => {
        const p = position(t, at);
        return t.slice(0, p) + s + t.slice(p);
      },
  ),
  fc.tuple(fc.nat(), fc.constantFrom("  ", " ", "\t", "- ", "", "    ")).map(
    ([at, indent]): Mutation =>
      (t) => {
        const lines = t.split("\n");
        const i = at % lines.length;
        const line = lines[i] ?? "";
        lines[i] = indent === "" ? line.replace(/^ {1,2}/, "") : indent + line;
        return lines.join("\n");
      },
  ),
  fc.tuple(fc.nat(), fc.nat()).map(
    ([a, b]): Mutation =>
      (t) => {
        const lines = t.split("\n");
        const i = a % lines.length;
        const j = b % lines.length;
        [lines[i], lines[j]] = [lines[j] as string, lines[i] as string];
        return lines.join("\n");
      },
  ),
);

const mutatedManifest = fc
  .array(mutation, { minLength: 1, maxLength: 6 })
  .map((ms) => ms.reduce((text, m) => m(text), MANIFEST));

/* ---------- JSON-ish objects shaped like NetworkPolicies ---------- */

/** Keys that are dangerous for plain JS objects, plus ordinary ones. */
const KEYS = [
  "app",
  "tier",
  "a",
  "toString",
  "valueOf",
  "__proto__",
  "constructor",
  "hasOwnProperty",
  "",
  "x/y",
  "-",
];

/** Builds a map with own properties only (`__proto__` stays a key, as JSON.parse makes it). */
const mapOf = <T>(key: fc.Arbitrary<string>, value: fc.Arbitrary<T>, maxKeys = 4) =>
  fc.array(fc.tuple(key, value), { maxLength: maxKeys }).map((entries) => Object.fromEntries(entries));

const scalar: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.boolean(),
  fc.integer({ min: -5, max: 70000 }),
  fc.constantFrom(0, 1, 80, 65535, 65536, -0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(
    "TCP",
    "UDP",
    "SCTP",
    "ICMP",
    "http",
    "80",
    "0",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "Ingress",
    "Egress",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "1.2.3.4/32",
    "::/0",
    "0.0.0.0/0",
    "web",
    "db",
    "",
  ),
);

const junk: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    scalar,
    fc.array(tie("value"), { maxLength: 3 }),
    mapOf(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 4 })), tie("value"), 3),
  ),
})).value;

/** A field: usually of the right shape, sometimes anything at all. */
const field = <T>(good: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: junk });
const listOf = <T>(item: fc.Arbitrary<T>, maxLength = 3) => field(fc.array(field(item), { maxLength }));

const labelKey = fc.constantFrom(
  "app",
  "tier",
  "team",
  "kubernetes.io/metadata.name",
  "toString",
  "constructor",
);
const labelValue = fc.constantFrom("web", "db", "a", "shop", "other", "");
const labels = field(mapOf(labelKey, field(labelValue), 3));

const selector = field(
  fc.record(
    {
      matchLabels: labels,
      matchExpressions: listOf(
        fc.record(
          {
            key: field(labelKey),
            operator: field(fc.constantFrom("In", "NotIn", "Exists", "DoesNotExist", "Includes")),
            values: listOf(labelValue),
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
);

const cidr = fc.constantFrom(
  "10.0.0.0/8",
  "10.1.0.0/16",
  "0.0.0.0/0",
  "1.2.3.4/32",
  "192.168.1.0/24",
  "::/0",
  "bad",
);
const peer = fc.record(
  {
    podSelector: selector,
    namespaceSelector: selector,
    ipBlock: field(fc.record({ cidr: field(cidr), except: listOf(cidr, 2) }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);
const port = fc.record(
  {
    protocol: field(fc.constantFrom("TCP", "UDP", "SCTP", "ICMP")),
    port: field(
      fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.constantFrom("http", "dns", "pg", "80", "Bad_Name")),
    ),
    endPort: field(fc.integer({ min: 0, max: 70000 })),
  },
  { requiredKeys: [] },
);
const rule = (peersField: "from" | "to") =>
  fc.record({ [peersField]: listOf(peer), ports: listOf(port) }, { requiredKeys: [] });

const metadata = (names: string[]) =>
  field(
    fc.record(
      { name: field(fc.constantFrom(...names)), namespace: field(fc.constantFrom("shop", "other")), labels },
      { requiredKeys: [] },
    ),
  );

const networkPolicy = fc.record(
  {
    apiVersion: field(fc.constant("networking.k8s.io/v1")),
    kind: fc.constant("NetworkPolicy"),
    metadata: metadata(["np1", "np2", "np3"]),
    spec: field(
      fc.record(
        {
          podSelector: selector,
          policyTypes: listOf(fc.constantFrom("Ingress", "Egress", "Sideways"), 2),
          ingress: listOf(rule("from")),
          egress: listOf(rule("to")),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: ["kind"] },
);

const pod = fc.record(
  {
    apiVersion: fc.constant("v1"),
    kind: fc.constant("Pod"),
    metadata: metadata(["p1", "p2", "p3", "p4"]),
    spec: field(
      fc.record(
        {
          containers: listOf(
            fc.record(
              {
                name: field(fc.constant("c")),
                ports: listOf(
                  fc.record(
                    {
                      name: field(fc.constantFrom("http", "dns", "pg")),
                      containerPort: field(fc.integer({ min: 0, max: 70000 })),
                      protocol: field(fc.constantFrom("TCP", "UDP", "SCTP")),
                    },
                    { requiredKeys: [] },
                  ),
                ),
              },
              { requiredKeys: [] },
            ),
          ),
        },
        { requiredKeys: [] },
      ),
    ),
    status: field(fc.record({ podIP: field(fc.constantFrom("10.1.2.3", "192.168.1.9", "8.8.8.8", "x")) })),
  },
  { requiredKeys: ["kind"] },
);

const namespace = fc.record({
  apiVersion: fc.constant("v1"),
  kind: fc.constant("Namespace"),
  metadata: fc.record({ name: fc.constantFrom("shop", "other"), labels }, { requiredKeys: ["name"] }),
});

describe("fuzzing the loader and the NetworkPolicy parser", () => {
  it("random text: success or InputError, with a line of the text", () => {
    fc.assert(
      fc.property(fc.oneof(tokenText, fc.string({ maxLength: 200, unit: "binary" })), (text) =>
        runText("fuzz.yaml", text),
      ),
      {
        numRuns: RUNS,
        // Found by this property: the yaml library throws ReferenceError on these aliases, and
        // reported errors at the end of a document on the line after it.
        examples: [
          ["*a"],
          ["kind: Pod\nmetadata: {name: *nope}\n"],
          [
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
          ],
          ["kind: Pod\nmetadata: {name: [x\n"],
          ["kind: Pod\nmetadata: {name: [x\n---\nkind: Pod\n"],
          ["\u0000"],
        ],
      },
    );
  });

  it("random mutations of a valid manifest: success or InputError, with a line of the text", () => {
    runText("valid.yaml", MANIFEST);
    fc.assert(
      fc.property(mutatedManifest, (text) => runText("mutated.yaml", text)),
      { numRuns: RUNS },
    );
  });

  it("the same manifest as JSON, mutated: success or InputError", () => {
    const json = JSON.stringify(
      {
        apiVersion: "v1",
        kind: "List",
        items: parseObjects({ name: "m", text: MANIFEST }).map((r) => r.value),
      },
      null,
      2,
    );
    runText("valid.json", json);
    const mutatedJson = fc
      .array(mutation, { minLength: 1, maxLength: 4 })
      .map((ms) => ms.reduce((t, m) => m(t), json));
    fc.assert(
      fc.property(mutatedJson, (text) => runText("mutated.json", text)),
      { numRuns: RUNS / 2 },
    );
  });

  it("objects shaped like NetworkPolicies with random types in every field: success or InputError", () => {
    const cluster = fc.tuple(
      fc.array(namespace, { maxLength: 2 }),
      fc.array(pod, { maxLength: 3 }),
      fc.array(networkPolicy, { minLength: 1, maxLength: 3 }),
    );
    fc.assert(
      fc.property(cluster, ([namespaces, pods, policies]) =>
        runObjects([...namespaces, ...pods, ...policies]),
      ),
      { numRuns: RUNS },
    );
  });

  it("objects of any shape at all: success or InputError", () => {
    // clusterFromObjects takes objects: any map or list at the top, anything below.
    const anyObject = fc.oneof(
      junk.filter((v) => typeof v === "object" && v !== null),
      fc.record({
        kind: fc.constantFrom("Pod", "NetworkPolicy", "Namespace", "Service", "Deployment", "List"),
        metadata: junk,
        spec: junk,
        status: junk,
      }),
      fc.record({
        kind: fc.constantFrom("Pod", "NetworkPolicy", "Namespace", "Service", "Deployment"),
        metadata: fc.record({
          name: fc.constant("x"),
          namespace: fc.constant("shop"),
          labels: junk,
          ownerReferences: junk,
        }),
        spec: junk,
      }),
    );
    fc.assert(
      fc.property(fc.array(anyObject, { maxLength: 4 }), (objects) => runObjects(objects as object[])),
      { numRuns: RUNS },
    );
  });
});

describe("label keys named like Object.prototype members", () => {
  const KEYS_TO_TRY = ["constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "app"];

  it("Exists/DoesNotExist on namespace and pod labels read only the labels that are set", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...KEYS_TO_TRY),
        fc.constantFrom("Exists", "DoesNotExist"),
        fc.constantFrom("namespaceSelector", "podSelector"),
        fc.boolean(),
        (key, operator, where, present) => {
          const extra = present ? { [key]: "yes" } : {};
          const objects = [
            {
              apiVersion: "v1",
              kind: "Namespace",
              metadata: { name: "src", labels: where === "namespaceSelector" ? extra : {} },
            },
            { apiVersion: "v1", kind: "Namespace", metadata: { name: "dst" } },
            {
              apiVersion: "v1",
              kind: "Pod",
              metadata: { name: "a", namespace: "src", labels: where === "podSelector" ? extra : {} },
            },
            { apiVersion: "v1", kind: "Pod", metadata: { name: "b", namespace: "dst" } },
            {
              apiVersion: "networking.k8s.io/v1",
              kind: "NetworkPolicy",
              metadata: { name: "np", namespace: "dst" },
              spec: {
                podSelector: {},
                ingress: [
                  {
                    from: [
                      where === "namespaceSelector"
                        ? { namespaceSelector: { matchExpressions: [{ key, operator }] } }
                        : { namespaceSelector: {}, podSelector: { matchExpressions: [{ key, operator }] } },
                    ],
                  },
                ],
              },
            },
          ];
          const { cluster, diagnostics } = clusterFromObjects(objects);
          const { engine } = compile(cluster, diagnostics);
          const conns = connectivity(cluster, engine, {}, diagnostics).connections;
          const allowed = conns.some((c) => c.src.id === "src/a[Pod]" && c.dst.id === "dst/b[Pod]");
          assert.equal(
            allowed,
            (operator === "Exists") === present,
            `${where} ${key} ${operator}, present: ${present}`,
          );
        },
      ),
      { numRuns: 100 },
    );
  });
});
