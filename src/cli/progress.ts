/**
 * A one-line progress display on stderr, only when stderr is a terminal (never in pipes, files
 * or CI logs), and only for work that takes long enough to be worth showing.
 */
export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr) {
  const started = Date.now();
  let shown = false;
  return {
    update(done: number, total: number): void {
      if (!stream.isTTY || Date.now() - started < 500) return;
      shown = true;
      stream.write(`\r${label}: ${done}/${total} (${Math.floor((100 * done) / Math.max(total, 1))}%)`);
    },
    done(): void {
      if (shown) stream.write("\r\x1b[K");
    },
  };
}
