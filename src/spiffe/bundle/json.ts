/**
 * A small JSON reader for bundle documents. `JSON.parse` is not good enough here for two
 * reasons: it turns `spiffe_sequence` (a 64-bit integer, SPIFFE_Trust_Domain_and_Bundle.md
 * §4.1.1) into a lossy double, and it silently keeps the last of two members with the same
 * name, while a bundle map MUST reject duplicate trust domains (§5.1.1). This reader keeps
 * every number as its source text and refuses duplicate member names in any object
 * (RFC 7517 §4 allows a JWK parser to reject them, and a bundle is the wrong place to guess).
 */

/** A JSON number kept as written, so that callers choose how (and whether) to convert it. */
export class JsonNumber {
  constructor(readonly raw: string) {}

  /** True for integers written without fraction or exponent (`12`, `-3`, not `1.0` or `1e3`). */
  isPlainInteger(): boolean {
    return /^-?(0|[1-9][0-9]*)$/.test(this.raw);
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** Objects are Maps so that member names such as `__proto__` are ordinary data. */
export type JsonObject = Map<string, JsonValue>;

/** Where in the document something is: `$.trust_domains["example.org"].keys[1]`. */
export type JsonPath = readonly (string | number)[];

export function formatJsonPath(path: JsonPath): string {
  let out = "$";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += `.${p}`;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out;
}

/**
 * Why a text is not acceptable JSON. `duplicate` is separate from `syntax` because callers map
 * it to different rules (a duplicate trust domain in a bundle map is its own error).
 */
export class JsonReadError extends Error {
  constructor(
    readonly kind: "syntax" | "duplicate" | "depth",
    message: string,
    /** For `duplicate`: the path of the object holding the repeated name, and the name. */
    readonly path: JsonPath = [],
    readonly member?: string,
  ) {
    super(message);
    this.name = "JsonReadError";
  }
}

/** Bundles nest four or five levels; the cap keeps hostile input from exhausting the stack. */
const MAX_DEPTH = 64;

/** Decodes bytes as strict UTF-8 (a BOM is dropped, as RFC 8259 §8.1 allows) and reads them. */
export function readJson(input: Buffer | string): JsonValue {
  let text: string;
  if (typeof input === "string") {
    text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(input);
    } catch {
      throw new JsonReadError("syntax", "the document is not valid UTF-8");
    }
  }
  return new Reader(text).document();
}

class Reader {
  private i = 0;

  constructor(private readonly s: string) {}

  document(): JsonValue {
    this.ws();
    if (this.i >= this.s.length) this.fail("the document is empty");
    const v = this.value([], 0);
    this.ws();
    if (this.i < this.s.length) this.fail("unexpected text after the JSON value");
    return v;
  }

  private fail(what: string): never {
    throw new JsonReadError("syntax", `${what} (at offset ${this.i})`);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }

  private value(path: (string | number)[], depth: number): JsonValue {
    if (depth > MAX_DEPTH) throw new JsonReadError("depth", `JSON nested deeper than ${MAX_DEPTH} levels`);
    const c = this.s[this.i];
    switch (c) {
      case "{":
        return this.object(path, depth);
      case "[":
        return this.array(path, depth);
      case '"':
        return this.string();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
        return this.fail(
          c === undefined ? "unexpected end of the document" : `unexpected ${JSON.stringify(c)}`,
        );
    }
  }

  private literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail("invalid literal");
  }

  private number(): JsonNumber {
    const m = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (r === null) return this.fail("invalid number");
    this.i += r[0].length;
    return new JsonNumber(r[0]);
  }

  private string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = "";
    let run = this.i;
    while (true) {
      if (this.i >= s.length) this.fail("unterminated string");
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(run, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("control character in a string");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += s.slice(run, this.i);
      const e = s[this.i + 1];
      switch (e) {
        case '"':
        case "\\":
        case "/":
          out += e;
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hex = s.slice(this.i + 2, this.i + 6);
          if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail("invalid \\u escape");
          out += String.fromCharCode(Number.parseInt(hex, 16));
          this.i += 4;
          break;
        }
        default:
          this.fail("invalid escape in a string");
      }
      this.i += 2;
      run = this.i;
    }
  }

  private array(path: (string | number)[], depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    while (true) {
      this.ws();
      path.push(out.length);
      out.push(this.value(path, depth + 1));
      path.pop();
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") {
        this.i--;
        this.fail("expected ',' or ']' in an array");
      }
    }
  }

  private object(path: (string | number)[], depth: number): JsonObject {
    this.i++;
    const out: JsonObject = new Map();
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    while (true) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a member name");
      const name = this.string();
      if (out.has(name)) {
        throw new JsonReadError(
          "duplicate",
          `member ${JSON.stringify(name)} appears twice in ${formatJsonPath(path)}`,
          [...path],
          name,
        );
      }
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':' after a member name");
      this.i++;
      this.ws();
      path.push(name);
      out.set(name, this.value(path, depth + 1));
      path.pop();
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") {
        this.i--;
        this.fail("expected ',' or '}' in an object");
      }
    }
  }
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return v instanceof Map;
}
