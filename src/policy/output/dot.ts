import { connText, type Row } from "./rows.js";

function q(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Graphviz: one cluster per namespace, external ranges as boxes, edges labelled with ports (and the L7 part). */
export function formatDot(rows: readonly Row[]): string {
  const nodes = new Set<string>();
  for (const r of rows) {
    nodes.add(r.src);
    nodes.add(r.dst);
  }
  const byNamespace = new Map<string, string[]>();
  const external: string[] = [];
  for (const n of [...nodes].sort()) {
    if (n.endsWith("[External]")) {
      external.push(n);
      continue;
    }
    const ns = n.slice(0, n.indexOf("/"));
    const list = byNamespace.get(ns) ?? [];
    list.push(n);
    byNamespace.set(ns, list);
  }
  const out = [
    "digraph {",
    '\tlabel="Connectivity Graph"',
    '\tlabelloc="t"',
    "\tfontsize=20",
    "\tnode [shape=ellipse]",
  ];
  let i = 0;
  for (const [ns, list] of byNamespace) {
    out.push(`\tsubgraph cluster_${i++} {`, `\t\tlabel=${q(ns)}`, "\t\tstyle=dashed");
    for (const n of list) out.push(`\t\t${q(n)} [label=${q(n.slice(ns.length + 1))}]`);
    out.push("\t}");
  }
  for (const n of external)
    out.push(`\t${q(n)} [shape=box color=red2 label=${q(n.replace("[External]", ""))}]`);
  for (const r of rows)
    out.push(`\t${q(r.src)} -> ${q(r.dst)} [label=${q(connText(r))} color=gold2 fontcolor=darkgreen]`);
  out.push("}");
  return `${out.join("\n")}\n`;
}
