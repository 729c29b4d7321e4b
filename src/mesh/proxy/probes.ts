/**
 * Probe rewriting, as Istio's sidecar injector and pilot-agent do it. Under STRICT mTLS the
 * kubelet's plaintext probes cannot reach the app through the sidecar, so each http/tcp/grpc
 * probe is pointed at the sidecar's status port (`/app-health/<container>/livez|readyz|startupz`)
 * and the sidecar runs the original probe itself, in plaintext, against the app on loopback.
 */
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Probe, ProbeAction, ProbeKind } from "../../kube/containers.js";
import { PROBE_KINDS } from "../../kube/containers.js";
import { InputError } from "../../kube/errors.js";
import { objectName, type Pod } from "../../kube/objects.js";

export type AppAddress = { host: string; port: number };

/**
 * Where the app listens for a container port (from the sidecar's --inbound mappings); undefined
 * = the app's own address is host 127.0.0.1 and the same port.
 */
export type AppAddressOf = (containerPort: number) => AppAddress | undefined;

export interface RewrittenProbe {
  /** `/app-health/<container>/livez` */
  readonly path: string;
  readonly container: string;
  readonly kind: ProbeKind;
  /** The original probe, with a named port replaced by its number. */
  readonly probe: Probe;
}

/** Istio's path suffixes. */
const PATH_SUFFIX: Readonly<Record<ProbeKind, string>> = {
  liveness: "livez",
  readiness: "readyz",
  startup: "startupz",
};

export function appHealthPath(container: string, kind: ProbeKind): string {
  return `/app-health/${encodeURIComponent(container)}/${PATH_SUFFIX[kind]}`;
}

/**
 * Every http/tcp/grpc probe of the pod's containers with its rewritten path. Exec probes are not
 * rewritten (as in Istio: the kubelet runs them inside the container, no network involved).
 * Throws InputError when a named port is not a TCP port of the pod.
 */
export function rewrittenProbes(pod: Pod): RewrittenProbe[] {
  const rewritten: RewrittenProbe[] = [];
  for (const container of pod.containers) {
    for (const kind of PROBE_KINDS) {
      const probe = container.probes[kind];
      if (probe === undefined || probe.action.kind === "exec") continue;
      rewritten.push({
        path: appHealthPath(container.name, kind),
        container: container.name,
        kind,
        probe: { ...probe, action: withNumericPort(probe.action, pod, container.name, kind) },
      });
    }
  }
  return rewritten;
}

function withNumericPort(action: ProbeAction, pod: Pod, container: string, kind: ProbeKind): ProbeAction {
  if (action.kind !== "http" && action.kind !== "tcp") return action;
  if (typeof action.port === "number") return action;
  const name = action.port;
  const port = pod.ports.find((p) => p.name === name && p.protocol === "TCP");
  if (port === undefined) {
    const declared = pod.ports.flatMap((p) => (p.name && p.protocol === "TCP" ? [`"${p.name}"`] : []));
    throw new InputError(
      "unresolved-probe-port",
      `container "${container}" ${kind}Probe: port "${name}" is not a named TCP port of the pod (named ports: ${declared.length ? declared.join(", ") : "none"})`,
      pod.source,
      objectName("Pod", pod.namespace, pod.name),
    );
  }
  return { ...action, port: port.port };
}

export interface ProbeResult {
  readonly ok: boolean;
  /** The HTTP status to answer the kubelet with. */
  readonly status: number;
  readonly detail: string;
}

export interface RunProbeOptions {
  /** Overrides probe.timeoutSeconds. */
  readonly timeoutMs?: number;
  /** Sent to the app unless the probe sets its own; the status server forwards the kubelet's. */
  readonly userAgent?: string;
}

const DEFAULT_USER_AGENT = "kube-probe/tessera";
/** setTimeout's largest delay; a longer one fires at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Runs one probe against the app at `address` (the probe's own port is already mapped into it).
 * httpGet: a GET of the probe's path with its headers (HTTPS without certificate verification, as
 * the kubelet does), answered with the app's status code; success is 200-399. tcpSocket: 200 when
 * a TCP connect succeeds, else 500. grpc: grpc.health.v1.Health/Check, 200 when SERVING, else 500.
 * Past the timeout: 500 with detail "timeout". Never throws.
 */
export function runProbe(
  probe: Probe,
  address: AppAddress,
  options: RunProbeOptions = {},
): Promise<ProbeResult> {
  const timeoutMs = clampTimeout(options.timeoutMs ?? probe.timeoutSeconds * 1000);
  const action = probe.action;
  switch (action.kind) {
    case "http":
      return bounded(timeoutMs, (finish) => httpGet(action, address, options.userAgent, finish));
    case "tcp":
      return bounded(timeoutMs, (finish) => tcpConnect(address, finish));
    case "grpc":
      return bounded(timeoutMs, (finish) =>
        grpcHealthCheck(action.service, address, timeoutMs, options.userAgent, finish),
      );
    case "exec":
      return Promise.resolve(
        failed("exec probes are run by the kubelet in the container, not by the sidecar"),
      );
  }
}

