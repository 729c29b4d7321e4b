/**
 * Incremental, strict HTTP/1.1 request framing for the sidecar (RFC 9110, RFC 9112): request
 * heads are parsed straight off the socket bytes, body bytes are passed through as views of the
 * input, and every ambiguity a request-smuggling attack could use is refused.
 *
 * Where errors are decided, so that the outcome never depends on how the bytes were split:
 * - a head line is judged when its LF arrives: first the size limit (an LF at offset
 *   maxHeadBytes or later, counted from the start of the head, means the head cannot fit), then
 *   the CR before the LF, then the line's syntax; a head without its end after more than
 *   maxHeadBytes bytes is refused as well;
 * - Host, Content-Length, Transfer-Encoding and CONNECT rules are checked once the whole head
 *   is in, in the order of `RequestHeadBuilder.judge`;
 * - chunked bodies: a chunk-size line is judged at its LF (or when it grows past its limit),
 *   the CRLF after chunk data byte by byte, trailer lines like head lines.
 * `reference.ts` states the same rules as regular expressions over a complete input.
 *
 * Stricter than a general-purpose server, on purpose, since paths and hosts are what policy
 * matches on: no empty lines before the request line; request-targets exactly as RFC 3986
 * spells them (no raw "|", "[", "\\", '"' or non-ASCII bytes, no fragment, well-formed
 * pct-encoding, no userinfo); Transfer-Encoding lists without empty elements.
 *
 * After a CONNECT head, or a head that asks to upgrade the protocol (HTTP/1.1, `Connection:
 * upgrade` and an Upgrade header), the parser stops parsing: everything after the head is
 * returned as `body` events, with no `end`. The caller must hold those bytes back until the
 * upstream has agreed (101, or 2xx to CONNECT) and close the connection otherwise: an upstream
 * that refuses an upgrade keeps speaking HTTP/1.1, and unparsed requests would then reach it
 * without authorization.
 */
import { HttpHeadError } from "./errors.js";

export interface RequestHead {
  /** As sent (a case-sensitive token). */
  readonly method: string;
  /** The request-target as sent: origin-form "/a?b", absolute-form "http://h:p/a", authority-form "h:443" (CONNECT) or "*" (OPTIONS). */
  readonly target: string;
  /**
   * The path and query policy must match: the target in origin-form, an absolute-form target's
   * path and query ("/" when its path is empty), "*" for OPTIONS *, "" for CONNECT. An app
   * reads "GET http://h/admin" as /admin: authorize on this, not on `target`.
   */
  readonly path: string;
  readonly version: "1.0" | "1.1";
  /** Order and name case as sent, values trimmed of OWS. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The Host header value (at most one is accepted). */
  readonly host: string | undefined;
  /**
   * Where the request goes: the target's authority for absolute-form and authority-form (RFC
   * 9112 §3.2.2: it overrides Host, which a recipient ignores then), else the Host value.
   * Authorize and route on this; a proxy that forwards in origin-form should also replace Host
   * with it.
   */
  readonly authority: string | undefined;
  readonly contentLength: number | undefined;
  readonly chunked: boolean;
  /** Per version and the Connection header's tokens. */
  readonly keepAlive: boolean;
  /** HTTP/1.1, a Connection "upgrade" token and a non-empty Upgrade header: the parser pipes raw after it. */
  readonly upgrade: boolean;
  readonly expectContinue: boolean;
  /** The head bytes exactly as received, request line through the final CRLFCRLF; may share memory with the fed chunk. */
  readonly raw: Buffer;
}

export interface ParserLimits {
  /** Longest head accepted, request line through the final CRLFCRLF; also bounds a chunked body's trailer section (431). */
  maxHeadBytes: number;
  /** Most header field lines accepted (431). */
  maxHeaders: number;
  /**
   * Most bytes of chunk extensions on one chunk-size line (default 4096, 400 beyond). A line
   * is refused as soon as it holds more than 17 + maxChunkExtBytes bytes without its LF (16
   * size digits, the extensions, the CR).
   */
  maxChunkExtBytes?: number;
}

export type ParseEvent =
  | { kind: "head"; head: RequestHead }
  /** Body bytes as a view of the fed chunk; for chunked bodies the raw encoding (sizes, CRLFs, trailers). */
  | { kind: "body"; data: Buffer }
  /** The current message ended; the next bytes start a new request. */
  | { kind: "end" };

export const DEFAULT_LIMITS: Readonly<Required<ParserLimits>> = {
  maxHeadBytes: 65536,
  maxHeaders: 100,
  maxChunkExtBytes: 4096,
};

/** Digits a chunk size may have: 2^53-1 needs 14, leaving room for a little zero padding. */
export const MAX_CHUNK_SIZE_DIGITS = 16;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;

// ---------------------------------------------------------------------------------------------
// Byte classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar; RFC 3986 for targets and hosts)

function byteClass(chars: string, ranges: ReadonlyArray<readonly [number, number]> = []): Uint8Array {
  const table = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  for (const [lo, hi] of ranges) table.fill(1, lo, hi + 1);
  return table;
}

