import { isIPv4, isIPv6 } from "node:net";
import { SpiffeError } from "../errors.js";

/**
 * The Workload API endpoint address (SPIFFE_Workload_Endpoint.md §4): an RFC 3986 URI,
 * `unix:///run/agent.sock` / `unix:/run/agent.sock` (absolute path, no authority) or
 * `tcp://127.0.0.1:8000` (IP literal and port, nothing else).
 *
 * The checks are stricter than go-spiffe where the spec is (`unix://foo`, `unix:///`,
 * `tcp://h:99999` are refused); see ../shared/oracles/spiffe/workload-socket-uri.json.
 */
export type EndpointAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** The environment variable that names the Workload API endpoint when no address is configured. */
export const ENDPOINT_SOCKET_ENV = "SPIFFE_ENDPOINT_SOCKET";

/** Why an endpoint address is invalid: the oracle's `reason` codes, plus `unset` for a missing variable. */
export type EndpointAddressProblem =
  | "not-uri"
  | "scheme"
  | "opaque"
  | "userinfo"
  | "query"
  | "fragment"
  | "unix-authority"
  | "unix-path-missing"
  | "tcp-host-missing"
  | "tcp-host-not-ip"
  | "tcp-port-missing"
  | "tcp-port-invalid"
  | "tcp-path"
  | "unset";

export class EndpointAddressError extends SpiffeError {
  constructor(
    readonly reason: EndpointAddressProblem,
    message: string,
  ) {
    super(`invalid-endpoint-address:${reason}`, message);
    this.name = "EndpointAddressError";
  }
}

function fail(reason: EndpointAddressProblem, message: string): never {
  throw new EndpointAddressError(reason, `invalid Workload API endpoint address: ${message}`);
}

/** RFC 3986 characters: unreserved, reserved and '%' (checked as part of a percent-encoding). */
function isUriChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    "-._~:/?#[]@!$&'()*+,;=".includes(String.fromCharCode(c))
  );
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

function checkUriChars(value: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x25) {
      if (i + 2 < value.length && isHex(value.charCodeAt(i + 1)) && isHex(value.charCodeAt(i + 2))) {
        i += 2;
        continue;
      }
      fail("not-uri", "'%' must start a percent-encoding (%XX)");
    }
    if (!isUriChar(c)) {
      fail("not-uri", `character ${JSON.stringify(value[i])} is not allowed in a URI (RFC 3986)`);
    }
  }
}

interface UriParts {
  scheme: string;
  /** Undefined when the URI has no `//` authority. */
  authority: string | undefined;
  path: string;
  query: string | undefined;
  fragment: string | undefined;
}

function splitUri(value: string): UriParts {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(value);
  if (!m?.[1]) fail("scheme", "the address must start with a scheme, 'unix:' or 'tcp:'");
  const scheme = m[1].toLowerCase();
  let rest = value.slice(m[0].length);
  let fragment: string | undefined;
  let query: string | undefined;
  const hash = rest.indexOf("#");
  if (hash >= 0) {
    fragment = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
  }
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  let authority: string | undefined;
  if (rest.startsWith("//")) {
    const end = rest.indexOf("/", 2);
    authority = end < 0 ? rest.slice(2) : rest.slice(2, end);
    rest = end < 0 ? "" : rest.slice(end);
  }
  return { scheme, authority, path: rest, query, fragment };
}

function decodePath(raw: string): string {
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    fail("not-uri", "the socket path's percent-encoding is not UTF-8");
  }
  if (path.includes("\0")) fail("not-uri", "the socket path must not contain a NUL character");
  return path;
}

function parseUnix(u: UriParts): EndpointAddress {
  if (u.authority === undefined && u.path !== "" && !u.path.startsWith("/")) {
    fail("opaque", "a unix address needs an absolute path: unix:///path/to/socket");
  }
  if (u.authority?.includes("@")) fail("userinfo", "a unix address must not have userinfo");
  if (u.authority !== undefined && u.authority !== "") {
    fail(
      "unix-authority",
      `a unix address has no authority (${JSON.stringify(u.authority)} would be one): write unix:///path/to/socket`,
    );
  }
  if (u.query !== undefined) fail("query", "a unix address must not have a query");
  if (u.fragment !== undefined) fail("fragment", "a unix address must not have a fragment");
  if (u.path === "" || u.path === "/")
    fail("unix-path-missing", "a unix address must name the socket's path");
  return { kind: "unix", path: decodePath(u.path) };
}

