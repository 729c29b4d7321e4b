import { Command, Option } from "commander";
import { formatIPv4 } from "../kube/ip.js";
import type { Pod, Protocol } from "../kube/objects.js";
import { serviceBackends, targetPortOn } from "../kube/services.js";
import type { Engine } from "../policy/engine.js";
import { compile } from "../policy/engine.js";
import { describeSide } from "../policy/explain.js";
import { type Endpoint, policyName, type TraceStep } from "../policy/model.js";
import { collectPaths, EXIT_DENIED, EXIT_OK, loadInputs, printWarnings, run, UsageError } from "./common.js";
import { parsePortNumber, parseProtocolOption, parseTarget, splitPort, type Target } from "./endpoints.js";

interface Check {
  src: string;
  dst: string;
  protocol: Protocol;
  port: number | undefined;
  allowed: boolean;
  /** With a port: the verdict's trace. Without: what is allowed, per side. */
  trace: readonly TraceStep[];
  conn?: string;
  explanation?: string[];
  note?: string;
}

function describeStep(s: TraceStep): string {
  const head = `${s.direction.padEnd(7)} ${s.layer}:`;
  if (s.policy)
    return `${head} ${s.allowed ? "allowed" : "denied"} by ${policyName(s.policy)} ${s.direction} rule ${s.rule}`;
  const by = s.isolatedBy?.length ? ` (${s.isolatedBy.map(policyName).join(", ")})` : "";
  return `${head} ${s.allowed ? "allowed" : "denied"} by default: ${s.default}${by}`;
}

/** Representative endpoints of a target: one pod per group that policies tell apart. */
function endpointsOf(engine: Engine, t: Target): Array<{ name: string; endpoint: Endpoint }> {
  if (t.kind === "ip") return [{ name: formatIPv4(t.ip), endpoint: { kind: "ip", ip: t.ip } }];
  if (t.kind === "service") return [];
  const seen = new Map<number, Pod>();
  for (const p of t.pods) if (!seen.has(engine.classOf(p))) seen.set(engine.classOf(p), p);
  const many = seen.size > 1;
  return [...seen.values()].map((p) => ({
    name: many ? `${t.workload.id}(pod ${p.name})` : t.workload.id,
    endpoint: { kind: "pod", pod: p },
  }));
}

export function canCommand(): Command {
  return new Command("can")
    .description(
      "Decide one connection: may SRC open a connection to DST on PORT? Prints the verdict and which policy and rule decided.",
    )
    .argument("<src>", "source: a workload (ns/name, or name in namespace default) or an IPv4 address")
    .argument(
      "<dst>",
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
    .addOption(new Option("-o, --output <format>", "output format").choices(["txt", "json"]).default("txt"))
    .option("-q, --quiet", "do not print warnings")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera can -f examples/zero-trust-shop shop/frontend shop/cart:7070
  $ tessera can -f examples/zero-trust-shop shop/frontend cart.shop --port 7070
  $ tessera can -f cluster/ 203.0.113.7 shop/frontend:8080 --protocol tcp

Without a port, prints everything that is allowed from SRC to DST.
Exit status: 0 allowed, 1 denied, 2 bad input.`,
    )
    .action(
      (
        srcText: string,
        dstText: string,
        opts: { filename: string[]; port?: string; protocol: string; output: string; quiet?: boolean },
      ) =>
        run(() => {
          if (opts.filename.length === 0)
            throw new UsageError("no input: give -f PATH (a file, a directory or - for stdin)");
          const loaded = loadInputs(opts.filename);
          const { engine } = compile(loaded.cluster, loaded.diagnostics);
          const protocol = parseProtocolOption(opts.protocol);
          const split = splitPort(dstText);
          if (split.port !== undefined && opts.port !== undefined)
            throw new UsageError("give the port once: DST:PORT or --port");
          const port = split.port ?? (opts.port !== undefined ? parsePortNumber(opts.port) : undefined);
          const src = parseTarget(loaded.cluster, srcText, false);
          const dst = parseTarget(loaded.cluster, split.target, true);
          if (src.kind === "ip" && dst.kind === "ip")
            throw new UsageError("at least one of SRC and DST must be a workload or Service");
          printWarnings(loaded, opts.quiet === true);

          const checks: Check[] = [];
          const check = (
            s: { name: string; endpoint: Endpoint },
            d: { name: string; endpoint: Endpoint },
            p: number | undefined,
            note?: string,
          ) => {
            if (p === undefined) {
              const conn = engine.allowed(s.endpoint, d.endpoint);
              const sides = engine.explain(s.endpoint, d.endpoint);
              checks.push({
                src: s.name,
                dst: d.name,
                protocol,
                port: undefined,
                allowed: !conn.isEmpty(),
                trace: [],
                conn: conn.toString(),
                explanation: sides.map(describeSide),
                ...(note ? { note } : {}),
              });
              return;
            }
            const verdict = engine.decide({ src: s.endpoint, dst: d.endpoint, protocol, port: p });
            checks.push({
              src: s.name,
              dst: d.name,
              protocol,
              port: p,
              allowed: verdict.allowed,
              trace: verdict.trace,
              ...(note ? { note } : {}),
            });
          };
          for (const s of endpointsOf(engine, src)) {
            if (dst.kind !== "service") {
              for (const d of endpointsOf(engine, dst)) check(s, d, port);
              continue;
            }
            const svc = dst.service;
            const backends = serviceBackends(loaded.cluster, svc);
            if (backends.length === 0) {
              throw new UsageError(`Service ${svc.namespace}/${svc.name} selects no pods of the input`);
            }
            const svcPort =
              port === undefined
                ? undefined
                : svc.ports.find((sp) => sp.port === port && sp.protocol === protocol);
            if (port !== undefined && !svcPort) {
              throw new UsageError(
                `Service ${svc.namespace}/${svc.name} has no ${protocol} port ${port} (ports: ${svc.ports.map((sp) => `${sp.protocol} ${sp.port}`).join(", ") || "none"})`,
              );
            }
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
              if (svcPort && target === undefined) {
                checks.push({
                  src: s.name,
                  dst: d.name,
                  protocol,
                  port,
                  allowed: false,
                  trace: [],
                  note: `${note}: no container port named ${String(svcPort.targetPort)} on ${b.name}`,
                });
                continue;
              }
              check(s, d, target, note);
            }
          }
          const allowed = checks.length > 0 && checks.every((c) => c.allowed);
          if (opts.output === "json") {
            process.stdout.write(
              `${JSON.stringify(
                {
                  allowed,
                  checks: checks.map((c) => ({
                    ...c,
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
              const what = c.port === undefined ? `: ${c.conn}` : ` : ${c.protocol} ${c.port}`;
              process.stdout.write(`${c.allowed ? "ALLOWED" : "DENIED"} ${c.src} => ${c.dst}${what}\n`);
              if (c.note) process.stdout.write(`  ${c.note}\n`);
              for (const s of c.trace) process.stdout.write(`  ${describeStep(s)}\n`);
              for (const e of c.explanation ?? []) process.stdout.write(`  ${e}\n`);
            }
          }
          return allowed ? EXIT_OK : EXIT_DENIED;
        }),
    );
}
