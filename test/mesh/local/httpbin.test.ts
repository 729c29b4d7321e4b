import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as http from "node:http";
import * as net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { UsageError } from "../../../src/cli/common.js";
import { defaultListenAddress, parseListenAddress } from "../../../src/cli/httpbin.js";
import {
  jsonSafe,
  parseMultipart,
  parseStatusCodes,
  pickWeighted,
  pythonJson,
  type RunningHttpbin,
  semiflatten,
  splitTarget,
  startHttpbin,
  wsgiHeaderName,
  wsgiHeaders,
} from "../../../src/mesh/local/httpbin.js";
import { repoRoot } from "../../helpers/paths.js";

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: string;
}

/** The headers as given, with a Host header first unless they have one. */
function withHost(headers: string[], port: number): string[] {
  const named = headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === "host");
  return named ? headers : ["Host", `127.0.0.1:${port}`, ...headers];
}

/** One request with headers exactly as given (a flat name, value, name, value list). */
function request(
  port: number,
  options: { method?: string; path?: string; headers?: string[]; body?: string | Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: withHost(options.headers ?? [], port),
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Sends bytes as they are and returns everything the server says until it closes. */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(text));
    let received = "";
    socket.setEncoding("utf8").on("data", (d: string) => {
      received += d;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(received));
  });
}

async function json(port: number, options: Parameters<typeof request>[1]): Promise<Record<string, unknown>> {
  const answer = await request(port, options);
  assert.equal(answer.status, 200, answer.body);
  assert.equal(answer.headers["content-type"], "application/json");
  return JSON.parse(answer.body) as Record<string, unknown>;
}