const ALNUM: ReadonlyArray<readonly [number, number]> = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x61, 0x7a],
];
/** tchar: the characters of a token (method, header name, coding). */
export const TCHAR = byteClass("!#$%&'*+-.^_`|~", ALNUM);
/** What a field value may hold between its first and last visible character: HTAB, SP, VCHAR, obs-text. */
export const FIELD_VALUE_BYTE = byteClass("\t", [
  [0x20, 0x7e],
  [0x80, 0xff],
]);
const UNRESERVED_AND_SUB_DELIMS = "-._~!$&'()*+,;=";
/** A path character of a request-target: unreserved, sub-delims, ":" "@" "/" (pct-encoding checked apart). */
const PATH_CHAR = byteClass(`${UNRESERVED_AND_SUB_DELIMS}:@/`, ALNUM);
/** A reg-name character (pct-encoding checked apart). */
const REG_NAME_CHAR = byteClass(UNRESERVED_AND_SUB_DELIMS, ALNUM);
const IP_LITERAL_CHAR = byteClass(":.", [
  [0x30, 0x39],
  [0x41, 0x46],
  [0x61, 0x66],
]);

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isOws(c: number | undefined): boolean {
  return c === SP || c === HTAB;
}

type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };

/** The bytes as a string, one char per byte: what every head string is (latin1Slice is Node's fast path). */
function latin1(buf: Buffer, start: number, end: number): string {
  return (buf as Latin1Buffer).latin1Slice(start, end);
}

/** Whether buf[start, start + lower.length) equals the lower-case ASCII `lower`, ignoring case (for token bytes). */
function equalsLowerToken(buf: Buffer, start: number, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    // Token bytes that OR 0x20 onto a lower-case letter or "-" are exactly those letters and "-".
    if (((buf[start + i] as number) | 0x20) !== lower[i]) return false;
  }
  return true;
}

const bytesOf = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const NAME_HOST = bytesOf("host");
const NAME_EXPECT = bytesOf("expect");
const NAME_UPGRADE = bytesOf("upgrade");
const NAME_CONNECTION = bytesOf("connection");
const NAME_CONTENT_LENGTH = bytesOf("content-length");
const NAME_TRANSFER_ENCODING = bytesOf("transfer-encoding");

// ---------------------------------------------------------------------------------------------
// Field lines

/** Where the parts of a valid field line are. */
export interface FieldLineBounds {
  nameEnd: number;
  valueStart: number;
  valueEnd: number;
}

/**
 * Checks one field line buf[start, end) (CRLF excluded). Returns undefined and fills `out`
 * when it is valid, else the reason, judged in this order: a CR in the line, a line starting
 * with whitespace (obs-fold), no colon, whitespace before the colon, a name that is not a
 * token, a CTL in the value.
 */
export function scanFieldLine(
  buf: Buffer,
  start: number,
  end: number,
  out: FieldLineBounds,
): string | undefined {
  let i = start;
  while (i < end && TCHAR[buf[i] as number] === 1) i++;
  if (i === start || i === end || buf[i] !== COLON) return classifyFieldLine(buf, start, end);
  out.nameEnd = i;
  i++;
  while (i < end && isOws(buf[i])) i++;
  let valueEnd = end;
  while (valueEnd > i && isOws(buf[valueEnd - 1])) valueEnd--;
  for (let j = i; j < valueEnd; j++) {
    if (FIELD_VALUE_BYTE[buf[j] as number] !== 1) return classifyFieldLine(buf, start, end);
  }
  out.valueStart = i;
  out.valueEnd = valueEnd;
  return undefined;
}

/** The reason a field line the fast scan refused is invalid, in the documented order. */
function classifyFieldLine(buf: Buffer, start: number, end: number): string {
  const cr = buf.indexOf(CR, start);
  if (cr >= 0 && cr < end) return "bare-cr";
  if (isOws(buf[start])) return "obs-fold";
  const colon = buf.indexOf(COLON, start);
  if (colon < 0 || colon >= end) return "bad-header-line";
  if (colon > start && isOws(buf[colon - 1])) return "space-before-colon";
  if (colon === start) return "bad-header-name";
  for (let i = start; i < colon; i++) if (TCHAR[buf[i] as number] !== 1) return "bad-header-name";
  return "bad-header-value";
}

// ---------------------------------------------------------------------------------------------
// Heads across chunk boundaries

const CRLFCRLF = Buffer.from("\r\n\r\n", "latin1");
const EMPTY = Buffer.alloc(0);

/**
 * Strings out of a head's bytes. Decoding costs a call into Node per string, so a head that
 * sits whole in one chunk is decoded once and its parts are sliced from that text.
 */
export class HeadText {
  private buf: Buffer = EMPTY;
  private text = "";
  private base = 0;

  /** Strings are to come from buf; `text` holds buf[base, base + text.length) already decoded. */
  use(buf: Buffer, text: string, base: number): void {
    this.buf = buf;
    this.text = text;
    this.base = base;
  }

  /** buf[start, end) as a string, one char per byte. */
  slice(start: number, end: number): string {
    const from = start - this.base;
    const to = end - this.base;
    return from >= 0 && to <= this.text.length ? this.text.slice(from, to) : latin1(this.buf, start, end);
  }
}

/** Receives the lines of a head as they complete. */
export interface HeadLineSink {
  /**
   * A complete line buf[start, end), CRLF excluded; `startLine` for a request or status line.
   * The bytes are only valid during the call; `text` gives them as strings.
   */
  line(buf: Buffer, start: number, end: number, startLine: boolean, text: HeadText): void;
}

export interface HeadReaderOptions {
  /** Most bytes of the head, final CRLF included (431 beyond). */
  readonly maxBytes: number;
  /** The first line is a request or status line (an empty one is invalid), not the end of the section. */
  readonly startLine: boolean;
  /** The reasons for a head over maxBytes (431) and for an LF without CR (400). */
  readonly tooLargeReason: string;
  readonly bareLfReason: string;
  /** Whether the sink takes strings from the lines: then a head in one chunk is decoded once. */
  readonly strings: boolean;
}

