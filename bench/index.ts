/**
 * `npm run bench`: every benchmark, each in its own process, with the same arguments
 * (`--quick` for a short smoke run).
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let failed = false;
for (const [name, flags] of [
  ["run.js", ["--expose-gc"]],
  ["spiffe.js", []],
  ["ca.js", []],
  ["mesh.js", ["--expose-gc"]],
  ["workload-api.js", ["--expose-gc"]],
  ["http1.js", []],
  ["proxy.js", []],
] as const) {
  process.stdout.write(`\n=== ${name.replace(".js", "")} ===\n`);
  const r = spawnSync(process.execPath, [...flags, join(here, name), ...args], { stdio: "inherit" });
  if (r.status !== 0) failed = true;
}
process.exitCode = failed ? 1 : 0;
