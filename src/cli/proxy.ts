/**
 * `tessera proxy run`: one sidecar on its own, in front of a service on a bare-metal host or in
 * a local mesh pod. Its identity comes from the Workload API; its policies from manifests.
 */
import { Command } from "commander";
import { jsonAccessLog } from "../mesh/proxy/access-log.js";
import type { HostPort } from "../mesh/proxy/context.js";
import type { InboundMapping } from "../mesh/proxy/inbound.js";
import type { OutboundTarget } from "../mesh/proxy/outbound.js";
import { PolicySource } from "../mesh/proxy/policy-source.js";
import { Sidecar } from "../mesh/proxy/sidecar.js";
import { UnknownWorkloadError } from "../mesh/proxy/workload-policy.js";
import type { MeshConfig } from "../policy/istio/mesh.js";
import { collectPaths, parseHostPort, run, UsageError } from "./common.js";

/** `80@127.0.0.1:15006=127.0.0.1:8080`: container port 80, listen on :15006, app on :8080. */
export function parseInbound(text: string): InboundMapping {
  const m = /^(\d{1,5})@([^=]+)=(.+)$/.exec(text);
  const containerPort = m ? Number(m[1]) : 0;
  if (!m || containerPort < 1 || containerPort > 65535) {
    throw new UsageError(`--inbound ${text}: expected CONTAINER_PORT@LISTEN_HOST:PORT=APP_HOST:PORT`);
  }
  return {
    containerPort,
    listen: parseHostPort("--inbound", m[2] as string),
    app: parseHostPort("--inbound", m[3] as string),
  };
}

/** `127.0.0.1:9000=httpbin.default:8000` → listen, Service host and port. */
function parseOutbound(text: string): { listen: HostPort; target: OutboundTarget } {
  const at = text.indexOf("=");
  if (at < 0) throw new UsageError(`--outbound ${text}: expected LISTEN_HOST:PORT=SERVICE:PORT`);
  const listen = parseHostPort("--outbound", text.slice(0, at));
  const target = parseHostPort("--outbound", text.slice(at + 1));
  return { listen, target: { kind: "mapped", host: target.host, port: target.port } };
}

function parseRoute(text: string): [string, HostPort] {
  const at = text.indexOf("=");
  if (at < 0) throw new UsageError(`--route ${text}: expected SERVICE.NAMESPACE:PORT=HOST:PORT`);
  const name = text.slice(0, at);
  if (!/^[a-z0-9-]+\.[a-z0-9-]+:\d{1,5}$/.test(name)) {
    throw new UsageError(
      `--route ${text}: the left side must be SERVICE.NAMESPACE:PORT, e.g. httpbin.default:8000`,
    );
  }
  return [name, parseHostPort("--route", text.slice(at + 1))];
}

interface ProxyRunOptions {
  workload: string;
  file: string[];
  socket?: string;
  inbound: string[];
  outbound: string[];
  outboundHttp?: string;
  outboundCapture?: string;
  inboundCapture?: string;
  route: string[];
  status?: string;
  accessLog?: string;
  trustDomain?: string;
  rootNamespace?: string;
  reloadInterval: string;
}

