import type { Duplex } from "node:stream";

/**
 * Copies `from` to `to` as data arrives, reporting each chunk's size, pausing `from` while `to`
 * is full, and ending `to` when `from` ends: what `from.pipe(to)` does, with one listener per
 * chunk (pipe's) instead of pipe's and a byte counter's, on the path every forwarded byte takes.
 */
export function relay(from: Duplex, to: Duplex, counted: (bytes: number) => void): void {
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  from.on("data", (chunk: Buffer) => {
    counted(chunk.length);
    if (!to.write(chunk) && !waiting) {
      waiting = true;
      from.pause();
      to.once("drain", resume);
    }
  });
  from.once("end", () => to.end());
}
