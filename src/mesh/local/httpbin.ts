/**
 * The built-in stand-in for the `kennethreitz/httpbin` image: the endpoints the zero-trust lab and
 * its troubleshooting steps use, answering the way httpbin (Flask behind gunicorn) answers, so the
 * lab's manifests and expected outputs carry over unchanged.
 *
 * Faithful details that matter to the lab: request header names are shown in the Title-Case form
 * WSGI gives them (`X-Forwarded-Client-Cert`, `X-B3-Traceid`), repeated headers are joined with ","
 * like gunicorn does, JSON keys are sorted and non-ASCII is escaped like Flask's `jsonify`, and
 * `origin` is `X-Forwarded-For` when a proxy set it, the peer address otherwise. The headers httpbin
 * hides as "environment" (`X-Forwarded-For`, `X-Request-Id`, `Via`, ...) are hidden unless the
 * query has `show_env`; `X-Forwarded-Client-Cert`, which the sidecar adds, is always shown.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface HttpbinOptions {
  readonly host: string;
  readonly port: number;
  /** Picks among several `/status/a,b,c` codes; Math.random unless a test needs a fixed choice. */
  readonly random?: () => number;
  /** Requests with a larger body are refused with 413 (default 10 MiB). */
  readonly maxBodyBytes?: number;
}

export interface RunningHttpbin {
  readonly server: http.Server;
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** httpbin's `ENV_HEADERS`: set by proxies in front of it, hidden from /headers unless `show_env`. */
const ENVIRONMENT_HEADERS = new Set([
  "X-Varnish",
  "X-Request-Start",
  "X-Heroku-Queue-Depth",
  "X-Real-Ip",
  "X-Forwarded-Proto",
  "X-Forwarded-Protocol",
  "X-Forwarded-Ssl",
  "X-Heroku-Queue-Wait-Time",
  "X-Forwarded-For",
  "X-Heroku-Dynos-In-Use",
  "X-Forwarded-Port",
  "X-Request-Id",
  "Via",
  "Total-Route-Time",
  "Connect-Time",
]);

const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

const HTML = "text/html; charset=utf-8";

const TEAPOT = `
    -=[ teapot ]=-

       _...._
     .'  _ _ \`.
    | ."\` ^ \`". _,
    \\_;\`"---"\`|//
      |       ;/
      \\_     _/
        \`"""\`
`;

const LANDING_PAGE = `<!DOCTYPE html>
<html>
<head><title>httpbin (Tessera)</title></head>
<body>
<h1>httpbin: HTTP request and response service</h1>
<p>Tessera's built-in httpbin. Endpoints:</p>
<ul>
<li>/headers: the request's headers</li>
<li>/ip: the caller's address</li>
<li>/user-agent: the caller's User-Agent</li>
<li>/get, /post, /put, /patch, /delete: the request, for that method</li>
<li>/anything[/...]: the request, for any method</li>
<li>/status/:codes: the given status code (one of several, comma-separated, at random)</li>
<li>/redirect/:n, /relative-redirect/:n: n redirects, ending at /get</li>
</ul>
</body>
</html>
`;

/** A JSON value as httpbin's Python side builds it. */
export type PyJson = null | boolean | number | string | PyJson[] | { [key: string]: PyJson };

/**
 * Serializes like Python's `json.dumps(value, indent=2, sort_keys=True)` (Flask's jsonify): keys
 * sorted by code point at every level, non-ASCII escaped as \uXXXX, a final newline as httpbin
 * adds. JSON.stringify is not used because it moves integer-like keys first.
 */
export function pythonJson(value: PyJson): string {
  return `${dumps(value, "")}\n`;
}

function dumps(value: PyJson, indent: string): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "string") return asciiJsonString(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => inner + dumps(v, inner)).join(",\n")}\n${indent}]`;
  }
  const keys = Object.keys(value).sort(compareCodePoints);
  if (keys.length === 0) return "{}";
  const items = keys.map((k) => `${inner}${asciiJsonString(k)}: ${dumps(value[k] as PyJson, inner)}`);
  return `{\n${items.join(",\n")}\n${indent}}`;
}

function compareCodePoints(a: string, b: string): number {
  const left = [...a];
  const right = [...b];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const diff = (left[i]?.codePointAt(0) ?? 0) - (right[i]?.codePointAt(0) ?? 0);
    if (diff !== 0) return diff;
  }
  return left.length - right.length;
}

function asciiJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    const c = s[i] as string;
    if (c === '"') out += '\\"';
    else if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (c === "\b") out += "\\b";
    else if (c === "\f") out += "\\f";
    else if (unit < 0x20 || unit > 0x7e) out += `\\u${unit.toString(16).padStart(4, "0")}`;
    else out += c;
  }
  return `${out}"`;
}

