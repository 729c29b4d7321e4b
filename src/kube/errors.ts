/** Where an object or a field came from, so every message can say file:line. */
export interface SourceRef {
  file: string;
  line: number;
}

/**
 * A value as written, for messages. Never throws: `String()` and template literals throw on a
 * map such as `{toString: 1}` (a valid YAML/JSON object), and print `[object Object]` for others.
 */
export function displayValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value !== "object" || value === null) return String(value);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  text ??= Object.prototype.toString.call(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function formatSource(source: SourceRef | undefined): string {
  return source ? `${source.file}:${source.line}` : "<input>";
}

/**
 * Bad input: the user must fix the file. Carries the file, line and object so the CLI can
 * print one clear line and exit 2 (never a stack trace).
 */
export class InputError extends Error {
  readonly code: string;
  readonly source: SourceRef | undefined;
  readonly object: string | undefined;

  constructor(code: string, message: string, source?: SourceRef, object?: string) {
    super(message);
    this.name = "InputError";
    this.code = code;
    this.source = source;
    this.object = object;
  }

  /** `file:line: Kind ns/name: message` */
  describe(): string {
    const where = formatSource(this.source);
    return this.object ? `${where}: ${this.object}: ${this.message}` : `${where}: ${this.message}`;
  }
}

export interface Warning {
  code: string;
  message: string;
  source?: SourceRef;
  object?: string;
}

export function describeWarning(w: Warning): string {
  const where = w.source ? `${formatSource(w.source)}: ` : "";
  const object = w.object ? `${w.object}: ` : "";
  return `warning ${w.code}: ${where}${object}${w.message}`;
}

/** Collects warnings during loading and compiling; valid but suspicious input is never an error. */
export class Diagnostics {
  readonly warnings: Warning[] = [];

  warn(code: string, message: string, source?: SourceRef, object?: string): void {
    const w: Warning = { code, message };
    if (source) w.source = source;
    if (object) w.object = object;
    this.warnings.push(w);
  }
}
