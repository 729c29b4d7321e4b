/**
 * Admin commands of the identity server: `tessera token|entry|agent|bundle|ca ...`. They talk to
 * the server's Admin API on its Unix socket (DATA_DIR/admin.sock, or --admin-socket PATH);
 * the socket's file permissions decide who may. Every command has `-o json`.
 *
 * `addAgentAdminCommands(agent)` adds `list|show|ban|delete` to an `agent` command group, so
 * that `tessera agent run` (the agent itself) can live in the same group.
 */
import http from "node:http";
import { join } from "node:path";
import { Command, Option } from "commander";
import type { WireEntry } from "../identity/api.js";
import { ADMIN_API } from "../identity/api.js";
import { EXIT_BAD_INPUT, run, UsageError } from "./common.js";
import { collect } from "./inspect-common.js";

/** Where the server keeps its data when --data-dir is not given (also `tessera server run`'s default). */
export const DEFAULT_SERVER_DATA_DIR = process.env.TESSERA_SERVER_DATA_DIR ?? ".tessera/server";

interface ConnOptions {
  dataDir?: string;
  adminSocket?: string;
  output: "txt" | "json";
}

/** An answer of the Admin API that is not a success. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function adminSocketPath(o: { dataDir?: string; adminSocket?: string }): string {
  return o.adminSocket ?? join(o.dataDir ?? DEFAULT_SERVER_DATA_DIR, "admin.sock");
}

/** One call to the Admin API; resolves the parsed JSON (or the text for non-JSON answers). */
export function adminRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json?: unknown; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath,
        method,
        path,
        headers: {
          accept: "application/json",
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          if ((res.headers["content-type"] ?? "").includes("application/json")) {
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
          }
          const status = res.statusCode ?? 0;
          if (status >= 400) {
            const e = (json ?? {}) as { code?: string; message?: string };
            reject(
              new AdminApiError(status, e.code ?? `http-${status}`, e.message ?? (text || `HTTP ${status}`)),
            );
            return;
          }
          resolve({ status, json, text });
        });
        res.on("error", reject);
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" || e.code === "ECONNREFUSED") {
        reject(
          new AdminApiError(
            0,
            "unreachable",
            `cannot reach the identity server's admin socket ${socketPath}: start the server (tessera server run --data-dir DIR), or point to it with --data-dir DIR or --admin-socket PATH`,
          ),
        );
      } else if (e.code === "EACCES" || e.code === "EPERM") {
        reject(
          new AdminApiError(
            0,
            "permission-denied",
            `permission denied on ${socketPath}: admin commands must run as the server's user (the socket is mode 0600)`,
          ),
        );
      } else reject(e);
    });
    req.end(payload);
  });
}

function withConn(cmd: Command): Command {
  return cmd
    .option(
      "--data-dir <dir>",
      `the server's data directory (its admin socket is DIR/admin.sock) (default: ${DEFAULT_SERVER_DATA_DIR})`,
    )
    .option("--admin-socket <path>", "the server's admin socket (overrides --data-dir)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["txt", "json"]).default("txt"));
}

/** Runs an admin action: API refusals print `error: <message>` (exit 2 for bad input, 1 otherwise). */
function adminRun(body: () => Promise<number | undefined>): Promise<void> {
  return run(async () => {
    try {
      return (await body()) ?? 0;
    } catch (e) {
      if (e instanceof AdminApiError) {
        process.stderr.write(`error: ${e.message}\n`);
        return e.status === 400 || e.status === 413 ? EXIT_BAD_INPUT : 1;
      }
      throw e;
    }
  });
}

function print(o: ConnOptions, json: unknown, txt: () => string): void {
  process.stdout.write(o.output === "json" ? `${JSON.stringify(json, null, 2)}\n` : txt());
}

function intOption(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1)
      throw new UsageError(`${name} must be a whole number of seconds above 0, not ${JSON.stringify(v)}`);
    return Number(v);
  };
}