/**
 * Finds the lines of one head (a request or response head, or a trailer section) in bytes that
 * arrive in pieces. A head that sits in one chunk is read in place; the bytes of an unfinished
 * head are kept (at most maxBytes + 1 of them) until the rest arrives.
 */
export class HeadReader {
  private acc: Buffer | undefined;
  private accLen = 0;
  private lineStart = 0;
  private scanFrom = 0;
  private lines = 0;
  private readonly text = new HeadText();
  /** The bytes of the head that the last successful read() completed. */
  raw: Buffer = Buffer.alloc(0);

  constructor(private readonly options: HeadReaderOptions) {}

  /** Bytes of an unfinished head held so far. */
  get pending(): number {
    return this.accLen;
  }

  /** Whether any line of the current head has been seen (or bytes are held). */
  get started(): boolean {
    return this.accLen > 0 || this.lines > 0;
  }

  reset(): void {
    this.acc = undefined;
    this.accLen = 0;
    this.lineStart = 0;
    this.scanFrom = 0;
    this.lines = 0;
  }

  /**
   * Reads head bytes from chunk[offset..]. Returns the offset just after the head's final CRLF
   * (and sets `raw`) or -1 when every byte was taken and the head is not complete yet.
   */
  read(chunk: Buffer, offset: number, sink: HeadLineSink): number {
    const after =
      this.accLen === 0 ? this.readInPlace(chunk, offset, sink) : this.readHeld(chunk, offset, sink);
    // Idle connections should not keep their last chunk alive.
    this.text.use(EMPTY, "", 0);
    return after;
  }

  private tooLarge(): HttpHeadError {
    return new HttpHeadError(431, this.options.tooLargeReason);
  }

  private bareLf(): HttpHeadError {
    return new HttpHeadError(400, this.options.bareLfReason);
  }

  private readInPlace(chunk: Buffer, offset: number, sink: HeadLineSink): number {
    if (this.options.strings) this.decodeWholeHead(chunk, offset);
    else this.text.use(chunk, "", 0);
    let lineStart = offset;
    for (;;) {
      const lf = chunk.indexOf(LF, lineStart);
      if (lf < 0) break;
      if (lf - offset >= this.options.maxBytes) throw this.tooLarge();
      if (lf === lineStart || chunk[lf - 1] !== CR) throw this.bareLf();
      const contentEnd = lf - 1;
      if (contentEnd === lineStart && (this.lines > 0 || !this.options.startLine)) {
        this.raw = chunk.subarray(offset, lf + 1);
        this.lines = 0;
        return lf + 1;
      }
      sink.line(chunk, lineStart, contentEnd, this.options.startLine && this.lines === 0, this.text);
      this.lines++;
      lineStart = lf + 1;
    }
    const received = chunk.length - offset;
    if (received > this.options.maxBytes) throw this.tooLarge();
    const acc = this.reserve(received);
    chunk.copy(acc, 0, offset);
    this.accLen = received;
    this.lineStart = lineStart - offset;
    this.scanFrom = received;
    return -1;
  }

  private readHeld(chunk: Buffer, offset: number, sink: HeadLineSink): number {
    const held = this.accLen;
    // More than maxBytes + 1 bytes are never needed to find the end or to know it is missing.
    const take = Math.min(chunk.length - offset, this.options.maxBytes + 1 - held);
    const acc = this.reserve(held + take);
    chunk.copy(acc, held, offset, offset + take);
    const end = held + take;
    this.accLen = end;
    const view = acc.subarray(0, end);
    this.text.use(view, "", 0);
    let lineStart = this.lineStart;
    let from = this.scanFrom;
    for (;;) {
      const lf = view.indexOf(LF, from);
      if (lf < 0) break;
      from = lf + 1;
      if (lf >= this.options.maxBytes) throw this.tooLarge();
      if (lf === lineStart || view[lf - 1] !== CR) throw this.bareLf();
      const contentEnd = lf - 1;
      if (contentEnd === lineStart && (this.lines > 0 || !this.options.startLine)) {
        this.raw = view.subarray(0, lf + 1);
        // The held buffer now belongs to `raw`; the next head gets a new one.
        this.acc = undefined;
        this.accLen = 0;
        this.lines = 0;
        return offset + (lf + 1 - held);
      }
      sink.line(view, lineStart, contentEnd, this.options.startLine && this.lines === 0, this.text);
      this.lines++;
      lineStart = lf + 1;
    }
    if (end > this.options.maxBytes) throw this.tooLarge();
    this.lineStart = lineStart;
    this.scanFrom = end;
    return -1;
  }

  /**
   * Decodes chunk from offset through the first CRLFCRLF when it lies within the limit: that
   * is the whole head unless the head is malformed, which HeadText.slice copes with.
   */
  private decodeWholeHead(chunk: Buffer, offset: number): void {
    const searchEnd = offset + this.options.maxBytes;
    const region = chunk.length > searchEnd ? chunk.subarray(0, searchEnd) : chunk;
    const found = region.indexOf(CRLFCRLF, offset);
    this.text.use(chunk, found < 0 ? "" : latin1(chunk, offset, found + 4), offset);
  }

