/**
 * Head rewriting against a slow line-by-line rewrite (fast-check, on heads with odd spacing and
 * letter case), the refusal of anything that could inject a header, and local responses read
 * back by the ResponseFramer.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  HeaderLines,
  headerValue,
  rewriteHead,
  simpleResponse,
} from "../../../../src/mesh/proxy/http1/head-rewrite.js";
import { type RequestHead, RequestParser } from "../../../../src/mesh/proxy/http1/request-parser.js";
import { ResponseFramer } from "../../../../src/mesh/proxy/http1/response-framer.js";

function headOf(text: string): RequestHead {
  const events = new RequestParser().feed(Buffer.from(text, "latin1"));
  const head = events.find((e) => e.kind === "head");
  assert.ok(head?.kind === "head", text);
  return head.head;
}

/** The obviously-correct rewrite: split raw into lines, filter, join. */
function slowRewrite(
  head: RequestHead,
  drop: ReadonlySet<string>,
  add: ReadonlyArray<readonly [string, string]>,
  target?: string,
): Buffer {
  const [requestLine, ...fields] = head.raw.toString("latin1").split("\r\n").slice(0, -2);
  const first = target === undefined ? requestLine : `${head.method} ${target} HTTP/${head.version}`;
  const kept = fields.filter((line) => !drop.has(line.slice(0, line.indexOf(":")).toLowerCase()));
  return Buffer.from([first, ...kept, ...add.map(([n, v]) => `${n}: ${v}`), "", ""].join("\r\n"), "latin1");
}

const XFCC = "x-forwarded-client-cert";
const HEAD =
  "GET http://svc/a?b HTTP/1.1\r\nHost: svc\r\nX-Forwarded-Client-Cert: By=spiffe://evil\r\n" +
  "accept:*/*\r\nx-forwarded-client-cert:\tsecond \r\nX-Keep:  spaced  \r\n\r\n";