/**
 * A header name as WSGI hands it to httpbin: `-` and `_` both become `-`, then Python's
 * `str.title()` capitalizes every letter that follows a non-letter and lowercases the rest
 * (`x-b3-traceid` → `X-B3-Traceid`).
 */
export function wsgiHeaderName(name: string): string {
  return name
    .replace(/_/g, "-")
    .toLowerCase()
    .replace(/(^|[^a-z])([a-z])/g, (_m, before: string, letter: string) => before + letter.toUpperCase());
}

/** Request headers in httpbin's form: Title-Case names, repeated values joined with ",". */
export function wsgiHeaders(rawHeaders: readonly string[]): Map<string, string> {
  const headers = new Map<string, string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = wsgiHeaderName(rawHeaders[i] as string);
    const value = rawHeaders[i + 1] as string;
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous},${value}`);
  }
  return headers;
}

/** A multi-valued form or query as httpbin shows it: one value as a string, several as a list. */
export function semiflatten(pairs: Iterable<readonly [string, string]>): { [key: string]: PyJson } {
  const grouped = new Map<string, string[]>();
  for (const [k, v] of pairs) {
    const list = grouped.get(k);
    if (list) list.push(v);
    else grouped.set(k, [v]);
  }
  const out: { [key: string]: PyJson } = {};
  for (const [k, list] of grouped) out[k] = list.length === 1 ? (list[0] as string) : list;
  return out;
}

/** `application/x-www-form-urlencoded` pairs ("+" is a space; bad escapes are kept as they are). */
export function parseUrlencoded(text: string): Array<[string, string]> {
  return [...new URLSearchParams(text)];
}

/** httpbin's `json_safe`: UTF-8 text as is, anything else as a base64 `data:` URL. */
export function jsonSafe(bytes: Buffer, contentType = "application/octet-stream"): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return `data:${contentType};base64,${bytes.toString("base64")}`;
  }
}

export interface MultipartPart {
  readonly name: string;
  readonly filename: string | undefined;
  readonly contentType: string | undefined;
  readonly body: Buffer;
}

/**
 * Splits a `multipart/form-data` body into its parts. Lenient like werkzeug: a part without a
 * usable Content-Disposition is skipped, a body without the closing delimiter ends where it ends;
 * never throws.
 */
export function parseMultipart(body: Buffer, boundary: string): MultipartPart[] {
  if (boundary === "") return [];
  const delimiter = Buffer.from(`--${boundary}`, "latin1");
  const parts: MultipartPart[] = [];
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    let start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString("latin1") === "--") break;
    start = skipLineEnd(body, start);
    const next = body.indexOf(delimiter, start);
    let end = next === -1 ? body.length : next;
    // The CRLF before a delimiter belongs to the delimiter, not to the part's body.
    if (next !== -1 && body[end - 1] === 0x0a) end -= body[end - 2] === 0x0d ? 2 : 1;
    const part = parsePart(body.subarray(start, Math.max(start, end)));
    if (part) parts.push(part);
    at = next;
  }
  return parts;
}

function skipLineEnd(body: Buffer, at: number): number {
  const lineEnd = body.indexOf("\n", at);
  return lineEnd === -1 ? body.length : lineEnd + 1;
}

function parsePart(raw: Buffer): MultipartPart | undefined {
  let headerEnd = raw.indexOf("\r\n\r\n");
  let bodyStart = headerEnd + 4;
  if (headerEnd === -1) {
    headerEnd = raw.indexOf("\n\n");
    bodyStart = headerEnd + 2;
  }
  if (headerEnd === -1) return undefined;
  const headers = new Map<string, string>();
  for (const line of raw.subarray(0, headerEnd).toString("utf8").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const disposition = headers.get("content-disposition");
  if (disposition === undefined) return undefined;
  const params = headerParameters(disposition);
  const name = params.get("name");
  if (name === undefined) return undefined;
  return {
    name,
    filename: params.get("filename"),
    contentType: headers.get("content-type"),
    body: raw.subarray(bodyStart),
  };
}

/** The `key=value` parameters after the first `;` of a header value (quoted or not). */
export function headerParameters(value: string): Map<string, string> {
  const params = new Map<string, string>();
  const pattern = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  for (const m of value.matchAll(pattern)) {
    const key = (m[1] as string).toLowerCase();
    const quoted = m[2];
    const plain = m[3];
    if (!params.has(key))
      params.set(key, quoted !== undefined ? quoted.replace(/\\(.)/g, "$1") : (plain ?? "").trim());
  }
  return params;
}

/** A response before CORS headers are added. */
interface Reply {
  readonly status: number;
  readonly body: string | Buffer;
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

function jsonReply(value: PyJson, status = 200): Reply {
  return { status, body: pythonJson(value), headers: [["Content-Type", "application/json"]] };
}

function htmlReply(status: number, body: string, extra: ReadonlyArray<readonly [string, string]> = []) {
  return { status, body, headers: [["Content-Type", HTML] as const, ...extra] };
}

const NOT_FOUND = htmlReply(
  404,
  `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<title>404 Not Found</title>
