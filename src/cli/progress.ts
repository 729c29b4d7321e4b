/**
 * A one-line progress display on stderr, only when stderr is a terminal (never in pipes, files
 * or CI logs), and only once the work has run long enough to be worth showing.
 */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr) {
  const started = Date.now();
  let shown = false;
  let phase = "";
  const show = (text: string) => {
    if (!stream.isTTY || Date.now() - started < 300) return;
    shown = true;
    stream.write(`\r\x1b[K${text}`);
  };
  return {
    phase(name: string): void {
      phase = name;
      show(`${name}...`);
    },
    update(done: number, total: number): void {
      show(`${phase}: ${done}/${total} (${Math.floor((100 * done) / Math.max(total, 1))}%)`);
    },
    done(): void {
      if (shown) stream.write("\r\x1b[K");
    },
  };
}
