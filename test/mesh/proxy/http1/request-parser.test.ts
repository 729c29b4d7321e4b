/**
 * The request parser case by case: the request-smuggling shapes a security proxy must refuse
 * (CL.TE, TE.CL, TE.TE obfuscations, duplicate lengths, whitespace before the colon, LF-only
 * lines), limits, versions, Host rules, pipelining, bodies split across chunks, upgrades and
 * CONNECT tunnels, and the parser's state between calls.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HttpHeadError } from "../../../../src/mesh/proxy/http1/errors.js";
import {
  type ParseEvent,
  type ParserLimits,
  type RequestHead,
  RequestParser,
} from "../../../../src/mesh/proxy/http1/request-parser.js";

const bytes = (s: string) => Buffer.from(s, "latin1");

/** Feeds the pieces in order and returns all events. */
function parse(pieces: readonly string[], limits?: Partial<ParserLimits>): ParseEvent[] {
  const parser = new RequestParser(limits);
  return pieces.flatMap((p) => parser.feed(bytes(p)));
}

function heads(events: readonly ParseEvent[]): RequestHead[] {
  return events.flatMap((e) => (e.kind === "head" ? [e.head] : []));
}

function only(text: string, limits?: Partial<ParserLimits>): RequestHead {
  const found = heads(parse([text], limits));
  assert.equal(found.length, 1);
  return found[0] as RequestHead;
}

