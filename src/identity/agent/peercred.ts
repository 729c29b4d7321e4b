/**
 * The credentials of the process at the other end of a Unix socket, from the kernel:
 * `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)` (Linux, unix(7)). They are the pid, effective uid
 * and effective gid of the process that called connect(), recorded by the kernel at that
 * moment; the peer cannot forge them.
 *
 * Node has no API for this, so libc's getsockopt is called through koffi (FFI) on the socket's
 * file descriptor. Node does not expose that descriptor either: `socket._handle` is the libuv
 * stream wrap (`Pipe` for a Unix socket) behind every net.Socket, and its `fd` getter returns
 * uv_fileno() (or -1 when closed, and on Windows). That internal is undocumented but stable
 * since Node 0.x and used by well-known modules; it is checked before use, and every failure
 * throws (fail closed): a connection whose caller is unknown gets no identity.
 */
import type { Socket } from "node:net";
import { loadLibc, socketFd } from "../../native/libc.js";
import type { PeerCredentials } from "./attestor.js";

/** Linux values (asm-generic/socket.h; the same on x86-64 and arm64). */
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export class PeerCredentialsError extends Error {
  readonly code = "peer-credentials-unavailable";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PeerCredentialsError";
  }
}

type Getsockopt = (
  fd: number,
  level: number,
  name: number,
  out: Record<string, number>,
  len: number[],
) => number;

interface Native {
  getsockopt: Getsockopt;
  size: number;
  errno: () => number;
}

let native: Native | Error | undefined;

function loadNative(): Native {
  if (native instanceof Error) throw native;
  if (native !== undefined) return native;
  try {
    const { koffi, libc } = loadLibc();
    // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (anonymous: koffi type names are global)
    const ucred = koffi.struct({ pid: "int32", uid: "uint32", gid: "uint32" });
    // int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
    const getsockopt = libc.func("getsockopt", "int", [
      "int",
      "int",
      "int",
      koffi.out(koffi.pointer(ucred)),
      koffi.inout(koffi.pointer("uint32_t")),
    ]) as unknown as Getsockopt;
    native = { getsockopt, size: koffi.sizeof(ucred), errno: () => koffi.errno() };
    return native;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    native = new PeerCredentialsError(`cannot call getsockopt(SO_PEERCRED) through koffi: ${why}`, {
      cause: err,
    });
    throw native;
  }
}

/** The socket's file descriptor (see src/native/libc.ts). */
function fdOf(socket: Socket): number {
  const fd = socketFd(socket);
  if (fd === undefined) {
    throw new PeerCredentialsError(
      "the connection has no file descriptor (closed, or not a Unix socket): its caller cannot be identified",
    );
  }
  return fd;
}

/**
 * The peer's pid, uid and gid (SO_PEERCRED). Throws PeerCredentialsError when they cannot be
 * read, or when the pid is 0 (the peer lives in a PID namespace the agent cannot see).
 */
export function peerCredentials(socket: Socket): PeerCredentials {
  const fd = fdOf(socket);
  const n = loadNative();
  const out: Record<string, number> = {};
  const len = [n.size];
  const rc = n.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, out, len);
  if (rc !== 0) {
    throw new PeerCredentialsError(`getsockopt(SO_PEERCRED) failed with errno ${n.errno()}`);
  }
  if (len[0] !== n.size) {
    throw new PeerCredentialsError(`getsockopt(SO_PEERCRED) returned ${len[0]} bytes, expected ${n.size}`);
  }
  const { pid, uid, gid } = out;
  if (typeof pid !== "number" || typeof uid !== "number" || typeof gid !== "number") {
    throw new PeerCredentialsError("getsockopt(SO_PEERCRED) returned no credentials");
  }
  if (pid <= 0) {
    throw new PeerCredentialsError(
      "the caller's pid is not visible from the agent's PID namespace (SO_PEERCRED pid 0)",
    );
  }
  return { pid, uid, gid };
}