  /** The held buffer with room for `needed` bytes, its contents kept. */
  private reserve(needed: number): Buffer {
    const acc = this.acc;
    if (acc && acc.length >= needed) return acc;
    const size = Math.min(this.options.maxBytes + 1, Math.max(needed, 512, (acc?.length ?? 0) * 2));
    const grown = Buffer.allocUnsafe(size);
    if (acc) acc.copy(grown, 0, 0, this.accLen);
    this.acc = grown;
    return grown;
  }
}

// ---------------------------------------------------------------------------------------------
// Header values with framing meaning (shared with the ResponseFramer)

/** The elements of comma-separated list values, trimmed of OWS; empty elements kept as "". */
function listElements(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const value of values) {
    for (const part of value.split(",")) out.push(trimOws(part));
  }
  return out;
}

function trimOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isOws(s.charCodeAt(start))) start++;
  while (end > start && isOws(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/** Whether `s` is a non-empty RFC 9110 token. */
export function isTokenString(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] !== 1) return false;
  }
  return true;
}

function isDigitString(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isDigit(s.charCodeAt(i))) return false;
  return true;
}

/**
 * The length the Content-Length values state, or the reason they are refused: an element that
 * is not 1*DIGIT or exceeds 2^53-1 ("bad-content-length"), elements that are not all the same
 * string ("multiple-content-length").
 */
export function contentLengthOf(values: readonly string[]): number | string {
  const only = values.length === 1 ? (values[0] as string) : undefined;
  if (only !== undefined && only.length <= 15 && isDigitString(only)) return Number(only);
  const elements = listElements(values);
  for (const element of elements) {
    if (!isDigitString(element) || Number(element) > Number.MAX_SAFE_INTEGER) return "bad-content-length";
  }
  const first = elements[0] as string;
  for (const element of elements) if (element !== first) return "multiple-content-length";
  return Number(first);
}

/** Transfer codings whose bodies a proxy can pass through: chunked framing over any of these. */
const KNOWN_CODINGS: ReadonlySet<string> = new Set([
  "chunked",
  "gzip",
  "x-gzip",
  "deflate",
  "compress",
  "x-compress",
]);

/** The lower-cased codings of Transfer-Encoding values, or "bad-transfer-encoding" when an element is empty or not a token. */
export function transferCodingsOf(values: readonly string[]): string[] | "bad-transfer-encoding" {
  const only = values.length === 1 ? (values[0] as string) : undefined;
  if (only !== undefined && only.length === 7 && only.toLowerCase() === "chunked") return ["chunked"];
  const codings = listElements(values);
  for (let i = 0; i < codings.length; i++) {
    const coding = codings[i] as string;
    if (!isTokenString(coding)) return "bad-transfer-encoding";
    codings[i] = coding.toLowerCase();
  }
  return codings;
}

/**
 * Why a request's Transfer-Encoding is refused, or undefined when its final coding is chunked,
 * chunked appears once and every coding is known.
 */
function requestCodingProblem(codings: readonly string[]): HttpHeadError | undefined {
  if (codings[codings.length - 1] !== "chunked") return new HttpHeadError(400, "te-not-chunked");
  if (codings.indexOf("chunked") !== codings.length - 1) return new HttpHeadError(400, "te-chunked-twice");
  for (const coding of codings)
    if (!KNOWN_CODINGS.has(coding)) return new HttpHeadError(501, "unknown-coding");
  return undefined;
}

/** The lower-cased tokens of Connection values (empty elements dropped). */
function connectionTokensOf(values: readonly string[]): string[] {
  const only = values.length === 1 ? (values[0] as string) : undefined;
  // One value without a comma (values come trimmed of OWS) is the common case.
  if (only !== undefined && !only.includes(",")) return only.length === 0 ? [] : [only.toLowerCase()];
  const out: string[] = [];
  for (const element of listElements(values)) if (element.length > 0) out.push(element.toLowerCase());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Request-targets and authorities (RFC 9112 §3.2, RFC 3986)

enum TargetForm {
  Origin,
  Absolute,
  Authority,
  Asterisk,
}

/** Index just after a pct-encoded triplet at i in s, or -1. */
function pctEnd(s: string, i: number): number {
  return hexValue(s.charCodeAt(i + 1)) >= 0 && hexValue(s.charCodeAt(i + 2)) >= 0 ? i + 3 : -1;
}

/**
 * Whether s[start, end) is a path and optional query over PATH_CHAR and pct-encoding (no
 * fragment). Callers start it at "/" or "?" (or give it nothing), as path-abempty needs.
 */
function isPathAndQuery(s: string, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const c = s.charCodeAt(i);
    // "?" starts the query, whose characters are the path's plus "?" itself.
    if ((c < 0x80 && PATH_CHAR[c] === 1) || c === 0x3f) i++;
    else if (c === 0x25) {
      i = pctEnd(s, i);
      if (i < 0 || i > end) return false;
    } else return false;
  }
  return true;
}

/** Whether s[start, end) is uri-host [":" port] (port 1 to 5 digits, required when requirePort). */
function isAuthority(s: string, start: number, end: number, requirePort: boolean): boolean {
  let i = start;
  if (s.charCodeAt(i) === 0x5b) {
    i++;
    while (i < end && s.charCodeAt(i) < 0x80 && IP_LITERAL_CHAR[s.charCodeAt(i)] === 1) i++;
    if (i === start + 1 || i >= end || s.charCodeAt(i) !== 0x5d) return false;
    i++;
  } else {
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 0x80 && REG_NAME_CHAR[c] === 1) i++;
      else if (c === 0x25) {
        i = pctEnd(s, i);
        if (i < 0 || i > end) return false;
      } else break;
    }
    if (i === start) return false;
  }
  if (i === end) return !requirePort;
  if (s.charCodeAt(i) !== COLON) return false;
  const digits = end - i - 1;
  if (digits < 1 || digits > 5) return false;
  for (let j = i + 1; j < end; j++) if (!isDigit(s.charCodeAt(j))) return false;
  return true;
}

