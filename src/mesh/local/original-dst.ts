/**
 * Where a redirected connection was going before capture.ts sent it to the sidecar:
 * `getsockopt(fd, SOL_IP, SO_ORIGINAL_DST)` (linux/netfilter_ipv4.h), which asks conntrack for
 * the connection's original tuple. This is how Envoy's original_dst listener filter works under
 * istio-init's REDIRECT, and the only way to learn it: after NAT the socket's own local address
 * is the sidecar's port.
 *
 * Node exposes neither the option nor the socket's fd, so, as peercred.ts does, libc's
 * getsockopt is called through koffi on the fd of the libuv handle (`socket._handle.fd`).
 * Every failure throws: a sidecar that cannot tell where a connection was going must refuse it,
 * never guess.
 */
import type { Socket } from "node:net";
import { endianness } from "node:os";
import { loadLibc, socketFd } from "../../native/libc.js";

/** Linux values: SOL_IP (netinet/in.h), SO_ORIGINAL_DST (linux/netfilter_ipv4.h). */
const SOL_IP = 0;
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;
/** struct sockaddr_in: sa_family_t family; in_port_t port; struct in_addr addr; char zero[8]. */
export const SOCKADDR_IN_SIZE = 16;
const ERRNO_NAMES: Record<number, string> = {
  2: "ENOENT: the connection was not redirected (no NAT in conntrack for it)",
  9: "EBADF: the socket is closed",
  22: "EINVAL",
  88: "ENOTSOCK",
  92: "ENOPROTOOPT: not a TCP socket, or conntrack is not loaded",
};

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

export class OriginalDestinationError extends Error {
  readonly code = "original-destination-unavailable";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "OriginalDestinationError";
  }
}

type Getsockopt = (fd: number, level: number, name: number, out: Buffer, len: number[]) => number;

interface Native {
  getsockopt: Getsockopt;
  errno: () => number;
}

let native: Native | Error | undefined;

function loadNative(): Native {
  if (native instanceof Error) throw native;
  if (native !== undefined) return native;
  try {
    const { koffi, libc } = loadLibc();
    // int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen): optval is
    // a Buffer (koffi passes its memory), decoded by parseSockaddrIn, which can be tested alone.
    const getsockopt = libc.func("getsockopt", "int", [
      "int",
      "int",
      "int",
      "void *",
      koffi.inout(koffi.pointer("uint32_t")),
    ]) as unknown as Getsockopt;
    native = { getsockopt, errno: () => koffi.errno() };
    return native;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    native = new OriginalDestinationError(`cannot call getsockopt(SO_ORIGINAL_DST) through koffi: ${why}`, {
      cause: err,
    });
    throw native;
  }
}

/**
 * Decodes a struct sockaddr_in as the kernel writes it: the family in host byte order, the port
 * and address in network byte order. Throws unless it is exactly an AF_INET address.
 */
export function parseSockaddrIn(
  bytes: Uint8Array,
  hostEndianness: "LE" | "BE" = endianness(),
): OriginalDestination {
  if (bytes.length !== SOCKADDR_IN_SIZE) {
    throw new OriginalDestinationError(`sockaddr_in is ${SOCKADDR_IN_SIZE} bytes, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const family = view.getUint16(0, hostEndianness === "LE");
  if (family !== AF_INET) {
    throw new OriginalDestinationError(
      `the original destination is not IPv4 (address family ${family}, expected AF_INET ${AF_INET})`,
    );
  }
  const port = view.getUint16(2, false);
  const address = `${bytes[4]}.${bytes[5]}.${bytes[6]}.${bytes[7]}`;
  return { address, port };
}

/** The socket's file descriptor (see src/native/libc.ts). */
function fdOf(socket: Socket): number {
  const fd = socketFd(socket);
  if (fd === undefined) {
    throw new OriginalDestinationError("the connection has no file descriptor (closed, or not a TCP socket)");
  }
  return fd;
}

/**
 * The destination a redirected TCP connection had before NAT. Throws OriginalDestinationError
 * when it was not redirected (ENOENT without conntrack, or a destination that is the listener
 * itself), is not IPv4, or the socket is closed.
 */
export function originalDestination(socket: Socket): OriginalDestination {
  // Checked first: on a native IPv6 connection the kernel would look up a meaningless IPv4
  // tuple. An IPv4 client on a dual-stack listener (::ffff:a.b.c.d) is IPv4 and works.
  const local = socket.localAddress;
  if (local?.includes(":") && !local.toLowerCase().startsWith("::ffff:")) {
    throw new OriginalDestinationError(
      `the connection is IPv6 (local address ${local}): capture redirects IPv4 only, so it has no IPv4 original destination`,
    );
  }
  const fd = fdOf(socket);
  const n = loadNative();
  const out = Buffer.alloc(SOCKADDR_IN_SIZE);
  const len = [SOCKADDR_IN_SIZE];
  if (n.getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, len) !== 0) {
    const errno = n.errno();
    throw new OriginalDestinationError(
      `getsockopt(SO_ORIGINAL_DST) failed: ${ERRNO_NAMES[errno] ?? `errno ${errno}`}`,
    );
  }
  if (len[0] !== SOCKADDR_IN_SIZE) {
    throw new OriginalDestinationError(
      `getsockopt(SO_ORIGINAL_DST) returned ${len[0]} bytes, expected ${SOCKADDR_IN_SIZE}`,
    );
  }
  const original = parseSockaddrIn(out);
  // With conntrack on, an unredirected connection is found too and reports its own local
  // address: a sidecar taking that as the destination would connect to itself.
  const localIPv4 = local?.toLowerCase().startsWith("::ffff:") ? local.slice(7) : local;
  if (original.address === localIPv4 && original.port === socket.localPort) {
    throw new OriginalDestinationError(
      `the connection was not redirected: its original destination ${original.address}:${original.port} is the listener itself`,
    );
  }
  return original;
}