function parseTcp(u: UriParts): EndpointAddress {
  if (u.authority === undefined) {
    if (u.path === "" || u.path.startsWith("/")) {
      fail("tcp-host-missing", "a tcp address needs an IP and a port: tcp://127.0.0.1:8000");
    }
    fail("opaque", "a tcp address needs '//' before the host: tcp://127.0.0.1:8000");
  }
  if (u.authority.includes("@")) fail("userinfo", "a tcp address must not have userinfo");
  if (u.query !== undefined) fail("query", "a tcp address must not have a query");
  if (u.fragment !== undefined) fail("fragment", "a tcp address must not have a fragment");
  if (u.authority === "")
    fail("tcp-host-missing", "a tcp address needs an IP and a port: tcp://127.0.0.1:8000");
  if (u.path !== "") fail("tcp-path", "a tcp address must not have a path");
  let host: string;
  let port: string | undefined;
  if (u.authority.startsWith("[")) {
    const close = u.authority.indexOf("]");
    if (close < 0) fail("tcp-host-not-ip", "an IPv6 host must be closed by ']'");
    host = u.authority.slice(1, close);
    const after = u.authority.slice(close + 1);
    if (after !== "" && !after.startsWith(":"))
      fail("tcp-host-not-ip", "unexpected text after the IPv6 host");
    port = after === "" ? undefined : after.slice(1);
    if (!isIPv6(host) || host.includes("%"))
      fail("tcp-host-not-ip", "the host in brackets must be an IPv6 address");
    // The WHATWG URL parser prints IPv6 literals in their canonical (RFC 5952) form.
    host = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } else {
    const colon = u.authority.lastIndexOf(":");
    host = colon < 0 ? u.authority : u.authority.slice(0, colon);
    port = colon < 0 ? undefined : u.authority.slice(colon + 1);
    if (host === "") fail("tcp-host-missing", "a tcp address needs an IP and a port: tcp://127.0.0.1:8000");
    if (!isIPv4(host)) {
      fail("tcp-host-not-ip", `the host must be an IP address, not ${JSON.stringify(host)} (no host names)`);
    }
  }
  if (port === undefined || port === "") fail("tcp-port-missing", "a tcp address needs a port");
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) {
    fail("tcp-port-invalid", `the port must be a number from 0 to 65535, not ${JSON.stringify(port)}`);
  }
  return { kind: "tcp", host, port: Number(port) };
}

/** Parses a `SPIFFE_ENDPOINT_SOCKET` value. Throws EndpointAddressError with the oracle's `reason`. */
export function parseEndpointAddress(value: string): EndpointAddress {
  checkUriChars(value);
  const u = splitUri(value);
  if (u.scheme === "unix") return parseUnix(u);
  if (u.scheme === "tcp") return parseTcp(u);
  return fail("scheme", `the scheme must be 'unix' or 'tcp', not ${JSON.stringify(u.scheme)}`);
}

/**
 * The @grpc/grpc-js dial target for an address: `unix:///run/agent.sock` (grpc-js reads the
 * path literally, so the decoded path is used) or `127.0.0.1:8000` / `[::1]:8000`.
 */
export function grpcTarget(addr: EndpointAddress): string {
  if (addr.kind === "unix") return `unix://${addr.path}`;
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** The address from `SPIFFE_ENDPOINT_SOCKET`; throws EndpointAddressError (`unset`) when it is not set. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): EndpointAddress {
  const value = env[ENDPOINT_SOCKET_ENV];
  if (value === undefined) {
    throw new EndpointAddressError(
      "unset",
      `no Workload API address: set ${ENDPOINT_SOCKET_ENV} (e.g. unix:///run/spire/agent.sock) or pass an address`,
    );
  }
  return parseEndpointAddress(value);
}