describe("httpbin", () => {
  let bin: RunningHttpbin;
  let port: number;
  let nextRandom = 0;

  before(async () => {
    bin = await startHttpbin({ host: "127.0.0.1", port: 0, random: () => nextRandom, maxBodyBytes: 4096 });
    port = bin.address.port;
  });
  after(() => bin.close());

  it("shows request headers in WSGI Title-Case, repeated ones joined with a comma", async () => {
    const body = await json(port, {
      path: "/headers",
      headers: [
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/default/sa/httpbin;URI=spiffe://cluster.local/ns/default/sa/sleep",
        "X-B3-TraceId",
        "abc",
        "x_custom",
        "one",
        "X-Custom",
        "two",
        "user-agent",
        "curl/7.88.1",
      ],
    });
    const headers = body.headers as Record<string, string>;
    assert.equal(
      headers["X-Forwarded-Client-Cert"],
      "By=spiffe://cluster.local/ns/default/sa/httpbin;URI=spiffe://cluster.local/ns/default/sa/sleep",
    );
    assert.equal(headers["X-B3-Traceid"], "abc");
    assert.equal(headers["X-Custom"], "one,two");
    assert.equal(headers["User-Agent"], "curl/7.88.1");
    assert.equal(headers.Host, `127.0.0.1:${port}`);
  });

  it("hides the headers proxies add unless show_env is asked for, as httpbin does", async () => {
    const sent = [
      "X-Forwarded-For",
      "10.0.0.9",
      "X-Request-Id",
      "r-1",
      "Via",
      "1.1 proxy",
      "X-Envoy-Attempt-Count",
      "1",
    ];
    const hidden = (await json(port, { path: "/headers", headers: sent })).headers as Record<string, string>;
    assert.equal(hidden["X-Forwarded-For"], undefined);
    assert.equal(hidden["X-Request-Id"], undefined);
    assert.equal(hidden.Via, undefined);
    assert.equal(hidden["X-Envoy-Attempt-Count"], "1");
    const shown = (await json(port, { path: "/headers?show_env=1", headers: sent })).headers as Record<
      string,
      string
    >;
    assert.equal(shown["X-Forwarded-For"], "10.0.0.9");
    assert.equal(shown["X-Request-Id"], "r-1");
  });

  it("prints JSON like Flask: two-space indent, sorted keys, non-ASCII escaped, a final newline", async () => {
    const answer = await rawExchange(port, "GET /get?b=2&a=%C3%A9&a=x HTTP/1.0\r\nHost: example\r\n\r\n");
    assert.equal(
      answer.slice(answer.indexOf("\r\n\r\n") + 4),
      `{
  "args": {
    "a": [
      "\\u00e9",
      "x"
    ],
    "b": "2"
  },
  "headers": {
    "Host": "example"
  },
  "origin": "127.0.0.1",
  "url": "http://example/get?b=2&a=%C3%A9&a=x"
}
`,
    );
  });

  it("builds url from the listening address when an HTTP/1.0 client sends no Host", async () => {
    const answer = await rawExchange(port, "GET /get?x=1 HTTP/1.0\r\n\r\n");
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { url: string; headers: object };
    assert.equal(body.url, `http://127.0.0.1:${port}/get?x=1`);
    assert.deepEqual(body.headers, {});
  });

  it("gives origin and url from X-Forwarded-For and X-Forwarded-Proto when a proxy set them", async () => {
    const body = await json(port, {
      path: "/get",
      headers: ["Host", "httpbin:8000", "X-Forwarded-For", "10.1.2.3", "X-Forwarded-Proto", "https"],
    });
    assert.equal(body.origin, "10.1.2.3");
    assert.equal(body.url, "https://httpbin:8000/get");
    assert.deepEqual(await json(port, { path: "/ip" }), { origin: "127.0.0.1" });
    assert.deepEqual(await json(port, { path: "/user-agent", headers: ["User-Agent", "ua/1"] }), {
      "user-agent": "ua/1",
    });
  });

  it("echoes urlencoded forms as form, JSON bodies as data and json, other bodies as data", async () => {
    const form = await json(port, {
      method: "POST",
      path: "/post",
      headers: ["Content-Type", "application/x-www-form-urlencoded"],
      body: "a=1&a=2&b=x+y&c=%E2%9C%93",
    });
    assert.deepEqual(form.form, { a: ["1", "2"], b: "x y", c: "\u2713" });
    assert.equal(form.data, "");
    assert.equal(form.json, null);
    const put = await json(port, {
      method: "PUT",
      path: "/put?q=1",
      headers: ["Content-Type", "application/json"],
      body: '{"z":[1,{"y":null}],"a":"b"}',
    });
    assert.deepEqual(put.json, { z: [1, { y: null }], a: "b" });
    assert.equal(put.data, '{"z":[1,{"y":null}],"a":"b"}');
    assert.deepEqual(put.args, { q: "1" });
    assert.deepEqual(put.form, {});
    const binary = await json(port, {
      method: "PATCH",
      path: "/patch",
      headers: ["Content-Type", "application/octet-stream"],
      body: Buffer.from([0xff, 0x00, 0x80]),
    });
    assert.equal(binary.data, "data:application/octet-stream;base64,/wCA");
    const del = await json(port, { method: "DELETE", path: "/delete" });
    assert.deepEqual(Object.keys(del), ["args", "data", "files", "form", "headers", "json", "origin", "url"]);
  });

  it("splits multipart bodies into form fields and files", async () => {
    const boundary = "----tessera";
    const body = [
      `--${boundary}\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n`,
      `--${boundary}\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nfile text\r\n`,
      `--${boundary}\r\nContent-Disposition: form-data; name="bin"; filename="b"\r\nContent-Type: image/png\r\n\r\n\xff\r\n`,
      `--${boundary}--\r\n`,
    ].join("");
    const answer = await json(port, {
      method: "POST",
      path: "/anything/upload",
      headers: ["Content-Type", `multipart/form-data; boundary=${boundary}`],
      body: Buffer.from(body, "latin1"),
    });
    assert.deepEqual(answer.form, { field: "value" });
    assert.deepEqual(answer.files, { upload: "file text", bin: "data:image/png;base64,/w==" });
    assert.equal(answer.method, "POST");
    assert.equal(answer.url, `http://127.0.0.1:${port}/anything/upload`);
  });

  it("answers a wrong method with 405 and the allowed ones, an unknown path with 404", async () => {
    const wrong = await request(port, { method: "POST", path: "/get" });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.allow, "GET, HEAD, OPTIONS");
    assert.match(wrong.body, /405 Method Not Allowed/);
    assert.equal((await request(port, { method: "GET", path: "/post" })).status, 405);
    assert.equal((await request(port, { method: "PUT", path: "/headers" })).status, 405);
    const missing = await request(port, { path: "/nothing-here" });
    assert.equal(missing.status, 404);
    assert.match(missing.body, /404 Not Found/);
    assert.equal((await request(port, { path: "/get/" })).status, 404);
  });

  it("answers HEAD like GET without a body and OPTIONS with CORS preflight headers", async () => {
    const head = await request(port, { method: "HEAD", path: "/headers" });
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.ok(Number(head.headers["content-length"]) > 0);
    const options = await request(port, {
      method: "OPTIONS",
      path: "/get",
      headers: ["Origin", "http://app", "Access-Control-Request-Headers", "X-Token"],
    });
    assert.equal(options.status, 200);
    assert.equal(options.headers["access-control-allow-origin"], "http://app");
    assert.equal(options.headers["access-control-allow-credentials"], "true");
    assert.equal(options.headers["access-control-allow-methods"], "GET, POST, PUT, DELETE, PATCH, OPTIONS");
    assert.equal(options.headers["access-control-allow-headers"], "X-Token");
    assert.equal((await request(port, { path: "/ip" })).headers["access-control-allow-origin"], "*");
  });

  it("returns the status asked for, any method, and picks among several by weight", async () => {
    for (const method of ["GET", "POST", "PUT", "DELETE", "PATCH"]) {
      assert.equal((await request(port, { method, path: "/status/503" })).status, 503);
    }
    const teapot = await request(port, { path: "/status/418" });
    assert.equal(teapot.status, 418);
    assert.match(teapot.body, /teapot/);
    assert.equal((await request(port, { path: "/status/302" })).headers.location, "/redirect/1");
    assert.equal(
      (await request(port, { path: "/status/401" })).headers["www-authenticate"],
      'Basic realm="Fake Realm"',
    );
    nextRandom = 0;
    assert.equal((await request(port, { path: "/status/200,500" })).status, 200);
    nextRandom = 0.99;
    assert.equal((await request(port, { path: "/status/200,500" })).status, 500);
    nextRandom = 0.5;
    assert.equal((await request(port, { path: "/status/201:0,202:1,203:0" })).status, 202);
    for (const bad of ["abc", "99", "1000", "200,x", "200:x", "200:-1", "200:0", "2.5"]) {
      const answer = await request(port, { path: `/status/${bad}` });
      assert.equal(answer.status, 400, bad);
      assert.equal(answer.body, "Invalid status code");
    }
  });

  it("follows httpbin's redirect chain to /get", async () => {
    const first = await request(port, { path: "/redirect/2" });
    assert.equal(first.status, 302);
    assert.equal(first.headers.location, "/relative-redirect/1");
    const last = await request(port, { path: "/relative-redirect/1" });
    assert.equal(last.headers.location, "/get");
    assert.equal((await request(port, { path: "/redirect/0" })).status, 404);
  });

  it("serves a landing page at /", async () => {
    const page = await request(port, { path: "/" });
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    assert.match(page.body, /\/headers/);
  });

  it("refuses a body over the limit with 413 and keeps serving", async () => {
    const answer = await request(port, { method: "POST", path: "/post", body: "x".repeat(5000) });
    assert.equal(answer.status, 413);
    assert.equal((await request(port, { path: "/ip" })).status, 200);
  });

  it("answers every request, however odd, without a server error", async () => {
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"];
    const pathChars = fc.constantFrom(..."abz09/%?&=#._~-+:;,@!$'()*[]".split(""));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...methods),
        fc.constantFrom("/", "/get", "/post", "/anything", "/status/", "/headers", "/redirect/", "/ip", "/x"),
        fc.string({ unit: pathChars, maxLength: 20 }),
        fc.array(
          fc.tuple(
            fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,10}$/),
            fc.string({ unit: "grapheme-ascii", maxLength: 12 }),
          ),
          {
            maxLength: 4,
          },
        ),
        fc.constantFrom(
          "application/json",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=b",
          "text/plain",
        ),
        fc.uint8Array({ maxLength: 64 }),
        async (method, base, suffix, extra, contentType, body) => {
          const headers = extra
            .filter(([, v]) => /^[\x20-\x7e]*$/.test(v))
            .flatMap(([n, v]) => [`X-${n}`, v.trim()]);
          const hasBody = !["GET", "HEAD", "OPTIONS", "TRACE"].includes(method);
          const answer = await request(port, {
            method,
            path: encodeURI(base + suffix).replace(/#/g, "%23"),
            headers: hasBody ? [...headers, "Content-Type", contentType] : headers,
            body: hasBody ? Buffer.from(body) : undefined,
          });
          assert.ok(answer.status >= 100 && answer.status < 1000, `status ${answer.status}`);
          assert.notEqual(answer.status, 500, answer.body);
          if (answer.headers["content-type"] === "application/json" && method !== "HEAD")
            JSON.parse(answer.body);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("httpbin building blocks", () => {
  /** Python's str.title() over ASCII, one character at a time: the obviously-correct reference. */
  function titleReference(name: string): string {
    let out = "";
    let previousIsLetter = false;
    for (const ch of name.replace(/_/g, "-")) {
      const isLetter = /[A-Za-z]/.test(ch);
      out += isLetter ? (previousIsLetter ? ch.toLowerCase() : ch.toUpperCase()) : ch;
      previousIsLetter = isLetter;
    }
    return out;
  }

  it("title-cases header names exactly like the character-by-character reference", () => {
    const tokenChar = fc.constantFrom(..."abcXYZ019-_!#$%&'*+.^`|~".split(""));
    fc.assert(
      fc.property(fc.string({ unit: tokenChar, minLength: 1, maxLength: 24 }), (name) => {
        assert.equal(wsgiHeaderName(name), titleReference(name));
      }),
      { numRuns: 1000 },
    );
    assert.equal(wsgiHeaderName("x-b3-traceid"), "X-B3-Traceid");
    assert.equal(wsgiHeaderName("X-FORWARDED-CLIENT-CERT"), "X-Forwarded-Client-Cert");
    assert.equal(wsgiHeaderName("x_envoy_attempt_count"), "X-Envoy-Attempt-Count");
  });

  it("joins repeated headers in arrival order", () => {
    assert.deepEqual(
      [...wsgiHeaders(["accept", "a", "Host", "h", "ACCEPT", "b", "x_y", "1", "x-y", "2"])],
      [
        ["Accept", "a,b"],
        ["Host", "h"],
        ["X-Y", "1,2"],
      ],
    );
  });

  /** The same output built another way: JSON.stringify for strings, then non-ASCII escaped. */
  function pythonJsonReference(v: unknown, indent = ""): string {
    const inner = `${indent}  `;
    if (typeof v === "string")
      return JSON.stringify(v).replace(
        /[\u007f-\uffff]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
      );
    if (Array.isArray(v))
      return v.length === 0
        ? "[]"
        : `[\n${v.map((x) => inner + pythonJsonReference(x, inner)).join(",\n")}\n${indent}]`;
    if (v !== null && typeof v === "object") {
      const codePoints = (k: string) => Array.from(k, (c) => c.codePointAt(0) as number);
      const keys = Object.keys(v).sort((a, b) => {
        const x = codePoints(a);
        const y = codePoints(b);
        for (let i = 0; i < Math.min(x.length, y.length); i++)
          if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
        return x.length - y.length;
      });
      if (keys.length === 0) return "{}";
      const items = keys.map(
        (k) =>
          `${inner}${pythonJsonReference(k)}: ${pythonJsonReference((v as Record<string, unknown>)[k], inner)}`,
      );
      return `{\n${items.join(",\n")}\n${indent}}`;
    }
    return JSON.stringify(v);
  }

  it("serializes like Python's json.dumps(indent=2, sort_keys=True), as the reference does", () => {
    const value = fc.jsonValue({ maxDepth: 3 }).filter((v) => !Object.is(v, -0));
    fc.assert(
      fc.property(value, (v) => {
        const text = pythonJson(v as never);
        assert.equal(text, `${pythonJsonReference(v)}\n`);
        assert.ok(/^\p{ASCII}*$/u.test(text), "only ASCII");
        assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 300 },
    );
    assert.equal(
      pythonJson({ b: 1, a: [true, null], "10": {}, "9": [] }),
      '{\n  "10": {},\n  "9": [],\n  "a": [\n    true,\n    null\n  ],\n  "b": 1\n}\n',
    );
    assert.equal(pythonJson("caf\u00e9 \u{1f600}\u007f"), '"caf\\u00e9 \\ud83d\\ude00\\u007f"\n');
  });

  it("keeps UTF-8 as text and turns other bytes into a base64 data URL", () => {
    assert.equal(jsonSafe(Buffer.from("h\u00e9")), "h\u00e9");
    assert.equal(jsonSafe(Buffer.from([0xc3]), "image/png"), "data:image/png;base64,ww==");
  });

  it("flattens single values and keeps several as a list", () => {
    assert.deepEqual(
      semiflatten([
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
      ]),
      { a: ["1", "3"], b: "2" },
    );
  });

  it("splits request targets, absolute-form ones included", () => {
    assert.deepEqual(splitTarget("/get?a=1#x"), { path: "/get", query: "a=1" });
    assert.deepEqual(splitTarget("http://httpbin:8000/ip"), { path: "/ip", query: "" });
    assert.deepEqual(splitTarget("http://httpbin:8000?x"), { path: "/", query: "x" });
  });

  it("reads back any multipart body it is given, and never throws on garbage", () => {
    const text = fc.string({ unit: "grapheme-ascii", maxLength: 30 });
    const part = fc.record({
      name: fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/),
      filename: fc.option(fc.stringMatching(/^[a-z]{1,8}\.txt$/), { nil: undefined }),
      body: text,
    });
    fc.assert(
      fc.property(
        fc.array(part, { maxLength: 5 }),
        fc.stringMatching(/^[A-Za-z0-9]{8,20}$/),
        (parts, boundary) => {
          fc.pre(parts.every((p) => !p.body.includes(boundary) && !p.body.includes("--")));
          const encoded = parts.map((p) => {
            const filename = p.filename ? `; filename="${p.filename}"` : "";
            return `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${filename}\r\n\r\n${p.body}\r\n`;
          });
          const body = Buffer.from(`${encoded.join("")}--${boundary}--\r\n`);
          const parsed = parseMultipart(body, boundary);
          assert.deepEqual(
            parsed.map((p) => ({ name: p.name, filename: p.filename, body: p.body.toString() })),
            parts.map((p) => ({ name: p.name, filename: p.filename, body: p.body })),
          );
        },
      ),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 6 }), (bytes, boundary) => {
        parseMultipart(Buffer.from(bytes), boundary);
        parseMultipart(Buffer.concat([Buffer.from(`--${boundary}\r\n`), Buffer.from(bytes)]), boundary);
      }),
      { numRuns: 500 },
    );
  });

  it("parses status code lists and picks only codes with weight", () => {
    assert.deepEqual(parseStatusCodes("200"), [{ code: 200, weight: 1 }]);
    assert.deepEqual(parseStatusCodes("200:0.25,503"), [
      { code: 200, weight: 0.25 },
      { code: 503, weight: 1 },
    ]);
    assert.equal(parseStatusCodes("200:"), undefined);
    assert.equal(parseStatusCodes("a"), undefined);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            code: fc.integer({ min: 100, max: 999 }),
            weight: fc.double({ min: 0, max: 10, noNaN: true }),
          }),
          {
            minLength: 1,
            maxLength: 5,
          },
        ),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (choices, r) => {
          const picked = pickWeighted(choices, () => r);
          if (choices.every((c) => c.weight === 0)) assert.equal(picked, undefined);
          else assert.ok(choices.some((c) => c.code === picked && c.weight > 0));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("tessera httpbin", () => {
  it("parses --listen and the image's default address", () => {
    assert.deepEqual(parseListenAddress("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(parseListenAddress("[::]:80"), { host: "::", port: 80 });
    assert.deepEqual(parseListenAddress(":81"), { host: "0.0.0.0", port: 81 });
    assert.deepEqual(parseListenAddress("82"), { host: "0.0.0.0", port: 82 });
    for (const bad of ["", "host:", "host:99999", "a:b", "1.2.3.4:80:1"])
      assert.throws(() => parseListenAddress(bad), UsageError, bad);
    assert.equal(defaultListenAddress({}), "0.0.0.0:80");
    assert.equal(defaultListenAddress({ PORT: "8000" }), "0.0.0.0:8000");
  });

  it("serves until SIGTERM, then exits 0", async () => {
    const script = `
      import { Command } from "commander";
      import { httpbinCommand } from ${JSON.stringify(join(repoRoot, "dist/src/cli/httpbin.js"))};
      await new Command("tessera").addCommand(httpbinCommand()).parseAsync(["node", "tessera", "httpbin", "--listen", "127.0.0.1:0"]);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stderr = "";
      const port = await new Promise<number>((resolve, reject) => {
        child.stderr.setEncoding("utf8").on("data", (d: string) => {
          stderr += d;
          const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
          if (m) resolve(Number(m[1]));
        });
        child.once("exit", () => reject(new Error(`httpbin exited early: ${stderr}`)));
      });
      const body = await json(port, { path: "/headers", headers: ["X-Forwarded-Client-Cert", "By=x"] });
      assert.equal((body.headers as Record<string, string>)["X-Forwarded-Client-Cert"], "By=x");
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
