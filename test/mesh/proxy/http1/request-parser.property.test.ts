/**
 * The fast RequestParser against the reference (reference.ts), with fast-check: generated
 * requests, valid ones built from parts and others with risky parts (Host counts, CL/TE
 * conflicts, odd codings) or mutated bytes (line endings, whitespace, framing headers, random
 * bytes), pipelined, fed in random chunk splits under random limits. The heads, the body bytes
 * per message and the error must be the reference's. Random bytes must only ever raise
 * HttpHeadError.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { HttpHeadError } from "../../../../src/mesh/proxy/http1/errors.js";
import { referenceParseRequests } from "../../../../src/mesh/proxy/http1/reference.js";
import {
  type ParseEvent,
  type ParserLimits,
  type RequestHead,
  RequestParser,
} from "../../../../src/mesh/proxy/http1/request-parser.js";

interface Outcome {
  messages: Array<{ head: RequestHead; body: Buffer; complete: boolean }>;
  error?: { status: number; reason: string };
}

/** Feeds input cut at `cuts` (taken modulo its length) and collects what the parser says. */
function fastOutcome(input: Buffer, cuts: readonly number[], limits?: Partial<ParserLimits>): Outcome {
  const points = [...new Set(cuts.map((c) => (input.length === 0 ? 0 : c % input.length)))].sort(
    (a, b) => a - b,
  );
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...points, input.length]) {
    if (p > from) pieces.push(input.subarray(from, p));
    from = Math.max(from, p);
  }
  const parser = new RequestParser(limits);
  const outcome: Outcome = { messages: [] };
  const bodies: Buffer[][] = [];
  const take = (events: Iterable<ParseEvent>) => {
    for (const e of events) {
      if (e.kind === "head") {
        outcome.messages.push({ head: e.head, body: Buffer.alloc(0), complete: false });
        bodies.push([]);
      } else if (e.kind === "body") (bodies.at(-1) as Buffer[]).push(Buffer.from(e.data));
      else (outcome.messages.at(-1) as { complete: boolean }).complete = true;
    }
  };
  for (const piece of pieces) {
    try {
      take(parser.feed(piece));
    } catch (err) {
      if (!(err instanceof HttpHeadError)) throw err;
      take(err.preceding);
      outcome.error = { status: err.status, reason: err.reason };
      break;
    }
  }
  outcome.messages.forEach((m, i) => {
    m.body = Buffer.concat(bodies[i] as Buffer[]);
  });
  return outcome;
}

function assertSameAsReference(
  input: Buffer,
  cuts: readonly number[],
  limits?: Partial<ParserLimits>,
): Outcome {
  const fast = fastOutcome(input, cuts, limits);
  const ref = referenceParseRequests(input, limits);
  const context = JSON.stringify(input.toString("latin1"));
  assert.deepEqual(fast.error, ref.error, context);
  assert.equal(fast.messages.length, ref.messages.length, context);
  fast.messages.forEach((m, i) => {
    const r = ref.messages[i] as Outcome["messages"][number];
    assert.deepEqual(m.head, r.head, context);
    assert.equal(m.complete, r.complete, context);
    const erroredHere = ref.error !== undefined && !r.complete;
    // An error inside a chunked body stops the parser mid-chunk: what it forwarded is a prefix.
    if (erroredHere) assert.ok(r.body.subarray(0, m.body.length).equals(m.body), context);
    else assert.ok(m.body.equals(r.body), context);
  });
  return fast;
}

// ---------------------------------------------------------------------------------------------
// Generators

const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const chars = (s: string) => fc.constantFrom(...s);
const token = fc.string({ unit: chars(TCHARS), minLength: 1, maxLength: 8 });
const fieldValue = fc.string({
  unit: fc.oneof({ weight: 10, arbitrary: chars("abcXYZ019 -_/=;,.\"'()") }, chars("\t\x80\xe9\xff")),
  maxLength: 10,
});
const PATH_CHARS = "abcAZ09-._~!$&'()*+,;=:@/";
const pathUnit = fc.oneof({ weight: 8, arbitrary: chars(PATH_CHARS) }, fc.constantFrom("%41", "%2f", "%E9"));
const path = fc
  .tuple(
    fc.string({ unit: pathUnit, maxLength: 10 }),
    fc.option(fc.string({ unit: fc.oneof(pathUnit, fc.constant("?")), maxLength: 6 })),
  )
  .map(([p, q]) => `/${p}${q === null ? "" : `?${q}`}`);
