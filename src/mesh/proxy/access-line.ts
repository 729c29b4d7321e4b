import type { AccessRecord } from "./access-log.js";

/**
 * The fields of an access-log line in the order they are written (the order a reader scans:
 * who, to what, what was asked, what happened). A field left undefined is omitted.
 */
export const ACCESS_FIELDS = [
  "direction",
  "protocol",
  "source",
  "sourceIdentity",
  "destination",
  "destinationIdentity",
  "port",
  "method",
  "path",
  "authority",
  "status",
  "outcome",
  "policy",
  "rule",
  "detail",
  "durationMs",
  "bytesIn",
  "bytesOut",
] as const satisfies readonly (keyof AccessRecord)[];

// Every field of AccessRecord must be listed above, or it would silently vanish from the log.
type UnlistedField = Exclude<keyof AccessRecord, (typeof ACCESS_FIELDS)[number]>;
const everyFieldListed: [UnlistedField] extends [never] ? true : UnlistedField = true;
void everyFieldListed;

/**
 * One access-log line: `{"level":"info","time":…,"type":"access",…}` and a newline, the shape
 * pino gives the sidecar's other lines. Written by hand, field by field in ACCESS_FIELDS order,
 * because it runs once per request: a generic logger spends several microseconds walking and
 * copying the record, and a loop over the field names makes every read a megamorphic lookup.
 */
export function accessLine(r: AccessRecord, time: string): string {
  return accessLineAfter(connectionPart(r), r, time);
}

/** The fields every record of one connection shares: the first ones of ACCESS_FIELDS. */
export type ConnectionFields = Pick<
  AccessRecord,
  "direction" | "protocol" | "source" | "sourceIdentity" | "destination" | "destinationIdentity" | "port"
>;

/** What one request or connection adds to its connection's fields. */
export type RequestFields = Omit<AccessRecord, keyof ConnectionFields>;

/** The serialized connection fields (`,"direction":…`), made once per connection. */
export function connectionPart(r: ConnectionFields): string {
  let line = "";
  if (r.direction !== undefined) line += `,"direction":${JSON.stringify(r.direction)}`;
  if (r.protocol !== undefined) line += `,"protocol":${JSON.stringify(r.protocol)}`;
  if (r.source !== undefined) line += `,"source":${JSON.stringify(r.source)}`;
  if (r.sourceIdentity !== undefined) line += `,"sourceIdentity":${JSON.stringify(r.sourceIdentity)}`;
  if (r.destination !== undefined) line += `,"destination":${JSON.stringify(r.destination)}`;
  if (r.destinationIdentity !== undefined)
    line += `,"destinationIdentity":${JSON.stringify(r.destinationIdentity)}`;
  if (r.port !== undefined) line += `,"port":${jsonNumber(r.port)}`;
  return line;
}

/** The line of a record whose connection fields were serialized by connectionPart. */
export function accessLineAfter(connection: string, r: RequestFields, time: string): string {
  let line = `{"level":"info","time":"${time}","type":"access"${connection}`;
  if (r.method !== undefined) line += `,"method":${JSON.stringify(r.method)}`;
  if (r.path !== undefined) line += `,"path":${JSON.stringify(r.path)}`;
  if (r.authority !== undefined) line += `,"authority":${JSON.stringify(r.authority)}`;
  if (r.status !== undefined) line += `,"status":${jsonNumber(r.status)}`;
  if (r.outcome !== undefined) line += `,"outcome":${JSON.stringify(r.outcome)}`;
  if (r.policy !== undefined) line += `,"policy":${JSON.stringify(r.policy)}`;
  if (r.rule !== undefined) line += `,"rule":${jsonNumber(r.rule)}`;
  if (r.detail !== undefined) line += `,"detail":${JSON.stringify(r.detail)}`;
  if (r.durationMs !== undefined) line += `,"durationMs":${jsonNumber(r.durationMs)}`;
  if (r.bytesIn !== undefined) line += `,"bytesIn":${jsonNumber(r.bytesIn)}`;
  if (r.bytesOut !== undefined) line += `,"bytesOut":${jsonNumber(r.bytesOut)}`;
  return `${line}}\n`;
}

/**
 * A number as JSON.stringify writes it (non-finite ones as null). Integers and whole thousandths
 * (durations in milliseconds to the microsecond: 0.321) are spelled from integers, several times
 * faster than the general double-to-text conversion.
 */
export function jsonNumber(n: number): string {
  if (Number.isInteger(n)) return String(n);
  if (!Number.isFinite(n)) return "null";
  const thousandths = Math.round(n * 1000);
  // Below 1e12 two multiples of 0.001 never round to the same double, so the decimal spelled here
  // is the shortest one that reads back as n: the one String(n) chooses.
  if (thousandths / 1000 !== n || Math.abs(thousandths) >= 1e15) return String(n);
  const magnitude = Math.abs(thousandths);
  const whole = Math.floor(magnitude / 1000);
  let fraction = String(magnitude - whole * 1000).padStart(3, "0");
  while (fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  return `${thousandths < 0 ? "-" : ""}${whole}.${fraction}`;
}

/** The same line the obvious way, to compare the fast one with. */
export function accessLineReference(record: AccessRecord, time: string): string {
  const ordered: Record<string, unknown> = { level: "info", time, type: "access" };
  for (const key of ACCESS_FIELDS) if (record[key] !== undefined) ordered[key] = record[key];
  return `${JSON.stringify(ordered)}\n`;
}

let cachedMs = -1;
let cachedIso = "";

/** The ISO-8601 time of now, formatted at most once a millisecond. */
export function isoNow(): string {
  const now = Date.now();
  if (now !== cachedMs) {
    cachedMs = now;
    cachedIso = new Date(now).toISOString();
  }
  return cachedIso;
}
