/**
 * The slow, obviously-correct statement of Tessera's HTTP/1.1 framing rules, for tests and
 * benchmarks to hold the fast RequestParser and ResponseFramer against. It reads a complete
 * byte string at once (as latin1 text, one char per byte) with regular expressions taken
 * from the ABNF of RFC 9110, RFC 9112 and RFC 3986, and says what the stream holds: the
 * messages, their bodies, and the first error.
 *
 * The order in which problems are found is part of the rules (the fast code must report the
 * same one whatever the chunk boundaries): a head is read line by line, each line judged when
 * its LF is found (size limit, then the CR before the LF, then the line); the head as a whole
 * is judged at its empty line; chunked bodies are read front to back.
 */
import {
  chunkLineLimit,
  DEFAULT_LIMITS,
  MAX_CHUNK_SIZE_DIGITS,
  type ParserLimits,
  type RequestHead,
} from "./request-parser.js";

// RFC 9110 §5.6.2: token = 1*tchar
const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN = new RegExp(`^${TCHAR}+$`);
// RFC 9110 §5.5: field-value chars (field-vchar = VCHAR / obs-text, with SP and HTAB inside)
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 3986: unreserved / sub-delims, pct-encoded, path and query characters
const UNRESERVED_SUB_DELIMS = "A-Za-z0-9\\-._~!$&'()*+,;=";
const PCT = "%[0-9A-Fa-f]{2}";
const PATH_CHAR = `(?:[${UNRESERVED_SUB_DELIMS}:@/]|${PCT})`;
const QUERY = `(?:\\?(?:${PATH_CHAR}|\\?)*)`;
const REG_NAME = `(?:[${UNRESERVED_SUB_DELIMS}]|${PCT})+`;
const IP_LITERAL = "\\[[0-9A-Fa-f:.]+\\]";
const HOST = `(?:${IP_LITERAL}|${REG_NAME})`;
const PORT = "[0-9]{1,5}";
const AUTHORITY = `${HOST}(?::${PORT})?`;
// RFC 9112 §3.2: the four forms of request-target
const ORIGIN_FORM = new RegExp(`^/${PATH_CHAR}*${QUERY}?$`);
const ABSOLUTE_FORM = new RegExp(`^([Hh][Tt][Tt][Pp][Ss]?)://(${AUTHORITY})((?:/${PATH_CHAR}*)?${QUERY}?)$`);
const AUTHORITY_FORM = new RegExp(`^${HOST}:${PORT}$`);
const HOST_VALUE = new RegExp(`^${AUTHORITY}$`);
// RFC 9112 §7.1: chunk-size [ chunk-ext ], chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
const QUOTED_STRING = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const CHUNK_EXT = `(?:[ \\t]*;[ \\t]*${TCHAR}+(?:[ \\t]*=[ \\t]*(?:${TCHAR}+|${QUOTED_STRING}))?)*`;
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,${MAX_CHUNK_SIZE_DIGITS}})${CHUNK_EXT}$`);
// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ] (the last SP tolerated missing)
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?$/;

const KNOWN_CODINGS = ["chunked", "gzip", "x-gzip", "deflate", "compress", "x-compress"];

export interface ReferenceError {
  readonly status: number;
  readonly reason: string;
  readonly detail?: string;
}

export interface ReferenceMessage {
  readonly head: RequestHead;
  /** The body bytes as they would be piped (raw chunked encoding included), or all bytes after a tunnel head. */
  readonly body: Buffer;
  /** Whether the message ended (never for CONNECT and upgrades). */
  readonly complete: boolean;
}

export interface ReferenceRequests {
  readonly messages: ReferenceMessage[];
  readonly error?: ReferenceError;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

function refuse(status: number, reason: string): never {
  throw new Refusal(status, reason);
}

function limitsOf(limits: Partial<ParserLimits> | undefined): Required<ParserLimits> {
  return {
    maxHeadBytes: limits?.maxHeadBytes ?? DEFAULT_LIMITS.maxHeadBytes,
    maxHeaders: limits?.maxHeaders ?? DEFAULT_LIMITS.maxHeaders,
    maxChunkExtBytes: limits?.maxChunkExtBytes ?? DEFAULT_LIMITS.maxChunkExtBytes,
  };
}

/**
 * The lines of a head or trailer section starting at `start`, each passed to `judge` (with its
 * index) as soon as it is known to be complete and CRLF-terminated. Returns the lines and the
 * offset after the empty line, or undefined when the text ends first.
 */
function readLines(
  text: string,
  start: number,
  maxBytes: number,
  hasStartLine: boolean,
  reasons: { tooLarge: string; bareLf: string },
  judge: (line: string, index: number) => void,
): { lines: string[]; end: number } | undefined {
  const lines: string[] = [];
  let pos = start;
  for (;;) {
    const lf = text.indexOf("\n", pos);
    if (lf < 0) {
      if (text.length - start > maxBytes) refuse(431, reasons.tooLarge);
      return undefined;
    }
    if (lf - start >= maxBytes) refuse(431, reasons.tooLarge);
    if (lf === pos || text[lf - 1] !== "\r") refuse(400, reasons.bareLf);
    const line = text.slice(pos, lf - 1);
    pos = lf + 1;
    if (line === "" && (lines.length > 0 || !hasStartLine)) return { lines, end: pos };
    judge(line, lines.length);
    lines.push(line);
  }
}

/** A message head at `start`: its start line judged by `judgeStartLine`, then at most maxHeaders valid field lines. */
function readHead(
  text: string,
  start: number,
  limits: Required<ParserLimits>,
  judgeStartLine: (line: string) => void,
): { lines: string[]; end: number } | undefined {
  return readLines(
    text,
    start,
    limits.maxHeadBytes,
    true,
    { tooLarge: "head-too-large", bareLf: "bare-lf" },
    (line, index) => {
      if (index === 0) return judgeStartLine(line);
      if (index > limits.maxHeaders) refuse(431, "too-many-headers");
      const problem = fieldLineProblem(line);
      if (problem !== undefined) refuse(400, problem);
    },
  );
}

/** Why a field line is invalid, checked in this order, or undefined. */
function fieldLineProblem(line: string): string | undefined {
  if (line.includes("\r")) return "bare-cr";
  if (/^[ \t]/.test(line)) return "obs-fold";
  const colon = line.indexOf(":");
  if (colon < 0) return "bad-header-line";
  const name = line.slice(0, colon);
  if (/[ \t]$/.test(name)) return "space-before-colon";
  if (!TOKEN.test(name)) return "bad-header-name";
  if (!FIELD_VALUE.test(line.slice(colon + 1))) return "bad-header-value";
  return undefined;
}

function splitField(line: string): [string, string] {
  const colon = line.indexOf(":");
  return [line.slice(0, colon), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "")];
}

/** Checks a request line, in order: CR, three parts, method token, version, target for the method. */
function judgeRequestLine(line: string): void {
  if (line.includes("\r")) refuse(400, "bare-cr");
  const parts = /^([^ ]+) ([^ ]+) ([^ ]+)$/.exec(line);
  if (!parts) refuse(400, "bad-request-line");
  const [, method, target, version] = parts as unknown as [string, string, string, string];
  if (!TOKEN.test(method)) refuse(400, "bad-method");
  if (!/^HTTP\/1\.[01]$/.test(version)) {
    if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) refuse(505, "unsupported-version");
    refuse(400, "bad-version");
  }
  const valid =
    method === "CONNECT"
      ? AUTHORITY_FORM.test(target)
      : ORIGIN_FORM.test(target) || (target === "*" && method === "OPTIONS") || ABSOLUTE_FORM.test(target);
  if (!valid) refuse(400, "bad-target");
}

function values(headers: ReadonlyArray<readonly [string, string]>, lowerName: string): string[] {
  return headers.filter(([name]) => name.toLowerCase() === lowerName).map(([, value]) => value);
}

/** The elements of a comma-separated list, trimmed of OWS. */
function elements(list: readonly string[]): string[] {
  return list
    .join(",")
    .split(",")
    .map((e) => e.replace(/^[ \t]+|[ \t]+$/g, ""));
}

function contentLength(list: readonly string[]): number {
  const parts = elements(list);
  for (const part of parts) {
    if (!/^[0-9]+$/.test(part) || BigInt(part) > BigInt(Number.MAX_SAFE_INTEGER)) {
      refuse(400, "bad-content-length");
    }
  }
  if (new Set(parts).size !== 1) refuse(400, "multiple-content-length");
  return Number(parts[0]);
}

function transferCodings(list: readonly string[]): string[] {
  const parts = elements(list);
  if (!parts.every((p) => TOKEN.test(p))) refuse(400, "bad-transfer-encoding");
  return parts.map((p) => p.toLowerCase());
}

/** The origin-form of an absolute-form target's path and query (RFC 9112 §3.2.1: "/" for an empty path). */
function originForm(pathAndQuery: string): string {
  return pathAndQuery.startsWith("/") ? pathAndQuery : `/${pathAndQuery}`;
}

/** Builds the head from its lines and judges it, in order: Host, framing, CONNECT. */
function judgeHead(lines: readonly string[], raw: Buffer): RequestHead {
  const [method, target, versionText] = (lines[0] as string).split(" ") as [string, string, string];
  const version = versionText === "HTTP/1.1" ? "1.1" : "1.0";
  const headers = lines.slice(1).map(splitField);
  const hosts = values(headers, "host");
  if (hosts.length > 1) refuse(400, "duplicate-host");
  const host = hosts[0];
  if (host === undefined && version === "1.1") refuse(400, "missing-host");
  const absolute = method === "CONNECT" ? null : ABSOLUTE_FORM.exec(target);
  if (host !== undefined) {
    if (!HOST_VALUE.test(host)) refuse(400, "bad-host");
  }
  const lengths = values(headers, "content-length");
  const encodings = values(headers, "transfer-encoding");
  if (lengths.length > 0 && encodings.length > 0) refuse(400, "conflicting-length");
  let chunked = false;
  if (encodings.length > 0) {
    if (version === "1.0") refuse(400, "te-in-http10");
    const codings = transferCodings(encodings);
    if (codings.at(-1) !== "chunked") refuse(400, "te-not-chunked");
    if (codings.filter((c) => c === "chunked").length > 1) refuse(400, "te-chunked-twice");
    if (!codings.every((c) => KNOWN_CODINGS.includes(c))) refuse(501, "unknown-coding");
    chunked = true;
  }
  const length = lengths.length > 0 ? contentLength(lengths) : undefined;
  if (method === "CONNECT" && (chunked || (length ?? 0) > 0)) refuse(400, "connect-with-body");
  const connection = elements(values(headers, "connection")).map((t) => t.toLowerCase());
  const upgradeValues = values(headers, "upgrade");
  return {
    method,
    target,
    path: method === "CONNECT" ? "" : absolute ? originForm(absolute[3] as string) : target,
    version,
    headers,
    host,
    authority: method === "CONNECT" ? target : absolute ? absolute[2] : host,
    contentLength: length,
    chunked,
    keepAlive: !connection.includes("close") && (version === "1.1" || connection.includes("keep-alive")),
    upgrade: version === "1.1" && connection.includes("upgrade") && upgradeValues.some((v) => v !== ""),
    expectContinue: values(headers, "expect").some((v) => v.toLowerCase() === "100-continue"),
    raw,
  };
}

/**
 * A chunked body from `start`: returns the offset after it, or undefined when the text ends
 * first. A chunk-size line may hold 17 + maxChunkExtBytes bytes before its LF, of them at
 * most maxChunkExtBytes of extensions.
 */
function chunkedBodyEnd(text: string, start: number, limits: Required<ParserLimits>): number | undefined {
  const maxLine = chunkLineLimit(limits.maxChunkExtBytes);
  let pos = start;
  for (;;) {
    const lf = text.indexOf("\n", pos);
    if ((lf < 0 ? text.length : lf) - pos > maxLine) refuse(400, "bad-chunk");
    if (lf < 0) return undefined;
    const line = text.slice(pos, lf);
    const match = line.endsWith("\r") ? CHUNK_LINE.exec(line.slice(0, -1)) : null;
    if (!match) refuse(400, "bad-chunk");
    const [withoutCr, digits] = match as unknown as [string, string];
    if (withoutCr.length - digits.length > limits.maxChunkExtBytes) refuse(400, "bad-chunk");
    const size = BigInt(`0x${digits}`);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) refuse(400, "bad-chunk");
    pos = lf + 1;
    if (size === 0n) {
      const trailers = readLines(
        text,
        pos,
        limits.maxHeadBytes,
        false,
        { tooLarge: "trailers-too-large", bareLf: "bad-trailer" },
        (trailer) => {
          if (fieldLineProblem(trailer) !== undefined) refuse(400, "bad-trailer");
        },
      );
      return trailers?.end;
    }
    pos += Number(size);
    if (pos > text.length) return undefined;
    const after = text.slice(pos, pos + 2);
    if (!"\r\n".startsWith(after)) refuse(400, "bad-chunk");
    if (after.length < 2) return undefined;
    pos += 2;
  }
}

/** What a stream of request bytes holds, read with the rules stated in this file. */
export function referenceParseRequests(input: Buffer, limits?: Partial<ParserLimits>): ReferenceRequests {
  const all = limitsOf(limits);
  const text = input.toString("latin1");
  const messages: ReferenceMessage[] = [];
  let pos = 0;
  try {
    while (pos < text.length) {
      const head = readHead(text, pos, all, judgeRequestLine);
      if (!head) break;
      const parsed = judgeHead(head.lines, input.subarray(pos, head.end));
      pos = head.end;
      if (parsed.method === "CONNECT" || parsed.upgrade) {
        messages.push({ head: parsed, body: input.subarray(pos), complete: false });
        break;
      }
      // Until its end is known the message holds every byte left: an unfinished body is piped
      // as it arrives, and a chunked one up to where an error stops it.
      const message = { head: parsed, body: input.subarray(pos), complete: false };
      messages.push(message);
      const end = parsed.chunked ? chunkedBodyEnd(text, pos, all) : pos + (parsed.contentLength ?? 0);
      if (end === undefined || end > text.length) break;
      messages[messages.length - 1] = { ...message, body: input.subarray(pos, end), complete: true };
      pos = end;
    }
  } catch (err) {
    if (err instanceof Refusal) return { messages, error: { status: err.status, reason: err.reason } };
    throw err;
  }
  return { messages };
}

export interface ReferenceResponses {
  /** Responses complete, the one ended by the close included. */
  readonly completed: number;
  readonly switched: boolean;
  readonly lastStatus: number | undefined;
  readonly error?: ReferenceError;
}

/**
 * What upstream bytes answer: `methods` are the forwarded requests in order, `closed` whether
 * the upstream closed after `input`. Errors are 400 "bad-response" with the rule as detail.
 */
export function referenceFrameResponses(
  input: Buffer,
  methods: readonly string[],
  closed: boolean,
  limits?: Partial<ParserLimits>,
): ReferenceResponses {
  const all = limitsOf(limits);
  const text = input.toString("latin1");
  let completed = 0;
  let lastStatus: number | undefined;
  let pos = 0;
  try {
    while (pos < text.length) {
      const method = methods[completed];
      if (method === undefined) refuse(400, "unsolicited-response");
      const head = readHead(text, pos, all, (line) => {
        if (line.includes("\r")) refuse(400, "bare-cr");
        if (!STATUS_LINE.test(line)) refuse(400, "bad-status-line");
      });
      if (!head) break;
      const statusMatch = STATUS_LINE.exec(head.lines[0] as string) as RegExpExecArray;
      const http10 = statusMatch[1] === "0";
      const status = Number(statusMatch[2]);
      const headers = head.lines.slice(1).map(splitField);
      const lengths = values(headers, "content-length");
      const encodings = values(headers, "transfer-encoding");
      if (lengths.length > 0 && encodings.length > 0) refuse(400, "conflicting-length");
      let codings: string[] | undefined;
      if (encodings.length > 0) {
        if (http10) refuse(400, "te-in-http10");
        codings = transferCodings(encodings);
        if (codings.filter((c) => c === "chunked").length > 1) refuse(400, "te-chunked-twice");
      }
      const length = lengths.length > 0 ? contentLength(lengths) : undefined;
      lastStatus = status;
      pos = head.end;
      if (status === 101 || (method === "CONNECT" && status >= 200 && status < 300)) {
        return { completed: completed + 1, switched: true, lastStatus };
      }
      if (status < 200) continue;
      let end: number | undefined;
      if (method === "HEAD" || status === 204 || status === 304) end = pos;
      else if (codings) {
        if (codings.at(-1) !== "chunked") {
          return { completed: completed + (closed ? 1 : 0), switched: false, lastStatus };
        }
        end = chunkedBodyEnd(text, pos, all);
      } else if (length === undefined) {
        return { completed: completed + (closed ? 1 : 0), switched: false, lastStatus };
      } else end = pos + length > text.length ? undefined : pos + length;
      if (end === undefined) break;
      completed++;
      pos = end;
    }
  } catch (err) {
    if (err instanceof Refusal) {
      return {
        completed,
        switched: false,
        lastStatus,
        error: { status: 400, reason: "bad-response", detail: err.reason },
      };
    }
    throw err;
  }
  return { completed, switched: false, lastStatus };
}