/** Length of an "http://" or "https://" prefix (any case), else 0. */
function httpSchemeLength(s: string): number {
  if (s.length < 7) return 0;
  if ((s.charCodeAt(0) | 0x20) !== 0x68 || (s.charCodeAt(1) | 0x20) !== 0x74) return 0;
  if ((s.charCodeAt(2) | 0x20) !== 0x74 || (s.charCodeAt(3) | 0x20) !== 0x70) return 0;
  let i = 4;
  if ((s.charCodeAt(i) | 0x20) === 0x73) i++;
  return s.startsWith("://", i) ? i + 3 : 0;
}

// ---------------------------------------------------------------------------------------------
// Request heads

const VERSION_PREFIX = bytesOf("HTTP/");

/** Collects the lines of one request head and judges the whole head at its end. */
class RequestHeadBuilder implements HeadLineSink {
  private method = "";
  private target = "";
  private version: "1.0" | "1.1" = "1.1";
  private form = TargetForm.Origin;
  private targetAuthority: string | undefined;
  private path = "";
  private headers: Array<readonly [string, string]> = [];
  private hostCount = 0;
  private host: string | undefined;
  private contentLengths: string[] | undefined;
  private transferEncodings: string[] | undefined;
  private connections: string[] | undefined;
  private upgradeHeader = false;
  private expectContinue = false;
  private readonly bounds: FieldLineBounds = { nameEnd: 0, valueStart: 0, valueEnd: 0 };

  constructor(private readonly maxHeaders: number) {}

  line(buf: Buffer, start: number, end: number, startLine: boolean, text: HeadText): void {
    if (startLine) this.requestLine(buf, start, end, text);
    else this.fieldLine(buf, start, end, text);
  }

  private requestLine(buf: Buffer, start: number, end: number, text: HeadText): void {
    const sp1 = buf.indexOf(SP, start);
    const sp2 = sp1 < 0 || sp1 >= end ? -1 : buf.indexOf(SP, sp1 + 1);
    if (sp2 < 0 || sp2 >= end || sp1 === start || sp2 === sp1 + 1 || sp2 === end - 1) {
      throw requestLineError(buf, start, end);
    }
    const sp3 = buf.indexOf(SP, sp2 + 1);
    if (sp3 >= 0 && sp3 < end) throw requestLineError(buf, start, end);
    for (let i = start; i < sp1; i++) {
      if (TCHAR[buf[i] as number] !== 1) throw requestLineError(buf, start, end);
    }
    const v = sp2 + 1;
    if (end - v !== 8 || !equalsBytes(buf, v, VERSION_PREFIX) || buf[v + 5] !== 0x31 || buf[v + 6] !== 0x2e) {
      throw requestLineError(buf, start, end);
    }
    const minor = buf[v + 7];
    if (minor !== 0x31 && minor !== 0x30) throw requestLineError(buf, start, end);
    this.version = minor === 0x31 ? "1.1" : "1.0";
    this.method = text.slice(start, sp1);
    this.target = text.slice(sp1 + 1, sp2);
    if (!this.classifyTarget()) throw requestLineError(buf, start, end);
  }

  /** Sets the target's form (and authority); false when the target is not valid for the method. */
  private classifyTarget(): boolean {
    const target = this.target;
    const first = target.charCodeAt(0);
    if (this.method === "CONNECT") {
      this.form = TargetForm.Authority;
      this.targetAuthority = target;
      this.path = "";
      return isAuthority(target, 0, target.length, true);
    }
    if (first === 0x2f) {
      this.form = TargetForm.Origin;
      this.targetAuthority = undefined;
      this.path = target;
      return isPathAndQuery(target, 0, target.length);
    }
    if (target === "*") {
      this.form = TargetForm.Asterisk;
      this.targetAuthority = undefined;
      this.path = target;
      return this.method === "OPTIONS";
    }
    const schemeEnd = httpSchemeLength(target);
    if (schemeEnd === 0) return false;
    let authorityEnd = schemeEnd;
    while (authorityEnd < target.length) {
      const c = target.charCodeAt(authorityEnd);
      if (c === 0x2f || c === 0x3f) break;
      authorityEnd++;
    }
    this.form = TargetForm.Absolute;
    this.targetAuthority = target.slice(schemeEnd, authorityEnd);
    // The origin-form the target converts to (RFC 9112 §3.2.1: an empty path becomes "/").
    const pathAndQuery = target.slice(authorityEnd);
    this.path = pathAndQuery.charCodeAt(0) === 0x2f ? pathAndQuery : `/${pathAndQuery}`;
    return (
      isAuthority(target, schemeEnd, authorityEnd, false) &&
      isPathAndQuery(target, authorityEnd, target.length)
    );
  }

