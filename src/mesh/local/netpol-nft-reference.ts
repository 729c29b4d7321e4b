/**
 * A slow, obviously-correct reading of the nft scripts that netpol-nft.ts writes: the text is
 * parsed back (only the forms Tessera writes; anything else is an error, so the generator
 * cannot drift unnoticed) and a packet is walked through a base chain rule by rule, as the
 * kernel would: matches in order, `accept`/`drop` end the walk, `jump` runs another chain and
 * comes back when that chain ends without a verdict, a verdict map applies the verdict of the
 * element holding the address or falls through when none does, and the chain's policy applies
 * at the end.
 */

export type NftVerdict =
  | { readonly kind: "accept" }
  | { readonly kind: "drop" }
  | { readonly kind: "jump"; readonly chain: string };

export type NftMatch =
  | { readonly kind: "ct-state"; readonly states: readonly string[] }
  | { readonly kind: "ifname"; readonly field: "iifname" | "oifname"; readonly name: string }
  | { readonly kind: "loopback-daddr" }
  | { readonly kind: "proto-port"; readonly elements: readonly ProtoPortElement[] };

export interface ProtoPortElement {
  readonly protocol: string;
  readonly low: number;
  readonly high: number;
}

export type NftRule =
  | { readonly kind: "verdict"; readonly matches: readonly NftMatch[]; readonly verdict: NftVerdict }
  | { readonly kind: "vmap"; readonly field: "saddr" | "daddr"; readonly map: string };

export interface NftBaseHook {
  readonly type: string;
  readonly hook: string;
  readonly priority: number;
  readonly policy: "accept" | "drop";
}

export interface NftChain {
  readonly name: string;
  readonly base: NftBaseHook | undefined;
  readonly rules: NftRule[];
}

export interface NftMapElement {
  readonly start: number;
  readonly end: number;
  readonly verdict: NftVerdict;
}

export interface NftMap {
  readonly name: string;
  readonly elements: NftMapElement[];
}

export interface NftTable {
  readonly family: string;
  readonly name: string;
  /** The script declares, deletes and then defines the table: one atomic replacement. */
  readonly replacesWhole: boolean;
  readonly chains: ReadonlyMap<string, NftChain>;
  readonly maps: ReadonlyMap<string, NftMap>;
}

/** A packet as a hook sees it. */
export interface NftPacket {
  readonly saddr: number;
  readonly daddr: number;
  /** nft's names: tcp, udp, sctp, icmp, ... */
  readonly protocol: string;
  /** For protocols with ports. */
  readonly dport?: number;
  readonly ctState: "new" | "established" | "related" | "invalid";
  readonly iifname?: string;
  readonly oifname?: string;
}