describe("rewriteHead", () => {
  it("returns the head unchanged when there is nothing to do, and appends added lines by concatenation", () => {
    const head = headOf("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(rewriteHead(head, new Set([XFCC]), []), head.raw);
    assert.equal(
      rewriteHead(head, new Set(), [["X-A", "1"]]).toString("latin1"),
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n",
    );
  });

  it("drops every occurrence of a dropped header in any case, keeping the other lines byte for byte", () => {
    const out = rewriteHead(headOf(HEAD), new Set([XFCC]), [[XFCC, "By=spiffe://td/sidecar"]]);
    assert.equal(
      out.toString("latin1"),
      "GET http://svc/a?b HTTP/1.1\r\nHost: svc\r\naccept:*/*\r\nX-Keep:  spaced  \r\n" +
        "x-forwarded-client-cert: By=spiffe://td/sidecar\r\n\r\n",
    );
  });

  it("rewrites the request-target", () => {
    const out = rewriteHead(headOf(HEAD), new Set(), [], "/a?b");
    assert.equal(out.toString("latin1"), HEAD.replace("http://svc/a?b", "/a?b"));
  });

  it("refuses to write anything that could inject a header or a request", () => {
    const head = headOf("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    for (const add of [
      ["X-A", "1\r\nX-Injected: 1"],
      ["X-A", "1\n"],
      ["X-A", "\x00"],
      ["X-A", " padded"],
      ["X-A", "\u0100"],
      ["X A", "1"],
      ["", "1"],
      ["X-A:", "1"],
    ] as const) {
      assert.throws(() => rewriteHead(head, new Set(), [add]), TypeError, JSON.stringify(add));
      assert.throws(() => new HeaderLines([add]), TypeError, JSON.stringify(add));
    }
    for (const target of ["", "/a b", "/a\r\n", "/\u00e9"]) {
      assert.throws(() => rewriteHead(head, new Set(), [], target), TypeError, JSON.stringify(target));
    }
  });

  it("equals the slow line-by-line rewrite on generated heads", () => {
    const names = [
      "Host",
      "X-Forwarded-Client-Cert",
      "x-forwarded-client-cert",
      "Accept",
      "X-Trace",
      "Cookie",
    ];
    const field = fc.tuple(
      fc.constantFrom(...names.slice(1)),
      fc.constantFrom("", " ", "  ", "\t"),
      fc.string({ unit: fc.constantFrom(..."ab1=/;, \t"), maxLength: 8 }),
      fc.constantFrom("", " ", "\t "),
    );
    const drop = fc
      .subarray(["x-forwarded-client-cert", "cookie", "accept", "x-absent"])
      .map((d) => new Set(d));
    const add = fc.array(
      fc.tuple(
        fc.constantFrom("X-Forwarded-Client-Cert", "X-B"),
        fc.constantFrom("v", "By=spiffe://a/b", "a b"),
      ),
      { maxLength: 2 },
    );
    fc.assert(
      fc.property(
        fc.array(field, { maxLength: 6 }),
        drop,
        add,
        fc.option(fc.constantFrom("/", "/x?y"), { nil: undefined }),
        (fields, dropped, added, target) => {
          const lines = fields.map(([n, before, v, after]) => `${n}:${before}${v}${after}\r\n`).join("");
          const head = headOf(`POST /orig HTTP/1.1\r\nHost: a\r\n${lines}\r\n`);
          const fast = rewriteHead(head, dropped, added, target);
          assert.deepEqual(fast, slowRewrite(head, dropped, added, target));
          assert.deepEqual(rewriteHead(head, dropped, new HeaderLines(added), target), fast);
          const reparsed = headOf(fast.toString("latin1"));
          assert.equal(reparsed.target, target ?? "/orig");
          assert.deepEqual(reparsed.headers, [
            ...head.headers.filter(([n]) => !dropped.has(n.toLowerCase())),
            ...added,
          ]);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("headerValue", () => {
  it("finds the first header with the name, in any case", () => {
    const head = headOf(HEAD);
    assert.equal(headerValue(head, XFCC), "By=spiffe://evil");
    assert.equal(headerValue(head, "x-keep"), "spaced");
    assert.equal(headerValue(head, "x-missing"), undefined);
  });
});

describe("simpleResponse", () => {
  it("builds a complete response that the framer reads back", () => {
    const response = simpleResponse(403, "RBAC: access denied");
    const text = response.toString("latin1");
    assert.match(text, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(text, /\r\ncontent-type: text\/plain\r\n/);
    assert.match(text, /\r\ncontent-length: 19\r\n/);
    assert.match(text, /\r\ndate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/);
    assert.match(text, /\r\nserver: tessera\r\n\r\nRBAC: access denied$/);
    assert.doesNotMatch(text, /connection/);
    const framer = new ResponseFramer();
    framer.expect("GET");
    assert.equal(framer.feed(response), 1);
    assert.equal(framer.lastStatus, 403);
  });

  it("counts the body in UTF-8 bytes and adds connection: close and extra headers", () => {
    const text = simpleResponse(503, "unavailable \u00e9\u20ac", {
      close: true,
      headers: [["retry-after", "5"]],
    }).toString("utf8");
    assert.match(text, /\r\ncontent-length: 17\r\n/);
    assert.match(text, /\r\nconnection: close\r\nretry-after: 5\r\n\r\nunavailable \u00e9\u20ac$/);
    assert.match(
      simpleResponse(431, "").toString("latin1"),
      /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/,
    );
  });

  it("refuses statuses without a body and injected headers", () => {
    for (const status of [99, 101, 204, 304, 600, 200.5]) {
      assert.throws(() => simpleResponse(status, "x"), RangeError, String(status));
    }
    assert.throws(() => simpleResponse(400, "x", { headers: [["x", "a\r\nb: c"]] }), TypeError);
  });
});