  private fieldLine(buf: Buffer, start: number, end: number, text: HeadText): void {
    if (this.headers.length >= this.maxHeaders) throw new HttpHeadError(431, "too-many-headers");
    const b = this.bounds;
    const problem = scanFieldLine(buf, start, end, b);
    if (problem !== undefined) throw new HttpHeadError(400, problem);
    const name = text.slice(start, b.nameEnd);
    const value = text.slice(b.valueStart, b.valueEnd);
    this.headers.push([name, value]);
    switch (b.nameEnd - start) {
      case 4:
        if (equalsLowerToken(buf, start, NAME_HOST)) {
          this.hostCount++;
          this.host ??= value;
        }
        break;
      case 6:
        if (equalsLowerToken(buf, start, NAME_EXPECT) && value.toLowerCase() === "100-continue") {
          this.expectContinue = true;
        }
        break;
      case 7:
        if (equalsLowerToken(buf, start, NAME_UPGRADE) && value.length > 0) this.upgradeHeader = true;
        break;
      case 10:
        if (equalsLowerToken(buf, start, NAME_CONNECTION)) {
          this.connections = appended(this.connections, value);
        }
        break;
      case 14:
        if (equalsLowerToken(buf, start, NAME_CONTENT_LENGTH)) {
          this.contentLengths = appended(this.contentLengths, value);
        }
        break;
      case 17:
        if (equalsLowerToken(buf, start, NAME_TRANSFER_ENCODING)) {
          this.transferEncodings = appended(this.transferEncodings, value);
        }
        break;
    }
  }

  /** Judges the complete head (in this order: Host, framing, CONNECT) and returns it; resets the builder. */
  finish(raw: Buffer): RequestHead {
    try {
      return this.judge(raw);
    } finally {
      this.reset();
    }
  }

  private judge(raw: Buffer): RequestHead {
    const { version, host, contentLengths, transferEncodings } = this;
    if (this.hostCount > 1) throw new HttpHeadError(400, "duplicate-host");
    if (host === undefined) {
      if (version === "1.1") throw new HttpHeadError(400, "missing-host");
    } else {
      if (!isAuthority(host, 0, host.length, false)) throw new HttpHeadError(400, "bad-host");
    }
    if (contentLengths && transferEncodings) throw new HttpHeadError(400, "conflicting-length");
    let chunked = false;
    if (transferEncodings) {
      if (version === "1.0") throw new HttpHeadError(400, "te-in-http10");
      const codings = transferCodingsOf(transferEncodings);
      if (typeof codings === "string") throw new HttpHeadError(400, codings);
      const problem = requestCodingProblem(codings);
      if (problem) throw problem;
      chunked = true;
    }
    let contentLength: number | undefined;
    if (contentLengths) {
      const length = contentLengthOf(contentLengths);
      if (typeof length === "string") throw new HttpHeadError(400, length);
      contentLength = length;
    }
    if (this.form === TargetForm.Authority && (chunked || (contentLength ?? 0) > 0)) {
      throw new HttpHeadError(400, "connect-with-body");
    }
    let close = false;
    let keepAliveToken = false;
    let upgradeToken = false;
    if (this.connections) {
      for (const token of connectionTokensOf(this.connections)) {
        if (token === "close") close = true;
        else if (token === "keep-alive") keepAliveToken = true;
        else if (token === "upgrade") upgradeToken = true;
      }
    }
    return {
      method: this.method,
      target: this.target,
      path: this.path,
      version,
      headers: this.headers,
      host,
      authority: this.targetAuthority ?? host,
      contentLength,
      chunked,
      keepAlive: !close && (version === "1.1" || keepAliveToken),
      upgrade: version === "1.1" && upgradeToken && this.upgradeHeader,
      expectContinue: this.expectContinue,
      raw,
    };
  }

  reset(): void {
    this.headers = [];
    this.hostCount = 0;
    this.host = undefined;
    this.contentLengths = undefined;
    this.transferEncodings = undefined;
    this.connections = undefined;
    this.upgradeHeader = false;
    this.expectContinue = false;
    this.targetAuthority = undefined;
  }
}

/** `list` with `value` pushed, created when absent. */
export function appended(list: string[] | undefined, value: string): string[] {
  if (!list) return [value];
  list.push(value);
  return list;
}

function equalsBytes(buf: Buffer, start: number, bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (buf[start + i] !== bytes[i]) return false;
  return true;
}

/**
 * Why a request line the fast path refused is invalid, in order: a CR, not exactly three parts
 * separated by single spaces, a method that is not a token, a version that is not HTTP/1.0 or
 * HTTP/1.1 (505 for a well-formed other version), a target invalid for the method.
 */
function requestLineError(buf: Buffer, start: number, end: number): HttpHeadError {
  const line = latin1(buf, start, end);
  if (line.includes("\r")) return new HttpHeadError(400, "bare-cr");
  const parts = line.split(" ");
  if (parts.length !== 3 || parts.some((p) => p.length === 0)) {
    return new HttpHeadError(400, "bad-request-line");
  }
  const [method, , version] = parts as [string, string, string];
  if (!isTokenString(method)) return new HttpHeadError(400, "bad-method");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    const wellFormed =
      version.length === 8 &&
      version.startsWith("HTTP/") &&
      isDigit(version.charCodeAt(5)) &&
      version[6] === "." &&
      isDigit(version.charCodeAt(7));
    return wellFormed ? new HttpHeadError(505, "unsupported-version") : new HttpHeadError(400, "bad-version");
  }
  return new HttpHeadError(400, "bad-target");
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies (RFC 9112 §7.1)

enum ChunkPhase {
  SizeLine,
  Data,
  DataCr,
  DataLf,
  Trailers,
  Done,
}

/** Accepts trailer field lines; anything else is "bad-trailer". */
const TRAILER_SINK: HeadLineSink & { bounds: FieldLineBounds } = {
  bounds: { nameEnd: 0, valueStart: 0, valueEnd: 0 },
  line(buf, start, end) {
    if (scanFieldLine(buf, start, end, this.bounds) !== undefined) {
      throw new HttpHeadError(400, "bad-trailer");
    }
  },
};

