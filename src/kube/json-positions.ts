/**
 * Where the elements of a JSON List's top-level `items` array start, found by one scan over
 * the text. JSON.parse is many times faster than a YAML parser on the large JSON that
 * `kubectl get -o json` prints, but keeps no positions; this scan gives them back.
 */
export function jsonItemOffsets(text: string): number[] {
  const offsets: number[] = [];
  let depth = 0;
  let lastRootString = "";
  let itemsDepth = -1;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      const start = i + 1;
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i += 2;
        else if (d === 34) break;
        else i++;
      }
      if (depth === 1) lastRootString = text.slice(start, i);
      continue;
    }
    if (c === 123 /* { */ || c === 91 /* [ */) {
      if (depth === itemsDepth) offsets.push(i);
      if (c === 91 && depth === 1 && lastRootString === "items" && itemsDepth < 0) itemsDepth = 2;
      depth++;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      depth--;
      if (depth === 1 && itemsDepth === 2) itemsDepth = -3; // the items array is closed
    }
  }
  return offsets;
}

/** 1-based line numbers of ascending offsets. */
export function linesOfOffsets(text: string, offsets: readonly number[]): number[] {
  const lines: number[] = [];
  let line = 1;
  let pos = 0;
  for (const offset of offsets) {
    for (; pos < offset; pos++) if (text.charCodeAt(pos) === 10) line++;
    lines.push(line);
  }
  return lines;
}