function clampTimeout(ms: number): number {
  // An unusable override falls back to the kubelet's default timeoutSeconds, 1.
  if (!Number.isFinite(ms) || ms <= 0) return 1000;
  return Math.min(Math.ceil(ms), MAX_TIMEOUT_MS);
}

function failed(detail: string): ProbeResult {
  return { ok: false, status: 500, detail };
}

type Finish = (result: ProbeResult) => void;

/**
 * Runs `start` with a deadline. `start` returns how to abandon its work (close sockets), which
 * runs once whichever comes first: its own result, an exception, or the deadline.
 */
function bounded(timeoutMs: number, start: (finish: Finish) => () => void): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    let abandon: (() => void) | undefined;
    const release = () => {
      try {
        abandon?.();
      } catch {
        // Closing an already failed socket or channel may throw; the result is already known.
      }
    };
    const finish: Finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
      release();
    };
    const timer = setTimeout(() => finish(failed("timeout")), timeoutMs);
    try {
      abandon = start(finish);
    } catch (error) {
      finish(failed(errorText(error)));
    }
    if (settled) release();
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function httpGet(
  action: Extract<ProbeAction, { kind: "http" }>,
  address: AppAddress,
  userAgent: string | undefined,
  finish: Finish,
): () => void {
  const options: https.RequestOptions = {
    host: address.host,
    port: address.port,
    method: "GET",
    path: action.path.startsWith("/") ? action.path : `/${action.path}`,
    headers: probeHeaders(action.headers, userAgent),
    // A fresh connection per probe, closed after: a pooled keep-alive socket would outlive the probe.
    agent: false,
  };
  const request =
    action.scheme === "HTTPS"
      ? // The kubelet does not verify the app's certificate either: the app's own serving cert is
        // not issued for the address the probe dials.
        https.request({ ...options, rejectUnauthorized: false })
      : http.request(options);
  request.once("response", (response) => {
    response.resume();
    const code = response.statusCode ?? 0;
    const ok = code >= 200 && code < 400;
    // Any other code from the app (a 1xx left as final, or outside 1xx-5xx) becomes a plain failure.
    const status = ok || (code >= 400 && code < 600) ? code : 500;
    finish({ ok, status, detail: `HTTP ${code}` });
  });
  request.once("error", (error) => finish(failed(errorText(error))));
  request.end();
  return () => request.destroy();
}

/**
 * The probe's headers, repeated names kept (sent as several lines); User-Agent and Accept
 * default as the kubelet sets them.
 */
function probeHeaders(
  configured: readonly { readonly name: string; readonly value: string }[],
  userAgent: string | undefined,
): http.OutgoingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  const spelling = new Map<string, string>();
  for (const { name, value } of configured) {
    const lower = name.toLowerCase();
    const key = spelling.get(lower);
    if (key === undefined) {
      spelling.set(lower, name);
      headers[name] = value;
    } else if (lower !== "host") {
      // A request has one Host; like the kubelet, the first one configured wins.
      headers[key] = [headers[key] ?? [], value].flat();
    }
  }
  if (!spelling.has("user-agent")) headers["User-Agent"] = userAgent ?? DEFAULT_USER_AGENT;
  if (!spelling.has("accept")) headers.Accept = "*/*";
  return headers;
}

function tcpConnect(address: AppAddress, finish: Finish): () => void {
  const socket = net.connect({ host: address.host, port: address.port });
  socket.once("connect", () =>
    finish({ ok: true, status: 200, detail: `TCP connect to ${hostPort(address)} succeeded` }),
  );
  socket.once("error", (error) => finish(failed(errorText(error))));
  return () => socket.destroy();
}

function hostPort(address: AppAddress): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

// ---------------------------------------------------------------------------------------------
// grpc.health.v1 (https://github.com/grpc/grpc/blob/master/doc/health-checking.md): two messages
// of one field each, encoded by hand rather than pulling in a protobuf runtime for them.

export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

/** HealthCheckResponse.ServingStatus */
export const ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;

const SERVING_STATUS_NAMES: Readonly<Record<number, string>> = {
  0: "UNKNOWN",
  1: "SERVING",
  2: "NOT_SERVING",
  3: "SERVICE_UNKNOWN",
};

export class ProtobufDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtobufDecodeError";
  }
}

/** HealthCheckRequest { string service = 1; } — empty for the server's overall health. */
export function encodeHealthCheckRequest(service: string | undefined): Buffer {
  if (service === undefined || service === "") return Buffer.alloc(0);
  return lengthDelimitedField(1, Buffer.from(service, "utf8"));
}

/** HealthCheckResponse { ServingStatus status = 1; } */
export function encodeHealthCheckResponse(status: number): Buffer {
  if (status === 0) return Buffer.alloc(0);
  return Buffer.concat([varint(BigInt(1 << 3)), varint(BigInt.asUintN(64, BigInt(status | 0)))]);
}

