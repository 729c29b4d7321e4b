/**
 * libc through koffi (FFI), for the socket options Node has no API for (SO_PEERCRED,
 * SO_ORIGINAL_DST). Loaded on first use, so that importing a caller never fails and a platform
 * without koffi or glibc fails there, closed.
 */
import { createRequire } from "node:module";
import type { Socket } from "node:net";

export type Koffi = typeof import("koffi");
export type Library = ReturnType<Koffi["load"]>;

let loaded: { koffi: Koffi; libc: Library } | Error | undefined;

/** koffi and libc, loaded once; throws (every time) the reason they cannot be. */
export function loadLibc(): { koffi: Koffi; libc: Library } {
  if (loaded instanceof Error) throw loaded;
  if (loaded !== undefined) return loaded;
  try {
    if (process.platform !== "linux") throw new Error(`Linux only (platform ${process.platform})`);
    const koffi = createRequire(import.meta.url)("koffi") as Koffi;
    let lastError: unknown;
    // dlopen(NULL) sees the symbols Node itself links (glibc); then the usual sonames.
    for (const name of [null, "libc.so.6", "libc.so"]) {
      try {
        loaded = { koffi, libc: koffi.load(name as string | null) };
        return loaded;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError ?? new Error("libc not found");
  } catch (err) {
    loaded = err instanceof Error ? err : new Error(String(err));
    throw loaded;
  }
}

/**
 * The socket's file descriptor, or undefined when it has none (closed). Node does not expose it:
 * `socket._handle` is the libuv stream wrap behind every net.Socket and its `fd` getter returns
 * uv_fileno() (-1 when closed). Undocumented but stable since Node 0.x; checked before use.
 */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}