<h1>Not Found</h1>
<p>The requested URL was not found on the server.  If you entered the URL manually please check your spelling and try again.</p>
`,
);

function methodNotAllowed(allowed: readonly string[]): Reply {
  return htmlReply(
    405,
    `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<title>405 Method Not Allowed</title>
<h1>Method Not Allowed</h1>
<p>The method is not allowed for the requested URL.</p>
`,
    [["Allow", allowed.join(", ")]],
  );
}

const PAYLOAD_TOO_LARGE = htmlReply(
  413,
  `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<title>413 Request Entity Too Large</title>
<h1>Request Entity Too Large</h1>
<p>The data value transmitted exceeds the capacity limit.</p>
`,
);

const INTERNAL_ERROR = htmlReply(
  500,
  `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<title>500 Internal Server Error</title>
<h1>Internal Server Error</h1>
<p>The server encountered an internal error and was unable to complete your request.  Either the server is overloaded or there is an error in the application.</p>
`,
);

/** What a handler sees of one request. */
interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
  readonly peer: string;
  readonly localHost: string;
  readonly random: () => number;
}

type Handler = (exchange: Exchange, param: string) => Reply;

interface Route {
  readonly pattern: RegExp;
  /** The methods the route answers; "any" for /anything and /status, as the lab expects. */
  readonly methods: readonly string[] | "any";
  readonly handle: Handler;
}

const ECHO_KEYS = ["url", "args", "form", "data", "origin", "headers", "files", "json"] as const;

const ROUTES: readonly Route[] = [
  { pattern: /^\/$/, methods: ["GET"], handle: () => htmlReply(200, LANDING_PAGE) },
  { pattern: /^\/headers$/, methods: ["GET"], handle: (x) => jsonReply(requestDict(x, ["headers"])) },
  { pattern: /^\/ip$/, methods: ["GET"], handle: (x) => jsonReply({ origin: origin(x) }) },
  {
    pattern: /^\/user-agent$/,
    methods: ["GET"],
    handle: (x) => jsonReply({ "user-agent": x.headers.get("User-Agent") ?? null }),
  },
  {
    pattern: /^\/get$/,
    methods: ["GET"],
    handle: (x) => jsonReply(requestDict(x, ["url", "args", "headers", "origin"])),
  },
  ...(["POST", "PUT", "PATCH", "DELETE"] as const).map(
    (method): Route => ({
      pattern: new RegExp(`^/${method.toLowerCase()}$`),
      methods: [method],
      handle: (x) => jsonReply(requestDict(x, ECHO_KEYS)),
    }),
  ),
  {
    pattern: /^\/anything(?:\/.*)?$/s,
    methods: "any",
    handle: (x) => jsonReply(requestDict(x, [...ECHO_KEYS, "method"])),
  },
  { pattern: /^\/status\/([^/]+)$/, methods: "any", handle: (x, codes) => statusReply(codes, x.random) },
  { pattern: /^\/redirect\/([^/]+)$/, methods: ["GET"], handle: (_x, n) => redirectReply(n) },
  { pattern: /^\/relative-redirect\/([^/]+)$/, methods: ["GET"], handle: (_x, n) => redirectReply(n) },
];

function origin(x: Exchange): string {
  return x.headers.get("X-Forwarded-For") ?? x.peer;
}

function requestUrl(x: Exchange): string {
  const forwarded = x.headers.get("X-Forwarded-Proto") ?? x.headers.get("X-Forwarded-Protocol");
  const scheme = forwarded ?? (x.headers.get("X-Forwarded-Ssl") === "on" ? "https" : "http");
  const host = x.headers.get("Host") ?? x.localHost;
  return `${scheme}://${host}${x.path}${x.query === "" ? "" : `?${x.query}`}`;
}

