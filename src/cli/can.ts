import { Command, Option } from "commander";
import { clusterDnsPods } from "../kube/dns.js";
import { clusterOf, loadObjects } from "../kube/index.js";
import { formatIPv4, parseIPv4 } from "../kube/ip.js";
import type { Cluster, Pod, Protocol } from "../kube/objects.js";
import { serviceBackends, targetPortOn } from "../kube/services.js";
import type { Engine } from "../policy/engine.js";
import { compile } from "../policy/engine.js";
import { describeSide } from "../policy/explain.js";
import type { MeshConfig } from "../policy/istio/mesh.js";
import {
  type Endpoint,
  type Flow,
  type HttpRequest,
  type Outcome,
  policyName,
  type TraceStep,
} from "../policy/model.js";
import { NETPOL_LAYER } from "../policy/netpol/layer.js";
import { SpiffeId } from "../spiffe/id.js";
import { collectPaths, EXIT_DENIED, EXIT_OK, printWarnings, readStdin, run, UsageError } from "./common.js";
import { parsePortNumber, parseProtocolOption, parseTarget, splitPort, type Target } from "./endpoints.js";
import { OUTCOME_TEXT } from "./outcomes.js";

interface Check {
  src: string;
  dst: string;
  protocol: Protocol;
  port: number | undefined;
  allowed: boolean;
  outcome?: Outcome;
  /** With a port: the verdict's trace. Without: what is allowed, per side. */
  trace: readonly TraceStep[];
  conn?: string;
  explanation?: string[];
  notes: string[];
}

interface CanOptions {
  filename: string[];
  port?: string;
  protocol: string;
  method?: string;
  path?: string;
  host?: string;
  header: string[];
  fromPrincipal?: string;
  plaintextFrom?: string;
  fromIp?: string;
  trustDomain?: string;
  trustDomainAlias: string[];
  rootNamespace?: string;
  clusterDomain?: string;
  profile?: "sidecar" | "ztunnel";
  extAuthz?: "allow" | "deny";
  output: string;
  quiet?: boolean;
}

function describeStep(s: TraceStep): string {
  const head = `${s.direction.padEnd(7)} ${s.layer}:`;
  const verb = s.allowed ? "allowed" : "denied";
  const detail = s.detail ? `: ${s.detail}` : "";
  if (s.policy) {
    const rule =
      s.rule === undefined
        ? ""
        : s.layer === NETPOL_LAYER
          ? ` ${s.direction} rule ${s.rule}`
          : ` rule ${s.rule}`;
    return `${head} ${verb} by ${policyName(s.policy)}${rule}${detail}`;
  }
  const by = s.isolatedBy?.length ? ` (${s.isolatedBy.map(policyName).join(", ")})` : "";
  return `${head} ${verb} by default: ${s.default}${by}`;
}

/** Representative endpoints of a target: one pod per group that policies tell apart. */
function endpointsOf(engine: Engine, t: Target): Array<{ name: string; endpoint: Endpoint; pod?: Pod }> {
  if (t.kind === "ip") return [{ name: formatIPv4(t.ip), endpoint: { kind: "ip", ip: t.ip } }];
  if (t.kind === "service") return [];
  const seen = new Map<number, Pod>();
  for (const p of t.pods) if (!seen.has(engine.classOf(p))) seen.set(engine.classOf(p), p);
  const many = seen.size > 1;
  return [...seen.values()].map((p) => ({
    name: many ? `${t.workload.id}(pod ${p.name})` : t.workload.id,
    endpoint: { kind: "pod", pod: p },
    pod: p,
  }));
}

function parseHeaders(values: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf("=");
    const j = v.indexOf(":");
    const at = i > 0 && (j < 0 || i < j) ? i : j;
    if (at <= 0) throw new UsageError(`--header ${v}: expected NAME=VALUE`);
    headers[v.slice(0, at).trim().toLowerCase()] = v.slice(at + 1).trim();
  }
  return headers;
}

