import type { Duplex } from "node:stream";

/** Writes a chunk read from `from` to `to`, pausing `from` until `to` drains when `to` is full. */
export function forward(chunk: Buffer, from: Duplex, to: Duplex): void {
  if (!to.write(chunk) && !from.isPaused()) {
    from.pause();
    to.once("drain", () => from.resume());
  }
}

/**
 * Copies `from` to `to` as data arrives, reporting each chunk's size, pausing `from` while `to`
 * is full, and ending `to` when `from` ends: what `from.pipe(to)` does, with one listener per
 * chunk (pipe's) instead of pipe's and a byte counter's, on the path every forwarded byte takes.
 */
export function relay(from: Duplex, to: Duplex, counted: (bytes: number) => void): void {
  from.on("data", (chunk: Buffer) => {
    counted(chunk.length);
    forward(chunk, from, to);
  });
  from.once("end", () => to.end());
}