type EchoKey = (typeof ECHO_KEYS)[number] | "method";

/** httpbin's `get_dict`: the parts of the request a route echoes. */
function requestDict(x: Exchange, keys: readonly EchoKey[]): { [key: string]: PyJson } {
  const contentType = x.headers.get("Content-Type") ?? "";
  const mimeType = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  let form: Array<[string, string]> = [];
  let files: { [key: string]: PyJson } = {};
  let data = x.body;
  // Werkzeug consumes form bodies into `form`/`files`, leaving `data` empty; anything else is data.
  if (mimeType === "application/x-www-form-urlencoded") {
    form = parseUrlencoded(x.body.toString("utf8"));
    data = Buffer.alloc(0);
  } else if (mimeType === "multipart/form-data") {
    const parts = parseMultipart(x.body, headerParameters(contentType).get("boundary") ?? "");
    form = parts.filter((p) => p.filename === undefined).map((p) => [p.name, jsonSafe(p.body)]);
    files = {};
    for (const p of parts) {
      if (p.filename !== undefined && !(p.name in files))
        files[p.name] = jsonSafe(p.body, p.contentType || "application/octet-stream");
    }
    data = Buffer.alloc(0);
  }
  const dataText = jsonSafe(data);
  const all: Record<EchoKey, () => PyJson> = {
    url: () => requestUrl(x),
    args: () => semiflatten(parseUrlencoded(x.query)),
    form: () => semiflatten(form),
    data: () => dataText,
    origin: () => origin(x),
    headers: () => shownHeaders(x),
    files: () => files,
    json: () => parseJsonOrNull(dataText),
    method: () => x.method,
  };
  const out: { [key: string]: PyJson } = {};
  for (const key of keys) out[key] = all[key]();
  return out;
}

function shownHeaders(x: Exchange): { [key: string]: PyJson } {
  const showEnvironment = parseUrlencoded(x.query).some(([k]) => k === "show_env");
  const out: { [key: string]: PyJson } = {};
  for (const [name, value] of x.headers) {
    if (showEnvironment || !ENVIRONMENT_HEADERS.has(name)) out[name] = value;
  }
  return out;
}

