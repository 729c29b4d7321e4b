import type { Connection } from "./connectivity.js";
import { ConnectionSet } from "./connset.js";
import type { Engine } from "./engine.js";
import { policyName, type SideExplanation } from "./model.js";
import { csvField } from "./output/csv.js";
import { mdCell } from "./output/md.js";
import type { Format } from "./output/rows.js";

export interface PairExplanation {
  readonly src: string;
  readonly dst: string;
  readonly allowed: string;
  readonly denied: string;
  readonly sides: readonly SideExplanation[];
}

export function explainPair(engine: Engine, c: Connection): PairExplanation {
  const sides = engine.explain(c.src.endpoint, c.dst.endpoint);
  return {
    src: c.src.id,
    dst: c.dst.id,
    allowed: c.conn.toString(),
    denied: ConnectionSet.ALL.subtract(c.conn).toString(),
    sides,
  };
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
        })),
        null,
        2,
      )}\n`;
    case "csv":
      return `${[
        "src,dst,allowed,denied,explanation",
        ...pairs.map((p) =>
          [p.src, p.dst, p.allowed, p.denied, p.sides.map(describeSide).join(" | ")].map(csvField).join(","),
        ),
      ].join("\n")}\n`;
    case "md":
      return `${[
        "| src | dst | allowed | denied | explanation |",
        "|-----|-----|---------|--------|-------------|",
        ...pairs.map(
          (p) =>
            `| ${[p.src, p.dst, p.allowed, p.denied, p.sides.map(describeSide).join("<br>")].map(mdCell).join(" | ")} |`,
        ),
      ].join("\n")}\n`;
    default:
      return pairs
        .map(
          (p) =>
            `${p.src} => ${p.dst}\n  allowed: ${p.allowed}\n  denied:  ${p.denied}\n${p.sides.map((s) => `  ${describeSide(s)}\n`).join("")}`,
        )
        .join("\n");
  }
}