export function proxyRunCommand(): Command {
  return new Command("run")
    .description(
      "Run a sidecar: mTLS and the workload's policies in front of an app, and for its outbound calls",
    )
    .requiredOption("--workload <ns/name>", "the workload this sidecar stands in front of")
    .requiredOption(
      "-f, --file <path>",
      "manifests and policies (file or directory); repeatable",
      collectPaths,
      [],
    )
    .option("--socket <address>", "the Workload API (default: SPIFFE_ENDPOINT_SOCKET)")
    .option(
      "--inbound <port@listen=app>",
      "serve a container port: CONTAINER_PORT@LISTEN_HOST:PORT=APP_HOST:PORT; repeatable",
      collectPaths,
      [],
    )
    .option(
      "--outbound <listen=service:port>",
      "a TCP port mapping to a Service port; repeatable",
      collectPaths,
      [],
    )
    .option("--outbound-http <listen>", "an HTTP proxy for the app's outbound calls (point http_proxy at it)")
    .option(
      "--inbound-capture <listen>",
      "take redirected inbound connections; the container port is the original destination port, the app is on 127.0.0.1 at that port",
    )
    .option(
      "--outbound-capture <listen>",
      "take redirected outbound connections (original destination from the socket)",
    )
    .option(
      "--route <service:port=host:port>",
      "where a Service is reached when its pods have no IP; repeatable",
      collectPaths,
      [],
    )
    .option("--status <listen>", "the status port: /healthz/ready, /app-health/..., /stats/prometheus")
    .option("--access-log <path>", "JSON access log file (default: stdout)")
    .option("--trust-domain <td>", "the mesh trust domain (default cluster.local)")
    .option("--root-namespace <ns>", "the mesh root namespace (default istio-system)")
    .option("--reload-interval <ms>", "how often the policy files are checked for changes", "2000")
    .addHelpText(
      "after",
      `
Example: front httpbin (listening on 127.0.0.1:8080) on a bare-metal host, container port 80:
  $ tessera proxy run --workload default/httpbin -f lab/ --socket unix:///run/tessera/agent.sock \\
      --inbound 80@0.0.0.0:15006=127.0.0.1:8080 --status 127.0.0.1:15020

Its client's sidecar, mapping a local port to the Service (whose pods have no IP in the manifests):
  $ tessera proxy run --workload default/sleep -f lab/ --outbound 127.0.0.1:9000=httpbin.default:8000 \\
      --route httpbin.default:8000=10.0.0.5:15006 --outbound-http 127.0.0.1:15080

Denied requests get 403 "RBAC: access denied"; plaintext to a STRICT port is reset. Policies
reload when their files change (or on SIGHUP); until the sidecar has an identity and policies,
it refuses traffic. Stop with Ctrl-C or SIGTERM.`,
    )
    .action((opts: ProxyRunOptions) =>
      run(async () => {
        if (opts.file.length === 0) throw new UsageError("give the workload's manifests with -f PATH");
        const inbound = opts.inbound.map(parseInbound);
        const outboundTcp = opts.outbound.map(parseOutbound);
        if (opts.inboundCapture) {
          const listen = parseHostPort("--inbound-capture", opts.inboundCapture);
          const { originalDestination } = await import("../mesh/local/original-dst.js");
          inbound.push({
            containerPort: 0,
            listen,
            app: { host: "127.0.0.1", port: 0 },
            captured: (socket) => {
              const d = originalDestination(socket);
              return { host: d.address, port: d.port };
            },
          });
        }
        if (opts.outboundCapture) {
          const listen = parseHostPort("--outbound-capture", opts.outboundCapture);
          const { originalDestination } = await import("../mesh/local/original-dst.js");
          outboundTcp.push({
            listen,
            target: {
              kind: "captured",
              originalDestination: (socket) => {
                const d = originalDestination(socket);
                return { host: d.address, port: d.port };
              },
            },
          });
        }
        const routes = new Map(opts.route.map(parseRoute));
        const interval = Number(opts.reloadInterval);
        if (!Number.isFinite(interval) || interval < 100)
          throw new UsageError("--reload-interval must be at least 100 (ms)");
        const meshOptions: { -readonly [K in keyof MeshConfig]?: MeshConfig[K] } = {};
        if (opts.trustDomain) meshOptions.trustDomain = opts.trustDomain;
        if (opts.rootNamespace) meshOptions.rootNamespace = opts.rootNamespace;
        const policies = new PolicySource(opts.file, opts.workload, meshOptions);
        try {
          policies.load();
        } catch (err) {
          if (err instanceof UnknownWorkloadError) throw new UsageError(err.message);
          throw err;
        }
        const log = jsonAccessLog(opts.accessLog ?? 1);
        const sidecar = new Sidecar({
          policies,
          inbound,
          outboundTcp,
          ...(opts.outboundHttp ? { outboundHttp: parseHostPort("--outbound-http", opts.outboundHttp) } : {}),
          routes,
          ...(opts.status ? { status: parseHostPort("--status", opts.status) } : {}),
          log,
          identity: { workloadApi: opts.socket },
          reloadIntervalMs: interval,
        });
        const addresses = await sidecar.start();
        const where = (a: { address: string; port: number }) => `${a.address}:${a.port}`;
        process.stderr.write(
          `sidecar for ${sidecar.ctx.workload}: inbound ${addresses.inbound.map(where).join(", ") || "none"}` +
            `${addresses.outboundHttp ? `, http proxy ${where(addresses.outboundHttp)}` : ""}` +
            `${addresses.outboundTcp.length ? `, outbound ${addresses.outboundTcp.map(where).join(", ")}` : ""}` +
            `${addresses.status ? `, status ${where(addresses.status)}` : ""}\n`,
        );
        const onHup = () => policies.reload(true);
        process.on("SIGHUP", onHup);
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            process.off("SIGHUP", onHup);
            resolve();
          };
          process.on("SIGINT", stop);
          process.on("SIGTERM", stop);
        });
        await sidecar.close();
        return 0;
      }),
    );
}

export function proxyCommand(): Command {
  return new Command("proxy").description("The mTLS sidecar proxy").addCommand(proxyRunCommand());
}