/** The service of a HealthCheckRequest. Throws ProtobufDecodeError on malformed bytes. */
export function decodeHealthCheckRequest(bytes: Uint8Array): string {
  let service = "";
  for (const field of fields(bytes)) {
    if (field.number !== 1) continue;
    if (field.wireType !== 2 || field.bytes === undefined) {
      throw new ProtobufDecodeError("HealthCheckRequest.service is not length-delimited");
    }
    try {
      service = new TextDecoder("utf-8", { fatal: true }).decode(field.bytes);
    } catch {
      throw new ProtobufDecodeError("HealthCheckRequest.service is not valid UTF-8");
    }
  }
  return service;
}

/** The status of a HealthCheckResponse (last occurrence wins). Throws ProtobufDecodeError on malformed bytes. */
export function decodeHealthCheckResponse(bytes: Uint8Array): number {
  let status = 0;
  for (const field of fields(bytes)) {
    if (field.number !== 1) continue;
    if (field.wireType !== 0 || field.varint === undefined) {
      throw new ProtobufDecodeError("HealthCheckResponse.status is not a varint");
    }
    // An enum is an int32: the low 32 bits of the varint, two's complement.
    status = Number(BigInt.asIntN(32, field.varint));
  }
  return status;
}

function lengthDelimitedField(fieldNumber: number, payload: Buffer): Buffer {
  return Buffer.concat([varint(BigInt((fieldNumber << 3) | 2)), varint(BigInt(payload.length)), payload]);
}

function varint(value: bigint): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80n) {
    bytes.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  bytes.push(Number(rest));
  return Buffer.from(bytes);
}

interface Field {
  readonly number: number;
  readonly wireType: number;
  readonly varint?: bigint;
  readonly bytes?: Uint8Array;
}

function* fields(bytes: Uint8Array): Generator<Field> {
  let at = 0;
  const readVarint = (): bigint => {
    let value = 0n;
    for (let i = 0; i < 10; i++) {
      if (at >= bytes.length) throw new ProtobufDecodeError("truncated varint");
      const byte = bytes[at++] as number;
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, value);
    }
    throw new ProtobufDecodeError("varint longer than 10 bytes");
  };
  const skip = (n: number): Uint8Array => {
    if (n > bytes.length - at) throw new ProtobufDecodeError("field runs past the end of the message");
    const slice = bytes.subarray(at, at + n);
    at += n;
    return slice;
  };
  while (at < bytes.length) {
    const tag = readVarint();
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (number < 1 || number > 0x1fffffff)
      throw new ProtobufDecodeError(`field number ${number} is out of range`);
    switch (wireType) {
      case 0:
        yield { number, wireType, varint: readVarint() };
        break;
      case 1:
        skip(8);
        yield { number, wireType };
        break;
      case 2: {
        const length = readVarint();
        if (length > BigInt(bytes.length))
          throw new ProtobufDecodeError("field runs past the end of the message");
        yield { number, wireType, bytes: skip(Number(length)) };
        break;
      }
      case 5:
        skip(4);
        yield { number, wireType };
        break;
      default:
        throw new ProtobufDecodeError(`wire type ${wireType} is not supported`);
    }
  }
}

type DecodedResponse = { readonly status: number } | { readonly error: string };

function grpcHealthCheck(
  service: string | undefined,
  address: AppAddress,
  timeoutMs: number,
  userAgent: string | undefined,
  finish: Finish,
): () => void {
  const client = new grpc.Client(hostPort(address), grpc.credentials.createInsecure(), {
    "grpc.primary_user_agent": userAgent ?? DEFAULT_USER_AGENT,
  });
  const call = client.makeUnaryRequest<string | undefined, DecodedResponse>(
    HEALTH_CHECK_METHOD,
    encodeHealthCheckRequest,
    (bytes) => {
      // Returned rather than thrown, so the detail names the decoding problem.
      try {
        return { status: decodeHealthCheckResponse(bytes) };
      } catch (error) {
        return { error: errorText(error) };
      }
    },
    service,
    new grpc.Metadata(),
    { deadline: Date.now() + timeoutMs },
    (error, response) => {
      if (error) {
        const code = grpc.status[error.code] ?? String(error.code);
        finish(
          failed(error.code === grpc.status.DEADLINE_EXCEEDED ? "timeout" : `gRPC ${code}: ${error.details}`),
        );
      } else if (response === undefined) {
        finish(failed("gRPC health check returned no response"));
      } else if ("error" in response) {
        finish(failed(`bad HealthCheckResponse: ${response.error}`));
      } else {
        const name = SERVING_STATUS_NAMES[response.status] ?? String(response.status);
        const ok = response.status === ServingStatus.SERVING;
        finish({ ok, status: ok ? 200 : 500, detail: name });
      }
    },
  );
  return () => {
    call.cancel();
    client.close();
  };
}