function parseJsonOrNull(text: string): PyJson {
  try {
    return JSON.parse(text) as PyJson;
  } catch {
    return null;
  }
}

const INTEGER = /^\s*[+-]?\d+\s*$/;

/**
 * Parses `/status/<codes>`: one code, or several comma-separated with optional `:weight`.
 * Undefined when any part is not a valid code (HTTP allows 100-999) or weight.
 */
export function parseStatusCodes(codes: string): Array<{ code: number; weight: number }> | undefined {
  const choices: Array<{ code: number; weight: number }> = [];
  // Like httpbin, a lone code is just a number: weights only come with a list.
  if (!codes.includes(",") && !INTEGER.test(codes)) return undefined;
  for (const choice of codes.split(",")) {
    const [codeText, weightText, ...rest] = choice.split(":");
    if (rest.length > 0 || codeText === undefined || !INTEGER.test(codeText)) return undefined;
    const code = Number(codeText);
    const weight = weightText === undefined ? 1 : Number(weightText.trim() === "" ? "x" : weightText);
    if (code < 100 || code > 999 || !Number.isFinite(weight) || weight < 0) return undefined;
    choices.push({ code, weight });
  }
  return choices;
}

/** httpbin's `weighted_choice`: a code picked with probability proportional to its weight. */
export function pickWeighted(
  choices: ReadonlyArray<{ code: number; weight: number }>,
  random: () => number,
): number | undefined {
  const total = choices.reduce((sum, c) => sum + c.weight, 0);
  if (total <= 0) return undefined;
  const x = random() * total;
  let cumulative = 0;
  for (const c of choices) {
    cumulative += c.weight;
    if (x < cumulative) return c.code;
  }
  // Rounding can leave x at the total; the last code with a weight is the one it belongs to.
  return [...choices].reverse().find((c) => c.weight > 0)?.code;
}

function statusReply(codes: string, random: () => number): Reply {
  const choices = parseStatusCodes(codes);
  const code = choices && (choices.length === 1 ? choices[0]?.code : pickWeighted(choices, random));
  if (code === undefined) return htmlReply(400, "Invalid status code");
  return replyForStatus(code);
}

/** httpbin's `status_code`: an empty body, except for the codes it decorates. */
function replyForStatus(code: number): Reply {
  switch (code) {
    case 301:
    case 302:
    case 303:
    case 305:
    case 307:
      return htmlReply(code, "", [["Location", "/redirect/1"]]);
    case 401:
      return htmlReply(code, "", [["WWW-Authenticate", 'Basic realm="Fake Realm"']]);
    case 402:
      return htmlReply(code, "Fuck you, pay me!", [["x-more-info", "http://vimeo.com/22053820"]]);
    case 406:
      return {
        status: code,
        body: '{"message": "Client did not request a supported media type.", "accept": ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]}',
        headers: [["Content-Type", "application/json"]],
      };
    case 407:
      return htmlReply(code, "", [["Proxy-Authenticate", 'Basic realm="Fake Realm"']]);
    case 418:
      return htmlReply(code, TEAPOT, [["x-more-info", "http://tools.ietf.org/html/rfc2324"]]);
    default:
      return htmlReply(code, "");
  }
}

/** `/redirect/n` and `/relative-redirect/n`: n relative 302s, the last one to /get. */
function redirectReply(n: string): Reply {
  if (!/^\d+$/.test(n) || Number(n) < 1) return NOT_FOUND;
  const location = Number(n) === 1 ? "/get" : `/relative-redirect/${Number(n) - 1}`;
  return htmlReply(
    302,
    `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<title>Redirecting...</title>
<h1>Redirecting...</h1>
<p>You should be redirected automatically to target URL: <a href="${location}">${location}</a>.  If not click the link.`,
    [["Location", location]],
  );
}

