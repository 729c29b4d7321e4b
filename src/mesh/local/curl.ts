/**
 * The built-in stand-in for `curl`, used inside a local-mesh pod when the machine has no real curl
 * (the lab's `curlimages/curl` client runs `sleep` and is driven with `kubectl exec ... curl`).
 *
 * It behaves like curl 7.88.1 (the version Debian bookworm ships) for what the lab and its scripts
 * use: the same request bytes (header order, `User-Agent: curl/7.88.1`, custom header rules), the
 * same exit codes and the same `curl: (N) message` lines, `-w` variables, `-i`/`-v` output with
 * the response headers exactly as received, the progress meter, and proxies from the environment
 * the way curl reads them (`http_proxy` in lower case only, `no_proxy` with curl's matching rules).
 * Connection errors use 7.88's wording: `Failed to connect to HOST port PORT after N ms: Couldn't
 * connect to server`.
 *
 * HTTP/1.1 is spoken directly over the socket rather than through node:http: curl sends custom
 * header lines verbatim and shows response headers byte for byte, and its exit codes depend on
 * exactly where a response breaks off, which node's client hides.
 *
 * Not supported (an "is unknown" option or a clear error): URL globbing (brackets and braces are
 * sent as they are, as with `-g`), HTTP/2, cookies, uploads with -T/-F, `--compressed`, SOCKS and
 * HTTPS proxies, protocols other than http and https. Known small differences: `-G` does not
 * rewrite percent escapes the way curl's URL API does, no `Expect: 100-continue` for large
 * bodies, `-X HEAD` does not wait for a body that never comes, and the meter's "Current" speed is
 * the average.
 */

import dns from "node:dns";
import { createWriteStream, openSync, readFileSync } from "node:fs";
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import tls from "node:tls";
import { domainToASCII } from "node:url";

export const CURL_COMPATIBLE_VERSION = "7.88.1";
export const CURL_USER_AGENT = `curl/${CURL_COMPATIBLE_VERSION}`;

export interface CurlIo {
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** The environment proxies are read from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Where `-d @-` and friends read from (default: process.stdin). */
  readonly stdin?: Readable;
}

/** A failed transfer: curl's exit code and the text it prints after `curl: (N) `. */
export class CurlError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = "CurlError";
  }
}

/** A bad command line: curl prints these lines even with -s and exits 2. */
export class CurlUsageError extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join("\n"));
    this.name = "CurlUsageError";
  }
}

const TRY_HELP = "curl: try 'curl --help' or 'curl --manual' for more information";

function optionError(option: string, reason: string): CurlUsageError {
  return new CurlUsageError([`curl: option ${option}: ${reason}`, TRY_HELP]);
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

type DataKind = "ascii" | "raw" | "binary" | "urlencode" | "json";

export interface CurlOptions {
  readonly urls: string[];
  /** `-o` files, paired with the URLs in order ("-" is stdout). */
  readonly outputs: string[];
  silent: boolean;
  showError: boolean;
  verbose: boolean;
  include: boolean;
  head: boolean;
  get: boolean;
  fail: boolean;
  failWithBody: boolean;
  location: boolean;
  insecure: boolean;
  maxRedirs: number;
  writeOut: string | undefined;
  request: string | undefined;
  readonly headers: string[];
  /** The request body built from -d/--data-*\/--json, in curl's way of joining pieces. */
  data: Buffer | undefined;
  json: boolean;
  maxTimeMs: number | undefined;
  connectTimeoutMs: number | undefined;
  proxy: string | undefined;
  noproxy: string | undefined;
  proxyUser: string | undefined;
  user: string | undefined;
  userAgent: string | undefined;
  referer: string | undefined;
  cacert: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  family: 4 | 6 | undefined;
  /** `--resolve HOST:PORT:ADDR[,ADDR]` entries. */
  readonly resolve: Map<string, string[]>;
  help: boolean;
  version: boolean;
  /**
   * Warnings met while parsing, each with its line ending (or none, as curl prints some), already
   * left out when an earlier -s muted them.
   */
  readonly warnings: string[];
}

interface OptionSpec {
  readonly long: string;
  readonly short?: string;
  readonly takesValue: boolean;
}

const OPTIONS: readonly OptionSpec[] = [
  { long: "silent", short: "s", takesValue: false },
  { long: "show-error", short: "S", takesValue: false },
  { long: "verbose", short: "v", takesValue: false },
  { long: "include", short: "i", takesValue: false },
  { long: "head", short: "I", takesValue: false },
  { long: "get", short: "G", takesValue: false },
  { long: "fail", short: "f", takesValue: false },
  { long: "fail-with-body", takesValue: false },
  { long: "location", short: "L", takesValue: false },
  { long: "insecure", short: "k", takesValue: false },
  { long: "output", short: "o", takesValue: true },
  { long: "write-out", short: "w", takesValue: true },
  { long: "request", short: "X", takesValue: true },
  { long: "header", short: "H", takesValue: true },
  { long: "data", short: "d", takesValue: true },
  { long: "data-ascii", takesValue: true },
  { long: "data-raw", takesValue: true },
  { long: "data-binary", takesValue: true },
  { long: "data-urlencode", takesValue: true },
  { long: "json", takesValue: true },
  { long: "max-time", short: "m", takesValue: true },
  { long: "connect-timeout", takesValue: true },
  { long: "max-redirs", takesValue: true },
  { long: "proxy", short: "x", takesValue: true },
  { long: "proxy-user", short: "U", takesValue: true },
  { long: "noproxy", takesValue: true },
  { long: "user", short: "u", takesValue: true },
  { long: "user-agent", short: "A", takesValue: true },
  { long: "referer", short: "e", takesValue: true },
  { long: "cacert", takesValue: true },
  { long: "cert", short: "E", takesValue: true },
  { long: "key", takesValue: true },
  { long: "resolve", takesValue: true },
  { long: "url", takesValue: true },
  { long: "ipv4", short: "4", takesValue: false },
  { long: "ipv6", short: "6", takesValue: false },
  { long: "help", short: "h", takesValue: false },
  { long: "version", short: "V", takesValue: false },
  // Accepted and without effect here, as they are for a plain HTTP/1.1 transfer.
  { long: "disable", short: "q", takesValue: false },
  { long: "globoff", short: "g", takesValue: false },
  { long: "no-buffer", short: "N", takesValue: false },
  { long: "http1.1", takesValue: false },
];

const BY_LONG = new Map(OPTIONS.map((o) => [o.long, o]));
const BY_SHORT = new Map(OPTIONS.filter((o) => o.short).map((o) => [o.short as string, o]));

/** Reads `@file` arguments: a path, or "-" for standard input. */
export type ArgumentSource = (path: string) => Promise<Buffer>;

function emptyOptions(): CurlOptions {
  return {
    urls: [],
    outputs: [],
    silent: false,
    showError: false,
    verbose: false,
    include: false,
    head: false,
    get: false,
    fail: false,
    failWithBody: false,
    location: false,
    insecure: false,
    maxRedirs: 50,
    writeOut: undefined,
    request: undefined,
    headers: [],
    data: undefined,
    json: false,
    maxTimeMs: undefined,
    connectTimeoutMs: undefined,
    proxy: undefined,
    noproxy: undefined,
    proxyUser: undefined,
    user: undefined,
    userAgent: undefined,
    referer: undefined,
    cacert: undefined,
    cert: undefined,
    key: undefined,
    family: undefined,
    resolve: new Map(),
    help: false,
    version: false,
    warnings: [],
  };
}

/**
 * Parses a curl command line the way curl does: options anywhere, short options bundled (`-sSo
 * file`, `-w%{http_code}`), long options by full name with `--no-` to turn a switch off, `--` to
 * end options. Throws CurlUsageError with curl's own wording.
 */
export async function parseCurlArgs(
  argv: readonly string[],
  readSource: ArgumentSource,
): Promise<CurlOptions> {
  const options = emptyOptions();
  let optionsEnded = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (optionsEnded || !arg.startsWith("-") || arg === "-") {
      options.urls.push(arg);
      continue;
    }
    if (arg === "--") {
      optionsEnded = true;
      continue;
    }
    const nextValue = (shown: string): string => {
      const value = argv[i + 1];
      if (value === undefined) throw optionError(shown, "requires parameter");
      i++;
      return value;
    };
    if (arg.startsWith("--")) {
      const name = arg.slice(2);
      const spec = BY_LONG.get(name);
      if (spec) {
        await applyOption(options, spec, spec.takesValue ? nextValue(arg) : undefined, arg, true, readSource);
        continue;
      }
      const negated = name.startsWith("no-") ? BY_LONG.get(name.slice(3)) : undefined;
      if (negated && !negated.takesValue) {
        await applyOption(options, negated, undefined, arg, false, readSource);
        continue;
      }
      throw optionError(arg, "is unknown");
    }
    for (let j = 1; j < arg.length; j++) {
      const spec = BY_SHORT.get(arg[j] as string);
      if (!spec) throw optionError(arg, "is unknown");
      if (!spec.takesValue) {
        await applyOption(options, spec, undefined, arg, true, readSource);
        continue;
      }
      const attached = arg.slice(j + 1);
      const value = attached !== "" ? attached : nextValue(`-${spec.short}`);
      await applyOption(options, spec, value, `-${spec.short}`, true, readSource);
      break;
    }
  }
  return options;
}

/** curl's `str2udouble`: seconds as a non-negative decimal number. */
function parseSeconds(value: string, shown: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value.trim()))
    throw optionError(shown, "expected a proper numerical parameter");
  return Number(value.trim()) * 1000;
}

