import type { Connection } from "./connectivity.js";
import { ConnectionSet } from "./connset.js";
import type { Engine } from "./engine.js";
import * as iv from "./intervals.js";
import { describeMatch, describeRequests, type HttpRequests } from "./istio/httpset.js";
import type { MeshSegment } from "./istio/summary.js";
import { policyName, type SideExplanation } from "./model.js";
import { csvField } from "./output/csv.js";
import { mdCell } from "./output/md.js";
import { connText, type Format, toRows } from "./output/rows.js";

/** What the mesh at the destination decided, for a group of TCP ports that answer alike. */
export interface MeshStepExplanation {
  readonly layer: "PeerAuthentication" | "AuthorizationPolicy";
  /** TCP ports (`80,8080-8090`). */
  readonly ports: string;
  /** One sentence for people. */
  readonly text: string;
  /** The same, machine-readable. */
  readonly json: Record<string, unknown>;
}

export interface PairExplanation {
  readonly src: string;
  readonly dst: string;
  readonly allowed: string;
  readonly denied: string;
  readonly sides: readonly SideExplanation[];
  /** The mesh's steps (absent when the input has no mesh). */
  readonly mesh?: readonly MeshStepExplanation[];
  /** When the mesh does not decide for this pair: why. */
  readonly meshNote?: string;
}

export function explainPair(engine: Engine, c: Connection): PairExplanation {
  const sides = engine.explain(c.src.endpoint, c.dst.endpoint);
  const [row] = toRows([c]);
  return {
    src: c.src.id,
    dst: c.dst.id,
    allowed: row ? connText(row) : c.conn.toString(),
    denied: ConnectionSet.ALL.subtract(c.conn).toString(),
    sides,
    ...explainMesh(engine, c),
  };
}

const handlingText = { tcp: "TCP", http: "HTTP", sniffed: "HTTP or TCP, sniffed" } as const;

function ruleSentence(r: NonNullable<MeshSegment["rules"]>[number]): string {
  const verb = r.action === "ALLOW" ? "allows" : "denies";
  const what = r.matches.map(describeMatch).join(", ");
  const custom = r.action === "CUSTOM" ? " (its provider refuses or is not known)" : "";
  return `${r.action} ${policyName(r.policy)} rule[${r.rule}] ${verb} ${what}${custom}`;
}

/** The HTTP part of an authorization step: the rules that carve requests, the default, the result. */
function httpSentence(s: MeshSegment, http: HttpRequests): string {
  const rules = (s.rules ?? []).map(ruleSentence);
  const allow = s.allowPolicies ?? [];
  const names = allow.map(policyName).join(", ");
  const others =
    rules.length === 0
      ? allow.length === 0
        ? "no DENY rule matches and no ALLOW policy applies"
        : `ALLOW policies apply (${names}) and none of their rules matches this peer and port`
      : allow.length === 0
        ? "no ALLOW policy applies, so other requests pass"
        : `ALLOW policies apply (${names}), so other requests are denied`;
  const result = describeRequests(http);
  return `${[...rules, others].join("; ")} => ${result === "HTTP only" ? "every HTTP request" : result}`;
}

function requestsJson(http: HttpRequests) {
  return http.allow === undefined ? { deny: http.deny } : { allow: http.allow, deny: http.deny };
}

/** One PeerAuthentication and one AuthorizationPolicy step per group of ports that answer alike. */
function explainMesh(engine: Engine, c: Connection): Pick<PairExplanation, "mesh" | "meshNote"> {
  const mesh = engine.mesh;
  if (!mesh?.active || c.dst.endpoint.kind !== "pod") return {};
  const dst = c.dst.endpoint.pod;
  if (!mesh.inMesh(dst)) return { meshNote: `${c.dst.id} has no proxy: mesh policies do not apply to it` };
  const l4 = engine.allowed(c.src.endpoint, c.dst.endpoint).portsOf("TCP");
  if (l4.length === 0) return { meshNote: "no TCP connection passes L3/L4: the mesh is not reached" };
  const summary = mesh.summarize(c.src.endpoint, dst);
  const groups = new Map<
    string,
    {
      layer: MeshStepExplanation["layer"];
      ports: [number, number][];
      text: string;
      json: Record<string, unknown>;
    }
  >();
  const add = (
    layer: MeshStepExplanation["layer"],
    ports: iv.Intervals,
    text: string,
    json: Record<string, unknown>,
  ) => {
    const key = `${layer}\0${text}`;
    const g = groups.get(key) ?? { layer, ports: [], text, json };
    for (let i = 0; i < ports.length; i += 2) g.ports.push([ports[i] as number, ports[i + 1] as number]);
    groups.set(key, g);
  };
  for (const s of summary.segments) {
    const ports = iv.intersect([s.start, s.end], l4);
    if (ports.length === 0) continue;
    add("PeerAuthentication", ports, `${s.mtls.detail}; ${s.admission}`, {
      mode: s.mtls.mode,
      ...(s.mtls.policy ? { policy: policyName(s.mtls.policy) } : {}),
      level: s.mtls.level,
      admitted: s.admitted,
      detail: s.admission,
    });
    if (!s.admitted) continue;
    const parts: string[] = [];
    const json: Record<string, unknown> = { handling: s.handling };
    if (s.tcp) {
      parts.push(`${s.handling === "sniffed" ? "opaque TCP: " : ""}${s.tcp.detail}`);
      json.tcp = {
        allowed: s.tcp.allowed,
        ...(s.tcp.policy ? { policy: policyName(s.tcp.policy) } : {}),
        ...(s.tcp.rule === undefined ? {} : { rule: s.tcp.rule }),
        detail: s.tcp.detail,
      };
    }
    if (s.http) {
      parts.push(`${s.handling === "sniffed" ? "HTTP: " : ""}${httpSentence(s, s.http)}`);
      json.http = {
        requests: requestsJson(s.http),
        rules: (s.rules ?? []).map((r) => ({
          action: r.action,
          policy: policyName(r.policy),
          rule: r.rule,
          matches: r.matches,
        })),
        allowPolicies: (s.allowPolicies ?? []).map(policyName),
      };
    }
    add("AuthorizationPolicy", ports, `[${handlingText[s.handling]}] ${parts.join("; ")}`, json);
  }
  const steps: MeshStepExplanation[] = [...groups.values()]
    .map((g) => {
      const ports = iv.fromRanges(g.ports);
      return {
        layer: g.layer,
        ports: iv.format(ports),
        text: g.text,
        json: { ports: iv.format(ports), ...g.json },
        first: ports[0] as number,
      };
    })
    .sort((a, b) => (a.layer === b.layer ? a.first - b.first : a.layer === "PeerAuthentication" ? -1 : 1))
    .map(({ first: _first, ...step }) => step);
  return { mesh: steps };
}