const regName = fc.string({ unit: chars("abcxyzAZ019-."), minLength: 1, maxLength: 8 });
const hostName = fc.oneof(
  { weight: 6, arbitrary: regName },
  fc.constantFrom("[::1]", "[fe80::1]", "127.0.0.1"),
);
const port = fc.option(fc.integer({ min: 1, max: 65535 }).map(String), { nil: undefined });
const authority = fc.tuple(hostName, port).map(([h, p]) => (p === undefined ? h : `${h}:${p}`));
/** A name in random letter case. */
const anyCase = (name: string) =>
  fc
    .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
    .map((flips) => [...name].map((c, i) => (flips[i] ? c.toUpperCase() : c)).join(""));
const bodyBytes = (min: number, max: number) =>
  fc.string({
    unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
    minLength: min,
    maxLength: max,
  });

type Header = readonly [string, string];

interface Framing {
  headers: Header[];
  body: string;
}

const noBody = fc.constant<Framing>({ headers: [], body: "" });

const lengthFraming = (strict: boolean) =>
  fc
    .tuple(
      bodyBytes(0, 12),
      fc.constantFrom("single", "duplicate", "list", "padded"),
      anyCase("content-length"),
      fc.boolean(),
    )
    .map(([body, style, name, truncate]): Framing => {
      const n = String(body.length);
      const headers: Header[] =
        style === "single"
          ? [[name, n]]
          : style === "duplicate"
            ? [
                [name, n],
                [name, n],
              ]
            : style === "list"
              ? [[name, `${n}, ${n}`]]
              : [[name, ` ${n}\t`]];
      // A body shorter than stated leaves the next message's bytes inside it.
      return { headers, body: !strict && truncate ? body.slice(0, body.length >> 1) : body };
    });

const chunkExtension = fc.constantFrom("", ";a", ";a=b", ' ; n = "q \\" x"', ";x;y=1", "\t;z");
const chunkedFraming = fc
  .tuple(
    fc.array(fc.tuple(bodyBytes(1, 12), chunkExtension, fc.boolean()), { maxLength: 3 }),
    chunkExtension,
    fc.array(fc.tuple(token, fieldValue), { maxLength: 2 }),
    fc.constantFrom(["chunked"], ["Chunked"], ["gzip, chunked"], ["gzip", "chunked"]),
    anyCase("transfer-encoding"),
  )
  .map(([chunks, lastExt, trailers, codings, name]): Framing => {
    let body = "";
    for (const [data, ext, upper] of chunks) {
      const size = data.length.toString(16);
      body += `${upper ? `0${size.toUpperCase()}` : size}${ext}\r\n${data}\r\n`;
    }
    body += `0${lastExt}\r\n${trailers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
    return { headers: codings.map((c): Header => [name, c]), body };
  });

/** Framing that a strict parser refuses or that is easy to get wrong. */
const riskyFraming = fc.oneof(
  fc.constant<Framing>({
    headers: [
      ["Content-Length", "3"],
      ["Transfer-Encoding", "chunked"],
    ],
    body: "0\r\n\r\n",
  }),
  fc.constant<Framing>({
    headers: [
      ["Content-Length", "3"],
      ["Content-Length", "4"],
    ],
    body: "abcd",
  }),
  fc.constantFrom<Framing>(
    { headers: [["Transfer-Encoding", "xchunked"]], body: "" },
    { headers: [["Transfer-Encoding", "chunked, identity"]], body: "" },
    { headers: [["Transfer-Encoding", "br, chunked"]], body: "0\r\n\r\n" },
    { headers: [["Transfer-Encoding", "chunked, chunked"]], body: "" },
    { headers: [["Content-Length", "+1"]], body: "a" },
    { headers: [["Transfer-Encoding", "chunked"]], body: "3\r\nabcd\r\n0\r\n\r\n" },
    { headers: [["Transfer-Encoding", "chunked"]], body: "fffffffffffffff\r\n" },
  ),
);

interface Spec {
  method: string;
  target: string;
  version: string;
  headers: Header[];
  body: string;
}

function serialize(spec: Spec): string {
  const lines = spec.headers.map(([n, v]) => `${n}: ${v}\r\n`).join("");
  return `${spec.method} ${spec.target} HTTP/${spec.version}\r\n${lines}\r\n${spec.body}`;
}

const requestLine = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"), path) },
  { weight: 1, arbitrary: fc.tuple(token, path) },
  { weight: 1, arbitrary: fc.tuple(fc.constant("OPTIONS"), fc.constant("*")) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom("GET", "HEAD"), fc.constantFrom("http", "HTTPS"), authority, path)
      .map(([m, scheme, a, p]) => [m, `${scheme}://${a}${p}`] as const),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(hostName, fc.integer({ min: 1, max: 65535 }))
      .map(([h, p]) => ["CONNECT", `${h}:${p}`] as const),
  },
);