async function applyOption(
  options: CurlOptions,
  spec: OptionSpec,
  value: string | undefined,
  shown: string,
  enable: boolean,
  readSource: ArgumentSource,
): Promise<void> {
  const v = value ?? "";
  switch (spec.long) {
    case "silent":
      options.silent = enable;
      return;
    case "show-error":
      options.showError = enable;
      return;
    case "verbose":
      options.verbose = enable;
      return;
    case "include":
      options.include = enable;
      return;
    case "head":
      options.head = enable;
      return;
    case "get":
      options.get = enable;
      return;
    case "fail":
      options.fail = enable;
      return;
    case "fail-with-body":
      options.failWithBody = enable;
      return;
    case "location":
      options.location = enable;
      return;
    case "insecure":
      options.insecure = enable;
      return;
    case "output":
      options.outputs.push(v);
      return;
    case "write-out":
      if (!v.startsWith("@")) options.writeOut = v;
      else {
        // curl ends this one without a line break.
        const format = await readOrWarn(options, v.slice(1), readSource, `Failed to read ${v.slice(1)}`);
        options.writeOut = format?.toString();
      }
      return;
    case "request":
      options.request = v;
      return;
    case "header":
      if (v.startsWith("@")) {
        const file = await readOrWarn(options, v.slice(1), readSource, `Failed to open ${v.slice(1)}!\n`);
        const lines = file?.toString().split(/\r?\n/) ?? [];
        options.headers.push(...lines.filter((l) => l !== ""));
      } else {
        options.headers.push(v);
      }
      return;
    case "data":
    case "data-ascii":
      return appendData(options, "ascii", v, readSource);
    case "data-raw":
      return appendData(options, "raw", v, readSource);
    case "data-binary":
      return appendData(options, "binary", v, readSource);
    case "data-urlencode":
      return appendData(options, "urlencode", v, readSource);
    case "json":
      options.json = true;
      return appendData(options, "json", v, readSource);
    case "max-time":
      options.maxTimeMs = parseSeconds(v, shown) || undefined;
      return;
    case "connect-timeout":
      options.connectTimeoutMs = parseSeconds(v, shown) || undefined;
      return;
    case "max-redirs":
      if (!/^-?\d+$/.test(v.trim())) throw optionError(shown, "expected a proper numerical parameter");
      options.maxRedirs = Number(v.trim());
      return;
    case "proxy":
      options.proxy = v;
      return;
    case "proxy-user":
      options.proxyUser = v;
      return;
    case "noproxy":
      options.noproxy = v;
      return;
    case "user":
      options.user = v;
      return;
    case "user-agent":
      options.userAgent = v;
      return;
    case "referer":
      options.referer = v;
      return;
    case "cacert":
      options.cacert = v;
      return;
    case "cert":
      options.cert = v;
      return;
    case "key":
      options.key = v;
      return;
    case "resolve":
      addResolve(options, v, shown);
      return;
    case "url":
      options.urls.push(v);
      return;
    case "ipv4":
      options.family = enable ? 4 : undefined;
      return;
    case "ipv6":
      options.family = enable ? 6 : undefined;
      return;
    case "help":
      options.help = enable;
      return;
    case "version":
      options.version = enable;
      return;
    default:
      return;
  }
}

function addResolve(options: CurlOptions, value: string, shown: string): void {
  const entry = value.startsWith("+") ? value.slice(1) : value;
  if (entry.startsWith("-")) {
    options.resolve.delete(entry.slice(1).toLowerCase());
    return;
  }
  const m = /^(\[[^\]]*\]|[^:]*):(\d+):(.+)$/.exec(entry);
  if (!m) throw optionError(shown, "is badly used here");
  const host = (m[1] as string).replace(/^\[|\]$/g, "").toLowerCase();
  const addresses = (m[3] as string).split(",").map((a) => a.trim().replace(/^\[|\]$/g, ""));
  if (!addresses.every((a) => net.isIP(a) !== 0)) throw optionError(shown, "is badly used here");
  options.resolve.set(`${host}:${Number(m[2])}`, addresses);
}

/** An `@file` argument's content, or undefined and curl's warning when it cannot be read. */
async function readOrWarn(
  options: CurlOptions,
  path: string,
  readSource: ArgumentSource,
  warning: string,
): Promise<Buffer | undefined> {
  try {
    return await readSource(path);
  } catch {
    if (!options.silent) options.warnings.push(warning);
    return undefined;
  }
}

/** curl_easy_escape with %20 turned into "+", as --data-urlencode sends it. */
export function formUrlEncode(bytes: Buffer): string {
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

async function appendData(
  options: CurlOptions,
  kind: DataKind,
  value: string,
  readSource: ArgumentSource,
): Promise<void> {
  const piece = await dataPiece(options, kind, value, readSource);
  if (options.data === undefined) options.data = piece;
  else options.data = Buffer.concat([options.data, Buffer.from(kind === "json" ? "" : "&"), piece]);
}

async function readDataFile(options: CurlOptions, path: string, readSource: ArgumentSource): Promise<Buffer> {
  const warning = `Couldn't read data from file "${path}", this makes an empty POST.\n`;
  return (await readOrWarn(options, path, readSource, warning)) ?? Buffer.alloc(0);
}

async function dataPiece(
  options: CurlOptions,
  kind: DataKind,
  value: string,
  readSource: ArgumentSource,
): Promise<Buffer> {
  if (kind === "urlencode") {
    let separator = value.indexOf("=");
    if (separator === -1) separator = value.indexOf("@");
    const name = separator === -1 ? "" : value.slice(0, separator);
    const isFile = separator !== -1 && value[separator] === "@";
    const rest = separator === -1 ? value : value.slice(separator + 1);
    const content = isFile ? await readDataFile(options, rest, readSource) : Buffer.from(rest);
    const encoded = formUrlEncode(content);
    return Buffer.from(name.length > 0 ? `${name}=${encoded}` : encoded);
  }
  if (kind !== "raw" && value.startsWith("@")) {
    const content = await readDataFile(options, value.slice(1), readSource);
    // -d @file drops line breaks, as curl does for text posted from a file.
    return kind === "ascii" ? Buffer.from(content.filter((b) => b !== 0x0d && b !== 0x0a)) : content;
  }
  return Buffer.from(value);
}

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

export interface CurlUrl {
  readonly scheme: "http" | "https";
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** The host as written (IPv6 without brackets, zone kept for connecting). */
  readonly host: string;
  readonly port: number;
  /** The path, dot segments removed and non-ASCII percent-encoded. */
  readonly path: string;
  /** The query without its "?" ("" for a bare "?", undefined for none). */
  readonly query: string | undefined;
}

const BAD_URL = () => new CurlError(3, "URL using bad/illegal format or missing URL");

function defaultPort(scheme: "http" | "https"): number {
  return scheme === "https" ? 443 : 80;
}

/** True when the text holds a blank, a control character or DEL: never part of a URL or a method. */
function hasSpaceOrControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** RFC 3986 section 5.2.4, as curl applies it to every path. */
export function removeDotSegments(path: string): string {
  const input = path.split("/");
  const output: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const segment = input[i] as string;
    const last = i === input.length - 1;
    if (segment === ".") {
      if (last) output.push("");
    } else if (segment === "..") {
      if (output.length > 1) output.pop();
      if (last) output.push("");
    } else {
      output.push(segment);
    }
  }
  const joined = output.join("/");
  return joined.startsWith("/") ? joined : `/${joined}`;
}

function encodePathBytes(path: string): string {
  let out = "";
  for (const ch of path) {
    if (ch.charCodeAt(0) < 0x80) out += ch;
    else for (const b of Buffer.from(ch)) out += `%${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/**
 * Parses a URL the way curl reads one: a missing scheme means http, only http and https are
 * spoken, whitespace and control characters are refused, the fragment is dropped, dot segments are
 * removed and non-ASCII in the path is percent-encoded.
 */
export function parseCurlUrl(input: string): CurlUrl {
  if (input === "" || hasSpaceOrControl(input)) throw BAD_URL();
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(input);
  const schemeText = schemeMatch ? (schemeMatch[1] as string) : "http";
  const rest = schemeMatch ? input.slice(schemeMatch[0].length) : input;
  const scheme = schemeText.toLowerCase();
  if (scheme !== "http" && scheme !== "https")
    throw new CurlError(1, `Protocol "${schemeText}" not supported or disabled in libcurl`);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  let remainder = authorityEnd === -1 ? "" : rest.slice(authorityEnd);
  const hash = remainder.indexOf("#");
  if (hash !== -1) remainder = remainder.slice(0, hash);
  const at = authority.lastIndexOf("@");
  const userinfo = at === -1 ? undefined : authority.slice(0, at);
  const hostPort = at === -1 ? authority : authority.slice(at + 1);
  let host: string;
  let portText: string | undefined;
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]");
    if (close === -1) throw BAD_URL();
    host = hostPort.slice(1, close);
    const after = hostPort.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw BAD_URL();
    portText = after === "" ? undefined : after.slice(1);
    const zone = host.indexOf("%25");
    const address = zone === -1 ? host : host.slice(0, zone);
    if (!net.isIPv6(address)) throw BAD_URL();
    if (zone !== -1) host = `${address}%${host.slice(zone + 3)}`;
  } else {
    const colon = hostPort.lastIndexOf(":");
    host = colon === -1 ? hostPort : hostPort.slice(0, colon);
    portText = colon === -1 ? undefined : hostPort.slice(colon + 1);
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=%\u0080-\uffff]+$/.test(host)) throw BAD_URL();
    if (/[^\p{ASCII}]/u.test(host)) {
      host = domainToASCII(host);
      if (host === "") throw BAD_URL();
    }
  }
  if (portText !== undefined && !/^\d{0,5}$/.test(portText)) throw BAD_URL();
  const port = portText === undefined || portText === "" ? defaultPort(scheme) : Number(portText);
  if (port > 65535) throw BAD_URL();
  const queryStart = remainder.indexOf("?");
  const rawPath = queryStart === -1 ? remainder : remainder.slice(0, queryStart);
  const query = queryStart === -1 ? undefined : remainder.slice(queryStart + 1);
  let user: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    user = percentDecode(colon === -1 ? userinfo : userinfo.slice(0, colon));
    password = colon === -1 ? "" : percentDecode(userinfo.slice(colon + 1));
  }
  return {
    scheme,
    user,
    password,
    host,
    port,
    path: encodePathBytes(removeDotSegments(rawPath === "" ? "/" : rawPath)),
    query,
  };
}

function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The host as it goes in a Host header or URL: brackets for IPv6, the port unless default. */
export function hostAndPort(url: Pick<CurlUrl, "scheme" | "host" | "port">): string {
  const zoneless = url.host.replace(/%.*$/, "");
  const host = net.isIPv6(zoneless) ? `[${zoneless}]` : url.host;
  return url.port === defaultPort(url.scheme) ? host : `${host}:${url.port}`;
}

/** The path and query of the request line: a bare "?" is sent as it was written. */
export function requestTarget(url: CurlUrl): string {
  return url.query === undefined ? url.path : `${url.path}?${url.query}`;
}

/** The URL as curl rebuilds it (for proxies, -w and redirects): an empty query is dropped. */
export function formatUrl(url: CurlUrl): string {
  return `${url.scheme}://${hostAndPort(url)}${url.path}${url.query ? `?${url.query}` : ""}`;
}

/** The absolute URL a Location header points to, resolved against the current URL. */
function resolveLocation(location: string, base: CurlUrl): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(location)) return location;
  try {
    return new URL(location, formatUrl(base)).href;
  } catch {
    return location;
  }
}

// ---------------------------------------------------------------------------------------------
// Proxies
// ---------------------------------------------------------------------------------------------

