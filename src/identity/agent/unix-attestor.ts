/**
 * Unix workload attestation (Linux /proc), with SPIRE's unix attestor's selectors:
 *
 *   unix:uid:<euid>             unix:user:<name of euid>      (from /etc/passwd)
 *   unix:gid:<egid>             unix:group:<name of egid>     (from /etc/group)
 *   unix:supplementary_gid:<g>  unix:supplementary_group:<name>
 *   unix:path:<executable>      unix:sha256:<hex digest of the executable>
 *
 * Ids come from /proc/<pid>/status (`Uid:`/`Gid:` effective column, `Groups:`), the path from
 * readlink(/proc/<pid>/exe), the digest from the file /proc/<pid>/exe opens (the very file the
 * process runs, even if the path was replaced since). Files larger than `workloadSizeLimit`
 * (default 64 MiB) are not hashed: no sha256 selector, and a warning once per file.
 *
 * The PID-reuse guard (ProcessGuard), as SPIRE's peertracker does it: when a connection is
 * accepted, the process start time (/proc/<pid>/stat field 22) and the owner of /proc/<pid> are
 * recorded; after attestation, and again before answering, both are read again. A different
 * start time means the PID now names another process; an owner other than the connecting uid
 * and gid means the process changed users or lost the race for the PID. Either way the request
 * is refused (PermissionDenied).
 */
