import { displayValue, InputError, type SourceRef } from "./errors.js";

type Obj = Record<string, unknown>;

/** How the kubelet checks a container: an HTTP GET, a TCP connect, a gRPC health check or a command. */
export type ProbeAction =
  | {
      readonly kind: "http";
      /** A number, or a container port name. */
      readonly port: number | string;
      readonly path: string;
      readonly scheme: "HTTP" | "HTTPS";
      /** Extra request headers, in order. */
      readonly headers: readonly { readonly name: string; readonly value: string }[];
    }
  | { readonly kind: "tcp"; readonly port: number | string }
  | { readonly kind: "grpc"; readonly port: number; readonly service: string | undefined }
  | { readonly kind: "exec"; readonly command: readonly string[] };

export interface Probe {
  readonly action: ProbeAction;
  readonly timeoutSeconds: number;
}

export type ProbeKind = "liveness" | "readiness" | "startup";
export const PROBE_KINDS: readonly ProbeKind[] = ["liveness", "readiness", "startup"];

export interface Container {
  readonly name: string;
  readonly image: string;
  /** `command` (the image's entrypoint when empty). */
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly probes: Readonly<Partial<Record<ProbeKind, Probe>>>;
}

function asObject(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function strings(v: unknown, field: string, source: SourceRef, object: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v))
    throw new InputError("invalid-container", `${field} must be a list of strings`, source, object);
  return v.map((s, i) => {
    if (typeof s !== "string" && typeof s !== "number") {
      throw new InputError(
        "invalid-container",
        `${field}[${i}]: ${displayValue(s)} is not a string`,
        source,
        object,
      );
    }
    return String(s);
  });
}

function probePort(v: unknown, field: string, source: SourceRef, object: string): number | string {
  if (typeof v === "string" && v !== "" && !/^\d+$/.test(v)) return v;
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new InputError(
      "invalid-probe",
      `${field}: ${displayValue(v)} is not a port number or name`,
      source,
      object,
    );
  }
  return n;
}

function readProbe(raw: unknown, field: string, source: SourceRef, object: string): Probe | undefined {
  const p = asObject(raw);
  if (!p) return undefined;
  const timeout = typeof p.timeoutSeconds === "number" && p.timeoutSeconds > 0 ? p.timeoutSeconds : 1;
  const http = asObject(p.httpGet);
  if (http) {
    const scheme = http.scheme === "HTTPS" ? "HTTPS" : "HTTP";
    const headers = Array.isArray(http.httpHeaders)
      ? http.httpHeaders.flatMap((h) => {
          const o = asObject(h);
          return o && typeof o.name === "string"
            ? [{ name: o.name, value: displayValue(o.value ?? "") }]
            : [];
        })
      : [];
    const path = typeof http.path === "string" && http.path !== "" ? http.path : "/";
    return {
      action: {
        kind: "http",
        port: probePort(http.port, `${field}.httpGet.port`, source, object),
        path,
        scheme,
        headers,
      },
      timeoutSeconds: timeout,
    };
  }
  const tcp = asObject(p.tcpSocket);
  if (tcp) {
    return {
      action: { kind: "tcp", port: probePort(tcp.port, `${field}.tcpSocket.port`, source, object) },
      timeoutSeconds: timeout,
    };
  }
  const grpc = asObject(p.grpc);
  if (grpc) {
    const port = probePort(grpc.port, `${field}.grpc.port`, source, object);
    if (typeof port !== "number") {
      throw new InputError("invalid-probe", `${field}.grpc.port must be a number`, source, object);
    }
    const service = typeof grpc.service === "string" && grpc.service !== "" ? grpc.service : undefined;
    return { action: { kind: "grpc", port, service }, timeoutSeconds: timeout };
  }
  const exec = asObject(p.exec);
  if (exec) {
    return {
      action: { kind: "exec", command: strings(exec.command, `${field}.exec.command`, source, object) },
      timeoutSeconds: timeout,
    };
  }
  throw new InputError(
    "invalid-probe",
    `${field} has no httpGet, tcpSocket, grpc or exec handler`,
    source,
    object,
  );
}

/** The pod's app containers (not init containers): what they run and how they are probed. */
export function readContainers(podSpec: Obj | undefined, source: SourceRef, object: string): Container[] {
  const list = podSpec?.containers;
  if (!Array.isArray(list)) return [];
  return list.map((raw, i) => {
    const c = asObject(raw) ?? {};
    const field = `spec.containers[${i}]`;
    const probes: Partial<Record<ProbeKind, Probe>> = {};
    for (const kind of ["liveness", "readiness", "startup"] as const) {
      const probe = readProbe(c[`${kind}Probe`], `${field}.${kind}Probe`, source, object);
      if (probe) probes[kind] = probe;
    }
    return {
      name: typeof c.name === "string" && c.name !== "" ? c.name : `container-${i}`,
      image: typeof c.image === "string" ? c.image : "",
      command: strings(c.command, `${field}.command`, source, object),
      args: strings(c.args, `${field}.args`, source, object),
      probes,
    };
  });
}