function entryText(e: WireEntry): string {
  const lines = [
    `Entry ID      : ${e.id}`,
    `SPIFFE ID     : ${e.spiffeId}`,
    `Parent ID     : ${e.parentId}`,
    `Revision      : ${e.revision}`,
    `X509-SVID TTL : ${e.x509SvidTtlSeconds}`,
    `JWT-SVID TTL  : ${e.jwtSvidTtlSeconds}`,
    ...e.selectors.map((s) => `Selector      : ${s}`),
    ...e.dnsNames.map((d) => `DNS name      : ${d}`),
    ...(e.hint ? [`Hint          : ${e.hint}`] : []),
    ...(e.admin ? ["Admin         : true"] : []),
    ...(e.downstream ? ["Downstream    : true"] : []),
    ...(e.expiresAt ? [`Expires at    : ${e.expiresAt}`] : []),
  ];
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------

export function tokenCommand(): Command {
  const generate = withConn(new Command("generate"))
    .description(
      "Generate a one-use join token for an agent's node attestation, and the agent SPIFFE ID it will give.",
    )
    .option("--ttl <seconds>", "how long the token can be used", intOption("--ttl"), 600)
    .addHelpText(
      "after",
      `
Examples:
  $ tessera token generate --data-dir /var/lib/tessera/server
  $ tessera token generate --ttl 3600 -o json
  {"token": "...", "spiffeId": "spiffe://cluster.local/spire/agent/join_token/...", "expiresAt": "..."}

Give the token to one agent (tessera agent run --join-token TOKEN). It is spent by that one
attestation; the agent's SPIFFE ID contains it, as in SPIRE, so entries can name the agent as
their parent before it attests.`,
    )
    .action((o: ConnOptions & { ttl: number }) =>
      adminRun(async () => {
        const r = await adminRequest(adminSocketPath(o), "POST", ADMIN_API.joinTokens, { ttlSeconds: o.ttl });
        const t = r.json as { token: string; spiffeId: string; expiresAt: string };
        print(
          o,
          t,
          () => `Token      : ${t.token}\nSPIFFE ID  : ${t.spiffeId}\nExpires at : ${t.expiresAt}\n`,
        );
        return 0;
      }),
    );
  return new Command("token").description("Join tokens for agent node attestation.").addCommand(generate);
}

interface EntryOpts extends ConnOptions {
  spiffeId?: string;
  parentId?: string;
  selector?: string[];
  x509Ttl?: number;
  jwtTtl?: number;
  dns?: string[];
  hint?: string;
  admin?: boolean;
  downstream?: boolean;
  expiresAt?: string;
  revision?: string;
}

function entryFieldOptions(cmd: Command, creating: boolean): Command {
  return cmd
    .option("--spiffe-id <id>", `the SPIFFE ID to issue${creating ? " (required)" : ""}`)
    .option("--parent-id <id>", `the agent (or node alias) that may issue it${creating ? " (required)" : ""}`)
    .option("--selector <type:value>", "a selector (repeatable); all must match the workload", collect)
    .option("--x509-ttl <seconds>", "X509-SVID TTL (default 3600)", intOption("--x509-ttl"))
    .option("--jwt-ttl <seconds>", "JWT-SVID TTL (default 300)", intOption("--jwt-ttl"))
    .option("--dns <name>", "a DNS name of the SVID (repeatable)", collect)
    .option("--hint <hint>", "tells workloads with several SVIDs which one this is")
    .option("--admin", "the workload may call the admin API")
    .option("--downstream", "the workload may mint SVIDs for a downstream server")
    .option("--expires-at <time>", "after this the entry matches nothing (ISO 8601)");
}

function entryBody(o: EntryOpts): Record<string, unknown> {
  if (o.expiresAt !== undefined && Number.isNaN(Date.parse(o.expiresAt))) {
    throw new UsageError(
      `--expires-at ${JSON.stringify(o.expiresAt)} is not an ISO 8601 time, e.g. 2030-01-01T00:00:00Z`,
    );
  }
  return {
    ...(o.spiffeId === undefined ? {} : { spiffeId: o.spiffeId }),
    ...(o.parentId === undefined ? {} : { parentId: o.parentId }),
    ...(o.selector === undefined ? {} : { selectors: o.selector }),
    ...(o.x509Ttl === undefined ? {} : { x509SvidTtlSeconds: o.x509Ttl }),
    ...(o.jwtTtl === undefined ? {} : { jwtSvidTtlSeconds: o.jwtTtl }),
    ...(o.dns === undefined ? {} : { dnsNames: o.dns }),
    ...(o.hint === undefined ? {} : { hint: o.hint }),
    ...(o.admin ? { admin: true } : {}),
    ...(o.downstream ? { downstream: true } : {}),
    ...(o.expiresAt === undefined ? {} : { expiresAt: new Date(o.expiresAt).toISOString() }),
  };
}

export function entryCommand(): Command {
  const create = entryFieldOptions(withConn(new Command("create")), true)
    .description("Create a registration entry: workloads under PARENT matching all SELECTORs get SPIFFE-ID.")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera entry create --spiffe-id spiffe://cluster.local/web \\
      --parent-id spiffe://cluster.local/spire/agent/join_token/TOKEN --selector unix:uid:1000
  $ tessera entry create --spiffe-id spiffe://cluster.local/db --parent-id ID \\
      --selector unix:uid:999 --selector unix:gid:999 --dns db.local --x509-ttl 1800 -o json`,
    )
    .action((o: EntryOpts) =>
      adminRun(async () => {
        if (!o.spiffeId || !o.parentId || !o.selector?.length) {
          throw new UsageError(
            "entry create needs --spiffe-id, --parent-id and at least one --selector TYPE:VALUE",
          );
        }
        const r = await adminRequest(adminSocketPath(o), "POST", ADMIN_API.entries, entryBody(o));
        const e = r.json as WireEntry;
        print(o, e, () => entryText(e));
        return 0;
      }),
    );
  const show = withConn(new Command("show"))
    .description("Show one entry by ID, or list entries (optionally by SPIFFE ID or parent ID).")
    .argument("[id]", "entry ID")
    .option("--spiffe-id <id>", "only entries with this SPIFFE ID")
    .option("--parent-id <id>", "only entries with this parent ID")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera entry show
  $ tessera entry show 0f5c2a9e-...
  $ tessera entry show --spiffe-id spiffe://cluster.local/web -o json`,
    )
    .action((id: string | undefined, o: EntryOpts) =>
      adminRun(async () => {
        const sock = adminSocketPath(o);
        if (id !== undefined) {
          const e = (await adminRequest(sock, "GET", ADMIN_API.entry + encodeURIComponent(id)))
            .json as WireEntry;
          print(o, e, () => entryText(e));
          return 0;
        }
        const q = new URLSearchParams();
        if (o.spiffeId) q.set("spiffeId", o.spiffeId);
        if (o.parentId) q.set("parentId", o.parentId);
        const qs = q.toString();
        const r = (await adminRequest(sock, "GET", ADMIN_API.entries + (qs ? `?${qs}` : ""))).json as {
          entries: WireEntry[];
        };
        print(o, r, () =>
          r.entries.length === 0
            ? "No entries.\n"
            : `Found ${r.entries.length} entr${r.entries.length === 1 ? "y" : "ies"}\n\n${r.entries.map(entryText).join("\n")}`,
        );
        return 0;
      }),
    );
  const update = entryFieldOptions(withConn(new Command("update")), false)
    .description("Change an entry. Given fields replace the stored ones (--selector replaces all selectors).")
    .argument("<id>", "entry ID")
    .option("--revision <n>", "only if the entry is still at this revision (default: its current one)")
    .addHelpText(
      "after",
      `
Examples:
  $ tessera entry update 0f5c2a9e-... --x509-ttl 900
  $ tessera entry update 0f5c2a9e-... --selector unix:uid:1001 --revision 3 -o json`,
    )
    .action((id: string, o: EntryOpts) =>
      adminRun(async () => {
        const sock = adminSocketPath(o);
        const body = entryBody(o);
        if (Object.keys(body).length === 0)
          throw new UsageError("nothing to change: give at least one field option (see --help)");
        let revision: number;
        if (o.revision !== undefined) {
          if (!/^\d+$/.test(o.revision)) throw new UsageError("--revision must be a whole number");
          revision = Number(o.revision);
        } else {
          revision = (
            (await adminRequest(sock, "GET", ADMIN_API.entry + encodeURIComponent(id))).json as WireEntry
          ).revision;
        }
        const e = (
          await adminRequest(sock, "PATCH", ADMIN_API.entry + encodeURIComponent(id), { ...body, revision })
        ).json as WireEntry;
        print(o, e, () => entryText(e));
        return 0;
      }),
    );
  const del = withConn(new Command("delete"))
    .description("Delete an entry: its workloads get no new SVIDs (current ones expire).")
    .argument("<id>", "entry ID")
    .addHelpText("after", "\nExamples:\n  $ tessera entry delete 0f5c2a9e-...\n")
    .action((id: string, o: ConnOptions) =>
      adminRun(async () => {
        const r = await adminRequest(adminSocketPath(o), "DELETE", ADMIN_API.entry + encodeURIComponent(id));
        print(o, r.json, () => `Deleted entry ${id}\n`);
        return 0;
      }),
    );
  return new Command("entry")
    .description("Registration entries: which workloads get which SPIFFE ID.")
    .addCommand(create)
    .addCommand(show)
    .addCommand(update)
    .addCommand(del);
}