import { createHash } from "node:crypto";
import { type BigIntStats, readFileSync, readlinkSync, statSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { AttestationError, type PeerCredentials, type Selector, type WorkloadAttestor } from "./attestor.js";

// ---------------------------------------------------------------------------------------------
// Reading /proc and /etc (replaceable in tests)

/** The executable of a process: what identifies the file, and its digest on demand. */
export interface ExeFile {
  readonly size: number;
  /** Changes when the file does: device, inode, size, mtime and ctime. */
  readonly identity: string;
  /**
   * SHA-256 (hex) of the content, or undefined when it holds more than `maxBytes`. Rejects
   * when the file is no longer the one `identity` describes.
   */
  sha256(maxBytes: number): Promise<string | undefined>;
}

export interface ProcReader {
  /** The text of /proc/<pid>/status. */
  status(pid: number): Promise<string>;
  /** The text of /proc/<pid>/stat. */
  stat(pid: number): Promise<string>;
  /** The owner (uid, gid) of the /proc/<pid> directory: the process's effective ids. */
  owner(pid: number): Promise<{ uid: number; gid: number }>;
  /** readlink(/proc/<pid>/exe). */
  exePath(pid: number): Promise<string>;
  /** The file /proc/<pid>/exe opens. */
  exeFile(pid: number): Promise<ExeFile>;
  /** The text of /etc/passwd. */
  passwd(): Promise<string>;
  /** The text of /etc/group. */
  group(): Promise<string>;
}

/** A file read again only when its inode, size, mtime or ctime changed. */
class CachedText {
  private key = "";
  private text: string | undefined;

  constructor(private readonly path: string) {}

  read(): string {
    const s = statSync(this.path, { bigint: true, throwIfNoEntry: false });
    if (s === undefined) return "";
    const key = `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    if (this.text !== undefined && key === this.key) return this.text;
    const text = readFileSync(this.path, "utf8");
    this.key = key;
    this.text = text;
    return text;
  }
}

function fileIdentity(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** Runs a synchronous read, as a promise (so that a failure is a rejection, never a throw). */
function now<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * The real /proc and /etc (roots configurable, e.g. a host's /proc mounted elsewhere).
 *
 * /proc files, the readlink and the stat of /etc files are read synchronously: they are served
 * from kernel memory in microseconds, far less than one round trip through libuv's thread pool
 * (an async readFile makes four or five), and they sit on the path of every Workload API call.
 * SPIRE's agent reads them inline too. The executable itself (stat, hashing) is read
 * asynchronously: it may live on any file system.
 */
export function systemProcReader(options: { procRoot?: string; etcRoot?: string } = {}): ProcReader {
  const procRoot = options.procRoot ?? "/proc";
  const etcRoot = options.etcRoot ?? "/etc";
  const passwd = new CachedText(join(etcRoot, "passwd"));
  const group = new CachedText(join(etcRoot, "group"));
  const p = (pid: number, ...rest: string[]) => join(procRoot, String(pid), ...rest);
  return {
    status: (pid) => now(() => readFileSync(p(pid, "status"), "utf8")),
    stat: (pid) => now(() => readFileSync(p(pid, "stat"), "utf8")),
    owner: (pid) =>
      now(() => {
        const s = statSync(p(pid));
        return { uid: s.uid, gid: s.gid };
      }),
    exePath: (pid) => now(() => readlinkSync(p(pid, "exe"))),
    exeFile: async (pid) => {
      const exe = p(pid, "exe");
      const s = await stat(exe, { bigint: true });
      const identity = fileIdentity(s);
      const size = Number(s.size);
      return {
        size,
        identity,
        sha256: async (maxBytes) => {
          if (size > maxBytes) return undefined;
          const fh = await open(exe, "r");
          try {
            if (fileIdentity(await fh.stat({ bigint: true })) !== identity) {
              throw new Error(`the executable of pid ${pid} changed during attestation`);
            }
            const hash = createHash("sha256");
            const buf = Buffer.allocUnsafe(1 << 20);
            let total = 0;
            for (;;) {
              const { bytesRead } = await fh.read(buf, 0, buf.length, total);
              if (bytesRead === 0) break;
              total += bytesRead;
              // The file may have grown since the stat: the limit holds for what is read.
              if (total > maxBytes) return undefined;
              hash.update(buf.subarray(0, bytesRead));
            }
            return hash.digest("hex");
          } finally {
            await fh.close();
          }
        },
      };
    },
    passwd: () => now(() => passwd.read()),
    group: () => now(() => group.read()),
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing

export interface ProcStatus {
  /** Effective uid (second column of `Uid:`). */
  uid: number;
  /** Effective gid (second column of `Gid:`). */
  gid: number;
  /** Supplementary group ids (`Groups:`). */
  groups: number[];
}

function ids(line: string | undefined, what: string): number[] {
  if (line === undefined) throw new Error(`/proc status has no ${what} line`);
  const out = line
    .trim()
    .split(/\s+/)
    .filter((s) => s !== "")
    .map(Number);
  if (out.some((n) => !Number.isInteger(n) || n < 0))
    throw new Error(`/proc status ${what} line is malformed`);
  return out;
}

/** Parses /proc/<pid>/status: effective uid and gid, supplementary groups. */
export function parseProcStatus(text: string): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  const uids = ids(fields.get("Uid"), "Uid");
  const gids = ids(fields.get("Gid"), "Gid");
  const uid = uids[1] ?? uids[0];
  const gid = gids[1] ?? gids[0];
  if (uid === undefined || gid === undefined) throw new Error("/proc status has empty Uid or Gid lines");
  const groups = fields.has("Groups") ? ids(fields.get("Groups"), "Groups") : [];
  return { uid, gid, groups };
}

/**
 * The start time (field 22, clock ticks since boot) from /proc/<pid>/stat. The command name
 * (field 2) is in parentheses and may hold spaces and parentheses: fields are counted from the
 * last `)`.
 */
export function parseStartTime(text: string): string {
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error("/proc stat has no parenthesized command name");
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state), so field 22 is rest[19].
  const starttime = rest[19];
  if (starttime === undefined || !/^\d+$/.test(starttime)) throw new Error("/proc stat has no start time");
  return starttime;
}

/** id → name from /etc/passwd or /etc/group (`name:x:id:...`); the first name of an id wins. */
export function parseIdNames(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const parts = line.split(":");
    const name = parts[0];
    const id = Number(parts[2]);
    if (!name || parts[2] === undefined || parts[2] === "" || !Number.isInteger(id)) continue;
    if (!out.has(id)) out.set(id, name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PID-reuse guard

/**
 * What identifies the caller's process beyond its PID, recorded when the connection was
 * accepted; `check()` refuses when it changed (see the module comment).
 */
export class ProcessGuard {
  private constructor(
    readonly creds: PeerCredentials,
    readonly startTime: string,
    readonly owner: { uid: number; gid: number },
    private readonly proc: ProcReader,
  ) {}

  /** Records the process's start time and owner. Rejects with AttestationError when it is already gone. */
  static async capture(creds: PeerCredentials, proc: ProcReader = defaultReader()): Promise<ProcessGuard> {
    const { pid } = creds;
    if (!Number.isInteger(pid) || pid <= 0) {
      throw new AttestationError("no-peer-credentials", `the caller's pid ${pid} cannot be examined`);
    }
    let startTime: string;
    let owner: { uid: number; gid: number };
    try {
      [startTime, owner] = await Promise.all([proc.stat(pid).then(parseStartTime), proc.owner(pid)]);
    } catch (err) {
      throw new AttestationError(
        "process-exited",
        `the calling process (pid ${pid}) cannot be examined; it probably exited: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return new ProcessGuard(creds, startTime, owner, proc);
  }

  /** Rejects with AttestationError unless the PID still names the process that connected. */
  async check(): Promise<void> {
    const { pid, uid, gid } = this.creds;
    let startTime: string;
    let owner: { uid: number; gid: number };
    try {
      [startTime, owner] = await Promise.all([
        this.proc.stat(pid).then(parseStartTime),
        this.proc.owner(pid),
      ]);
    } catch (err) {
      throw new AttestationError(
        "process-exited",
        `the calling process (pid ${pid}) exited during attestation; refusing (its PID could be reused)`,
        { cause: err },
      );
    }
    if (startTime !== this.startTime) {
      throw new AttestationError(
        "pid-reused",
        `pid ${pid} now names another process (start time ${this.startTime} when it connected, ${startTime} now): the caller exited and its PID was reused; refusing`,
      );
    }
    if (owner.uid !== this.owner.uid || owner.gid !== this.owner.gid) {
      throw new AttestationError(
        "owner-changed",
        `the process with pid ${pid} changed owner during attestation (${this.owner.uid}:${this.owner.gid} → ${owner.uid}:${owner.gid}); refusing`,
      );
    }
    if (owner.uid !== uid || owner.gid !== gid) {
      throw new AttestationError(
        "owner-changed",
        `the process with pid ${pid} runs as ${owner.uid}:${owner.gid}, not as the ${uid}:${gid} that connected: another process holds the PID, or the caller changed users; refusing`,
      );
    }
  }
}

let sharedReader: ProcReader | undefined;

function defaultReader(): ProcReader {
  sharedReader ??= systemProcReader();
  return sharedReader;
}

// ---------------------------------------------------------------------------------------------
// The attestor

export const DEFAULT_WORKLOAD_SIZE_LIMIT = 64 * 1024 * 1024;

export interface UnixAttestorOptions {
  proc?: ProcReader;
  /** Emit `unix:path` and `unix:sha256` (default true; needs access to /proc/<pid>/exe). */
  discoverWorkloadPath?: boolean;
  /**
   * Largest executable hashed for `unix:sha256`, in bytes (default 64 MiB). A larger file gets
   * no sha256 selector and a warning; a negative limit never hashes.
   */
  workloadSizeLimit?: number;
  /** Receives warnings (default: process.emitWarning). */
  warn?: (message: string) => void;
}

const DIGEST_CACHE_SIZE = 256;

export class UnixAttestor implements WorkloadAttestor {
  readonly name = "unix";
  private readonly proc: ProcReader;
  private readonly discoverPath: boolean;
  private readonly sizeLimit: number;
  private readonly warn: (message: string) => void;
  /** Digests by file identity: an executable is hashed once, not on every call. */
  private readonly digests = new Map<string, string>();
  private readonly warned = new Set<string>();
  private names: { passwd: string; group: string; users: Map<number, string>; groups: Map<number, string> } =
    { passwd: "", group: "", users: new Map(), groups: new Map() };

  constructor(options: UnixAttestorOptions = {}) {
    this.proc = options.proc ?? defaultReader();
    this.discoverPath = options.discoverWorkloadPath ?? true;
    this.sizeLimit = options.workloadSizeLimit ?? DEFAULT_WORKLOAD_SIZE_LIMIT;
    this.warn = options.warn ?? ((m) => process.emitWarning(m, { code: "TESSERA_UNIX_ATTESTOR" }));
  }

  async attest(pid: number): Promise<Selector[]> {
    const [status, names, exe] = await Promise.all([
      this.proc.status(pid).then(parseProcStatus),
      this.idNames(),
      this.discoverPath ? this.exeSelectors(pid) : Promise.resolve([]),
    ]);
    const out: Selector[] = [];
    const add = (value: string) => out.push({ type: "unix", value });
    add(`uid:${status.uid}`);
    const user = names.users.get(status.uid);
    if (user !== undefined) add(`user:${user}`);
    add(`gid:${status.gid}`);
    const group = names.groups.get(status.gid);
    if (group !== undefined) add(`group:${group}`);
    for (const g of status.groups) {
      add(`supplementary_gid:${g}`);
      const name = names.groups.get(g);
      if (name !== undefined) add(`supplementary_group:${name}`);
    }
    for (const value of exe) add(value);
    return out;
  }

  private async idNames(): Promise<{ users: Map<number, string>; groups: Map<number, string> }> {
    const [passwd, group] = await Promise.all([this.proc.passwd(), this.proc.group()]);
    const n = this.names;
    if (passwd !== n.passwd || group !== n.group) {
      this.names = { passwd, group, users: parseIdNames(passwd), groups: parseIdNames(group) };
    }
    return this.names;
  }

  private async exeSelectors(pid: number): Promise<string[]> {
    const [path, exe] = await Promise.all([
      this.proc.exePath(pid),
      this.sizeLimit < 0 ? Promise.resolve(undefined) : this.proc.exeFile(pid),
    ]);
    const out = [`path:${path}`];
    if (exe === undefined) return out;
    const cached = this.digests.get(exe.identity);
    if (cached !== undefined) {
      out.push(`sha256:${cached}`);
      return out;
    }
    const digest = exe.size > this.sizeLimit ? undefined : await exe.sha256(this.sizeLimit);
    if (digest === undefined) {
      if (!this.warned.has(exe.identity)) {
        if (this.warned.size >= DIGEST_CACHE_SIZE) this.warned.clear();
        this.warned.add(exe.identity);
        this.warn(
          `unix attestor: ${path} (${exe.size} bytes) is larger than the workload size limit of ${this.sizeLimit} bytes; no unix:sha256 selector for it`,
        );
      }
      return out;
    }
    if (this.digests.size >= DIGEST_CACHE_SIZE) {
      const oldest = this.digests.keys().next().value;
      if (oldest !== undefined) this.digests.delete(oldest);
    }
    this.digests.set(exe.identity, digest);
    out.push(`sha256:${digest}`);
    return out;
  }
}