function meshOptionsOf(opts: CanOptions): Partial<MeshConfig> {
  const out: { -readonly [K in keyof MeshConfig]?: MeshConfig[K] } = {};
  if (opts.trustDomain) out.trustDomain = opts.trustDomain;
  if (opts.trustDomainAlias.length) out.trustDomainAliases = opts.trustDomainAlias;
  if (opts.rootNamespace) out.rootNamespace = opts.rootNamespace;
  if (opts.clusterDomain) out.clusterDomain = opts.clusterDomain;
  if (opts.profile) out.profile = opts.profile;
  if (opts.extAuthz) out.extAuthz = opts.extAuthz;
  return out;
}

function parseIpOption(name: string, text: string): number {
  const ip = parseIPv4(text);
  if (ip === undefined) throw new UsageError(`${name} ${text}: expected an IPv4 address`);
  return ip;
}

/**
 * Name resolution before a request to a Service: the source must reach cluster DNS on UDP or
 * TCP 53. Undefined when it can; otherwise the trace of the refused lookup.
 */
function dnsBlocked(engine: Engine, cluster: Cluster, src: Endpoint): readonly TraceStep[] | undefined {
  let refusal: readonly TraceStep[] | undefined;
  for (const dns of clusterDnsPods(cluster)) {
    for (const protocol of ["UDP", "TCP"] as const) {
      const v = engine.decide({ src, dst: { kind: "pod", pod: dns }, protocol, port: 53 });
      if (v.allowed) return undefined;
      refusal ??= v.trace;
    }
  }
  return refusal;
}