/** The error feeding `text` in one piece raises. */
function refusal(text: string, limits?: Partial<ParserLimits>): HttpHeadError {
  const parser = new RequestParser(limits);
  try {
    parser.feed(bytes(text));
  } catch (err) {
    assert.ok(err instanceof HttpHeadError, String(err));
    return err;
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

function assertRefused(text: string, status: number, reason: string, limits?: Partial<ParserLimits>): void {
  const err = refusal(text, limits);
  assert.deepEqual({ status: err.status, reason: err.reason }, { status, reason }, JSON.stringify(text));
}

/** The events as short strings, body bytes joined per message. */
function summary(events: readonly ParseEvent[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.kind === "head") out.push(`head ${e.head.method} ${e.head.target}`);
    else if (e.kind === "end") out.push("end");
    else if (out.at(-1)?.startsWith("body ")) out[out.length - 1] += e.data.toString("latin1");
    else out.push(`body ${e.data.toString("latin1")}`);
  }
  return out;
}

const CURL_HEAD =
  "GET /api/v1/items?limit=10&sort=name HTTP/1.1\r\nHost: svc.example:8080\r\nUser-Agent: curl/8.5.0\r\n" +
  "Accept: */*\r\nX-Request-Id:  abc-123 \t\r\nAccept-Encoding: gzip\r\nX-Empty:\r\n\r\n";

describe("RequestParser: heads", () => {
  it("parses a request head into its fields, values trimmed of OWS, raw exactly as received", () => {
    const head = only(CURL_HEAD);
    assert.equal(head.method, "GET");
    assert.equal(head.target, "/api/v1/items?limit=10&sort=name");
    assert.equal(head.version, "1.1");
    assert.deepEqual(head.headers, [
      ["Host", "svc.example:8080"],
      ["User-Agent", "curl/8.5.0"],
      ["Accept", "*/*"],
      ["X-Request-Id", "abc-123"],
      ["Accept-Encoding", "gzip"],
      ["X-Empty", ""],
    ]);
    assert.equal(head.host, "svc.example:8080");
    assert.equal(head.authority, "svc.example:8080");
    assert.equal(head.contentLength, undefined);
    assert.equal(head.chunked, false);
    assert.equal(head.keepAlive, true);
    assert.equal(head.upgrade, false);
    assert.equal(head.expectContinue, false);
    assert.equal(head.raw.toString("latin1"), CURL_HEAD);
  });

  it("gives the same head whatever the split, at every byte and byte by byte", () => {
    const whole = only(CURL_HEAD);
    for (let cut = 1; cut < CURL_HEAD.length; cut++) {
      const events = parse([CURL_HEAD.slice(0, cut), CURL_HEAD.slice(cut)]);
      assert.deepEqual(summary(events), ["head GET /api/v1/items?limit=10&sort=name", "end"]);
      assert.deepEqual(heads(events)[0], whole, `cut at ${cut}`);
    }
    const byteByByte = parse([...CURL_HEAD]);
    assert.deepEqual(heads(byteByByte)[0], whole);
  });

  it("accepts obs-text in values, keeping the bytes as latin1 characters", () => {
    const head = only("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n");
    assert.equal(head.headers[1]?.[1], "caf\xe9");
  });

  it("derives keep-alive from the version and the Connection tokens", () => {
    const keepAlive = (version: string, connection?: string) =>
      only(
        `GET / HTTP/${version}\r\nHost: a\r\n${connection === undefined ? "" : `Connection: ${connection}\r\n`}\r\n`,
      ).keepAlive;
    assert.equal(keepAlive("1.1"), true);
    assert.equal(keepAlive("1.1", "close"), false);
    assert.equal(keepAlive("1.1", "Keep-Alive, CLOSE"), false);
    assert.equal(keepAlive("1.0"), false);
    assert.equal(keepAlive("1.0", "keep-alive"), true);
    assert.equal(keepAlive("1.0", " , Keep-Alive"), true);
  });

  it("sees Expect: 100-continue in any case", () => {
    assert.equal(only("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").expectContinue, true);
  });

  it("accepts the four request-target forms where they belong", () => {
    assert.equal(only("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target, "*");
    const absolute = only("GET http://Svc.Example/a/b?c HTTP/1.1\r\nHost: svc.example\r\n\r\n");
    assert.equal(absolute.authority, "Svc.Example");
    assert.equal(absolute.host, "svc.example");
    assert.equal(
      only("GET https://[::1]:8443?q HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n").authority,
      "[::1]:8443",
    );
    assert.equal(only("GET http://a HTTP/1.0\r\n\r\n").authority, "a");
    const path = "/%41b;c=d/:@!$&'()*+,=~?x=/?y";
    assert.equal(only(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`).target, path);
  });

  it("refuses targets that are not of a form valid for the method", () => {
    for (const target of [
      "*",
      "a:443",
      "/a#frag",
      "/a\\b",
      "/%zz",
      "/%4",
      "/caf\xe9",
      "/a|b",
      "ftp://a/",
      "http://",
      "http://user@a/",
      "http://a:/",
      "http://a:123456/",
      "x/a",
    ]) {
      assertRefused(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`, 400, "bad-target");
    }
    assertRefused("CONNECT /a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-target");
    assertRefused("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-target");
  });

  it("refuses malformed request lines and answers other versions with 505", () => {
    assertRefused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-request-line");
    assertRefused("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "bad-request-line");
    assertRefused("GET /\r\n\r\n", 400, "bad-request-line");
    assertRefused("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-request-line");
    assertRefused("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-method");
    assertRefused("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad-request-line");
    assertRefused("GET / http/1.1\r\nHost: a\r\n\r\n", 400, "bad-version");
    assertRefused("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400, "bad-version");
    assertRefused("GET / HTTP/11\r\nHost: a\r\n\r\n", 400, "bad-version");
    assertRefused("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported-version");
    assertRefused("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported-version");
    assertRefused("GET / HTTP/0.9\r\n\r\n", 505, "unsupported-version");
    assertRefused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported-version");
  });

  it("refuses the request line as soon as it is complete, before the head ends", () => {
    const parser = new RequestParser();
    assert.throws(() => parser.feed(bytes("GET / HTTP/3.0\r\nHost: a\r\n")), { status: 505 });
  });
});

describe("RequestParser: Host", () => {
  it("requires exactly one valid Host in HTTP/1.1", () => {
    assertRefused("GET / HTTP/1.1\r\n\r\n", 400, "missing-host");
    assertRefused("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "duplicate-host");
    assertRefused("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "duplicate-host");
    assertRefused("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "bad-host");
    assertRefused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad-host");
    assertRefused("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400, "bad-host");
    assertRefused("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400, "bad-host");
    assert.equal(only("GET / HTTP/1.0\r\n\r\n").host, undefined);
  });

  it("takes an absolute-form target's authority and path over Host, as the app will", () => {
    const head = only("GET http://admin.internal:8080/admin?x=1 HTTP/1.1\r\nHost: public.example\r\n\r\n");
    assert.equal(head.host, "public.example");
    assert.equal(head.authority, "admin.internal:8080");
    assert.equal(head.path, "/admin?x=1");
    assert.equal(only("GET HTTP://a HTTP/1.1\r\nHost: a\r\n\r\n").path, "/");
    assert.equal(only("GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n").path, "/?q");
    assert.equal(only("GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n").path, "/x?y");
    assert.equal(only("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").path, "*");
    assert.equal(only("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").path, "");
  });
});

describe("RequestParser: request smuggling", () => {
  const post = (headers: string) => `POST / HTTP/1.1\r\nHost: a\r\n${headers}\r\n`;

  it("refuses Content-Length together with Transfer-Encoding (CL.TE and TE.CL)", () => {
    assertRefused(post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"), 400, "conflicting-length");
    assertRefused(post("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n"), 400, "conflicting-length");
    assertRefused(post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), 400, "conflicting-length");
    assertRefused(
      "POST / HTTP/1.0\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
      400,
      "conflicting-length",
    );
  });

  it("refuses obfuscated Transfer-Encoding (TE.TE) whose final coding is not plainly chunked", () => {
    assertRefused(post("Transfer-Encoding: xchunked\r\n"), 400, "te-not-chunked");
    assertRefused(post("Transfer-Encoding: chunked, identity\r\n"), 400, "te-not-chunked");
    assertRefused(
      post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
      400,
      "te-not-chunked",
    );
    assertRefused(post("Transfer-Encoding: identity\r\n"), 400, "te-not-chunked");
    assertRefused(post("Transfer-Encoding: chunked, chunked\r\n"), 400, "te-chunked-twice");
    assertRefused(post('Transfer-Encoding: "chunked"\r\n'), 400, "bad-transfer-encoding");
    assertRefused(post("Transfer-Encoding: chunked;q=1\r\n"), 400, "bad-transfer-encoding");
    assertRefused(post("Transfer-Encoding: chunked,\r\n"), 400, "bad-transfer-encoding");
    assertRefused(post("Transfer-Encoding:\r\n"), 400, "bad-transfer-encoding");
    assertRefused(post("Transfer-Encoding: chunked\x0b\r\n"), 400, "bad-header-value");
    assertRefused(post("Transfer-Encoding: br, chunked\r\n"), 501, "unknown-coding");
    assertRefused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "te-in-http10");
  });

  it("accepts chunked in any case, with OWS, and after known codings", () => {
    assert.equal(only(post("Transfer-Encoding: \tChunKed \r\n")).chunked, true);
    assert.equal(only(post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")).chunked, true);
    assert.equal(only(post("transfer-encoding: x-gzip, deflate , chunked\r\n")).chunked, true);
  });

  it("refuses differing or malformed Content-Length values and accepts identical duplicates", () => {
    assertRefused(post("Content-Length: 5\r\nContent-Length: 6\r\n"), 400, "multiple-content-length");
    assertRefused(post("Content-Length: 5, 6\r\n"), 400, "multiple-content-length");
    assertRefused(post("Content-Length: 5, 05\r\n"), 400, "multiple-content-length");
    for (const value of ["+5", "-5", "5 5", "0x5", "5.0", "", "5,", "1e3", "9007199254740992"]) {
      assertRefused(post(`Content-Length: ${value}\r\n`), 400, "bad-content-length");
    }
    assert.equal(only(post("Content-Length: 0\r\nContent-Length: 0\r\n")).contentLength, 0);
    assert.equal(only(post("Content-Length: 0, 0\r\n")).contentLength, 0);
    assert.equal(only(post("Content-Length:  0 \r\n")).contentLength, 0);
  });

  it("refuses whitespace before the colon, obs-fold and malformed field lines", () => {
    assertRefused(post("Transfer-Encoding : chunked\r\n"), 400, "space-before-colon");
    assertRefused(post("Content-Length\t: 0\r\n"), 400, "space-before-colon");
    assertRefused(post("X-A: 1\r\n Transfer-Encoding: chunked\r\n"), 400, "obs-fold");
    assertRefused("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 400, "obs-fold");
    assertRefused(post("X-A 1\r\n"), 400, "bad-header-line");
    assertRefused(post(": 1\r\n"), 400, "bad-header-name");
    assertRefused(post("X[A]: 1\r\n"), 400, "bad-header-name");
    assertRefused(post("X-A: 1\x002\r\n"), 400, "bad-header-value");
    assertRefused(post("X-A: 1\x7f\r\n"), 400, "bad-header-value");
  });

  it("refuses bare LF and bare CR line endings", () => {
    assertRefused("GET / HTTP/1.1\nHost: a\n\n", 400, "bare-lf");
    assertRefused("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare-lf");
    assertRefused("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare-lf");
    assertRefused("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "bare-cr");
    assertRefused("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400, "bare-cr");
    assertRefused("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400, "bare-cr");
    assertRefused("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare-cr");
  });
});

describe("RequestParser: limits", () => {
  const head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

  it("accepts a head of exactly maxHeadBytes and refuses one byte more with 431", () => {
    assert.equal(only(head, { maxHeadBytes: head.length }).raw.length, head.length);
    assertRefused(head, 431, "head-too-large", { maxHeadBytes: head.length - 1 });
  });

  it("refuses an unfinished head once it is larger than maxHeadBytes", () => {
    const parser = new RequestParser({ maxHeadBytes: 64 });
    assert.deepEqual(parser.feed(bytes("GET / HTTP/1.1\r\nX-Long: ")), []);
    assert.equal(parser.pendingHeadBytes, 24);
    assert.deepEqual(parser.feed(bytes("a".repeat(40))), []);
    assert.equal(parser.pendingHeadBytes, 64);
    assert.throws(() => parser.feed(bytes("a")), { status: 431, reason: "head-too-large" });
    const oneChunk = new RequestParser({ maxHeadBytes: 64 });
    assert.throws(() => oneChunk.feed(bytes(`GET / HTTP/1.1\r\nX: ${"a".repeat(100)}`)), { status: 431 });
  });

  it("counts header lines against maxHeaders (431)", () => {
    const three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert.equal(only(three, { maxHeaders: 3 }).headers.length, 3);
    assertRefused(three, 431, "too-many-headers", { maxHeaders: 2 });
  });

  it("bounds the trailer section by maxHeadBytes and chunk-size lines by maxChunkExtBytes", () => {
    const start = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    const limits = { maxHeadBytes: start.length, maxChunkExtBytes: 8 };
    assert.equal(summary(parse([`${start}1;abcdefg\r\nx\r\n0\r\n\r\n`], limits)).at(-1), "end");
    assertRefused(`${start}1;abcdefgh\r\nx\r\n0\r\n\r\n`, 400, "bad-chunk", limits);
    assertRefused(`${start}0\r\nX: ${"a".repeat(start.length)}\r\n\r\n`, 431, "trailers-too-large", limits);
  });

  it("refuses limits that are not positive integers", () => {
    assert.throws(() => new RequestParser({ maxHeadBytes: 0 }), RangeError);
    assert.throws(() => new RequestParser({ maxHeaders: 1.5 }), RangeError);
  });
});

describe("RequestParser: bodies and pipelining", () => {
  it("passes Content-Length bodies through as views of the fed chunks", () => {
    const parser = new RequestParser();
    const first = bytes("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello");
    const events = parser.feed(first);
    assert.deepEqual(summary(events), ["head POST /up", "body hello"]);
    const body = events[1] as { kind: "body"; data: Buffer };
    assert.equal(body.data.buffer, first.buffer, "a view, not a copy");
    assert.equal(parser.idle, false);
    assert.equal(parser.pendingHeadBytes, 0);
    assert.deepEqual(summary(parser.feed(bytes("worldGET"))), ["body world", "end"]);
    assert.equal(parser.idle, false);
    assert.equal(parser.pendingHeadBytes, 3);
    assert.deepEqual(summary(parser.feed(bytes(" / HTTP/1.0\r\n\r\n"))), ["head GET /", "end"]);
    assert.equal(parser.idle, true);
  });

  it("emits head and end at once for requests without a body, several per chunk", () => {
    const three =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" +
      "PUT /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    assert.deepEqual(summary(parse([three])), [
      "head GET /1",
      "end",
      "head POST /2",
      "end",
      "head PUT /3",
      "body abc",
      "end",
    ]);
  });

  it("passes chunked bodies through raw (sizes, extensions, trailers) and ends after the trailers", () => {
    const body =
      '4;name=value;q="a \\"b\\""\r\nWiki\r\n000B\r\npedia in \r\n\r\n0 ; last\r\nX-Sum: 1\r\n\r\n';
    const request = `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}`;
    const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    const expected = ["head POST /", `body ${body}`, "end", "head GET /next", "end"];
    assert.deepEqual(summary(parse([request + next])), expected);
    const text = request + next;
    for (let cut = request.length - body.length; cut < request.length + 3; cut++) {
      assert.deepEqual(summary(parse([text.slice(0, cut), text.slice(cut)])), expected, `cut at ${cut}`);
    }
  });

  it("refuses malformed chunked framing", () => {
    const start = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const body of [
      "g\r\n",
      "\r\n",
      ";a\r\n",
      "-1\r\n",
      "+1\r\n",
      "0x1\r\n",
      "1 \r\nx\r\n",
      "1\nx\r\n",
      "1;\r\nx\r\n",
      "1;a=\r\nx\r\n",
      '1;a="b\r\nx\r\n',
      "1\r\nxx\r\n",
      "1\r\nx\n",
      "1\r\nx\rx",
      "20000000000000\r\n",
      "00000000000000001\r\n",
    ]) {
      assertRefused(start + body, 400, "bad-chunk");
    }
    assertRefused(`${start}0\r\nX : 1\r\n\r\n`, 400, "bad-trailer");
    assertRefused(`${start}0\r\n X: 1\r\n\r\n`, 400, "bad-trailer");
    assertRefused(`${start}0\r\nX: 1\n\r\n`, 400, "bad-trailer");
    assert.equal(summary(parse([`${start}1FFFFFFFFFFFFF\r\n`])).length, 2, "2^53-1 is a valid size");
  });

  it("reports the events of a failing feed that came before the error", () => {
    const parser = new RequestParser();
    const err = refusalOf(parser, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\n\n");
    assert.equal(err.reason, "bare-lf");
    assert.deepEqual(summary(err.preceding), ["head GET /ok", "end"]);
    assert.throws(() => parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), {
      status: 400,
      reason: "bare-lf",
    });
    assert.equal(parser.idle, false);
  });
});

function refusalOf(parser: RequestParser, text: string): HttpHeadError {
  try {
    parser.feed(bytes(text));
  } catch (err) {
    assert.ok(err instanceof HttpHeadError);
    return err;
  }
  assert.fail("accepted");
}

describe("RequestParser: upgrades and CONNECT", () => {
  it("stops parsing after an upgrade request: everything after the head is raw body, no end", () => {
    const parser = new RequestParser();
    const upgrade =
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    const events = parser.feed(bytes(upgrade));
    assert.deepEqual(summary(events), ["head GET /ws", "body \x81\x05hello"]);
    assert.equal(heads(events)[0]?.upgrade, true);
    assert.deepEqual(summary(parser.feed(bytes("GET / HTTP/9.9\n\n"))), ["body GET / HTTP/9.9\n\n"]);
    assert.equal(parser.idle, false);
  });

  it("ignores upgrade requests in HTTP/1.0 and Connection: upgrade without an Upgrade header", () => {
    assert.equal(only("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade, false);
    assert.equal(only("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade, false);
    assert.equal(only("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade, false);
  });

  it("tunnels after CONNECT and refuses a CONNECT with a body", () => {
    const events = parse([
      "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n\x00\x01",
      "more",
    ]);
    assert.deepEqual(summary(events), ["head CONNECT db.internal:5432", "body \x00\x01more"]);
    assert.equal(heads(events)[0]?.authority, "db.internal:5432");
    assertRefused("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 1\r\n\r\n", 400, "connect-with-body");
    assertRefused(
      "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nTransfer-Encoding: chunked\r\n\r\n",
      400,
      "connect-with-body",
    );
    assert.equal(only("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 0\r\n\r\n").contentLength, 0);
  });
});