function allowedMethods(route: Route): string[] {
  if (route.methods === "any") return ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];
  const methods = new Set([...route.methods, "OPTIONS"]);
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods].sort();
}

function decodePath(rawPath: string): string {
  try {
    return decodeURIComponent(rawPath);
  } catch {
    return rawPath;
  }
}

/**
 * Answers one request the way httpbin's routing does: OPTIONS and HEAD are automatic, a known path
 * with the wrong method is 405, an unknown path 404.
 */
function dispatch(x: Exchange): Reply {
  const path = decodePath(x.path);
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    const allowed = allowedMethods(route);
    if (x.method === "OPTIONS") return htmlReply(200, "", [["Allow", allowed.join(", ")]]);
    if (!allowed.includes(x.method) && route.methods !== "any") return methodNotAllowed(allowed);
    return route.handle(x, match[1] ?? "");
  }
  return NOT_FOUND;
}

/** CORS headers httpbin adds to every response (its `set_cors_headers`). */
function corsHeaders(method: string, headers: Map<string, string>): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ["Access-Control-Allow-Origin", headers.get("Origin") ?? "*"],
    ["Access-Control-Allow-Credentials", "true"],
  ];
  if (method === "OPTIONS") {
    out.push(["Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, PATCH, OPTIONS"]);
    out.push(["Access-Control-Max-Age", "3600"]);
    const requested = headers.get("Access-Control-Request-Headers");
    if (requested !== undefined) out.push(["Access-Control-Allow-Headers", requested]);
  }
  return out;
}

function send(res: http.ServerResponse, reply: Reply, cors: ReadonlyArray<readonly [string, string]>) {
  const body = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
  const headers = [...reply.headers, ["Content-Length", String(body.length)], ...cors];
  res.writeHead(reply.status, headers.flat());
  res.end(body);
}

/** The path and query of a request target; an absolute-form target (sent to a proxy) included. */
export function splitTarget(target: string): { path: string; query: string } {
  const hash = target.indexOf("#");
  const withoutFragment = hash === -1 ? target : target.slice(0, hash);
  const pathAndQuery = withoutFragment.replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?]*/, "");
  const q = pathAndQuery.indexOf("?");
  if (q === -1) return { path: pathAndQuery || "/", query: "" };
  return { path: pathAndQuery.slice(0, q) || "/", query: pathAndQuery.slice(q + 1) };
}

function handleRequest(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  options: { random: () => number; maxBodyBytes: number },
) {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  const headers = wsgiHeaders(req.rawHeaders);
  const method = req.method ?? "GET";
  const cors = corsHeaders(method, headers);
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > options.maxBodyBytes) {
      if (!tooLarge) {
        tooLarge = true;
        res.setHeader("Connection", "close");
        send(res, PAYLOAD_TOO_LARGE, cors);
        req.resume();
      }
      return;
    }
    chunks.push(chunk);
  });
  req.on("error", () => res.destroy());
  req.on("end", () => {
    if (tooLarge) return;
    const { path, query } = splitTarget(req.url ?? "/");
    const socket = req.socket;
    const exchange: Exchange = {
      method,
      path,
      query,
      headers,
      body: Buffer.concat(chunks),
      peer: socket.remoteAddress ?? "",
      localHost: formatHostPort(socket.localAddress ?? "localhost", socket.localPort ?? 80),
      random: options.random,
    };
    let reply: Reply;
    try {
      reply = dispatch(exchange);
    } catch {
      reply = INTERNAL_ERROR;
    }
    send(res, reply, cors);
  });
}

function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Starts httpbin on host:port (port 0 picks a free one; `address` says which). */
export async function startHttpbin(options: HttpbinOptions): Promise<RunningHttpbin> {
  const settings = {
    random: options.random ?? Math.random,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
  };
  // httpbin (gunicorn) answers HTTP/1.1 requests without a Host header; node would refuse them.
  const server = http.createServer({ requireHostHeader: false }, (req, res) =>
    handleRequest(req, res, settings),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    address,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