/** One request: valid by construction when strict, else with risky parts mixed in. */
const request = (strict: boolean): fc.Arbitrary<Spec> =>
  fc
    .tuple(
      requestLine,
      strict ? fc.constant("1.1") : fc.constantFrom("1.1", "1.1", "1.0"),
      authority,
      fc.constantFrom(1, 1, 1, 1, 0, 2),
      anyCase("host"),
      fc.array(fc.tuple(token, fieldValue), { maxLength: 4 }),
      fc.oneof(noBody, lengthFraming(strict), chunkedFraming, ...(strict ? [] : [riskyFraming])),
      fc.option(fc.constantFrom("close", "keep-alive", "Upgrade", "keep-alive, Upgrade", "CLOSE, , x")),
      fc.option(fc.constantFrom("websocket", "h2c", "")),
      fc.option(fc.constantFrom("100-continue", "100-Continue", "x")),
      fc.nat(),
    )
    .map(
      ([
        [method, target],
        version,
        hostValue,
        hostCount,
        hostName,
        extra,
        framing,
        connection,
        upgrade,
        expect,
        seed,
      ]) => {
        const absolute = /^https?:\/\/([^/?]+)/i.exec(target);
        const host = method === "CONNECT" ? target : absolute ? (absolute[1] as string) : hostValue;
        const headers: Header[] = [];
        for (let i = 0; i < (strict ? 1 : hostCount); i++)
          headers.push([hostName, i === 0 ? host : hostValue]);
        // Generic headers must not collide with the ones whose meaning the test controls.
        for (const [n, v] of extra) {
          if (!/^(host|content-length|transfer-encoding|connection|upgrade|expect)$/i.test(n))
            headers.push([n, v]);
        }
        const tunnel = method === "CONNECT" || (connection?.toLowerCase().includes("upgrade") && upgrade);
        const bodyFraming = strict && tunnel ? { headers: [], body: "" } : framing;
        headers.push(...bodyFraming.headers);
        if (connection !== null) headers.push(["Connection", connection]);
        if (upgrade !== null) headers.push(["Upgrade", upgrade]);
        if (expect !== null) headers.push(["Expect", expect]);
        // A deterministic shuffle from the seed, keeping the framing headers in their order
        // ("gzip" then "chunked" must stay so).
        const shuffled = headers
          .map((h, i) => ({ h, key: (seed * (i + 7919)) % 104729 }))
          .sort((a, b) => a.key - b.key)
          .map((x) => x.h);
        const framingInOrder = bodyFraming.headers.values();
        const ordered = shuffled.map((h) =>
          bodyFraming.headers.includes(h) ? (framingInOrder.next().value as Header) : h,
        );
        return { method, target, version, headers: ordered, body: bodyFraming.body };
      },
    );

const SNIPPETS = [
  "\r\n",
  "\n",
  "\r",
  " ",
  "\t",
  ":",
  "\r\n\r\n",
  "\r\n ",
  "Transfer-Encoding: chunked\r\n",
  "Content-Length: 3\r\n",
  "Host: x\r\n",
  "0\r\n\r\n",
  "\x00",
  "\x7f",
  "\xff",
  ";",
  "=",
  '"',
  "%",
  "?",
  "#",
  "HTTP/1.0",
  "HTTP/2.0",
  "chunked",
  "GET / HTTP/1.1\r\n",
];

const mutation = fc.tuple(
  fc.nat(),
  fc.oneof(
    fc.constantFrom(...SNIPPETS).map((s) => ({ insert: s, remove: 0 })),
    bodyBytes(1, 3).map((s) => ({ insert: s, remove: 0 })),
    fc.integer({ min: 1, max: 3 }).map((n) => ({ insert: "", remove: n })),
    fc.constantFrom(...SNIPPETS).map((s) => ({ insert: s, remove: 1 })),
  ),
);

