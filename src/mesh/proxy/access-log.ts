import { pino } from "pino";

/** One line per HTTP request or TCP connection the sidecar handled, as Envoy's access log has. */
export interface AccessRecord {
  readonly direction: "inbound" | "outbound";
  readonly protocol: "http" | "http2" | "tcp";
  /** The peer's address (`ip:port`). */
  readonly source: string;
  /** The peer's SPIFFE ID from its verified certificate; absent for plaintext. */
  readonly sourceIdentity?: string | undefined;
  /** The workload or Service reached (`ns/name`, `svc.ns:port`). */
  readonly destination: string;
  readonly destinationIdentity?: string | undefined;
  readonly port: number;
  readonly method?: string;
  readonly path?: string;
  readonly authority?: string;
  readonly status?: number;
  /** forwarded, http-403, tcp-closed, connection-reset, handshake-failed, upstream-unavailable, bad-request, ... */
  readonly outcome: string;
  /** `ns/name` of the policy that decided, absent when a default decided. */
  readonly policy?: string | undefined;
  readonly rule?: number | undefined;
  readonly detail?: string;
  readonly durationMs?: number;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
}

export interface AccessLog {
  write(record: AccessRecord): void;
  /** Operational messages (not per request): start, rotation, policy reloads, refusals. */
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  flush(): Promise<void>;
}

/**
 * JSON lines through pino (asynchronous writes, so logging a request costs little on the hot
 * path). `destination` is a file path or a file descriptor (1: stdout).
 */
export function jsonAccessLog(destination: string | number = 1): AccessLog {
  // Lines are gathered into 4 KiB writes (a write per line costs more than the line), and
  // flushed at least every 200 ms so a quiet sidecar's log still says what just happened.
  const stream = pino.destination({ dest: destination, sync: false, minLength: 4096 });
  setInterval(() => {
    try {
      stream.flush();
    } catch {
      // a flush already in progress
    }
  }, 200).unref();
  const logger = pino(
    {
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  process.once("exit", () => stream.flushSync());
  // A child logger carries `type` in its bindings: no copy of every record on the request path.
  const access = logger.child({ type: "access" });
  return {
    write: (record) => access.info(record),
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    flush: () =>
      new Promise((resolve) => {
        stream.flush(() => resolve());
      }),
  };
}

/** Keeps records in memory (tests) and optionally forwards them. */
export class MemoryAccessLog implements AccessLog {
  readonly records: AccessRecord[] = [];
  readonly messages: { level: "info" | "warn"; message: string; fields?: Record<string, unknown> }[] = [];
  write(record: AccessRecord): void {
    this.records.push(record);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.messages.push({ level: "info", message, ...(fields ? { fields } : {}) });
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.messages.push({ level: "warn", message, ...(fields ? { fields } : {}) });
  }
  async flush(): Promise<void> {}
}