interface WireAgent {
  spiffeId: string;
  attestationType: string;
  serialNumber: string;
  expiresAt: string;
  banned: boolean;
  selectors: string[];
}

function agentText(a: WireAgent): string {
  return `${[
    `SPIFFE ID        : ${a.spiffeId}`,
    `Attestation type : ${a.attestationType}`,
    `SVID expires at  : ${a.expiresAt}`,
    `SVID serial      : ${a.serialNumber}`,
    `Banned           : ${a.banned}`,
    ...a.selectors.map((s) => `Selector         : ${s}`),
  ].join("\n")}\n`;
}

/** Adds the admin subcommands (list, show, ban, delete) to the `agent` command group. */
export function addAgentAdminCommands(agent: Command): Command {
  const list = withConn(new Command("list"))
    .description("List attested agents.")
    .option("--banned", "only banned agents")
    .addHelpText("after", "\nExamples:\n  $ tessera agent list\n  $ tessera agent list --banned -o json\n")
    .action((o: ConnOptions & { banned?: boolean }) =>
      adminRun(async () => {
        const r = (
          await adminRequest(adminSocketPath(o), "GET", ADMIN_API.agents + (o.banned ? "?banned=true" : ""))
        ).json as { agents: WireAgent[] };
        print(o, r, () =>
          r.agents.length === 0
            ? "No attested agents.\n"
            : `Found ${r.agents.length} agent(s)\n\n${r.agents.map(agentText).join("\n")}`,
        );
        return 0;
      }),
    );
  const one = (
    name: string,
    description: string,
    method: string,
    suffix: string,
    done: (id: string) => string,
  ) =>
    withConn(new Command(name))
      .description(description)
      .argument("<spiffe-id>", "the agent's SPIFFE ID (see tessera agent list)")
      .addHelpText(
        "after",
        `\nExamples:\n  $ tessera agent ${name} spiffe://cluster.local/spire/agent/x509pop/3f2a...\n`,
      )
      .action((id: string, o: ConnOptions) =>
        adminRun(async () => {
          const r = await adminRequest(
            adminSocketPath(o),
            method,
            ADMIN_API.agent + encodeURIComponent(id) + suffix,
          );
          print(o, r.json, () => (method === "GET" ? agentText(r.json as WireAgent) : done(id)));
          return 0;
        }),
      );
  agent
    .addCommand(list)
    .addCommand(one("show", "Show one attested agent.", "GET", "", () => ""))
    .addCommand(
      one(
        "ban",
        "Ban an agent: it can no longer renew its SVID nor get workload SVIDs; its workloads lose their identities at expiry. Delete it to let the node attest again.",
        "POST",
        "/ban",
        (id) => `Banned agent ${id}\n`,
      ),
    )
    .addCommand(
      one(
        "delete",
        "Forget an agent: it cannot renew nor sign any more and must attest again.",
        "DELETE",
        "",
        (id) => `Deleted agent ${id}\n`,
      ),
    );
  return agent;
}

