/**
 * The ResponseFramer: where responses end (Content-Length, chunked with trailers, HEAD, 204,
 * 304, interim 1xx, 101 and CONNECT tunnels, bodies delimited by the close), what it refuses,
 * and, with fast-check, the same counts as the reference framer for generated and mutated
 * pipelined responses fed in random splits.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { HttpHeadError } from "../../../../src/mesh/proxy/http1/errors.js";
import { referenceFrameResponses } from "../../../../src/mesh/proxy/http1/reference.js";
import type { ParserLimits } from "../../../../src/mesh/proxy/http1/request-parser.js";
import { ResponseFramer } from "../../../../src/mesh/proxy/http1/response-framer.js";

const bytes = (s: string) => Buffer.from(s, "latin1");

function framerFor(...methods: string[]): ResponseFramer {
  const framer = new ResponseFramer();
  for (const m of methods) framer.expect(m);
  return framer;
}

function badResponse(framer: ResponseFramer, text: string): string | undefined {
  try {
    framer.feed(bytes(text));
  } catch (err) {
    assert.ok(err instanceof HttpHeadError);
    assert.equal(err.status, 400);
    assert.equal(err.reason, "bad-response");
    return err.detail;
  }
  assert.fail(`accepted ${JSON.stringify(text)}`);
}

describe("ResponseFramer", () => {
  it("counts Content-Length responses, split anywhere", () => {
    const text =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    for (let cut = 0; cut <= text.length; cut++) {
      const framer = framerFor("GET", "GET");
      const done = framer.feed(bytes(text.slice(0, cut))) + framer.feed(bytes(text.slice(cut)));
      assert.equal(done, 2, `cut at ${cut}`);
      assert.equal(framer.outstanding, 0);
      assert.equal(framer.lastStatus, 404);
    }
  });

  it("keeps no per-request state once everything asked was answered (long keep-alive connections)", () => {
    const framer = new ResponseFramer();
    const response = Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "latin1");
    for (let i = 0; i < 10_000; i++) {
      framer.expect("GET");
      framer.expect("GET");
      assert.equal(framer.feed(Buffer.concat([response, response])), 2);
    }
    assert.equal(framer.outstanding, 0);
    // White-box: the list of methods asked must not grow with the number of requests served.
    assert.ok((framer as unknown as { methods: string[] }).methods.length <= 2);
  });

  it("reports progress: outstanding, lastStatus", () => {
    const framer = framerFor("GET", "GET");
    assert.equal(framer.outstanding, 2);
    assert.equal(framer.lastStatus, undefined);
    assert.equal(framer.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")), 0);
    assert.equal(framer.lastStatus, 200);
    assert.equal(framer.feed(bytes("cd")), 1);
    assert.equal(framer.outstanding, 1);
  });

  it("frames chunked bodies with extensions and trailers", () => {
    const framer = framerFor("POST", "GET");
    const chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    assert.equal(framer.feed(bytes(`${chunked}HTTP/1.1 204 No Content\r\n\r\n`)), 2);
  });

  it("gives no body to HEAD, 204 and 304 responses whatever their framing headers say", () => {
    const framer = framerFor("HEAD", "GET", "GET", "GET");
    const text =
      "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" +
      "HTTP/1.1 204 No Content\r\n\r\n" +
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert.equal(framer.feed(bytes(text)), 4);
  });

  it("skips interim 1xx responses and switches after 101", () => {
    const framer = framerFor("POST", "GET");
    const text =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
      "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
    assert.equal(framer.feed(bytes(text)), 2);
    assert.equal(framer.switched, true);
    assert.equal(framer.lastStatus, 101);
    assert.equal(framer.feed(bytes("HTTP/9 nonsense")), 0);
    assert.equal(framer.end(), 0);
    assert.equal(framer.switched, true);
  });

  it("tunnels after a 2xx to CONNECT but frames a refusal normally", () => {
    const tunnel = framerFor("CONNECT");
    assert.equal(tunnel.feed(bytes("HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03")), 1);
    assert.equal(tunnel.switched, true);
    const refused = framerFor("CONNECT", "GET");
    assert.equal(refused.feed(bytes("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")), 1);
    assert.equal(refused.switched, false);
  });

  it("ends a body without length at the close", () => {
    const framer = framerFor("GET");
    assert.equal(framer.feed(bytes("HTTP/1.0 200 OK\r\n\r\nsome bytes")), 0);
    assert.equal(framer.feed(bytes("HTTP/1.1 200 more bytes")), 0);
    assert.equal(framer.outstanding, 1);
    assert.equal(framer.end(), 1);
    assert.equal(framer.outstanding, 0);
    const notChunkedLast = framerFor("GET");
    assert.equal(
      notChunkedLast.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz")),
      0,
    );
    assert.equal(notChunkedLast.end(), 1);
  });

  it("answers 0 when the upstream closes in the middle of a head or a sized body", () => {
    const framer = framerFor("GET");
    framer.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"));
    assert.equal(framer.end(), 0);
    assert.equal(framer.outstanding, 1);
    assert.equal(badResponse(framer, "x"), "data-after-close");
  });

  it("refuses malformed and unsolicited responses as bad-response, with the rule as detail", () => {
    assert.equal(badResponse(framerFor(), "HTTP/1.1 200 OK\r\n\r\n"), "unsolicited-response");
    const one = framerFor("GET");
    assert.equal(one.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")), 1);
    assert.equal(badResponse(one, "HTTP/1.1 200 OK\r\n\r\n"), "unsolicited-response");
    const cases: Array<[string, string]> = [
      ["HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare-lf"],
      ["HTTP/2 200\r\n\r\n", "bad-status-line"],
      ["HTTP/1.1 99 Low\r\n\r\n", "bad-status-line"],
      ["HTTP/1.1 600 High\r\n\r\n", "bad-status-line"],
      ["HTTP/1.1 200OK\r\n\r\n", "bad-status-line"],
      ["HTTP/1.1 200 O\rK\r\n\r\n", "bare-cr"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "conflicting-length"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "multiple-content-length"],
      ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad-content-length"],
      ["HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "te-in-http10"],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "te-chunked-twice"],
      ["HTTP/1.1 200 OK\r\nX : y\r\n\r\n", "space-before-colon"],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", "bad-chunk"],
    ];
    for (const [text, detail] of cases) assert.equal(badResponse(framerFor("GET"), text), detail, text);
    const dead = framerFor("GET", "GET");
    badResponse(dead, "HTTP/1.1 200 OK\r\nX : y\r\n\r\n");
    assert.equal(badResponse(dead, "HTTP/1.1 200 OK\r\n\r\n")?.includes("already refused"), true);
  });

  it("applies head limits to responses", () => {
    const framer = new ResponseFramer({ maxHeadBytes: 32, maxHeaders: 1 });
    framer.expect("GET");
    assert.equal(badResponse(framer, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), "too-many-headers");
    const small = new ResponseFramer({ maxHeadBytes: 32 });
    small.expect("GET");
    assert.equal(badResponse(small, `HTTP/1.1 200 OK\r\nX: ${"a".repeat(40)}`), "head-too-large");
  });
});

// ---------------------------------------------------------------------------------------------
// Against the reference

const METHODS = ["GET", "GET", "POST", "HEAD", "CONNECT"] as const;
const chars = (s: string) => fc.constantFrom(...s);
const token = fc.string({ unit: chars("abcXYZ-_!~09"), minLength: 1, maxLength: 6 });
const value = fc.string({ unit: chars("abc 019/;=\t\xe9"), maxLength: 8 });
const bodyBytes = (max: number) =>
  fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: max });
const chunkedBody = fc
  .tuple(
    fc.array(
      fc.tuple(
        bodyBytes(10).filter((d) => d.length > 0),
        fc.constantFrom("", ";a", ';b="c"'),
      ),
      {
        maxLength: 3,
      },
    ),
    fc.array(fc.tuple(token, value), { maxLength: 2 }),
  )
  .map(
    ([chunks, trailers]) =>
      chunks.map(([d, ext]) => `${d.length.toString(16)}${ext}\r\n${d}\r\n`).join("") +
      `0\r\n${trailers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`,
  );

/** One response to `method`: optional interim responses, a final status, framing and body. */
const response = (method: string, last: boolean) =>
  fc
    .tuple(
      fc.constantFrom(0, 0, 1, 2),
      fc.constantFrom(200, 200, 201, 204, 304, 404, 500, 101),
      fc.constantFrom("1.1", "1.1", "1.0"),
      fc.constantFrom("length", "chunked", "close"),
      bodyBytes(12),
      chunkedBody,
      fc.array(fc.tuple(token, value), { maxLength: 3 }),
    )
    .map(([interims, status, version, framing, body, chunked, extra]) => {
      let text = "HTTP/1.1 100 Continue\r\n\r\n".repeat(interims);
      const headers = extra.map(([n, v]) => `${n}: ${v}\r\n`).join("");
      const bodiless = method === "HEAD" || status === 204 || status === 304 || status === 101;
      const kind =
        framing === "close" && !last
          ? "length"
          : framing === "chunked" && version === "1.0"
            ? "length"
            : framing;
      if (kind === "length") {
        text += `HTTP/${version} ${status} X\r\n${headers}Content-Length: ${body.length}\r\n\r\n${bodiless ? "" : body}`;
      } else if (kind === "chunked") {
        text += `HTTP/${version} ${status} X\r\nTransfer-Encoding: chunked\r\n${headers}\r\n${bodiless ? "" : chunked}`;
      } else text += `HTTP/${version} ${status} X\r\n${headers}\r\n${bodiless ? "" : body}`;
      return text;
    });