/**
 * Walks a chunked body as it streams by, without copying chunk data: only chunk-size lines
 * (bounded) and trailer lines are held when they straddle chunks. Errors: "bad-chunk" (size
 * line, extensions, the CRLF after data), "bad-trailer", 431 "trailers-too-large".
 */
export class ChunkedBodyScanner {
  private phase = ChunkPhase.SizeLine;
  private remaining = 0;
  /** A chunk-size line that straddles chunks, allocated when one first does. */
  private line: Buffer | undefined;
  private lineLen = 0;
  private readonly maxLineBytes: number;
  private readonly trailers: HeadReader;

  /**
   * @param maxExtBytes most bytes of extensions on a chunk-size line
   * @param maxTrailerBytes most bytes of the trailer section, final CRLF included
   */
  constructor(
    private readonly maxExtBytes: number,
    maxTrailerBytes: number,
  ) {
    this.maxLineBytes = chunkLineLimit(maxExtBytes);
    this.trailers = new HeadReader({
      maxBytes: maxTrailerBytes,
      startLine: false,
      tooLargeReason: "trailers-too-large",
      bareLfReason: "bad-trailer",
      strings: false,
    });
  }

  get done(): boolean {
    return this.phase === ChunkPhase.Done;
  }

  reset(): void {
    this.phase = ChunkPhase.SizeLine;
    this.remaining = 0;
    this.lineLen = 0;
    this.trailers.reset();
  }

  /** Consumes bytes from buf[pos..]; returns the offset after the last byte that belongs to the body. */
  scan(buf: Buffer, pos: number): number {
    const end = buf.length;
    while (pos < end) {
      switch (this.phase) {
        case ChunkPhase.SizeLine:
          pos = this.sizeLine(buf, pos);
          break;
        case ChunkPhase.Data: {
          const n = Math.min(this.remaining, end - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.phase = ChunkPhase.DataCr;
          break;
        }
        case ChunkPhase.DataCr:
          if (buf[pos] !== CR) throw new HttpHeadError(400, "bad-chunk", "chunk data not followed by CRLF");
          pos++;
          this.phase = ChunkPhase.DataLf;
          break;
        case ChunkPhase.DataLf:
          if (buf[pos] !== LF) throw new HttpHeadError(400, "bad-chunk", "chunk data not followed by CRLF");
          pos++;
          this.phase = ChunkPhase.SizeLine;
          break;
        case ChunkPhase.Trailers: {
          const after = this.trailers.read(buf, pos, TRAILER_SINK);
          if (after < 0) return end;
          this.phase = ChunkPhase.Done;
          return after;
        }
        case ChunkPhase.Done:
          return pos;
      }
    }
    return pos;
  }

  private sizeLine(buf: Buffer, pos: number): number {
    const lf = buf.indexOf(LF, pos);
    const stop = lf < 0 ? buf.length : lf;
    if (this.lineLen + (stop - pos) > this.maxLineBytes) {
      throw new HttpHeadError(400, "bad-chunk", "chunk-size line too long");
    }
    if (lf < 0) {
      this.line ??= Buffer.allocUnsafe(this.maxLineBytes);
      buf.copy(this.line, this.lineLen, pos);
      this.lineLen += stop - pos;
      return stop;
    }
    let size: number;
    if (this.lineLen === 0) size = chunkSize(buf, pos, lf, this.maxExtBytes);
    else {
      const line = this.line as Buffer;
      buf.copy(line, this.lineLen, pos, lf);
      size = chunkSize(line, 0, this.lineLen + (lf - pos), this.maxExtBytes);
      this.lineLen = 0;
    }
    if (size < 0) throw new HttpHeadError(400, "bad-chunk", "invalid chunk-size line");
    if (size === 0) this.phase = ChunkPhase.Trailers;
    else {
      this.remaining = size;
      this.phase = ChunkPhase.Data;
    }
    return lf + 1;
  }
}

/** Most bytes a chunk-size line may hold before its LF: 16 size digits, the extensions, the CR. */
export function chunkLineLimit(maxExtBytes: number): number {
  return MAX_CHUNK_SIZE_DIGITS + maxExtBytes + 1;
}

/** The size of the chunk-size line buf[start, lf) (CR expected at lf - 1), or -1 when the line is invalid. */
function chunkSize(buf: Buffer, start: number, lf: number, maxExtBytes: number): number {
  const end = lf - 1;
  if (end < start || buf[end] !== CR) return -1;
  let i = start;
  let size = 0;
  while (i < end) {
    const d = hexValue(buf[i] as number);
    if (d < 0) break;
    size = size * 16 + d;
    i++;
  }
  const digits = i - start;
  if (digits === 0 || digits > MAX_CHUNK_SIZE_DIGITS || size > Number.MAX_SAFE_INTEGER) return -1;
  if (end - i > maxExtBytes) return -1;
  return i === end || chunkExtensionsValid(buf, i, end) ? size : -1;
}

/** chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), val = token / quoted-string. */
function chunkExtensionsValid(buf: Buffer, i: number, end: number): boolean {
  while (i < end) {
    while (i < end && isOws(buf[i])) i++;
    if (buf[i] !== 0x3b || i >= end) return false;
    i++;
    while (i < end && isOws(buf[i])) i++;
    const nameStart = i;
    while (i < end && TCHAR[buf[i] as number] === 1) i++;
    if (i === nameStart) return false;
    let j = i;
    while (j < end && isOws(buf[j])) j++;
    if (j < end && buf[j] === 0x3d) {
      j++;
      while (j < end && isOws(buf[j])) j++;
      i = j < end && buf[j] === 0x22 ? quotedStringEnd(buf, j, end) : tokenEnd(buf, j, end);
      if (i < 0) return false;
    }
  }
  return true;
}

function tokenEnd(buf: Buffer, i: number, end: number): number {
  const start = i;
  while (i < end && TCHAR[buf[i] as number] === 1) i++;
  return i === start ? -1 : i;
}

/** Index after the quoted-string starting at i (a DQUOTE), or -1. */
function quotedStringEnd(buf: Buffer, i: number, end: number): number {
  i++;
  while (i < end) {
    const c = buf[i] as number;
    if (c === 0x22) return i + 1;
    if (c === 0x5c) {
      const escaped = buf[i + 1];
      if (i + 1 >= end || escaped === undefined || FIELD_VALUE_BYTE[escaped] !== 1) return -1;
      i += 2;
    } else if (FIELD_VALUE_BYTE[c] === 1) i++;
    else return -1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// The parser

enum State {
  Head,
  LengthBody,
  ChunkedBody,
  Tunnel,
  Failed,
}

/**
 * Parses HTTP/1.1 requests from a byte stream: feed() each chunk as it arrives and act on the
 * events in order. See the module comment for the tunnel after CONNECT and upgrades.
 */
export class RequestParser {
  private state = State.Head;
  private readonly reader: HeadReader;
  private readonly builder: RequestHeadBuilder;
  private readonly chunks: ChunkedBodyScanner;
  private remaining = 0;
  private failure: HttpHeadError | undefined;

  constructor(limits?: Partial<ParserLimits>) {
    const merged = { ...DEFAULT_LIMITS, ...stripUndefined(limits) };
    for (const [name, value] of Object.entries(merged)) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`RequestParser: ${name} must be a positive integer, got ${String(value)}`);
      }
    }
    this.reader = new HeadReader({
      maxBytes: merged.maxHeadBytes,
      startLine: true,
      tooLargeReason: "head-too-large",
      bareLfReason: "bare-lf",
      strings: true,
    });
    this.builder = new RequestHeadBuilder(merged.maxHeaders);
    this.chunks = new ChunkedBodyScanner(merged.maxChunkExtBytes, merged.maxHeadBytes);
  }