/** C's atoi: optional blanks and sign, then digits; 0 when there are none. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number.parseInt(m[1] as string, 10) : 0;
}

/**
 * curl 7.88's `check_noproxy`: "*" alone matches everything; otherwise entries separated by commas
 * or blanks. An IPv4 host matches an address or CIDR range (`10.0.0.0/8`; no or a zero prefix
 * length means the whole address). Any other host, IPv6 addresses included (7.88 compares those as
 * names, brackets removed), matches a name exactly or as a domain suffix, ignoring case and one
 * leading and one trailing dot.
 */
export function noProxyMatches(host: string, noProxy: string): boolean {
  if (noProxy === "") return false;
  if (noProxy === "*") return true;
  let name = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const isIpv4 = net.isIPv4(name);
  if (!isIpv4 && name.endsWith(".")) name = name.slice(0, -1);
  const lowerName = name.toLowerCase();
  const isSeparator = (c: string | undefined) => c === " " || c === "\t" || c === ",";
  let p = 0;
  while (p < noProxy.length) {
    while (p < noProxy.length && isSeparator(noProxy[p])) p++;
    const start = p;
    while (p < noProxy.length && !isSeparator(noProxy[p])) p++;
    let token = noProxy.slice(start, p);
    if (token.length === 0) continue;
    if (isIpv4) {
      if (token.length >= 128) continue;
      const slash = token.indexOf("/");
      const network = slash === -1 ? token : token.slice(0, slash);
      const bits = slash === -1 ? 0 : atoi(token.slice(slash + 1));
      if (cidr4Match(name, network, bits)) return true;
      continue;
    }
    if (token.endsWith(".")) token = token.slice(0, -1);
    if (token.startsWith(".")) token = token.slice(1);
    const lowerToken = token.toLowerCase();
    if (lowerToken === lowerName) return true;
    if (
      lowerToken.length < lowerName.length &&
      lowerName[lowerName.length - lowerToken.length - 1] === "." &&
      lowerName.endsWith(lowerToken)
    )
      return true;
  }
  return false;
}

/** curl's `Curl_cidr4_match`: prefix lengths over 32 never match, 0 and 32 compare whole addresses. */
function cidr4Match(address: string, network: string, bits: number): boolean {
  if (bits < 0 || bits > 32) return false;
  const a = ipv4Number(address);
  const n = ipv4Number(network);
  if (a === undefined || n === undefined) return false;
  if (bits === 0 || bits === 32) return a === n;
  const mask = (0xffffffff << (32 - bits)) >>> 0;
  return ((a ^ n) & mask) >>> 0 === 0;
}