function mutate(
  text: string,
  mutations: ReadonlyArray<readonly [number, { insert: string; remove: number }]>,
): string {
  let out = text;
  for (const [at, { insert, remove }] of mutations) {
    const i = out.length === 0 ? 0 : at % (out.length + 1);
    out = out.slice(0, i) + insert + out.slice(i + remove);
  }
  return out;
}

const limits = fc.record(
  {
    maxHeadBytes: fc.oneof(fc.integer({ min: 16, max: 120 }), {
      weight: 3,
      arbitrary: fc.integer({ min: 120, max: 800 }),
    }),
    maxHeaders: fc.oneof(fc.integer({ min: 1, max: 4 }), {
      weight: 3,
      arbitrary: fc.integer({ min: 5, max: 12 }),
    }),
    maxChunkExtBytes: fc.integer({ min: 1, max: 24 }),
  },
  { requiredKeys: [] },
);
const cuts = fc.array(fc.nat({ max: 100_000 }), { maxLength: 8 });
const latin1 = (s: string) => Buffer.from(s, "latin1");

describe("RequestParser matches the reference", () => {
  it("on valid pipelined requests, which both accept whole", () => {
    fc.assert(
      fc.property(fc.array(request(true), { minLength: 1, maxLength: 4 }), cuts, (specs, cutPoints) => {
        // Requests after a tunnel are tunnel bytes: generate none.
        const end = specs.findIndex(
          (s) => s.method === "CONNECT" || /upgrade/i.test(serialize(s).split("\r\n\r\n")[0] ?? ""),
        );
        const used = end < 0 ? specs : specs.slice(0, end + 1);
        const input = latin1(used.map(serialize).join(""));
        const fast = assertSameAsReference(input, cutPoints);
        assert.equal(fast.error, undefined, JSON.stringify(input.toString("latin1")));
        assert.equal(fast.messages.length, used.length);
      }),
      { numRuns: 600 },
    );
  });

  it("on requests with risky parts, under random limits", () => {
    fc.assert(
      fc.property(
        fc.array(request(false), { minLength: 1, maxLength: 3 }),
        cuts,
        limits,
        (specs, cutPoints, lim) => {
          assertSameAsReference(latin1(specs.map(serialize).join("")), cutPoints, lim);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("on mutated requests (inserted, removed and replaced bytes)", () => {
    fc.assert(
      fc.property(
        fc.array(request(false), { minLength: 1, maxLength: 3 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        cuts,
        fc.option(limits, { nil: undefined }),
        (specs, mutations, cutPoints, lim) => {
          assertSameAsReference(latin1(mutate(specs.map(serialize).join(""), mutations)), cutPoints, lim);
        },
      ),
      { numRuns: 4000 },
    );
  });
});

describe("RequestParser matches the reference on chunked bodies", () => {
  it("with bytes mutated inside the body only, under small extension and trailer limits", () => {
    const start = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    const chunkLimits = fc.record({
      maxHeadBytes: fc.integer({ min: start.length, max: start.length + 40 }),
      maxChunkExtBytes: fc.integer({ min: 1, max: 24 }),
    });
    fc.assert(
      fc.property(
        chunkedFraming,
        fc.nat({ max: 90 }),
        fc.array(mutation, { maxLength: 2 }),
        cuts,
        chunkLimits,
        (framing, pad, mutations, cutPoints, lim) => {
          // A padding trailer, to reach the trailer section's limit now and then.
          const body = `${framing.body.slice(0, -2)}${pad > 0 ? `X-Pad: ${"p".repeat(pad)}\r\n` : ""}\r\n`;
          assertSameAsReference(latin1(start + mutate(body, mutations) + next), cutPoints, lim);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("RequestParser fuzz", () => {
  it("raises nothing but HttpHeadError on random bytes, and agrees with the reference", () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc
        .array(fc.oneof(fc.constantFrom(...SNIPPETS, "GET / HTTP/1.1", "Host: a", "POST"), bodyBytes(1, 4)), {
          maxLength: 12,
        })
        .map((parts) => latin1(parts.join(""))),
    );
    fc.assert(
      fc.property(input, cuts, fc.option(limits, { nil: undefined }), (bytes, cutPoints, lim) => {
        assertSameAsReference(bytes, cutPoints, lim);
      }),
      { numRuns: 4000 },
    );
  });
});