/** One sentence per side: who isolates it and which rules allow what (or the default). */
export function describeSide(s: SideExplanation): string {
  const head = `${s.direction} (${s.layer})`;
  if (s.isolatedBy.length === 0) {
    return `${head}: all allowed by default, no policy selects the ${s.direction === "egress" ? "source" : "destination"} for ${s.direction}`;
  }
  const by = s.isolatedBy.map(policyName).join(", ");
  if (s.contributions.length === 0)
    return `${head}: denied by default, isolated by ${by} and no rule matches the peer`;
  const rules = s.contributions
    .map((c) => `${policyName(c.policy)} ${s.direction} rule ${c.rule} allows ${c.allowed.toString()}`)
    .join("; ");
  return `${head}: isolated by ${by}; ${rules}`;
}

/** `mesh (PeerAuthentication) TCP 80: ...`, `mesh (AuthorizationPolicy) TCP 80 [HTTP]: ...` */
export function describeMeshStep(m: MeshStepExplanation): string {
  const bracket = m.text.startsWith("[") ? m.text.indexOf("] ") : -1;
  return bracket < 0
    ? `mesh (${m.layer}) TCP ${m.ports}: ${m.text}`
    : `mesh (${m.layer}) TCP ${m.ports} ${m.text.slice(0, bracket + 1)}: ${m.text.slice(bracket + 2)}`;
}

function sideJson(s: SideExplanation) {
  return {
    layer: s.layer,
    direction: s.direction,
    isolatedBy: s.isolatedBy.map(policyName),
    rules: s.contributions.map((c) => ({
      policy: policyName(c.policy),
      rule: c.rule,
      conn: c.allowed.toString(),
    })),
    allowed: s.allowed.toString(),
  };
}

/** Every sentence of a pair's explanation: the L3/L4 sides, then the mesh. */
function sentences(p: PairExplanation): string[] {
  return [
    ...p.sides.map(describeSide),
    ...(p.meshNote ? [`mesh: ${p.meshNote}`] : []),
    ...(p.mesh ?? []).map(describeMeshStep),
  ];
}

export function formatExplanation(
  engine: Engine,
  connections: readonly Connection[],
  format: Format,
): string {
  const pairs = connections.map((c) => explainPair(engine, c));
  switch (format) {
    case "json":
      return `${JSON.stringify(
        pairs.map((p) => ({
          src: p.src,
          dst: p.dst,
          allowed: p.allowed,
          denied: p.denied,
          sides: p.sides.map(sideJson),
          ...(p.mesh || p.meshNote
            ? {
                mesh: {
                  ...(p.meshNote ? { note: p.meshNote } : {}),
                  steps: (p.mesh ?? []).map((m) => ({ layer: m.layer, ...m.json })),
                },
              }
            : {}),
        })),
        null,
        2,
      )}\n`;
    case "csv":
      return `${[
        "src,dst,allowed,denied,explanation",
        ...pairs.map((p) =>
          [p.src, p.dst, p.allowed, p.denied, sentences(p).join(" | ")].map(csvField).join(","),
        ),
      ].join("\n")}\n`;
    case "md":
      return `${[
        "| src | dst | allowed | denied | explanation |",
        "|-----|-----|---------|--------|-------------|",
        ...pairs.map(
          (p) =>
            `| ${[p.src, p.dst, p.allowed, p.denied, sentences(p).join("<br>")].map(mdCell).join(" | ")} |`,
        ),
      ].join("\n")}\n`;
    default:
      return pairs
        .map(
          (p) =>
            `${p.src} => ${p.dst}\n  allowed: ${p.allowed}\n  denied:  ${p.denied}\n${sentences(p)
              .map((s) => `  ${s}\n`)
              .join("")}`,
        )
        .join("\n");
  }
}
