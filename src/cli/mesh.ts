/**
 * The local mesh on one machine: `tessera up`, `apply`, `exec`, `status`, `down`, and `lab`,
 * the zero-trust lab end to end. The running mesh is found from its state directory
 * (TESSERA_STATE_DIR, default /run/tessera/mesh), so these work from any shell.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { startDnsServer } from "../mesh/local/dns-server.js";
import { labTable, runLab } from "../mesh/local/lab.js";
import { apply, down, execInWorkload, MeshError, status, up } from "../mesh/local/mesh.js";
import { defaultStateDir, NoMeshError } from "../mesh/local/state.js";
import { parseHostPort, run, UsageError } from "./common.js";

const say = (line: string) => process.stderr.write(`${line}\n`);
const DEFAULT_LAB = fileURLToPath(new URL("../../../examples/zero-trust-lab", import.meta.url));

/** Mesh errors are the user's situation (not root, no mesh): one line and exit 2. */
async function meshRun(body: () => Promise<number>): Promise<void> {
  await run(async () => {
    try {
      return await body();
    } catch (err) {
      if (err instanceof MeshError || err instanceof NoMeshError) throw new UsageError(err.message);
      throw err;
    }
  });
}

/** Ctrl-C during `up` or `lab` removes what was created. */
function cleanupOnInterrupt(stateDir: string): () => void {
  const onSignal = () => {
    say("interrupted: removing the mesh");
    void down(stateDir, say).finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

export function meshCommands(): Command[] {
  const stateOption = (c: Command) =>
    c.option(
      "--state-dir <dir>",
      "where the running mesh keeps its state (default: TESSERA_STATE_DIR or /run/tessera/mesh)",
    );
  const stateOf = (opts: { stateDir?: string }) => opts.stateDir ?? defaultStateDir();

  const upCommand = stateOption(
    new Command("up")
      .description(
        "Run the workloads of some manifests as a local mesh: pods, identities, sidecars, policies (needs root)",
      )
      .argument("<path...>", "manifests: files or directories")
      .addHelpText(
        "after",
        `
Each workload runs as a pod: its own network namespace and IP on a bridge (10.213.0.0/16), its
app inside, and, in the mesh, a sidecar that captures its traffic. Identities come from an
identity server and agent (one entry per ServiceAccount, selector unix:uid); NetworkPolicy is
enforced as packet drops; a DNS server answers <service>.<namespace>.svc.cluster.local.

Example:
  $ sudo tessera up examples/zero-trust-lab
  $ sudo tessera exec sleep -- curl -s http://httpbin.default.svc.cluster.local:8000/headers
  $ sudo tessera down`,
      ),
  ).action((paths: string[], opts: { stateDir?: string }) =>
    meshRun(async () => {
      const dir = stateOf(opts);
      const release = cleanupOnInterrupt(dir);
      const state = await up(dir, paths, say);
      release();
      say(`mesh up: ${state.pods.length} pods; try: tessera status`);
      return 0;
    }),
  );

  const applyCommand = stateOption(
    new Command("apply")
      .description(
        "Apply NetworkPolicy, PeerAuthentication and AuthorizationPolicy objects to the running mesh, live",
      )
      .argument("<path...>", "policy manifests (files, directories or - for stdin)")
      .option(
        "--replace",
        "the given policies replace every policy of the mesh (default: added or updated by kind/namespace/name)",
      )
      .addHelpText(
        "after",
        "\nExample:\n  $ sudo tessera apply examples/zero-trust-lab/03-default-deny.yaml",
      ),
  ).action((paths: string[], opts: { stateDir?: string; replace?: boolean }) =>
    meshRun(() => apply(stateOf(opts), paths, say, { replace: opts.replace ?? false })),
  );

  const execCommand = stateOption(
    new Command("exec")
      .description("Run a command inside a workload's pod, as its app (e.g. curl)")
      .argument("<workload>", "ns/name, or name in namespace default")
      .argument("<command...>", "the command and its arguments (after --)")
      .addHelpText(
        "after",
        "\nExample:\n  $ sudo tessera exec sleep -- curl -s -o /dev/null -w '%{http_code}' http://httpbin:8000/headers",
      ),
  ).action((workload: string, argv: string[], opts: { stateDir?: string }) =>
    meshRun(() => execInWorkload(stateOf(opts), workload, argv)),
  );

  const statusCommand = stateOption(
    new Command("status")
      .description("Pods, identities, policies and each sidecar's readiness of the running mesh")
      .addHelpText("after", "\nExample:\n  $ sudo tessera status"),
  ).action((opts: { stateDir?: string }) =>
    meshRun(async () => {
      process.stdout.write(await status(stateOf(opts)));
      return 0;
    }),
  );

  const downCommand = stateOption(
    new Command("down")
      .description("Stop the running mesh and remove everything it created")
      .addHelpText("after", "\nExample:\n  $ sudo tessera down"),
  ).action((opts: { stateDir?: string }) => meshRun(() => down(stateOf(opts), say)));

  const labCommand = stateOption(
    new Command("lab")
      .description(
        "The zero-trust lab end to end: every step live in a local mesh, next to what `tessera can` predicts (needs root)",
      )
      .argument("[dir]", "the lab's manifests (STEPS.md's files)", DEFAULT_LAB)
      .option("--keep", "leave the mesh running afterwards (tessera down removes it)")
      .addHelpText(
        "after",
        `
Steps (STEPS.md): PERMISSIVE, then STRICT mTLS (a plaintext caller is reset), allow-nothing
(403 RBAC: access denied), then GET allowed from sleep only; then the DNS mistake: a default-deny
egress policy that forgets DNS breaks curl by name ("could not resolve host"), and allowing UDP/TCP
53 to the DNS pod fixes it. Exit 0 only when every step matches.

Example:
  $ sudo tessera lab`,
      ),
  ).action((dir: string, opts: { stateDir?: string; keep?: boolean }) =>
    meshRun(async () => {
      const stateDir = stateOf(opts);
      const release = cleanupOnInterrupt(stateDir);
      const rows = await runLab(dir, stateDir, say, { keep: opts.keep ?? false });
      release();
      process.stdout.write(labTable(rows));
      const failed = rows.filter((r) => !r.pass).length;
      process.stdout.write(
        failed === 0 ? `all ${rows.length} steps PASS\n` : `${failed} of ${rows.length} steps FAIL\n`,
      );
      return failed === 0 ? 0 : 1;
    }),
  );

  const dnsCommand = new Command("mesh-dns")
    .description("The local mesh's cluster DNS server (run by tessera up inside the DNS pod)")
    .requiredOption("--zone <file>", "the zone (JSON: clusterDomain and [name, addresses] records)")
    .option("--listen <host:port>", "where to answer (UDP and TCP)", "0.0.0.0:53")
    .addHelpText(
      "after",
      "\nExample:\n  $ tessera mesh-dns --zone /run/tessera/mesh/dns-zone.json --listen 0.0.0.0:53",
    )
    .action((opts: { zone: string; listen: string }) =>
      run(async () => {
        if (!existsSync(opts.zone)) throw new UsageError(`--zone ${opts.zone}: no such file`);
        const read = () => {
          const z = JSON.parse(readFileSync(opts.zone, "utf8")) as {
            clusterDomain: string;
            records: [string, string[]][];
          };
          return { clusterDomain: z.clusterDomain, records: new Map(z.records) };
        };
        const at = parseHostPort("--listen", opts.listen);
        const server = await startDnsServer({ host: at.host, port: at.port, zone: read(), log: say });
        say(`cluster DNS on ${server.address.host}:${server.address.port}`);
        process.on("SIGHUP", () => server.setZone(read()));
        await new Promise<void>((resolve) => {
          process.once("SIGINT", () => resolve());
          process.once("SIGTERM", () => resolve());
        });
        await server.close();
        return 0;
      }),
    );
  return [upCommand, applyCommand, execCommand, statusCommand, downCommand, labCommand, dnsCommand];
}