export class NftParseError extends Error {
  constructor(line: number, text: string, why: string) {
    super(`nft script line ${line}: ${why}: ${text}`);
    this.name = "NftParseError";
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing

type Fail = (why: string) => never;
/** A line form and what to do with its captures; the first form that matches a line wins. */
type LineForm = readonly [RegExp, (captures: string[]) => void];

function dispatch(line: string, forms: readonly LineForm[], fail: Fail, what: string): void {
  for (const [pattern, handle] of forms) {
    const m = pattern.exec(line);
    if (m) {
      handle(m.slice(1));
      return;
    }
  }
  fail(`not ${what}`);
}

export function parseNftScript(script: string): NftTable {
  let declared = false;
  let deleted = false;
  let table: { family: string; name: string } | undefined;
  let replacesWhole = false;
  const chains = new Map<string, NftChain>();
  const maps = new Map<string, NftMap>();
  type Block =
    | { kind: "table" }
    | { kind: "chain"; chain: NftChain }
    | { kind: "map"; map: NftMap; typed: boolean };
  let block: Block | undefined;
  const lines = script.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const fail: Fail = (why) => {
      throw new NftParseError(i + 1, line, why);
    };
    if (line === "" || line.startsWith("#")) return;
    const defineOnce = (name: string) => {
      if (chains.has(name) || maps.has(name)) fail("name defined twice");
    };
    if (block === undefined) {
      dispatch(
        line,
        [
          [
            /^table (\w+) (\w+)$/,
            ([family, name]) => {
              declared = true;
              table = { family: family as string, name: name as string };
            },
          ],
          [
            /^delete table (\w+) (\w+)$/,
            ([family, name]) => {
              if (!declared || table?.family !== family || table?.name !== name)
                fail("deletes a table not declared first");
              deleted = true;
            },
          ],
          [
            /^table (\w+) (\w+) \{$/,
            ([family, name]) => {
              if (table && (table.family !== family || table.name !== name)) fail("defines another table");
              table = { family: family as string, name: name as string };
              replacesWhole = declared && deleted;
              block = { kind: "table" };
            },
          ],
        ],
        fail,
        "a table statement",
      );
      return;
    }
    const current: Block = block;
    if (current.kind === "table") {
      dispatch(
        line,
        [
          [
            /^chain (\w+) \{$/,
            ([name]) => {
              defineOnce(name as string);
              const chain: NftChain = { name: name as string, base: undefined, rules: [] };
              chains.set(chain.name, chain);
              block = { kind: "chain", chain };
            },
          ],
          [
            /^map (\w+) \{$/,
            ([name]) => {
              defineOnce(name as string);
              const map: NftMap = { name: name as string, elements: [] };
              maps.set(map.name, map);
              block = { kind: "map", map, typed: false };
            },
          ],
          [
            /^\}$/,
            () => {
              block = undefined;
            },
          ],
        ],
        fail,
        "a chain or map",
      );
      return;
    }
    if (line === "}") {
      if (current.kind === "map" && !current.typed) fail("map without type");
      block = { kind: "table" };
      return;
    }
    if (current.kind === "map") {
      dispatch(
        line,
        [
          [
            /^type ipv4_addr : verdict$/,
            () => {
              current.typed = true;
            },
          ],
          // Elements are ranges; parseMapElements checks them.
          [/^flags interval$/, () => {}],
          [
            /^elements = \{ (.+) \}$/,
            ([elements]) => {
              current.map.elements.push(...parseMapElements(elements as string, fail));
            },
          ],
        ],
        fail,
        "a map property",
      );
      return;
    }
    const chain = current.chain;
    const hook = /^type (\w+) hook (\w+) priority (-?\d+); policy (accept|drop);$/.exec(line);
    if (hook) {
      if (chain.base || chain.rules.length > 0) fail("hook must come first, once");
      (chain as { base: NftBaseHook }).base = {
        type: hook[1] as string,
        hook: hook[2] as string,
        priority: Number(hook[3]),
        policy: hook[4] as "accept" | "drop",
      };
      return;
    }
    chain.rules.push(parseRule(line, fail));
  });
  if (block !== undefined) throw new NftParseError(lines.length, "", "unclosed block");
  if (!table) throw new NftParseError(lines.length, "", "no table");
  for (const chain of chains.values()) {
    for (const rule of chain.rules) {
      if (rule.kind === "vmap" && !maps.has(rule.map))
        throw new NftParseError(0, rule.map, `chain ${chain.name} uses an undefined map`);
      if (rule.kind === "verdict" && rule.verdict.kind === "jump" && !chains.has(rule.verdict.chain))
        throw new NftParseError(0, rule.verdict.chain, `chain ${chain.name} jumps to an undefined chain`);
    }
  }
  for (const map of maps.values()) {
    for (const e of map.elements) {
      if (e.verdict.kind === "jump" && !chains.has(e.verdict.chain))
        throw new NftParseError(0, e.verdict.chain, `map ${map.name} jumps to an undefined chain`);
    }
  }
  return { ...(table as { family: string; name: string }), replacesWhole, chains, maps };
}

function parseVerdict(text: string, fail: Fail): NftVerdict {
  if (text === "accept") return { kind: "accept" };
  if (text === "drop") return { kind: "drop" };
  const m = /^jump (\w+)$/.exec(text);
  if (m) return { kind: "jump", chain: m[1] as string };
  return fail(`"${text}" is not a verdict`);
}

/** Matches a rule may start with, each followed by a space and more of the rule. */
const MATCH_FORMS: ReadonlyArray<readonly [RegExp, (captures: string[], fail: Fail) => NftMatch]> = [
  [
    /^ct state ([a-z]+(?:,[a-z]+)*) /,
    ([states]) => ({ kind: "ct-state", states: (states as string).split(",") }),
  ],
  [
    /^(iifname|oifname) "([^"]*)" /,
    ([field, name]) => ({ kind: "ifname", field: field as "iifname" | "oifname", name: name as string }),
  ],
  [/^ip daddr 127\.0\.0\.0\/8 /, () => ({ kind: "loopback-daddr" })],
  [
    /^meta l4proto \. th dport \{ ([^}]+) \} /,
    ([elements], fail) => ({ kind: "proto-port", elements: parseProtoPorts(elements as string, fail) }),
  ],
];

