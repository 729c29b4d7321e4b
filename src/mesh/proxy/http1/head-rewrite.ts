/**
 * Writing HTTP/1.1 heads: the head a proxy forwards (the received bytes, with headers dropped
 * and added and the target optionally rewritten) and the small responses it makes itself.
 * Everything written here is checked first: a header value with CR or LF would let its source
 * inject headers or whole requests, so it is refused with a TypeError.
 */
import { STATUS_CODES } from "node:http";
import { FIELD_VALUE_BYTE, isTokenString, type RequestHead } from "./request-parser.js";

const CRLF = Buffer.from("\r\n", "latin1");

/** A field value Tessera writes: field-vchar/SP/HTAB only, and no whitespace at either end (it would be trimmed away). */
function isWritableValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || FIELD_VALUE_BYTE[c] !== 1) return false;
  }
  const isEdgeSpace = (c: number) => c === 0x20 || c === 0x09;
  return !isEdgeSpace(s.charCodeAt(0)) && !isEdgeSpace(s.charCodeAt(s.length - 1));
}

/** Serialized `name: value\r\n` lines, checked. */
function fieldLines(fields: ReadonlyArray<readonly [string, string]>): string {
  let out = "";
  for (const [name, value] of fields) {
    if (!isTokenString(name)) {
      throw new TypeError(`refusing to write header name ${JSON.stringify(name)}: not a token`);
    }
    if (!isWritableValue(value)) {
      throw new TypeError(
        `refusing to write header ${name}: its value has control, non-latin1 or edge whitespace characters`,
      );
    }
    out += `${name}: ${value}\r\n`;
  }
  return out;
}

/** A request-target Tessera writes: visible ASCII only. */
function checkTarget(target: string): void {
  if (target.length === 0 || !/^[\x21-\x7e]+$/.test(target)) {
    throw new TypeError(
      `refusing to write request-target ${JSON.stringify(target)}: empty or not visible ASCII`,
    );
  }
}

/** Lower-case ASCII, allocating only when there is an upper-case letter. */
function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}

/** `name: value\r\n` lines, checked once, for a caller that adds the same headers to many heads. */
export class HeaderLines {
  readonly bytes: Buffer;
  constructor(fields: ReadonlyArray<readonly [string, string]>) {
    this.bytes = Buffer.from(fieldLines(fields), "latin1");
  }
}

/**
 * The head to send upstream: `raw` with every header named in `drop` (lower-case names)
 * removed and `add` lines (or HeaderLines made before) inserted before the final CRLF, and the request-target replaced by
 * `target` when given (absolute-form to origin-form for a forward proxy). When nothing is
 * dropped and the target stays, the result is `raw` up to its last CRLF, the added lines and
 * CRLF, concatenated (or `raw` itself when nothing is added either).
 */
export function rewriteHead(
  head: RequestHead,
  drop: ReadonlySet<string>,
  add: ReadonlyArray<readonly [string, string]> | HeaderLines,
  target?: string,
): Buffer {
  const added =
    add instanceof HeaderLines
      ? add.bytes.length === 0
        ? undefined
        : add.bytes
      : add.length === 0
        ? undefined
        : Buffer.from(fieldLines(add), "latin1");
  if (target !== undefined) checkTarget(target);
  let dropping = false;
  if (drop.size > 0) {
    for (const [name] of head.headers) {
      if (drop.has(lowerAscii(name))) {
        dropping = true;
        break;
      }
    }
  }
  const raw = head.raw;
  if (!dropping && target === undefined) {
    if (!added) return raw;
    return Buffer.concat([raw.subarray(0, raw.length - 2), added, CRLF]);
  }
  const parts: Buffer[] = [];
  // Each header is one line of raw (obs-fold is refused), so line i + 1 is headers[i].
  let lineEnd = raw.indexOf(CRLF);
  parts.push(
    target === undefined
      ? raw.subarray(0, lineEnd + 2)
      : Buffer.from(`${head.method} ${target} HTTP/${head.version}\r\n`, "latin1"),
  );
  let keptFrom = lineEnd + 2;
  let pos = keptFrom;
  for (const [name] of head.headers) {
    lineEnd = raw.indexOf(CRLF, pos);
    if (drop.has(lowerAscii(name))) {
      if (pos > keptFrom) parts.push(raw.subarray(keptFrom, pos));
      keptFrom = lineEnd + 2;
    }
    pos = lineEnd + 2;
  }
  if (pos > keptFrom) parts.push(raw.subarray(keptFrom, pos));
  if (added) parts.push(added);
  parts.push(CRLF);
  return Buffer.concat(parts);
}

/** Lower-cased header lookup: the value of the first header with this lower-case name, else undefined. */
export function headerValue(head: RequestHead, lowerName: string): string | undefined {
  for (const [name, value] of head.headers) {
    if (name.length === lowerName.length && lowerAscii(name) === lowerName) return value;
  }
  return undefined;
}

let cachedDate = "";
let cachedDateSecond = -1;

/** The Date header value (IMF-fixdate), recomputed at most once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== cachedDateSecond) {
    cachedDateSecond = second;
    cachedDate = new Date(second * 1000).toUTCString();
  }
  return cachedDate;
}

/**
 * A complete HTTP/1.1 response to send locally (403 "RBAC: access denied", 400, 503, ...):
 * status line, content-type text/plain, content-length, date, server: tessera, `connection:
 * close` when asked, then `headers` and the UTF-8 body. Statuses 200 to 599 except 204 and 304,
 * which have no body.
 */
export function simpleResponse(
  status: number,
  body: string,
  options?: { close?: boolean; headers?: ReadonlyArray<readonly [string, string]> },
): Buffer {
  if (!Number.isInteger(status) || status < 200 || status > 599 || status === 204 || status === 304) {
    throw new RangeError(
      `simpleResponse: status ${status} is not a status with a body (200-599 but 204 and 304)`,
    );
  }
  const payload = Buffer.from(body, "utf8");
  let head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n` +
    "content-type: text/plain\r\n" +
    `content-length: ${payload.length}\r\n` +
    `date: ${httpDate()}\r\n` +
    "server: tessera\r\n";
  if (options?.close) head += "connection: close\r\n";
  if (options?.headers) head += fieldLines(options.headers);
  head += "\r\n";
  return Buffer.concat([Buffer.from(head, "latin1"), payload]);
}
