import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { isMap, isSeq, LineCounter, type Node, parseAllDocuments } from "yaml";
import { InputError, type SourceRef } from "./errors.js";
import { jsonItemOffsets, linesOfOffsets } from "./json-positions.js";

/** One Kubernetes object as written, with where it was written. */
export interface RawObject {
  readonly value: Record<string, unknown>;
  readonly source: SourceRef;
}

export const RECOGNIZED_EXTENSIONS = [".yaml", ".yml", ".json"];

/** An input read as kubectl does: a file, a directory (recursive) or `-` for stdin. */
export interface InputText {
  name: string;
  text: string;
}

export function readInputs(paths: readonly string[], readStdin: () => string): InputText[] {
  const out: InputText[] = [];
  for (const path of paths) {
    if (path === "-") {
      out.push({ name: "<stdin>", text: readStdin() });
      continue;
    }
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path);
    } catch {
      throw new InputError("no-such-path", `no such file or directory: ${path}`, { file: path, line: 0 });
    }
    if (stat.isDirectory()) {
      const files = listDirectory(path);
      if (files.length === 0) {
        throw new InputError(
          "no-inputs",
          `no Kubernetes manifests in directory ${path}: recognized file extensions are ${RECOGNIZED_EXTENSIONS.join(", ")}`,
          { file: path, line: 0 },
        );
      }
      for (const f of files) out.push({ name: f, text: readFileSync(f, "utf8") });
    } else {
      out.push({ name: path, text: readFileSync(path, "utf8") });
    }
  }
  return out;
}

function listDirectory(dir: string): string[] {
  const out: string[] = [];
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) out.push(...listDirectory(full));
    else if (RECOGNIZED_EXTENSIONS.includes(extname(e.name).toLowerCase())) out.push(full);
  }
  return out;
}

function lineOf(node: Node | null | undefined, counter: LineCounter): number {
  const offset = node?.range?.[0];
  return offset === undefined ? 1 : counter.linePos(offset).line;
}

/**
 * Parses every document of a YAML or JSON text. `List` and typed lists (`PodList`, ...) are
 * unwrapped; items of a typed list may omit `kind`, which the list implies.
 */
export function parseObjects(input: InputText): RawObject[] {
  const trimmed = input.text.trimStart();
  if (trimmed.startsWith("{")) {
    const fast = parseJsonObject(input);
    if (fast) return fast;
  }
  return parseYamlObjects(input);
}

/** The fast path for one JSON object; undefined when the text is not plain JSON (YAML then reports). */
function parseJsonObject(input: InputText): RawObject[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(input.text);
  } catch {
    return undefined;
  }
  const start = input.text.length - input.text.trimStart().length;
  const source = { file: input.name, line: linesOfOffsets(input.text, [start])[0] ?? 1 };
  let itemLines: number[] | undefined;
  return unwrapList(value as Record<string, unknown>, source, (i) => {
    itemLines ??= linesOfOffsets(input.text, jsonItemOffsets(input.text));
    return itemLines[i] ?? source.line;
  });
}

/**
 * One document's object, or the items of a `List` or typed list (`PodList`, ...), whose
 * items may omit `kind`, which the list implies.
 */
function unwrapList(
  obj: Record<string, unknown>,
  source: SourceRef,
  itemLine: (i: number) => number,
): RawObject[] {
  const kind = obj.kind;
  if (!(typeof kind === "string" && kind.endsWith("List") && Array.isArray(obj.items)))
    return [{ value: obj, source }];
  const implied = kind === "List" ? undefined : kind.slice(0, -"List".length);
  return (obj.items as unknown[]).map((item, i) => {
    const itemSource = { file: source.file, line: itemLine(i) };
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new InputError("not-an-object", `${kind} item ${i} must be a Kubernetes object`, itemSource);
    }
    const itemObj = item as Record<string, unknown>;
    if (itemObj.kind === undefined && implied) itemObj.kind = implied;
    return { value: itemObj, source: itemSource };
  });
}

function parseYamlObjects(input: InputText): RawObject[] {
  const counter = new LineCounter();
  const docs = parseAllDocuments(input.text, {
    lineCounter: counter,
    uniqueKeys: false,
    prettyErrors: false,
    // No process warnings on stderr (e.g. a map used as a key): bad keys fail validation later.
    logLevel: "error",
  });
  const out: RawObject[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    const error = doc.errors[0];
    if (error) {
      // An error found at the end of a document (an unclosed bracket or quote) is reported at
      // the next document's `---` or past the last line: point at the document's last text.
      let offset = error.pos[0];
      const [docStart, docEnd] = doc.range;
      if (offset >= docEnd && docEnd > docStart) {
        offset = docEnd - 1;
        while (offset > docStart && /\s/.test(input.text[offset] ?? "")) offset--;
      }
      const line = error.linePos?.[0]?.line ?? counter.linePos(offset).line;
      const message = error.message.split("\n")[0] ?? error.message;
      throw new InputError("malformed-yaml", `malformed YAML or JSON: ${message}`, {
        file: input.name,
        line,
      });
    }
    if (doc.contents === null) continue;
    const source = { file: input.name, line: lineOf(doc.contents, counter) };
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (e) {
      // The yaml library throws (ReferenceError) on an alias without anchor and on alias
      // expansion beyond maxAliasCount ("billion laughs").
      const message = e instanceof Error ? e.message : String(e);
      throw new InputError("malformed-yaml", `malformed YAML or JSON: ${message}`, source);
    }
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw new InputError(
        "not-an-object",
        "a document must be a Kubernetes object (a map with kind)",
        source,
      );
    }
    const obj = value as Record<string, unknown>;
    const itemsNode = isMap(doc.contents) ? doc.contents.get("items", true) : undefined;
    out.push(
      ...unwrapList(obj, source, (i) => {
        const node = isSeq(itemsNode) ? (itemsNode.items[i] as Node | undefined) : undefined;
        return node ? lineOf(node, counter) : source.line;
      }),
    );
  }
  return out;
}