const exchange = fc
  .array(fc.constantFrom(...METHODS), { minLength: 1, maxLength: 4 })
  .chain((methods) =>
    fc.tuple(fc.constant(methods), fc.tuple(...methods.map((m, i) => response(m, i === methods.length - 1)))),
  );

const SNIPPETS = [
  "\r\n",
  "\n",
  "\r",
  " ",
  ":",
  "Content-Length: 2\r\n",
  "Transfer-Encoding: chunked\r\n",
  "0\r\n\r\n",
  "HTTP/1.1 200 OK\r\n\r\n",
  "\x00",
  "1",
];
const mutation = fc.tuple(fc.nat(), fc.constantFrom(...SNIPPETS), fc.integer({ min: 0, max: 2 }));

const limits = fc.record(
  {
    maxHeadBytes: fc.integer({ min: 24, max: 400 }),
    maxHeaders: fc.integer({ min: 1, max: 8 }),
    maxChunkExtBytes: fc.integer({ min: 1, max: 8 }),
  },
  { requiredKeys: [] },
);

function assertSameAsReference(
  input: Buffer,
  methods: readonly string[],
  closed: boolean,
  cuts: readonly number[],
  lim: Partial<ParserLimits> | undefined,
): void {
  const framer = new ResponseFramer(lim);
  for (const m of methods) framer.expect(m);
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  let counted = 0;
  let error: { status: number; reason: string; detail?: string } | undefined;
  for (const p of [...points, input.length]) {
    try {
      counted += framer.feed(input.subarray(from, Math.max(from, p)));
    } catch (err) {
      if (!(err instanceof HttpHeadError)) throw err;
      error = { status: err.status, reason: err.reason, detail: err.detail as string };
      break;
    }
    from = Math.max(from, p);
  }
  if (!error && closed) counted += framer.end();
  const completed = methods.length - framer.outstanding;
  if (!error) assert.equal(counted, completed, "feed() and end() return what completes");
  const ref = referenceFrameResponses(input, methods, closed, lim);
  const fast = {
    completed,
    switched: framer.switched,
    lastStatus: framer.lastStatus,
    ...(error ? { error } : {}),
  };
  assert.deepEqual(fast, { ...ref }, JSON.stringify({ methods, closed, input: input.toString("latin1") }));
}

describe("ResponseFramer matches the reference", () => {
  it("on generated pipelined responses", () => {
    fc.assert(
      fc.property(
        exchange,
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        ([methods, texts], closed, cuts) => {
          assertSameAsReference(bytes(texts.join("")), methods, closed, cuts, undefined);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("on mutated responses and random limits", () => {
    fc.assert(
      fc.property(
        exchange,
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.option(limits, { nil: undefined }),
        ([methods, texts], mutations, closed, cuts, lim) => {
          let text = texts.join("");
          for (const [at, insert, remove] of mutations) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + insert + text.slice(i + remove);
          }
          assertSameAsReference(bytes(text), methods, closed, cuts, lim);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("raises nothing but HttpHeadError on random bytes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 160 }),
        fc.array(fc.constantFrom(...METHODS), { maxLength: 3 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 4 }),
        (raw, methods, closed, cuts) => {
          assertSameAsReference(Buffer.from(raw), methods, closed, cuts, undefined);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
