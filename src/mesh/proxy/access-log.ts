import { openSync, statSync, writeSync } from "node:fs";
import { pino } from "pino";
import {
  accessLine,
  accessLineAfter,
  type ConnectionFields,
  connectionPart,
  isoNow,
  type RequestFields,
} from "./access-line.js";

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
  /** A writer for the records of one connection, whose shared fields are serialized once. */
  forConnection(fields: ConnectionFields): (record: RequestFields) => void;
  /** Operational messages (not per request): start, rotation, policy reloads, refusals. */
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  flush(): Promise<void>;
}

/**
 * Lines encoded into one buffer and handed to `sink` when the next might not fit: a write per
 * line costs more than the line, and encoding each line at once lets its string die young
 * instead of being kept (and copied by the garbage collector) until the batch is written.
 * `sink` must be done with the bytes when it returns: the buffer is reused.
 */
export class LineBatch {
  private readonly area: Buffer;
  private used = 0;

  constructor(
    private readonly sink: (bytes: Buffer) => void,
    capacity: number,
  ) {
    this.area = Buffer.allocUnsafe(capacity);
  }

  add(line: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const worst = line.length * 3;
    if (this.used + worst > this.area.length) {
      this.flush();
      if (worst > this.area.length) {
        this.sink(Buffer.from(line, "utf8"));
        return;
      }
    }
    this.used += this.area.write(line, this.used, "utf8");
  }

  flush(): void {
    if (this.used === 0) return;
    const bytes = this.area.subarray(0, this.used);
    this.used = 0;
    this.sink(bytes);
  }
}

/**
 * Appends whole batches to a file. A failing write is reported once per error code, not thrown
 * at a request; after one that stopped inside a line, the next batch starts on a new line so the
 * cut line stays the only damaged one.
 */
function fileSink(path: string): (bytes: Buffer) => void {
  const fd = openSync(path, "a");
  const reported = new Set<string>();
  let cutLine = false;
  const writeAll = (bytes: Buffer) => {
    let at = 0;
    try {
      while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
    } catch (err) {
      if (at > 0) cutLine = true;
      throw err;
    }
  };
  return (bytes) => {
    try {
      if (cutLine) {
        writeAll(Buffer.from("\n"));
        cutLine = false;
      }
      writeAll(bytes);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (!reported.has(code)) {
        reported.add(code);
        process.stderr.write(
          `tessera: access log ${path}: ${(err as Error).message}; access lines are being lost\n`,
        );
      }
    }
  };
}

/** A path that is (or will be) a regular file; not a FIFO, a terminal or /dev/stdout, whose reader may be slow. */
function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return true;
  }
}

/**
 * JSON lines. Access records are serialized by `accessLine` and written in batches of about
 * 64 KiB, flushed at least every 200 ms so a quiet sidecar's log still says what just happened;
 * operational messages go through pino to the same destination, after the access lines before
 * them. `destination` is a file path or a file descriptor (1: stdout). A regular file is appended
 * to synchronously (one write into the page cache per batch costs less than handing each batch to
 * the thread pool; O_APPEND keeps the two writers' lines whole); anything else (a descriptor, a
 * FIFO, /dev/stdout) is written asynchronously, so a slow reader never stalls the proxy.
 */
export function jsonAccessLog(destination: string | number = 1): AccessLog {
  const toFile = typeof destination === "string" && isRegularFile(destination);
  // minLength 1: a write is issued as soon as it is handed over, and flush() waits for the
  // writes in flight (with 0, SonicBoom's flush() returns before they have finished).
  const stream = pino.destination({ dest: destination, sync: toFile, minLength: 1 });
  const batch = new LineBatch(
    toFile ? fileSink(destination as string) : (bytes) => stream.write(bytes.toString("utf8")),
    64 * 1024,
  );
  setInterval(() => batch.flush(), 200).unref();
  const logger = pino(
    {
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  process.once("exit", () => {
    batch.flush();
    stream.flushSync();
  });
  return {
    write: (record) => batch.add(accessLine(record, isoNow())),
    forConnection: (fields) => {
      const connection = connectionPart(fields);
      return (record) => batch.add(accessLineAfter(connection, record, isoNow()));
    },
    info: (message, fields) => {
      batch.flush();
      logger.info(fields ?? {}, message);
    },
    warn: (message, fields) => {
      batch.flush();
      logger.warn(fields ?? {}, message);
    },
    flush: () => {
      batch.flush();
      return new Promise((resolve) => {
        stream.flush(() => resolve());
      });
    },
  };
}

/** Keeps records in memory (tests) and optionally forwards them. */
export class MemoryAccessLog implements AccessLog {
  readonly records: AccessRecord[] = [];
  readonly messages: { level: "info" | "warn"; message: string; fields?: Record<string, unknown> }[] = [];
  write(record: AccessRecord): void {
    this.records.push(record);
  }
  forConnection(fields: ConnectionFields): (record: RequestFields) => void {
    return (record) => this.write({ ...fields, ...record });
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.messages.push({ level: "info", message, ...(fields ? { fields } : {}) });
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.messages.push({ level: "warn", message, ...(fields ? { fields } : {}) });
  }
  async flush(): Promise<void> {}
}