function ipv4Number(text: string): number | undefined {
  if (!net.isIPv4(text)) return undefined;
  return text.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

export interface ProxyServer {
  readonly host: string;
  readonly port: number;
  readonly user: string | undefined;
  readonly password: string | undefined;
}

/** Parses a proxy given as `[http://][user:password@]host[:port]` (curl's default port 1080). */
export function parseProxy(text: string): ProxyServer {
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text);
  const scheme = schemeMatch ? (schemeMatch[1] as string).toLowerCase() : "http";
  if (["https", "socks4", "socks4a", "socks5", "socks5h"].includes(scheme))
    throw new CurlError(
      4,
      "A requested feature, protocol or option was not found built-in in this libcurl due to a build-time decision.",
    );
  if (scheme !== "http") throw new CurlError(7, `Unsupported proxy scheme for '${text}'`);
  const rest = schemeMatch ? text.slice(schemeMatch[0].length) : text;
  const authority = rest.split(/[/?#]/)[0] ?? "";
  const at = authority.lastIndexOf("@");
  const userinfo = at === -1 ? undefined : authority.slice(0, at);
  let parsed: CurlUrl;
  try {
    parsed = parseCurlUrl(`http://${at === -1 ? authority : authority.slice(at + 1)}`);
  } catch {
    throw new CurlError(5, `Could not resolve proxy: ${authority}`);
  }
  const explicitPort = /:\d+$/.test(authority) && !authority.endsWith("]");
  const colon = userinfo?.indexOf(":") ?? -1;
  return {
    host: parsed.host,
    port: explicitPort ? parsed.port : 1080,
    user:
      userinfo === undefined ? undefined : percentDecode(colon === -1 ? userinfo : userinfo.slice(0, colon)),
    password: userinfo === undefined || colon === -1 ? undefined : percentDecode(userinfo.slice(colon + 1)),
  };
}

/**
 * The proxy curl would use for a URL: `-x` first (an empty one means none), else the environment:
 * `http_proxy` for http (lower case only: curl ignores HTTP_PROXY, which a CGI server would let a
 * client set), `https_proxy`/`HTTPS_PROXY` for https, then `all_proxy`/`ALL_PROXY`. `--noproxy`,
 * else `no_proxy`/`NO_PROXY`, exempts hosts.
 */
export function proxyFor(
  url: CurlUrl,
  options: Pick<CurlOptions, "proxy" | "noproxy">,
  env: NodeJS.ProcessEnv,
): string | undefined {
  const noProxy = options.noproxy ?? env.no_proxy ?? env.NO_PROXY;
  if (noProxy !== undefined && noProxyMatches(url.host, noProxy)) return undefined;
  if (options.proxy !== undefined) return options.proxy === "" ? undefined : options.proxy;
  const fromEnv = url.scheme === "http" ? env.http_proxy : (env.https_proxy ?? env.HTTPS_PROXY ?? undefined);
  const chosen = fromEnv || env.all_proxy || env.ALL_PROXY;
  return chosen ? chosen : undefined;
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

export interface PreparedRequest {
  readonly method: string;
  readonly target: string;
  readonly headerLines: readonly string[];
  readonly body: Buffer | undefined;
}

/**
 * A custom `-H` line. Any of "Name: value", "Name:" (send nothing) and "Name;" (send it empty)
 * replaces curl's own header of that name; a line with neither colon nor semicolon is ignored.
 */
interface CustomHeader {
  /** The line as given (up to any line break). */
  readonly raw: string;
  readonly name: string;
  /** The line sent, or undefined when the entry only removes curl's own header. */
  readonly line: string | undefined;
}

function parseCustomHeader(entry: string): CustomHeader | undefined {
  // A header is one line: whatever follows a line break is not sent, so -H cannot smuggle a second.
  const raw = entry.split(/[\r\n]/)[0] as string;
  const colon = raw.indexOf(":");
  if (colon !== -1) {
    const name = raw.slice(0, colon);
    const value = raw.slice(colon + 1);
    return { raw, name, line: value.trim() === "" ? undefined : raw };
  }
  const semicolon = raw.indexOf(";");
  if (semicolon !== -1 && raw.slice(semicolon + 1).trim() === "") {
    const name = raw.slice(0, semicolon);
    return { raw, name, line: `${name}:` };
  }
  return undefined;
}

function basicAuth(user: string, password: string | undefined): string {
  return `Basic ${Buffer.from(`${user}:${password ?? ""}`).toString("base64")}`;
}

function splitUserPassword(text: string): [string, string | undefined] {
  const colon = text.indexOf(":");
  return colon === -1 ? [text, ""] : [text.slice(0, colon), text.slice(colon + 1)];
}

export interface RequestPlan {
  readonly url: CurlUrl;
  /** The method in the request line. */
  readonly method: string;
  /** The body sent (undefined: none, not even Content-Length). */
  readonly body: Buffer | undefined;
  /** Whether curl's own `Content-Type: application/x-www-form-urlencoded` goes with the body. */
  readonly formContentType: boolean;
  readonly proxy: ProxyServer | undefined;
  /** False after a redirect to another host: credentials and custom Authorization/Cookie stay home. */
  readonly credentialsAllowed: boolean;
}

/**
 * The request header block curl 7.88 sends, in its order: Host, Proxy-Authorization,
 * Authorization, User-Agent, Accept, Referer, Proxy-Connection, the custom headers verbatim,
 * Content-Length, Content-Type. A custom "Name: value" replaces curl's own header of that name,
 * "Name:" removes it, "Name;" sends it empty.
 */
export function buildRequest(plan: RequestPlan, options: CurlOptions): PreparedRequest {
  const customs: CustomHeader[] = [];
  for (const raw of options.headers) {
    const parsed = parseCustomHeader(raw);
    if (parsed) customs.push(parsed);
  }
  const replaced = (name: string) => customs.some((c) => c.name.toLowerCase() === name.toLowerCase());
  if (options.json) {
    if (!replaced("Content-Type"))
      customs.push({ raw: "", name: "Content-Type", line: "Content-Type: application/json" });
    if (!replaced("Accept")) customs.push({ raw: "", name: "Accept", line: "Accept: application/json" });
  }
  const lines: string[] = [];
  // curl takes its Host line from the first custom Host entry; only a bare "Host:" drops it, and
  // then a later "Host;" is sent among the custom headers.
  const customHost = customs.find((c) => c.name.toLowerCase() === "host");
  const hostLine = !customHost
    ? `Host: ${hostAndPort(plan.url)}`
    : customHost.raw === "Host:"
      ? undefined
      : `Host:${customHost.raw.slice(5)}`;
  if (hostLine !== undefined) lines.push(hostLine);
  const proxyCredentials =
    options.proxyUser !== undefined
      ? splitUserPassword(options.proxyUser)
      : plan.proxy?.user !== undefined
        ? ([plan.proxy.user, plan.proxy.password] as const)
        : undefined;
  const tunnel = plan.url.scheme === "https";
  if (plan.proxy && !tunnel && proxyCredentials && !replaced("Proxy-Authorization"))
    lines.push(`Proxy-Authorization: ${basicAuth(proxyCredentials[0], proxyCredentials[1])}`);
  const credentials =
    options.user !== undefined
      ? splitUserPassword(options.user)
      : plan.url.user !== undefined
        ? ([plan.url.user, plan.url.password] as const)
        : undefined;
  if (credentials && plan.credentialsAllowed && !replaced("Authorization"))
    lines.push(`Authorization: ${basicAuth(credentials[0], credentials[1])}`);
  const userAgent = options.userAgent ?? CURL_USER_AGENT;
  if (userAgent !== "" && !replaced("User-Agent")) lines.push(`User-Agent: ${userAgent}`);
  if (!replaced("Accept")) lines.push("Accept: */*");
  if (options.referer !== undefined && options.referer !== "" && !replaced("Referer"))
    lines.push(`Referer: ${options.referer}`);
  if (plan.proxy && !tunnel && !replaced("Proxy-Connection")) lines.push("Proxy-Connection: Keep-Alive");
  for (const c of customs) {
    if (c.line === undefined || (c.name.toLowerCase() === "host" && hostLine !== undefined)) continue;

    const sensitive = ["authorization", "cookie"].includes(c.name.toLowerCase());
    if (sensitive && !plan.credentialsAllowed) continue;
    lines.push(c.line);
  }
  if (plan.body !== undefined) {
    if (!replaced("Content-Length")) lines.push(`Content-Length: ${plan.body.length}`);
    if (plan.formContentType && !replaced("Content-Type"))
      lines.push("Content-Type: application/x-www-form-urlencoded");
  }
  const target = plan.proxy && !tunnel ? formatUrl(plan.url) : requestTarget(plan.url);
  return { method: plan.method, target, headerLines: lines, body: plan.body };
}

export function serializeRequest(request: PreparedRequest): Buffer {
  const head = `${request.method} ${request.target} HTTP/1.1\r\n${request.headerLines.map((l) => `${l}\r\n`).join("")}\r\n`;
  return request.body ? Buffer.concat([Buffer.from(head), request.body]) : Buffer.from(head);
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

export interface ResponseHead {
  readonly httpVersion: string;
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** True for 1xx responses that a final one follows. */
  readonly interim: boolean;
}

export interface ResponseEvents {
  /** Every status, header and trailer line exactly as received, line ending included. */
  headerLine(line: Buffer): void;
  head(head: ResponseHead): void;
  body(chunk: Buffer): void;
}

/** curl refuses a single header line longer than this (CURL_MAX_HTTP_HEADER). */
const MAX_HEADER_LINE = 100 * 1024;

type ParserState =
  | "status"
  | "headers"
  | "length"
  | "close"
  | "chunk-size"
  | "chunk-data"
  | "chunk-end"
  | "trailers"
  | "done";

/**
 * An HTTP/1.x response reader that fails the way curl does: nothing before the connection closes
 * is "Empty reply", a body cut short is "transfer closed with N bytes remaining", anything that is
 * not HTTP is "HTTP/0.9". Input may arrive split anywhere.
 */
export class ResponseParser {
  private state: ParserState = "status";
  private pending: Buffer = Buffer.alloc(0);
  private remaining = 0;
  private headers: Array<[string, string]> = [];
  private status = 0;
  private httpVersion = "";
  private contentLength: number | undefined;
  private chunked = false;
  private receivedBytes = 0;

  constructor(
    private readonly events: ResponseEvents,
    private readonly request: { readonly method: string; readonly tunnel?: boolean },
  ) {}

  get done(): boolean {
    return this.state === "done";
  }

  /** The expected body size when the server announced it. */
  get expectedLength(): number | undefined {
    return this.chunked ? undefined : this.contentLength;
  }

  /** Feeds bytes from the server; throws CurlError when the response is broken. */
  push(chunk: Buffer): void {
    this.receivedBytes += chunk.length;
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (data.length > 0 && this.state !== "done") {
      data = this.step(data);
    }
  }

  /** The server closed the connection; throws CurlError unless that is a complete response. */
  end(): void {
    switch (this.state) {
      case "status":
        // A status line and then nothing is a (header-less) response to curl; no status line is none.
        if (this.status === 0) throw new CurlError(52, "Empty reply from server");
        this.finish();
        return;
      case "headers":
        this.finish();
        return;
      case "length":
        throw new CurlError(18, `transfer closed with ${this.remaining} bytes remaining to read`);
      case "chunk-size":
      case "chunk-data":
      case "chunk-end":
      case "trailers":
        throw new CurlError(18, "transfer closed with outstanding read data remaining");
      default:
        this.finish();
    }
  }

  private finish(): void {
    this.state = "done";
  }

  /** Takes one line (through "\n") off the front, or keeps the rest pending. */
  private takeLine(data: Buffer): [Buffer | undefined, Buffer] {
    const newline = data.indexOf(0x0a);
    if (newline === -1) {
      if (data.length > MAX_HEADER_LINE)
        throw new CurlError(100, `Rejected ${data.length} bytes header (max is ${MAX_HEADER_LINE})!`);
      this.pending = data;
      return [undefined, Buffer.alloc(0)];
    }
    return [data.subarray(0, newline + 1), data.subarray(newline + 1)];
  }

  private step(data: Buffer): Buffer {
    switch (this.state) {
      case "status": {
        const prefix = data.subarray(0, 5).toString("latin1").toUpperCase();
        if (!"HTTP/".startsWith(prefix.slice(0, Math.min(5, data.length))))
          throw new CurlError(1, "Received HTTP/0.9 when not allowed");
        const [line, rest] = this.takeLine(data);
        if (line) {
          this.parseStatusLine(line);
          this.events.headerLine(line);
          this.state = "headers";
        }
        return rest;
      }
      case "headers": {
        const [line, rest] = this.takeLine(data);
        if (!line) return rest;
        this.events.headerLine(line);
        const text = line.toString("latin1").replace(/\r?\n$/, "");
        if (text === "" || text === "\r") {
          this.endOfHead();
          return rest;
        }
        if ((text.startsWith(" ") || text.startsWith("\t")) && this.headers.length > 0) {
          const last = this.headers[this.headers.length - 1] as [string, string];
          last[1] = `${last[1]} ${text.trim()}`.trim();
          return rest;
        }
        const colon = text.indexOf(":");
        if (colon === -1) throw new CurlError(8, "Header without colon");
        const name = text.slice(0, colon);
        const value = text.slice(colon + 1).trim();
        this.headers.push([name, value]);
        const lower = name.toLowerCase();
        if (lower === "content-length") {
          if (!/^\d+$/.test(value)) throw new CurlError(8, "Invalid Content-Length: value");
          this.contentLength = Number(value);
        } else if (lower === "transfer-encoding") {
          const codings = value.toLowerCase().split(",");
          this.chunked = (codings[codings.length - 1] ?? "").trim() === "chunked";
        }
        return rest;
      }
      case "length": {
        const take = Math.min(this.remaining, data.length);
        if (take > 0) this.events.body(data.subarray(0, take));
        this.remaining -= take;
        if (this.remaining === 0) this.finish();
        return data.subarray(take);
      }
      case "close":
        this.events.body(data);
        return Buffer.alloc(0);
      case "chunk-size": {
        const [line, rest] = this.takeLine(data);
        if (!line) return rest;
        const hex = /^[0-9a-fA-F]+/.exec(line.toString("latin1"));
        if (!hex) throw new CurlError(56, "Illegal or missing hexadecimal sequence in chunked-encoding");
        if (hex[0].length > 16) throw new CurlError(56, "Too long hexadecimal number in chunked-encoding");
        this.remaining = Number.parseInt(hex[0], 16);
        this.state = this.remaining === 0 ? "trailers" : "chunk-data";
        return rest;
      }
      case "chunk-data": {
        const take = Math.min(this.remaining, data.length);
        this.events.body(data.subarray(0, take));
        this.remaining -= take;
        if (this.remaining === 0) this.state = "chunk-end";
        return data.subarray(take);
      }
      case "chunk-end": {
        let i = 0;
        while (i < data.length && data[i] === 0x0d) i++;
        if (i === data.length) return Buffer.alloc(0);
        if (data[i] !== 0x0a) throw new CurlError(56, "Malformed encoding found in chunked-encoding");
        this.state = "chunk-size";
        return data.subarray(i + 1);
      }
      case "trailers": {
        const [line, rest] = this.takeLine(data);
        if (!line) return rest;
        if (/^\r?\n$/.test(line.toString("latin1"))) this.finish();
        else this.events.headerLine(line);
        return rest;
      }
      default:
        return Buffer.alloc(0);
    }
  }

  private parseStatusLine(line: Buffer): void {
    const text = line.toString("latin1").replace(/\r?\n$/, "");
    const m = /^\s*HTTP\/(\d)(?:\.(\d))?( +)(-?\d+)/i.exec(text);
    if (!m) throw new CurlError(1, "Unsupported HTTP version in response");
    const major = m[1] as string;
    const minor = m[2];
    const codeText = m[4] as string;
    if (codeText.length !== 3 || codeText.startsWith("-") || Number(codeText) < 100)
      throw new CurlError(1, "Unsupported response code in HTTP response");
    const version = minor === undefined ? major : `${major}.${minor}`;
    if (!["1.0", "1.1", "2", "2.0"].includes(version))
      throw new CurlError(1, `Unsupported HTTP version (${major}.${minor ?? "0"}) in response`);
    this.httpVersion = version === "2.0" ? "2" : version;
    this.status = Number(codeText);
    this.headers = [];
    this.contentLength = undefined;
    this.chunked = false;
  }

  private endOfHead(): void {
    const interim = this.status >= 100 && this.status < 200 && this.status !== 101;
    this.events.head({ httpVersion: this.httpVersion, status: this.status, headers: this.headers, interim });
    if (interim) {
      this.state = "status";
      this.status = 0;
      return;
    }
    const noBody =
      this.request.method === "HEAD" ||
      this.status === 101 ||
      this.status === 204 ||
      this.status === 304 ||
      (this.request.tunnel === true && this.status >= 200 && this.status < 300);
    if (noBody) this.finish();
    else if (this.chunked) this.state = "chunk-size";
    else if (this.contentLength !== undefined) {
      this.remaining = this.contentLength;
      this.state = "length";
      if (this.remaining === 0) this.finish();
    } else this.state = "close";
  }
}

// ---------------------------------------------------------------------------------------------
// Write-out
// ---------------------------------------------------------------------------------------------

/** What `-w` can show about one transfer. */
export interface TransferReport {
  url: string;
  urlEffective: string;
  urlIndex: number;
  method: string;
  httpCode: number;
  httpConnect: number;
  httpVersion: string;
  responseHeaders: Array<readonly [string, string]>;
  redirectUrl: string | undefined;
  numRedirects: number;
  numConnects: number;
  sizeDownload: number;
  sizeHeader: number;
  sizeRequest: number;
  sizeUpload: number;
  timeNamelookup: number;
  timeConnect: number;
  timeAppconnect: number;
  timePretransfer: number;
  timeStarttransfer: number;
  timeTotal: number;
  timeRedirect: number;
  remoteIp: string;
  remotePort: number;
  localIp: string;
  localPort: number;
  scheme: string | undefined;
  filenameEffective: string | undefined;
  referer: string | undefined;
  exitCode: number;
  errorMessage: string | undefined;
}

export function emptyReport(url: string, urlIndex: number): TransferReport {
  return {
    url,
    urlEffective: url,
    urlIndex,
    method: "GET",
    httpCode: 0,
    httpConnect: 0,
    httpVersion: "0",
    responseHeaders: [],
    redirectUrl: undefined,
    numRedirects: 0,
    numConnects: 0,
    sizeDownload: 0,
    sizeHeader: 0,
    sizeRequest: 0,
    sizeUpload: 0,
    timeNamelookup: 0,
    timeConnect: 0,
    timeAppconnect: 0,
    timePretransfer: 0,
    timeStarttransfer: 0,
    timeTotal: 0,
    timeRedirect: 0,
    remoteIp: "",
    remotePort: 0,
    localIp: "",
    localPort: 0,
    scheme: undefined,
    filenameEffective: undefined,
    referer: undefined,
    exitCode: 0,
    errorMessage: undefined,
  };
}

type VariableValue =
  | { kind: "string"; value: string }
  | { kind: "nullable"; value: string | undefined }
  | { kind: "int"; value: number }
  | { kind: "code"; value: number }
  | { kind: "time"; value: number };

function speed(bytes: number, seconds: number): number {
  return seconds > 0 ? Math.floor(bytes / seconds) : 0;
}

/** The plain `-w` variables of curl 7.88, in the order `%{json}` lists them. */
const VARIABLES: ReadonlyArray<readonly [string, (r: TransferReport) => VariableValue]> = [
  ["certs", () => ({ kind: "string", value: "" })],
  [
    "content_type",
    (r) => ({
      kind: "nullable",
      value: r.responseHeaders.find(([n]) => n.toLowerCase() === "content-type")?.[1],
    }),
  ],
  ["errormsg", (r) => ({ kind: "nullable", value: r.errorMessage })],
  ["exitcode", (r) => ({ kind: "int", value: r.exitCode })],
  ["filename_effective", (r) => ({ kind: "nullable", value: r.filenameEffective })],
  ["ftp_entry_path", () => ({ kind: "nullable", value: undefined })],
  ["http_code", (r) => ({ kind: "code", value: r.httpCode })],
  ["http_connect", (r) => ({ kind: "code", value: r.httpConnect })],
  ["http_version", (r) => ({ kind: "string", value: r.httpVersion })],
  ["local_ip", (r) => ({ kind: "string", value: r.localIp })],
  ["local_port", (r) => ({ kind: "int", value: r.localPort })],
  ["method", (r) => ({ kind: "string", value: r.method })],
  ["num_certs", () => ({ kind: "int", value: 0 })],
  ["num_connects", (r) => ({ kind: "int", value: r.numConnects })],
  ["num_headers", (r) => ({ kind: "int", value: r.responseHeaders.length })],
  ["num_redirects", (r) => ({ kind: "int", value: r.numRedirects })],
  ["proxy_ssl_verify_result", () => ({ kind: "int", value: 0 })],
  ["redirect_url", (r) => ({ kind: "nullable", value: r.redirectUrl })],
  ["referer", (r) => ({ kind: "nullable", value: r.referer })],
  ["remote_ip", (r) => ({ kind: "string", value: r.remoteIp })],
  ["remote_port", (r) => ({ kind: "int", value: r.remotePort })],
  ["response_code", (r) => ({ kind: "code", value: r.httpCode })],
  ["scheme", (r) => ({ kind: "nullable", value: r.scheme })],
  ["size_download", (r) => ({ kind: "int", value: r.sizeDownload })],
  ["size_header", (r) => ({ kind: "int", value: r.sizeHeader })],
  ["size_request", (r) => ({ kind: "int", value: r.sizeRequest })],
  ["size_upload", (r) => ({ kind: "int", value: r.sizeUpload })],
  ["speed_download", (r) => ({ kind: "int", value: speed(r.sizeDownload, r.timeTotal) })],
  ["speed_upload", (r) => ({ kind: "int", value: speed(r.sizeUpload, r.timeTotal) })],
  ["ssl_verify_result", () => ({ kind: "int", value: 0 })],
  ["time_appconnect", (r) => ({ kind: "time", value: r.timeAppconnect })],
  ["time_connect", (r) => ({ kind: "time", value: r.timeConnect })],
  ["time_namelookup", (r) => ({ kind: "time", value: r.timeNamelookup })],
  ["time_pretransfer", (r) => ({ kind: "time", value: r.timePretransfer })],
  ["time_redirect", (r) => ({ kind: "time", value: r.timeRedirect })],
  ["time_starttransfer", (r) => ({ kind: "time", value: r.timeStarttransfer })],
  ["time_total", (r) => ({ kind: "time", value: r.timeTotal })],
  ["url", (r) => ({ kind: "string", value: r.url })],
  ["url_effective", (r) => ({ kind: "string", value: r.urlEffective })],
  ["urlnum", (r) => ({ kind: "int", value: r.urlIndex })],
];

const VARIABLE_BY_NAME = new Map(VARIABLES.map(([name, get]) => [name, get]));

function formatVariable(v: VariableValue): string {
  switch (v.kind) {
    case "string":
      return v.value;
    case "nullable":
      return v.value ?? "";
    case "int":
      return String(v.value);
    case "code":
      return String(v.value).padStart(3, "0");
    case "time":
      return v.value.toFixed(6);
  }
}

function jsonVariable(v: VariableValue): string {
  switch (v.kind) {
    case "string":
      return JSON.stringify(v.value);
    case "nullable":
      return v.value === undefined ? "null" : JSON.stringify(v.value);
    case "int":
    case "code":
      return String(v.value);
    case "time":
      return v.value.toFixed(6);
  }
}

export function writeOutJson(report: TransferReport): string {
  const fields = VARIABLES.map(([name, get]) => `${JSON.stringify(name)}:${jsonVariable(get(report))}`);
  fields.push(`"curl_version":${JSON.stringify(`libcurl/${CURL_COMPATIBLE_VERSION} (Tessera built-in)`)}`);
  return `{${fields.join(",")}}`;
}

export function headerJson(report: TransferReport): string {
  const grouped = new Map<string, string[]>();
  for (const [name, value] of report.responseHeaders) {
    const lower = name.toLowerCase();
    const list = grouped.get(lower);
    if (list) list.push(value);
    else grouped.set(lower, [value]);
  }
  const entries = [...grouped].map(([n, values]) => `${JSON.stringify(n)}:${JSON.stringify(values)}`);
  return `{${entries.join(",\n")}\n}`;
}

/** One piece of `-w` output and where it goes. */
export interface WriteOutPiece {
  readonly to: "stdout" | "stderr";
  readonly text: string;
}

/**
 * Expands a `-w` format like curl 7.88's `ourWriteOut`: `%{var}` (names without regard to case),
 * `%header{name}`, `%%`, and `\n`, `\r`, `\t`; anything else is printed as written, an unknown
 * variable is reported on stderr, `%{onerror}` stops the output after a success.
 */
export function renderWriteOut(format: string, report: TransferReport): WriteOutPiece[] {
  const pieces: WriteOutPiece[] = [];
  let to: "stdout" | "stderr" = "stdout";
  const emit = (text: string, stream: "stdout" | "stderr" = to) => {
    if (text !== "") pieces.push({ to: stream, text });
  };
  let i = 0;
  while (i < format.length) {
    const c = format[i] as string;
    const next = format[i + 1];
    if (c === "%" && next !== undefined) {
      if (next === "%") {
        emit("%");
        i += 2;
      } else if (next === "{") {
        const end = format.indexOf("}", i);
        i += 2;
        if (end === -1) {
          emit("%{");
          continue;
        }
        const name = format.slice(i, end);
        i = end + 1;
        const lower = name.toLowerCase();
        if (lower === "onerror") {
          if (report.exitCode === 0) break;
        } else if (lower === "stdout") to = "stdout";
        else if (lower === "stderr") to = "stderr";
        else if (lower === "json") emit(writeOutJson(report));
        else if (lower === "header_json") emit(headerJson(report));
        else {
          const get = VARIABLE_BY_NAME.get(lower);
          if (get) emit(formatVariable(get(report)));
          else emit(`curl: unknown --write-out variable: '${name}'\n`, "stderr");
        }
      } else if (format.startsWith("header{", i + 1)) {
        const start = i + 8;
        const end = format.indexOf("}", start);
        if (end === -1) {
          emit("%header{");
          i = start;
          continue;
        }
        const wanted = format.slice(start, end).toLowerCase();
        const found = report.responseHeaders.find(([n]) => n.toLowerCase() === wanted);
        if (found) emit(found[1]);
        i = end + 1;
      } else {
        emit(`%${next}`);
        i += 2;
      }
    } else if (c === "\\" && next !== undefined) {
      if (next === "n") emit("\n");
      else if (next === "r") emit("\r");
      else if (next === "t") emit("\t");
      else emit(`\\${next}`);
      i += 2;
    } else {
      emit(c);
      i++;
    }
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// Progress meter
// ---------------------------------------------------------------------------------------------

/** curl's `max5data`: a byte count in at most five characters. */
export function max5(bytes: number): string {
  const KB = 1024;
  const MB = 1024 * KB;
  const GB = 1024 * MB;
  const TB = 1024 * GB;
  const pad = (s: string) => s.padStart(5, " ");
  if (bytes < 100000) return pad(String(bytes));
  if (bytes < 10000 * KB) return `${String(Math.floor(bytes / KB)).padStart(4, " ")}k`;
  if (bytes < 100 * MB)
    return `${String(Math.floor(bytes / MB)).padStart(2, " ")}.${Math.floor((bytes % MB) / (MB / 10))}M`;
  if (bytes < 10000 * MB) return `${String(Math.floor(bytes / MB)).padStart(4, " ")}M`;
  if (bytes < 100 * GB)
    return `${String(Math.floor(bytes / GB)).padStart(2, " ")}.${Math.floor((bytes % GB) / (GB / 10))}G`;
  if (bytes < 10000 * GB) return `${String(Math.floor(bytes / GB)).padStart(4, " ")}G`;
  if (bytes < 10000 * TB) return `${String(Math.floor(bytes / TB)).padStart(4, " ")}T`;
  return `${String(Math.floor(bytes / (1024 * TB))).padStart(4, " ")}P`;
}

/** curl's `time2str`: seconds in eight characters, "--:--:--" when unknown. */
export function time2str(seconds: number): string {
  const s = Math.floor(seconds);
  if (s <= 0) return "--:--:--";
  const h = Math.floor(s / 3600);
  if (h <= 99) {
    const m = Math.floor((s - h * 3600) / 60);
    const sec = s - h * 3600 - m * 60;
    return `${String(h).padStart(2, " ")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
  }
  const d = Math.floor(s / 86400);
  const hours = Math.floor((s - d * 86400) / 3600);
  return d <= 999
    ? `${String(d).padStart(3, " ")}d ${String(hours).padStart(2, "0")}h`
    : `${String(d).padStart(7, " ")}d`;
}

export const PROGRESS_HEADER =
  "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n" +
  "                                 Dload  Upload   Total   Spent    Left  Speed\n";

export interface ProgressState {
  readonly downloaded: number;
  readonly downloadTotal: number | undefined;
  readonly uploaded: number;
  readonly uploadTotal: number | undefined;
  readonly elapsedSeconds: number;
}

function percent(now: number, total: number): number {
  if (total > 10000) return Math.floor(now / Math.floor(total / 100));
  return total > 0 ? Math.floor((now * 100) / total) : 0;
}

/** One line of curl's progress meter (its `progress_meter`), without the leading "\r". */
export function progressLine(p: ProgressState): string {
  const dlSpeed = speed(p.downloaded, p.elapsedSeconds);
  const ulSpeed = speed(p.uploaded, p.elapsedSeconds);
  const dlPercent = p.downloadTotal !== undefined && dlSpeed > 0 ? percent(p.downloaded, p.downloadTotal) : 0;
  const ulPercent = p.uploadTotal !== undefined && ulSpeed > 0 ? percent(p.uploaded, p.uploadTotal) : 0;
  const dlEstimate = p.downloadTotal !== undefined && dlSpeed > 0 ? Math.floor(p.downloadTotal / dlSpeed) : 0;
  const ulEstimate = p.uploadTotal !== undefined && ulSpeed > 0 ? Math.floor(p.uploadTotal / ulSpeed) : 0;
  const estimate = Math.max(dlEstimate, ulEstimate);
  const spent = Math.floor(p.elapsedSeconds);
  const expected = (p.uploadTotal ?? p.uploaded) + (p.downloadTotal ?? p.downloaded);
  const transferred = p.downloaded + p.uploaded;
  const pct = (n: number) => String(n).padStart(3, " ");
  return (
    `${pct(percent(transferred, expected))} ${max5(expected)}  ${pct(dlPercent)} ${max5(p.downloaded)}  ` +
    `${pct(ulPercent)} ${max5(p.uploaded)}  ${max5(dlSpeed)}  ${max5(ulSpeed)} ` +
    `${time2str(estimate)} ${time2str(spent)} ${time2str(estimate > 0 ? estimate - spent : 0)} ${max5(dlSpeed)}`
  );
}

class ProgressMeter {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  downloaded = 0;
  downloadTotal: number | undefined;
  uploaded = 0;
  uploadTotal: number | undefined;

  constructor(private readonly stderr: Writable) {
    stderr.write(PROGRESS_HEADER);
    this.draw();
    this.timer = setInterval(() => this.draw(), 1000);
    this.timer.unref();
  }

  private draw(): void {
    this.stderr.write(
      `\r${progressLine({
        downloaded: this.downloaded,
        downloadTotal: this.downloadTotal,
        uploaded: this.uploaded,
        uploadTotal: this.uploadTotal,
        elapsedSeconds: (performance.now() - this.started) / 1000,
      })}`,
    );
  }

  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
    this.stderr.write("\n");
  }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

type Phase = "resolving" | "connecting" | "transfer";

/** A transfer's clock, phase and cancellation: every wait races the deadlines. */
class TransferControl {
  readonly started = performance.now();
  phase: Phase = "resolving";
  received = 0;
  expected: number | undefined;
  private failure: CurlError | undefined;
  private readonly waiters = new Set<(err: CurlError) => void>();
  private readonly sockets = new Set<net.Socket>();
  private readonly timers: NodeJS.Timeout[] = [];
  private connectTimer: NodeJS.Timeout | undefined;
  connectTarget = { host: "", port: 0 };

  constructor(
    maxTimeMs: number | undefined,
    private readonly connectTimeoutMs: number | undefined,
  ) {
    if (maxTimeMs !== undefined)
      this.timers.push(setTimeout(() => this.fail(this.maxTimeError()), maxTimeMs));
    this.startConnectTimer();
  }

  private startConnectTimer(): void {
    if (this.connectTimeoutMs === undefined) return;
    const started = performance.now();
    this.connectTimer = setTimeout(() => this.fail(this.connectTimeoutError(started)), this.connectTimeoutMs);
    this.timers.push(this.connectTimer);
  }

  elapsedMs(): number {
    return Math.round(performance.now() - this.started);
  }

  private maxTimeError(): CurlError {
    const ms = this.elapsedMs();
    if (this.phase === "resolving") return new CurlError(28, `Resolving timed out after ${ms} milliseconds`);
    if (this.phase === "connecting")
      return new CurlError(28, `Connection timed out after ${ms} milliseconds`);
    const received =
      this.expected !== undefined
        ? `${this.received} out of ${this.expected} bytes received`
        : `${this.received} bytes received`;
    return new CurlError(28, `Operation timed out after ${ms} milliseconds with ${received}`);
  }

  private connectTimeoutError(connectStarted: number): CurlError {
    const ms = Math.round(performance.now() - connectStarted);
    if (this.phase === "resolving") return new CurlError(28, `Resolving timed out after ${ms} milliseconds`);
    const { host, port } = this.connectTarget;
    return new CurlError(28, `Failed to connect to ${host} port ${port} after ${ms} ms: Timeout was reached`);
  }

  connected(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.phase = "transfer";
  }

  /** A redirect opens a new connection: the connect phase and its time limit start again. */
  reconnecting(): void {
    this.phase = "resolving";
    this.startConnectTimer();
  }

  track(socket: net.Socket): void {
    this.sockets.add(socket);
    // Errors are read by whoever waits on the socket; one arriving later must not crash curl.
    socket.on("error", () => undefined);
  }

  fail(error: CurlError): void {
    if (this.failure) return;
    this.failure = error;
    for (const socket of this.sockets) socket.destroy();
    for (const waiter of this.waiters) waiter(error);
    this.waiters.clear();
  }

  /** Waits for a promise unless the transfer fails first. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const onFail = (err: CurlError) => reject(err);
      this.waiters.add(onFail);
      promise.then(
        (v) => {
          this.waiters.delete(onFail);
          resolve(v);
        },
        (e: unknown) => {
          this.waiters.delete(onFail);
          reject(e);
        },
      );
    });
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    for (const socket of this.sockets) socket.destroy();
  }
}

interface Connection {
  readonly socket: net.Socket;
  readonly remoteIp: string;
  readonly remotePort: number;
}

interface Verbose {
  info(text: string): void;
  out(line: string): void;
  in(line: Buffer): void;
}

async function resolveHost(
  host: string,
  port: number,
  options: CurlOptions,
  control: TransferControl,
  isProxy: boolean,
): Promise<string[]> {
  const bare = host.replace(/%.*$/, "");
  if (net.isIP(bare)) return [host];
  const pinned = options.resolve.get(`${host.toLowerCase()}:${port}`);
  if (pinned) return pinned;
  try {
    const found = await control.race(
      dns.promises.lookup(host, { all: true, family: options.family ?? 0, verbatim: true }),
    );
    if (found.length === 0) throw new Error("no addresses");
    return found.map((a) => a.address);
  } catch (e) {
    if (e instanceof CurlError) throw e;
    throw new CurlError(isProxy ? 5 : 6, `Could not resolve ${isProxy ? "proxy" : "host"}: ${host}`);
  }
}

function connectOnce(address: string, port: number, control: TransferControl): Promise<net.Socket> {
  return control.race(
    new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ host: address, port });
      control.track(socket);
      const onError = (err: Error) => {
        socket.destroy();
        reject(err);
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.removeListener("error", onError);
        resolve(socket);
      });
    }),
  );
}

async function openTcp(
  host: string,
  port: number,
  options: CurlOptions,
  control: TransferControl,
  isProxy: boolean,
  verbose: Verbose | undefined,
  report: TransferReport,
): Promise<Connection> {
  control.phase = "resolving";
  control.connectTarget = { host: host.replace(/%.*$/, ""), port };
  const addresses = await resolveHost(host, port, options, control, isProxy);
  report.timeNamelookup = (performance.now() - control.started) / 1000;
  control.phase = "connecting";
  for (const address of addresses) {
    verbose?.info(
      `*   Trying ${net.isIPv6(address.replace(/%.*$/, "")) ? `[${address}]` : address}:${port}...`,
    );
    try {
      const socket = await connectOnce(address, port, control);
      report.timeConnect = (performance.now() - control.started) / 1000;
      report.numConnects++;
      verbose?.info(`* Connected to ${control.connectTarget.host} (${address}) port ${port} (#0)`);
      return { socket, remoteIp: address.replace(/%.*$/, ""), remotePort: port };
    } catch (e) {
      if (e instanceof CurlError) throw e;
      const code = (e as NodeJS.ErrnoException).code ?? "";
      verbose?.info(`* connect to ${address} port ${port} failed: ${describeErrno(code)}`);
    }
  }
  throw new CurlError(
    7,
    `Failed to connect to ${control.connectTarget.host} port ${port} after ${control.elapsedMs()} ms: Couldn't connect to server`,
  );
}

function describeErrno(code: string): string {
  const known: Record<string, string> = {
    ECONNREFUSED: "Connection refused",
    ENETUNREACH: "Network is unreachable",
    EHOSTUNREACH: "No route to host",
    ETIMEDOUT: "Connection timed out",
    EADDRNOTAVAIL: "Cannot assign requested address",
    ECONNRESET: "Connection reset by peer",
    EPIPE: "Broken pipe",
  };
  return known[code] ?? code;
}

/** OpenSSL's wording for the certificate errors curl reports as exit 60. */
const CERTIFICATE_PROBLEMS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
  SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to get local issuer certificate",
  UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
  CERT_HAS_EXPIRED: "certificate has expired",
  CERT_NOT_YET_VALID: "certificate is not yet valid",
  CERT_REVOKED: "certificate revoked",
  CERT_UNTRUSTED: "certificate not trusted",
  CERT_SIGNATURE_FAILURE: "certificate signature failure",
};

/** Debian's CA bundle, the one curl there trusts by default. */
const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

function tlsMaterial(options: CurlOptions): tls.ConnectionOptions {
  const material: tls.ConnectionOptions = {};
  if (options.cacert !== undefined) {
    try {
      material.ca = readFileSync(options.cacert);
    } catch {
      throw new CurlError(77, `error setting certificate file: ${options.cacert}`);
    }
  } else {
    try {
      material.ca = readFileSync(SYSTEM_CA_BUNDLE);
    } catch {
      // No system bundle: node's built-in Mozilla roots are the next best default.
    }
  }
  if (options.cert !== undefined) {
    try {
      material.cert = readFileSync(options.cert);
      material.key = readFileSync(options.key ?? options.cert);
    } catch {
      throw new CurlError(58, `could not load PEM client certificate from ${options.cert}`);
    }
  }
  return material;
}

async function startTls(
  socket: net.Socket,
  url: CurlUrl,
  options: CurlOptions,
  control: TransferControl,
  verbose: Verbose | undefined,
): Promise<tls.TLSSocket> {
  const bare = url.host.replace(/%.*$/, "");
  const secure = tls.connect({
    socket,
    servername: net.isIP(bare) ? undefined : bare,
    rejectUnauthorized: !options.insecure,
    ALPNProtocols: ["http/1.1"],
    ...tlsMaterial(options),
  });
  control.track(secure);
  try {
    await control.race(
      new Promise<void>((resolve, reject) => {
        secure.once("error", reject);
        secure.once("secureConnect", () => {
          secure.removeListener("error", reject);
          resolve();
        });
      }),
    );
  } catch (e) {
    if (e instanceof CurlError) throw e;
    const err = e as NodeJS.ErrnoException;
    const code = err.code ?? "";
    if (code === "ERR_TLS_CERT_ALTNAME_INVALID")
      throw new CurlError(
        60,
        `SSL: no alternative certificate subject name matches target host name '${bare}'`,
      );
    const problem = CERTIFICATE_PROBLEMS[code];
    if (problem) throw new CurlError(60, `SSL certificate problem: ${problem}`);
    if (code === "ECONNRESET")
      throw new CurlError(
        35,
        `OpenSSL SSL_connect: Connection reset by peer in connection to ${bare}:${url.port} `,
      );
    const openssl = /error:[0-9A-F]+:SSL routines:[^:]*:[^:]+/.exec(err.message ?? "");
    const version = `OpenSSL/${process.versions.openssl?.replace(/\+.*$/, "")}`;
    throw new CurlError(
      35,
      openssl
        ? `${version}: ${openssl[0].replace(/(SSL routines:)[^:]*:/, "$1:")}`
        : `OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to ${bare}:${url.port} `,
    );
  }
  verbose?.info(`* SSL connection using ${secure.getProtocol() ?? "TLS"} / ${secure.getCipher().name}`);
  return secure;
}

/** Reads one response off a socket through the parser; resolves when it is complete. */
function readResponse(socket: net.Socket, parser: ResponseParser, control: TransferControl): Promise<void> {
  return control.race(
    new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: unknown) => {
        if (settled) return;
        settled = true;
        socket.removeAllListeners("data");
        if (err) reject(err);
        else resolve();
      };
      socket.on("data", (chunk: Buffer) => {
        try {
          parser.push(chunk);
          if (parser.done) settle();
        } catch (e) {
          settle(e);
        }
      });
      socket.once("end", () => {
        try {
          parser.end();
          settle();
        } catch (e) {
          settle(e);
        }
      });
      socket.once("error", (err: NodeJS.ErrnoException) => settle(socketError(err)));
      socket.once("close", () => {
        if (!settled) {
          try {
            parser.end();
            settle();
          } catch (e) {
            settle(e);
          }
        }
      });
    }),
  );
}

function socketError(err: NodeJS.ErrnoException): CurlError {
  const reason = describeErrno(err.code ?? "");
  if (err.syscall === "write") return new CurlError(55, `Send failure: ${reason}`);
  return new CurlError(56, `Recv failure: ${reason}`);
}

// ---------------------------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------------------------

/** Where a transfer's output goes: standard output, or a file opened on first write. */
class OutputSink {
  private file: Writable | undefined;
  private failed = false;
  wrote = false;

  constructor(
    private readonly stdout: Writable,
    readonly path: string | undefined,
    private readonly warn: (text: string) => void,
  ) {}

  private stream(): Writable {
    if (this.path === undefined || this.path === "-") return this.stdout;
    if (!this.file) {
      let fd: number;
      try {
        fd = openSync(this.path, "w");
      } catch (e) {
        this.failed = true;
        const reason =
          (e as NodeJS.ErrnoException).code === "ENOENT" ? "No such file or directory" : String(e);
        this.warn(`Failed to open the file ${this.path}: ${reason}`);
        throw new CurlError(23, "Failure writing output to destination");
      }
      this.file = createWriteStream("", { fd });
    }
    return this.file;
  }

  write(chunk: Buffer): boolean {
    this.wrote = true;
    return this.stream().write(chunk);
  }

  /** Waits until the stream wants more. */
  drained(): Promise<void> {
    const stream = this.stream();
    return new Promise((resolve) => stream.once("drain", () => resolve()));
  }

  /** Creates an empty file when nothing was written, like curl does for an empty body. */
  async close(createIfEmpty: boolean): Promise<void> {
    if (this.failed) return;
    if (createIfEmpty && !this.file && this.path !== undefined && this.path !== "-") this.stream();
    const file = this.file;
    if (!file) return;
    await new Promise<void>((resolve, reject) => {
      file.once("error", reject);
      file.end(() => resolve());
    });
  }
}

interface TransferContext {
  readonly options: CurlOptions;
  readonly io: Required<Pick<CurlIo, "stdout" | "stderr">> & { env: NodeJS.ProcessEnv };
  readonly sink: OutputSink;
  readonly verbose: Verbose | undefined;
  readonly progress: ProgressMeter | undefined;
  readonly report: TransferReport;
}

const REDIRECT_CODES = new Set([300, 301, 302, 303, 305, 306, 307, 308]);

interface Exchange {
  readonly status: number;
  readonly location: string | undefined;
}

/** Sends one request on a fresh connection and reads its response. */
async function exchange(
  plan: RequestPlan,
  ctx: TransferContext,
  control: TransferControl,
  followingRedirect: (status: number, location: string | undefined) => boolean,
): Promise<Exchange> {
  const { options, report, verbose, sink, progress } = ctx;
  const endpoint = plan.proxy ?? { host: plan.url.host, port: plan.url.port };
  const connection = await openTcp(
    endpoint.host,
    endpoint.port,
    options,
    control,
    plan.proxy !== undefined,
    verbose,
    report,
  );
  let socket: net.Socket = connection.socket;
  report.remoteIp = connection.remoteIp;
  report.remotePort = connection.remotePort;
  report.localIp = (socket.localAddress ?? "").replace(/^::ffff:/, "");
  report.localPort = socket.localPort ?? 0;
  report.scheme = plan.url.scheme.toUpperCase();
  if (plan.url.scheme === "https") {
    if (plan.proxy) socket = await openTunnel(socket, plan, ctx, control);
    socket = await startTls(socket, plan.url, options, control, verbose);
    report.timeAppconnect = (performance.now() - control.started) / 1000;
  }
  control.connected();
  const request = buildRequest(plan, options);
  const bytes = serializeRequest(request);
  report.timePretransfer = (performance.now() - control.started) / 1000;
  report.sizeRequest += bytes.length;
  report.sizeUpload += request.body?.length ?? 0;
  if (progress) {
    progress.uploadTotal = request.body?.length;
    progress.uploaded = request.body?.length ?? 0;
  }
  if (verbose) {
    const head = bytes.subarray(0, bytes.length - (request.body?.length ?? 0)).toString();
    for (const line of head.split("\r\n").slice(0, -1)) verbose.out(`${line}\r\n`);
  }
  socket.write(bytes);

  let status = 0;
  let location: string | undefined;
  let skippingBody = false;
  let firstByte = true;
  // Like curl, verbose mode notes body data only when it is not printed on the terminal anyway.
  const showDataNotes = verbose !== undefined && !(sink.path === undefined && isTty(ctx.io.stdout));
  const writeOrPause = (chunk: Buffer) => {
    if (!sink.write(chunk)) {
      socket.pause();
      void sink.drained().then(() => socket.resume());
    }
  };
  const parser = new ResponseParser(
    {
      headerLine(line) {
        if (firstByte) {
          firstByte = false;
          report.timeStarttransfer = (performance.now() - control.started) / 1000;
        }
        report.sizeHeader += line.length;
        verbose?.in(line);
        if (options.include || options.head) writeOrPause(line);
      },
      head(head) {
        if (head.interim) return;
        status = head.status;
        report.httpCode = head.status;
        report.httpVersion = head.httpVersion;
        report.responseHeaders = [...head.headers];
        location = head.headers.find(([n]) => n.toLowerCase() === "location")?.[1];
        report.redirectUrl =
          location !== undefined && REDIRECT_CODES.has(head.status)
            ? resolveLocation(location, plan.url)
            : undefined;
        control.expected = parser.expectedLength;
        if (progress) progress.downloadTotal = parser.expectedLength;
        if (options.fail && !options.failWithBody && head.status >= 400)
          throw new CurlError(22, `The requested URL returned error: ${head.status}`);
        skippingBody = followingRedirect(head.status, location) || request.method === "HEAD";
      },
      body(chunk) {
        if (showDataNotes) verbose?.info(`{ [${chunk.length} bytes data]`);
        if (!skippingBody) writeOrPause(chunk);
        control.received += chunk.length;
        report.sizeDownload += chunk.length;
        if (progress) progress.downloaded += chunk.length;
      },
    },
    { method: request.method === "HEAD" || options.head ? "HEAD" : request.method },
  );
  try {
    await readResponse(socket, parser, control);
  } finally {
    socket.destroy();
  }
  if (options.failWithBody && status >= 400)
    throw new CurlError(22, `The requested URL returned error: ${status}`);
  return { status, location };
}

/** Opens a CONNECT tunnel through an HTTP proxy for an https URL. */
async function openTunnel(
  socket: net.Socket,
  plan: RequestPlan,
  ctx: TransferContext,
  control: TransferControl,
): Promise<net.Socket> {
  const authority = hostAndPort({ ...plan.url, port: plan.url.port, scheme: "http" });
  const target = authority.includes(":", authority.lastIndexOf("]") + 1)
    ? authority
    : `${authority}:${plan.url.port}`;
  const lines = [`Host: ${target}`];
  const credentials =
    ctx.options.proxyUser !== undefined
      ? splitUserPassword(ctx.options.proxyUser)
      : plan.proxy?.user !== undefined
        ? ([plan.proxy.user, plan.proxy.password] as const)
        : undefined;
  if (credentials) lines.push(`Proxy-Authorization: ${basicAuth(credentials[0], credentials[1])}`);
  const userAgent = ctx.options.userAgent ?? CURL_USER_AGENT;
  if (userAgent !== "") lines.push(`User-Agent: ${userAgent}`);
  lines.push("Proxy-Connection: Keep-Alive");
  ctx.verbose?.info(`* Establish HTTP proxy tunnel to ${target}`);
  const connect: PreparedRequest = { method: "CONNECT", target, headerLines: lines, body: undefined };
  const bytes = serializeRequest(connect);
  ctx.report.sizeRequest += bytes.length;
  let code = 0;
  const parser = new ResponseParser(
    {
      headerLine: (line) => ctx.verbose?.in(line),
      head: (head) => {
        if (!head.interim) code = head.status;
      },
      body: () => undefined,
    },
    { method: "CONNECT", tunnel: true },
  );
  socket.write(bytes);
  try {
    await readResponse(socket, parser, control);
  } catch (e) {
    if (e instanceof CurlError && e.exitCode === 52) throw new CurlError(56, "Proxy CONNECT aborted");
    throw e;
  }
  ctx.report.httpConnect = code;
  if (code < 200 || code >= 300) {
    socket.destroy();
    throw new CurlError(56, `CONNECT tunnel failed, response ${code}`);
  }
  return socket;
}

/** How curl rewrites the request when it follows a redirect. */
function redirectedPlan(
  previous: RequestPlan,
  status: number,
  next: CurlUrl,
  options: CurlOptions,
  env: NodeJS.ProcessEnv,
): RequestPlan {
  const sameOrigin =
    next.scheme === previous.url.scheme &&
    next.host.toLowerCase() === previous.url.host.toLowerCase() &&
    next.port === previous.url.port;
  const switchToGet =
    ((status === 301 || status === 302) && previous.method === "POST") ||
    (status === 303 && previous.method !== "HEAD");
  const method = switchToGet ? (options.request ?? "GET") : previous.method;
  return {
    url: next,
    method,
    body: switchToGet ? undefined : previous.body,
    formContentType: switchToGet ? false : previous.formContentType,
    proxy: proxyServerFor(next, options, env),
    credentialsAllowed: previous.credentialsAllowed && sameOrigin,
  };
}

function proxyServerFor(url: CurlUrl, options: CurlOptions, env: NodeJS.ProcessEnv): ProxyServer | undefined {
  const proxyText = proxyFor(url, options, env);
  return proxyText === undefined ? undefined : parseProxy(proxyText);
}

function initialPlan(url: CurlUrl, options: CurlOptions, env: NodeJS.ProcessEnv): RequestPlan {
  const proxy = proxyServerFor(url, options, env);
  let method = "GET";
  let body: Buffer | undefined;
  let formContentType = false;
  if (options.head) method = "HEAD";
  else if (options.data !== undefined && !options.get) {
    method = "POST";
    body = options.data;
    formContentType = !options.json;
  }
  if (options.request !== undefined && hasSpaceOrControl(options.request))
    throw new CurlError(43, "A libcurl function was given a bad argument");
  return {
    url,
    method: options.request ?? method,
    body,
    formContentType,
    proxy,
    credentialsAllowed: true,
  };
}

/**
 * -G: the data joins the URL's query the way curl's URL API appends one ("&" between, unless the
 * query already ends with one); curl rebuilds the URL doing so, which drops an empty query.
 */
export function appendQuery(url: CurlUrl, data: string): CurlUrl {
  if (hasSpaceOrControl(data)) throw BAD_URL();
  const query = url.query ? `${url.query}${url.query.endsWith("&") ? "" : "&"}${data}` : data;
  return { ...url, query: query || undefined };
}

async function performTransfer(urlText: string, ctx: TransferContext): Promise<void> {
  const { options, report } = ctx;
  const control = new TransferControl(options.maxTimeMs, options.connectTimeoutMs);
  try {
    let url = parseCurlUrl(urlText);
    if (options.get && options.data !== undefined) url = appendQuery(url, options.data.toString());
    report.urlEffective = formatUrl(url);
    let plan = initialPlan(url, options, ctx.io.env);
    report.method = plan.method;
    for (;;) {
      const follow = (status: number, location: string | undefined) =>
        options.location && location !== undefined && REDIRECT_CODES.has(status);
      const result = await exchange(plan, ctx, control, follow);
      if (!follow(result.status, result.location)) return;
      if (options.maxRedirs >= 0 && report.numRedirects >= options.maxRedirs)
        throw new CurlError(47, `Maximum (${options.maxRedirs}) redirects followed`);
      const next = resolveLocation(result.location as string, url);
      ctx.verbose?.info(`* Issue another request to this URL: '${next}'`);
      url = parseCurlUrl(next);
      plan = redirectedPlan(plan, result.status, url, options, ctx.io.env);

      report.numRedirects++;
      report.urlEffective = formatUrl(url);
      report.method = plan.method;
      report.timeRedirect = (performance.now() - control.started) / 1000;
      control.reconnecting();
    }
  } finally {
    report.timeTotal = (performance.now() - control.started) / 1000;
    control.close();
  }
}

/**
 * curl's `warnf`: "Warning: " before every line, text wrapped at 79 columns on blanks, muted by
 * -s.
 */
export function formatWarning(text: string): string {
  const prefix = "Warning: ";
  const width = 79 - prefix.length;
  let rest = text;
  let out = "";
  while (rest.length > 0) {
    out += prefix;
    if (rest.length > width) {
      let cut = width - 1;
      while (cut > 0 && !/\s/.test(rest[cut] as string)) cut--;
      if (cut === 0) cut = width - 1;
      out += `${rest.slice(0, cut + 1)}\n`;
      rest = rest.slice(cut + 1);
    } else {
      out += rest;
      rest = "";
    }
  }
  return out;
}

/** What curl adds after a certificate verification failure. */
const CERTIFICATE_HELP = `More details here: https://curl.se/docs/sslcerts.html

curl failed to verify the legitimacy of the server and therefore could not
establish a secure connection to it. To learn more about this situation and
how to fix it, please visit the web page mentioned above.
`;

const HELP = `Usage: curl [options...] <url>
 -d, --data <data>          HTTP POST data
     --data-binary <data>   HTTP POST binary data
     --data-raw <data>      HTTP POST data, '@' allowed
     --data-urlencode <data> HTTP POST data url encoded
 -f, --fail                 Fail fast with no output on HTTP errors
 -G, --get                  Put the post data in the URL and use GET
 -H, --header <header/@file> Pass custom header(s) to server
 -I, --head                 Show document info only
 -i, --include              Include protocol response headers in the output
 -k, --insecure             Allow insecure server connections
     --json <data>          HTTP POST JSON
 -L, --location             Follow redirects
 -m, --max-time <seconds>   Maximum time allowed for transfer
     --connect-timeout <seconds> Maximum time allowed for connection
     --noproxy <no-proxy-list> List of hosts which do not use proxy
 -o, --output <file>        Write to file instead of stdout
 -x, --proxy [protocol://]host[:port] Use this proxy
 -X, --request <method>     Specify request method to use
     --resolve <[+]host:port:addr[,addr]...> Resolve the host+port to this address
 -S, --show-error           Show error even when -s is used
 -s, --silent               Silent mode
 -u, --user <user:password> Server user and password
 -A, --user-agent <name>    Send User-Agent <name> to server
 -v, --verbose              Make the operation more talkative
 -V, --version              Show version number and quit
 -w, --write-out <format>   Use output FORMAT after completion
This is Tessera's built-in curl: HTTP and HTTPS only.
`;

function isTty(stream: Writable): boolean {
  return (stream as Writable & { isTTY?: boolean }).isTTY === true;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}

function methodConflict(options: CurlOptions): string | undefined {
  if (options.head && options.data !== undefined && !options.get)
    return "You can only select one HTTP request method! You asked for both POST (-d, --data) and HEAD (-I, --head).";
  return undefined;
}

/**
 * Runs curl with these arguments (without the program name); returns curl's exit code. Output,
 * errors and warnings go to the given streams exactly as curl would print them.
 */
export async function curl(argv: readonly string[], io: CurlIo): Promise<number> {
  const env = io.env ?? process.env;
  let stdinContent: Promise<Buffer> | undefined;
  const readSource: ArgumentSource = async (path) => {
    if (path === "-") {
      stdinContent ??= readAll(io.stdin ?? process.stdin);
      return stdinContent;
    }
    return readFileSync(path);
  };
  let options: CurlOptions;
  try {
    if (argv.length === 0) throw new CurlUsageError([TRY_HELP]);
    options = await parseCurlArgs(argv, readSource);
  } catch (e) {
    if (!(e instanceof CurlUsageError)) throw e;
    io.stderr.write(`${e.lines.join("\n")}\n`);
    return 2;
  }
  const warn = (text: string) => {
    if (!options.silent) io.stderr.write(formatWarning(`${text}\n`));
  };
  for (const w of options.warnings) io.stderr.write(formatWarning(w));

  if (options.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (options.version) {
    io.stdout.write(
      `curl ${CURL_COMPATIBLE_VERSION} (Tessera built-in)\nProtocols: http https\nFeatures: IPv6 Largefile\n`,
    );
    return 0;
  }
  const conflict = methodConflict(options);
  if (conflict) {
    warn(conflict);
    return 2;
  }
  if (options.urls.length === 0) {
    io.stderr.write(`curl: no URL specified!\n${TRY_HELP}\n`);
    return 2;
  }
  const verbose: Verbose | undefined = options.verbose
    ? {
        info: (text) => io.stderr.write(`${text}\n`),
        out: (line) => io.stderr.write(`> ${line}`),
        in: (line) => io.stderr.write(Buffer.concat([Buffer.from("< "), line])),
      }
    : undefined;
  let exitCode = 0;
  for (const [index, urlText] of options.urls.entries()) {
    const outputPath = options.outputs[index];
    const sink = new OutputSink(io.stdout, outputPath, warn);
    const toStdout = outputPath === undefined || outputPath === "-";
    const showProgress = !options.silent && !(toStdout && isTty(io.stdout));
    const report = emptyReport(urlText, index);
    report.filenameEffective = toStdout ? undefined : outputPath;
    report.referer = options.referer;
    const progress = showProgress ? new ProgressMeter(io.stderr) : undefined;
    const ctx: TransferContext = {
      options,
      io: { stdout: io.stdout, stderr: io.stderr, env },
      sink,
      verbose,
      progress,
      report,
    };
    let failure: CurlError | undefined;
    try {
      await performTransfer(urlText, ctx);
      await sink.close(true);
    } catch (e) {
      if (!(e instanceof CurlError)) {
        progress?.finish();
        throw e;
      }
      failure = e;

      await sink.close(false).catch(() => undefined);
    }
    progress?.finish();
    if (failure) {
      report.exitCode = failure.exitCode;
      report.errorMessage = failure.message;
      if (verbose) verbose.info("* Closing connection 0");
      if (!options.silent || options.showError) {
        io.stderr.write(`curl: (${failure.exitCode}) ${failure.message}\n`);
        if (failure.exitCode === 60) io.stderr.write(CERTIFICATE_HELP);
      }
    } else if (verbose) {
      verbose.info(`* Connection #0 to host ${hostForLog(report.urlEffective)} left intact`);
    }
    if (options.writeOut !== undefined) {
      for (const piece of renderWriteOut(options.writeOut, report))
        (piece.to === "stdout" ? io.stdout : io.stderr).write(piece.text);
    }
    exitCode = failure?.exitCode ?? 0;
  }
  return exitCode;
}

function hostForLog(url: string): string {
  try {
    return parseCurlUrl(url).host;
  } catch {
    return url;
  }
}