function parseRule(line: string, fail: Fail): NftRule {
  const vmap = /^ip (saddr|daddr) vmap @(\w+)$/.exec(line);
  if (vmap) return { kind: "vmap", field: vmap[1] as "saddr" | "daddr", map: vmap[2] as string };
  const found: NftMatch[] = [];
  let rest = line;
  for (;;) {
    let consumed = 0;
    for (const [pattern, build] of MATCH_FORMS) {
      const m = pattern.exec(rest);
      if (!m) continue;
      found.push(build(m.slice(1), fail));
      consumed = m[0].length;
      break;
    }
    if (consumed === 0) break;
    rest = rest.slice(consumed);
  }
  return { kind: "verdict", matches: found, verdict: parseVerdict(rest, fail) };
}

function parseProtoPorts(text: string, fail: Fail): ProtoPortElement[] {
  return text.split(", ").map((e) => {
    const m = /^(tcp|udp|sctp) \. (\d+)(?:-(\d+))?$/.exec(e);
    if (!m) return fail(`"${e}" is not a protocol . port element`);
    const low = Number(m[2]);
    const high = m[3] === undefined ? low : Number(m[3]);
    if (low < 0 || high > 65535 || high < low) return fail(`bad port range "${e}"`);
    return { protocol: m[1] as string, low, high };
  });
}

function parseAddress(text: string, fail: Fail): number {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
    return fail(`"${text}" is not an IPv4 address`);
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

function parseMapElements(text: string, fail: Fail): NftMapElement[] {
  const elements = text.split(", ").map((e) => {
    const m = /^([\d.]+)(?:-([\d.]+))? : (.+)$/.exec(e);
    if (!m) return fail(`"${e}" is not an address : verdict element`);
    const start = parseAddress(m[1] as string, fail);
    const end = m[2] === undefined ? start : parseAddress(m[2], fail);
    if (end < start) return fail(`range "${e}" ends before it starts`);
    return { start, end, verdict: parseVerdict(m[3] as string, fail) };
  });
  // nft refuses overlapping intervals; so does the reference, so the text is held to it.
  const sorted = [...elements].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] as NftMapElement).start <= (sorted[i - 1] as NftMapElement).end)
      fail("map elements overlap");
  }
  return elements;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/** What the base chain `chainName` does with the packet. */
export function evaluateChain(table: NftTable, chainName: string, packet: NftPacket): "accept" | "drop" {
  const chain = table.chains.get(chainName);
  if (!chain?.base) throw new Error(`no base chain ${chainName}`);
  return run(table, chain, packet, 0) ?? chain.base.policy;
}

/** A terminal verdict, or undefined when the chain ends and control returns to the caller. */
function run(
  table: NftTable,
  chain: NftChain,
  packet: NftPacket,
  depth: number,
): "accept" | "drop" | undefined {
  if (depth > 16) throw new Error(`jumps nested too deep at chain ${chain.name}`);
  for (const rule of chain.rules) {
    let verdict: NftVerdict | undefined;
    if (rule.kind === "vmap") {
      const key = rule.field === "saddr" ? packet.saddr : packet.daddr;
      const map = table.maps.get(rule.map) as NftMap;
      verdict = map.elements.find((e) => e.start <= key && key <= e.end)?.verdict;
    } else if (rule.matches.every((m) => matches(m, packet))) {
      verdict = rule.verdict;
    }
    if (verdict === undefined) continue;
    if (verdict.kind !== "jump") return verdict.kind;
    const result = run(table, table.chains.get(verdict.chain) as NftChain, packet, depth + 1);
    if (result !== undefined) return result;
  }
  return undefined;
}

function matches(m: NftMatch, p: NftPacket): boolean {
  switch (m.kind) {
    case "ct-state":
      return m.states.includes(p.ctState);
    case "ifname":
      return (m.field === "iifname" ? p.iifname : p.oifname) === m.name;
    case "loopback-daddr":
      return p.daddr >>> 24 === 127;
    case "proto-port":
      return m.elements.some(
        (e) => e.protocol === p.protocol && p.dport !== undefined && e.low <= p.dport && p.dport <= e.high,
      );
  }
}
