/**
 * The sidecar's HTTP/1.1 codec: nanoseconds per request head for the fast RequestParser, next
 * to the reference parser (reference.ts) on the same bytes in the same run, and the cost of
 * the head rewrite the proxy does on every forwarded request. Target: under ~3 µs for a
 * 200-byte head with 6 headers.
 *
 *   node dist/bench/http1.js [--quick]
 */
import { fileURLToPath } from "node:url";
import { HeaderLines, rewriteHead } from "../src/mesh/proxy/http1/head-rewrite.js";
import { referenceParseRequests } from "../src/mesh/proxy/http1/reference.js";
import { type RequestHead, RequestParser } from "../src/mesh/proxy/http1/request-parser.js";
import { formatNs, formatRatio, median, table } from "./stats.js";

/** What wrk sends. */
const WRK_HEAD = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
/** A curl request with a few more headers: 6 headers, about 200 bytes. */
const TYPICAL_HEAD =
  "GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: catalog.shop.svc:8080\r\nUser-Agent: curl/8.5.0\r\n" +
  "Accept: */*\r\nX-Request-Id: 6f1c2b9e-4d1a-4c1e\r\nAccept-Encoding: gzip, br\r\nConnection: keep-alive\r\n\r\n";

const XFCC = "x-forwarded-client-cert";

/** Nanoseconds per call of `op`: the median of `rounds` timed rounds of about `roundMs` each. */
function nsPerCall(op: () => unknown, rounds: number, roundMs: number): number {
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    let n = 0;
    let elapsedNs = 0;
    do {
      for (let i = 0; i < 256; i++) op();
      n += 256;
      elapsedNs = Number(process.hrtime.bigint() - t0);
    } while (elapsedNs < roundMs * 1e6);
    perRound.push(elapsedNs / n);
  }
  return median(perRound);
}

/** Parses `text` as one whole chunk, or in two pieces to take the path that holds partial heads. */
function fastParse(parser: RequestParser, pieces: readonly Buffer[]): () => number {
  return () => {
    let events = 0;
    for (const piece of pieces) events += parser.feed(piece).length;
    if (events !== 2) throw new Error("the benchmark head did not parse");
    return events;
  };
}

export async function runHttp1Bench(opts: { quick: boolean }): Promise<void> {
  const rounds = opts.quick ? 3 : 5;
  const roundMs = opts.quick ? 60 : 200;
  const rows: string[][] = [];
  let typicalNs = Number.NaN;
  for (const [label, text] of [
    [`wrk head (1 header, ${WRK_HEAD.length} B)`, WRK_HEAD],
    [`typical head (6 headers, ${TYPICAL_HEAD.length} B)`, TYPICAL_HEAD],
  ] as const) {
    const whole = Buffer.from(text, "latin1");
    const split = [whole.subarray(0, whole.length >> 1), whole.subarray(whole.length >> 1)];
    const parser = new RequestParser();
    const fast = fastParse(parser, [whole]);
    const fastSplit = fastParse(parser, split);
    const reference = () => referenceParseRequests(whole).messages.length;
    const fastNs: number[] = [];
    const splitNs: number[] = [];
    const referenceNs: number[] = [];
    // Interleaved, so that machine noise hits every variant alike.
    for (let i = 0; i < 3; i++) {
      fastNs.push(nsPerCall(fast, rounds, roundMs));
      splitNs.push(nsPerCall(fastSplit, rounds, roundMs));
      referenceNs.push(nsPerCall(reference, rounds, roundMs));
    }
    const f = median(fastNs);
    const r = median(referenceNs);
    if (text === TYPICAL_HEAD) typicalNs = f;
    rows.push([label, formatNs(f), formatNs(median(splitNs)), formatNs(r), formatRatio(r / f)]);
  }
  process.stdout.write(
    `${table(["request head", "fast parse", "fast, 2 pieces", "reference", "reference / fast"], rows)}\n\n`,
  );

  const parser = new RequestParser();
  let head: RequestHead | undefined;
  for (const e of parser.feed(Buffer.from(TYPICAL_HEAD, "latin1"))) if (e.kind === "head") head = e.head;
  if (!head) throw new Error("the benchmark head did not parse");
  const typical = head;
  const drop = new Set([XFCC]);
  const add = [
    [XFCC, "By=spiffe://cluster.local/ns/shop/sa/catalog;URI=spiffe://cluster.local/ns/shop/sa/web"],
  ] as const;
  const withXfcc = Buffer.from(
    TYPICAL_HEAD.replace("\r\n\r\n", "\r\nX-Forwarded-Client-Cert: By=x\r\n\r\n"),
    "latin1",
  );
  let xfccHead: RequestHead | undefined;
  for (const e of new RequestParser().feed(withXfcc)) if (e.kind === "head") xfccHead = e.head;
  if (!xfccHead) throw new Error("the benchmark head did not parse");
  const dropping = xfccHead;
  // The sidecar checks its XFCC line once per connection (HeaderLines); the first row checks it on every call.
  const lines = new HeaderLines(add);
  const rewriteRows = [
    [
      "add an XFCC checked on every call (nothing to drop)",
      formatNs(nsPerCall(() => rewriteHead(typical, drop, add), rounds, roundMs)),
    ],
    [
      "add the connection's XFCC, checked once (the sidecar's way)",
      formatNs(nsPerCall(() => rewriteHead(typical, drop, lines), rounds, roundMs)),
    ],
    [
      "replace the client's XFCC (the sidecar's way)",
      formatNs(nsPerCall(() => rewriteHead(dropping, drop, lines), rounds, roundMs)),
    ],
  ];
  process.stdout.write(`${table(["head rewrite", "per head"], rewriteRows)}\n\n`);
  const verdict = typicalNs < 3000 ? "meets" : "misses";
  process.stdout.write(`typical head: ${formatNs(typicalNs)} per parse, ${verdict} the ~3 µs target\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await runHttp1Bench({ quick: process.argv.includes("--quick") });
}