/** The `agent` command group with the admin subcommands (the agent helper adds `run`). */
export function agentCommand(): Command {
  return addAgentAdminCommands(
    new Command("agent").description("Agents: run one, or list, ban and delete attested agents."),
  );
}

export function bundleCommand(): Command {
  const show = withConn(new Command("show"))
    .description(
      "Print the trust domain's bundle: PEM X.509 authorities, or the SPIFFE bundle (JWKS with spiffe_sequence).",
    )
    .addOption(new Option("--format <format>", "pem or spiffe").choices(["pem", "spiffe"]).default("pem"))
    .addHelpText(
      "after",
      `
Examples:
  $ tessera bundle show > bundle.pem
  $ tessera bundle show --format spiffe > bundle.jwks.json
  $ tessera bundle show -o json`,
    )
    .action((o: ConnOptions & { format: "pem" | "spiffe" }) =>
      adminRun(async () => {
        const r = await adminRequest(adminSocketPath(o), "GET", `${ADMIN_API.bundle}?format=${o.format}`);
        print(o, { format: o.format, bundle: r.text }, () => r.text);
        return 0;
      }),
    );
  return new Command("bundle").description("The trust domain's bundle.").addCommand(show);
}

interface CaStatus {
  sequence: string;
  active: { keyId: string; notAfter: string };
  prepared: { keyId: string; notAfter: string } | null;
  old: Array<{ keyId: string; notAfter: string }>;
}

