/**
 * `--config FILE` for the daemons (`tessera server run`, `tessera agent run`): a YAML mapping
 * whose keys are the command's long option names in camelCase (`--data-dir` → `dataDir`).
 *
 * Precedence: an option given on the command line > the config file > the option's default.
 * Commander records where each value came from (`getOptionValueSource`): values from the file
 * replace only those that did not come from the command line, and are recorded as "config".
 *
 * Types: options that take a value want a string (numeric options also accept a YAML number),
 * flags want `true` or `false`. An unknown key, a wrong type or a YAML syntax error is a
 * ConfigFileError (a UsageError: one line on stderr, exit 2) naming FILE:LINE:COLUMN.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { isMap, isNode, isScalar, LineCounter, parseDocument } from "yaml";
import { UsageError } from "./common.js";

export class ConfigFileError extends UsageError {
  override readonly name = "ConfigFileError";
}

export type ConfigValueKind = "string" | "number" | "boolean";

/** What one config file key accepts, keyed by the camelCase option name. */
export type ConfigSchema = ReadonlyMap<string, ConfigValueKind>;

/** One value read from a config file, with where it was. */
export interface ConfigValue {
  /** As commander holds it: a string for valued options, a boolean for flags. */
  readonly value: string | boolean;
  readonly line: number;
  readonly col: number;
}

/** The option this key stands for, as written on the command line. */
function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function camel(key: string): string {
  return key.replace(/^-+/, "").replace(/[-_]([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * The schema of `cmd`'s options: every long option except `exclude` (by default `config`);
 * flags are boolean, the options named in `numeric` are numbers, the rest strings.
 */
export function schemaOf(
  cmd: Command,
  numeric: readonly string[] = [],
  exclude: readonly string[] = ["config"],
): Map<string, ConfigValueKind> {
  const schema = new Map<string, ConfigValueKind>();
  for (const option of cmd.options) {
    if (option.long === undefined || option.negate) continue;
    const key = option.attributeName();
    if (exclude.includes(key)) continue;
    schema.set(key, option.isBoolean() ? "boolean" : numeric.includes(key) ? "number" : "string");
  }
  return schema;
}

/** Parses and checks a config file's text against `schema`; `file` names it in errors. */
export function parseConfig(text: string, file: string, schema: ConfigSchema): Map<string, ConfigValue> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => {
    const { line, col } = lines.linePos(offset ?? 0);
    return { line, col, where: `${file}:${line}:${col}` };
  };
  const firstError = doc.errors[0];
  if (firstError !== undefined) {
    const message = firstError.message.split("\n")[0] ?? firstError.message;
    throw new ConfigFileError(`${at(firstError.pos[0]).where}: not valid YAML: ${message}`);
  }
  const out = new Map<string, ConfigValue>();
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) return out;
  if (!isMap(contents)) {
    throw new ConfigFileError(
      `${at(contents.range?.[0]).where}: the config file must be a mapping of option names to values (e.g. "dataDir: /var/lib/tessera")`,
    );
  }
  const known = [...schema.keys()].sort().join(", ");
  for (const pair of contents.items) {
    const keyNode = pair.key;
    const keyPos = at(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    if (!isScalar(keyNode) || typeof keyNode.value !== "string") {
      throw new ConfigFileError(`${keyPos.where}: keys must be option names (known: ${known})`);
    }
    const key = keyNode.value;
    const kind = schema.get(key);
    if (kind === undefined) {
      const hint = schema.has(camel(key)) ? ` (did you mean ${camel(key)}?)` : "";
      throw new ConfigFileError(`${keyPos.where}: unknown key "${key}"${hint}; known keys: ${known}`);
    }
    const valueNode = pair.value;
    const valuePos = isNode(valueNode) && valueNode.range ? at(valueNode.range[0]) : keyPos;
    const raw = isScalar(valueNode) ? valueNode.value : valueNode === null ? null : valueNode;
    const wrong = (want: string) =>
      new ConfigFileError(
        `${valuePos.where}: "${key}" (${flagOf(key)}) must be ${want}, not ${describe(raw)}`,
      );
    let value: string | boolean;
    if (kind === "boolean") {
      if (typeof raw !== "boolean") throw wrong("true or false");
      value = raw;
    } else if (kind === "number") {
      if (typeof raw === "number" && Number.isFinite(raw)) value = String(raw);
      else if (typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw))) value = raw;
      else throw wrong("a number");
    } else {
      if (typeof raw !== "string" || raw === "") throw wrong("a non-empty string");
      value = raw;
    }
    out.set(key, { value, line: valuePos.line, col: valuePos.col });
  }
  return out;
}

function describe(raw: unknown): string {
  if (raw === null || raw === undefined) return "empty";
  if (typeof raw === "string") return `the string ${JSON.stringify(raw)}`;
  if (typeof raw === "number" || typeof raw === "boolean") return `${typeof raw} ${String(raw)}`;
  if (isMap(raw)) return "a mapping";
  return "a list";
}

/** Reads and checks `file` (see parseConfig). */
export function loadConfigFile(file: string, schema: ConfigSchema): Map<string, ConfigValue> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigFileError(
      `--config ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  return parseConfig(text, file, schema);
}

/**
 * Applies the config file `file` to `cmd`'s parsed options: each key replaces the option's value
 * unless that came from the command line. Returns the options after that (`cmd.opts()`).
 */
export function applyConfigFile<T extends object>(cmd: Command, file: string, schema: ConfigSchema): T {
  for (const [key, { value }] of loadConfigFile(file, schema)) {
    if (cmd.getOptionValueSource(key) === "cli") continue;
    cmd.setOptionValueWithSource(key, value, "config");
  }
  return cmd.opts<T & Record<string, unknown>>();
}