  /**
   * Feeds bytes; returns the events they complete, in order. Throws HttpHeadError on malformed
   * input, carrying in `preceding` the events this call produced before the problem; after a
   * throw the parser is dead and every further feed throws.
   */
  feed(chunk: Buffer): ParseEvent[] {
    if (this.failure) {
      throw new HttpHeadError(
        this.failure.status,
        this.failure.reason,
        "the parser already refused this stream",
      );
    }
    const events: ParseEvent[] = [];
    try {
      this.run(chunk, events);
    } catch (err) {
      this.state = State.Failed;
      const failure =
        err instanceof HttpHeadError ? err : new HttpHeadError(400, "internal-error", (err as Error).message);
      failure.preceding = events;
      this.failure = failure;
      throw failure;
    }
    return events;
  }

  /** Bytes of a head received so far but not complete (for timeouts and limits). */
  get pendingHeadBytes(): number {
    return this.state === State.Head ? this.reader.pending : 0;
  }

  /** True between messages: no partial head or body outstanding (false in a tunnel and after a failure). */
  get idle(): boolean {
    return this.state === State.Head && !this.reader.started;
  }

  private run(chunk: Buffer, events: ParseEvent[]): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case State.Head: {
          const after = this.reader.read(chunk, pos, this.builder);
          if (after < 0) return;
          pos = after;
          this.startMessage(this.builder.finish(this.reader.raw), events);
          break;
        }
        case State.LengthBody: {
          const n = Math.min(this.remaining, end - pos);
          events.push({ kind: "body", data: chunk.subarray(pos, pos + n) });
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.endMessage(events);
          break;
        }
        case State.ChunkedBody: {
          const after = this.chunks.scan(chunk, pos);
          if (after > pos) events.push({ kind: "body", data: chunk.subarray(pos, after) });
          pos = after;
          if (this.chunks.done) this.endMessage(events);
          break;
        }
        case State.Tunnel:
          events.push({ kind: "body", data: chunk.subarray(pos) });
          return;
        case State.Failed:
          return;
      }
    }
  }

  private startMessage(head: RequestHead, events: ParseEvent[]): void {
    events.push({ kind: "head", head });
    if (head.upgrade || head.method === "CONNECT") this.state = State.Tunnel;
    else if (head.chunked) {
      this.chunks.reset();
      this.state = State.ChunkedBody;
    } else if (head.contentLength !== undefined && head.contentLength > 0) {
      this.remaining = head.contentLength;
      this.state = State.LengthBody;
    } else this.endMessage(events);
  }

  private endMessage(events: ParseEvent[]): void {
    events.push({ kind: "end" });
    this.state = State.Head;
  }
}

function stripUndefined(limits: Partial<ParserLimits> | undefined): Partial<ParserLimits> {
  const out: Partial<ParserLimits> = {};
  if (!limits) return out;
  for (const key of ["maxHeadBytes", "maxHeaders", "maxChunkExtBytes"] as const) {
    if (limits[key] !== undefined) out[key] = limits[key];
  }
  return out;
}