function caText(s: CaStatus): string {
  return `${[
    `Active   : ${s.active.keyId} (expires ${s.active.notAfter})`,
    `Prepared : ${s.prepared ? `${s.prepared.keyId} (expires ${s.prepared.notAfter})` : "none"}`,
    ...s.old.map((o) => `Old      : ${o.keyId} (expires ${o.notAfter})`),
    `Bundle sequence: ${s.sequence}`,
  ].join("\n")}\n`;
}

export function caCommand(): Command {
  const step = (name: "prepare" | "activate", description: string, path: string) =>
    withConn(new Command(name))
      .description(description)
      .addHelpText("after", `\nExamples:\n  $ tessera ca ${name}\n  $ tessera ca ${name} -o json\n`)
      .action((o: ConnOptions) =>
        adminRun(async () => {
          const r = await adminRequest(adminSocketPath(o), "POST", path);
          print(o, r.json, () => caText(r.json as CaStatus));
          return 0;
        }),
      );
  return new Command("ca")
    .description("Rotate the CA by hand (the server also rotates at 1/2 and 5/6 of the CA's life).")
    .addCommand(
      step(
        "prepare",
        "Prepare the next X.509 authority and JWT key and publish them in the bundle (the sequence increases). Activate after agents have the new bundle.",
        ADMIN_API.caPrepare,
      ),
    )
    .addCommand(
      step(
        "activate",
        "Make the prepared authority sign; the old one stays in the bundle, so SVIDs it signed stay valid until they expire.",
        ADMIN_API.caActivate,
      ),
    );
}