export function canCommand(): Command {
  return new Command("can")
    .description(
      "Decide one connection or request: may SRC reach DST on PORT? Prints what the caller observes and which policy and rule decided, layer by layer (NetworkPolicy, PeerAuthentication, AuthorizationPolicy).",
    )
    .argument(
      "<src>",
      "source: a workload (ns/name, or name in namespace default) or an IPv4 address; omit it with --from-principal or --plaintext-from",
    )
    .argument(
      "[dst]",
      "destination: a workload, an IPv4 address, or a Service (name, name.ns, name.ns.svc.cluster.local); may end in :PORT",
    )
    .option(
      "-f, --filename <path>",
      "a file, a directory (read recursively) or - for stdin; repeatable",
      collectPaths,
      [],
    )
    .option("--port <n>", "destination port (a Service's port is mapped to the target container port)")
    .option("--protocol <p>", "tcp, udp or sctp", "tcp")
    .option("--method <m>", "HTTP method of the request (default GET on HTTP ports)")
    .option("--path <p>", "HTTP path, query included (default /)")
    .option("--host <h>", "HTTP Host (default: DST as given)")
    .option("--header <k=v>", "an HTTP request header; repeatable", collectPaths, [])
    .option("--from-principal <spiffe-id>", "the caller is an mTLS peer not in the input, with this identity")
    .option("--plaintext-from <ip>", "the caller is a plaintext client not in the input, at this address")
    .option(
      "--from-ip <ip>",
      "the caller's address (with --from-principal; default 0.0.0.0, an external address)",
    )
    .option("--trust-domain <td>", "the mesh trust domain (default cluster.local)")
    .option("--trust-domain-alias <td>", "a trust domain the mesh also trusts; repeatable", collectPaths, [])
    .option("--root-namespace <ns>", "the mesh root namespace (default istio-system)")
    .option(
      "--cluster-domain <domain>",
      "the DNS suffix of Services (default cluster.local; not the trust domain)",
    )
    .addOption(
      new Option("--profile <p>", "data plane: sidecar or ztunnel (ambient)").choices(["sidecar", "ztunnel"]),
    )
    .addOption(
      new Option("--ext-authz <answer>", "what a CUSTOM (ext_authz) provider answers").choices([
        "allow",
        "deny",
      ]),
    )
    .addOption(new Option("-o, --output <format>", "output format").choices(["txt", "json"]).default("txt"))
    .option("-q, --quiet", "do not print warnings")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera can -f examples/zero-trust-shop shop/frontend shop/cart:7070
  $ tessera can -f lab/ sleep httpbin.default.svc.cluster.local:8000 --method GET --path /headers
  $ tessera can -f lab/ --from-principal spiffe://other.org/ns/a/sa/b httpbin:8000
  $ tessera can -f lab/ --plaintext-from 10.9.9.9 httpbin:8000
  $ tessera can -f cluster/ 203.0.113.7 shop/frontend:8080 --protocol tcp

A request to an HTTP port without --method/--path is a GET of /. A request to a Service name
first needs name resolution: when the source cannot reach cluster DNS (UDP/TCP 53), the
outcome is "name resolution blocked", naming the policy.
Without a port, prints everything that is allowed from SRC to DST at L3/L4.
Exit status: 0 when the request would be served, 1 when not, 2 bad input.`,
    )
    .action((first: string, second: string | undefined, opts: CanOptions) =>
      run(() => {
        if (opts.filename.length === 0)
          throw new UsageError("no input: give -f PATH (a file, a directory or - for stdin)");
        const externalCaller = opts.fromPrincipal !== undefined || opts.plaintextFrom !== undefined;
        if (opts.fromPrincipal !== undefined && opts.plaintextFrom !== undefined) {
          throw new UsageError("give one of --from-principal and --plaintext-from");
        }
        if (externalCaller === (second !== undefined)) {
          throw new UsageError(
            externalCaller ? "with --from-principal or --plaintext-from, give only DST" : "give SRC and DST",
          );
        }
        const dstText = second ?? first;
        const protocol = parseProtocolOption(opts.protocol);
        const split = splitPort(dstText);
        if (split.port !== undefined && opts.port !== undefined)
          throw new UsageError("give the port once: DST:PORT or --port");
        const port = split.port ?? (opts.port !== undefined ? parsePortNumber(opts.port) : undefined);
        const identity =
          opts.fromPrincipal === undefined
            ? undefined
            : (() => {
                try {
                  return SpiffeId.parse(opts.fromPrincipal).toString();
                } catch (e) {
                  throw new UsageError(`--from-principal ${opts.fromPrincipal}: ${(e as Error).message}`);
                }
              })();
        const headers = parseHeaders(opts.header);
        const wantsHttp =
          opts.method !== undefined ||
          opts.path !== undefined ||
          opts.host !== undefined ||
          opts.header.length > 0;
        const http: HttpRequest | undefined = wantsHttp
          ? {
              method: (opts.method ?? "GET").toUpperCase(),
              path: opts.path ?? "/",
              host: opts.host ?? dstText,
              headers,
            }
          : undefined;

        const objects = loadObjects(opts.filename, readStdin);
        let loaded = clusterOf(objects);
        const needsDns =
          !externalCaller && parseTarget(loaded.cluster, split.target, true, port).kind === "service";
        if (needsDns && clusterDnsPods(loaded.cluster).length === 0) {
          loaded = clusterOf(objects, undefined, { assumeClusterDns: true });
        }
        const cluster = loaded.cluster;
        const { engine } = compile(cluster, loaded.diagnostics, meshOptionsOf(opts));
        const src: Target = externalCaller
          ? (() => {
              const text = opts.plaintextFrom ?? opts.fromIp ?? "0.0.0.0";
              return {
                kind: "ip",
                ip: parseIpOption(opts.plaintextFrom ? "--plaintext-from" : "--from-ip", text),
                text,
              };
            })()
          : parseTarget(cluster, first, false);
        const dst = parseTarget(cluster, split.target, true, port);
        if (src.kind === "ip" && dst.kind === "ip")
          throw new UsageError("at least one of SRC and DST must be a workload or Service");
        printWarnings(loaded, opts.quiet === true);

        const checks: Check[] = [];
        const srcName = (name: string) =>
          identity ? `${identity} (mTLS, from ${name})` : opts.plaintextFrom ? `${name} (plaintext)` : name;
        const check = (
          s: { name: string; endpoint: Endpoint },
          d: { name: string; endpoint: Endpoint },
          p: number | undefined,
          notes: string[],
        ) => {
          if (p === undefined) {
            const conn = engine.allowed(s.endpoint, d.endpoint);
            checks.push({
              src: srcName(s.name),
              dst: d.name,
              protocol,
              port: undefined,
              allowed: !conn.isEmpty(),
              trace: [],
              conn: conn.toString(),
              explanation: engine.explain(s.endpoint, d.endpoint).map(describeSide),
              notes,
            });
            return;
          }
          const flow: Flow = {
            src: s.endpoint,
            dst: d.endpoint,
            protocol,
            port: p,
            ...(identity ? { identity } : {}),
            ...(http ? { http } : {}),
          };
          const verdict = engine.decide(flow);
          checks.push({
            src: srcName(s.name),
            dst: d.name,
            protocol,
            port: p,
            allowed: verdict.allowed,
            outcome: verdict.outcome,
            trace: verdict.trace,
            notes,
          });
        };
        for (const s of endpointsOf(engine, src)) {
          if (dst.kind !== "service") {
            for (const d of endpointsOf(engine, dst)) check(s, d, port, []);
            continue;
          }
          const svc = dst.service;
          const backends = serviceBackends(cluster, svc);
          if (backends.length === 0)
            throw new UsageError(`Service ${svc.namespace}/${svc.name} selects no pods of the input`);
          const svcPort =
            port === undefined
              ? undefined
              : svc.ports.find((sp) => sp.port === port && sp.protocol === protocol);
          if (port !== undefined && !svcPort) {
            throw new UsageError(
              `Service ${svc.namespace}/${svc.name} has no ${protocol} port ${port} (ports: ${svc.ports.map((sp) => `${sp.protocol} ${sp.port}`).join(", ") || "none"})`,
            );
          }
          const blocked = s.pod ? dnsBlocked(engine, cluster, s.endpoint) : undefined;
          const byWorkload = new Map<string, Pod>();
          for (const b of backends) {
            const key = `${b.workload.id}#${engine.classOf(b)}`;
            if (!byWorkload.has(key)) byWorkload.set(key, b);
          }
          for (const b of byWorkload.values()) {
            const target = svcPort ? targetPortOn(svcPort, b) : undefined;
            const d = { name: b.workload.id, endpoint: { kind: "pod", pod: b } as Endpoint };
            const note = svcPort
              ? `Service ${svc.namespace}/${svc.name} port ${svcPort.port} -> targetPort ${String(svcPort.targetPort)}${typeof svcPort.targetPort === "string" ? ` = ${target ?? "unresolved"}` : ""}`
              : `via Service ${svc.namespace}/${svc.name}`;
            if (blocked) {
              checks.push({
                src: srcName(s.name),
                dst: d.name,
                protocol,
                port: target ?? port,
                allowed: false,
                outcome: "dns-blocked",
                trace: blocked,
                notes: [
                  note,
                  "name resolution: the lookup of the Service name to cluster DNS (UDP/TCP 53) is refused:",
                ],
              });
              continue;
            }
            if (svcPort && target === undefined) {
              checks.push({
                src: srcName(s.name),
                dst: d.name,
                protocol,
                port,
                allowed: false,
                trace: [],
                notes: [`${note}: no container port named ${String(svcPort.targetPort)} on ${b.name}`],
              });
              continue;
            }
            check(s, d, target, [note]);
          }
        }
        const allowed = checks.length > 0 && checks.every((c) => c.allowed);
        if (opts.output === "json") {
          process.stdout.write(
            `${JSON.stringify(
              {
                allowed,
                outcome: checks.find((c) => !c.allowed)?.outcome ?? checks[0]?.outcome,
                checks: checks.map((c) => ({
                  ...c,
                  ...(c.outcome ? { outcomeText: OUTCOME_TEXT[c.outcome] } : {}),
                  ...(http ? { request: http } : {}),
                  trace: c.trace.map((s) => ({
                    ...s,
                    policy: s.policy ? policyName(s.policy) : undefined,
                    isolatedBy: s.isolatedBy?.map(policyName),
                  })),
                })),
              },
              null,
              2,
            )}\n`,
          );
        } else {
          for (const c of checks) {
            const what =
              c.port === undefined
                ? `: ${c.conn}`
                : ` : ${c.protocol} ${c.port}${http ? ` ${http.method} ${http.path}` : ""}`;
            process.stdout.write(`${c.allowed ? "ALLOWED" : "DENIED"} ${c.src} => ${c.dst}${what}\n`);
            if (c.outcome && c.outcome !== "forwarded")
              process.stdout.write(`  outcome: ${OUTCOME_TEXT[c.outcome]}\n`);
            for (const n of c.notes) process.stdout.write(`  ${n}\n`);
            for (const s of c.trace) process.stdout.write(`  ${describeStep(s)}\n`);
            for (const e of c.explanation ?? []) process.stdout.write(`  ${e}\n`);
          }
        }
        return allowed ? EXIT_OK : EXIT_DENIED;
      }),
    );
}
