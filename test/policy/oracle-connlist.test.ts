import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type ConnLine, compareConnLists, parseTxt } from "../helpers/connlist.js";
import { cliPath, oracle } from "../helpers/paths.js";

const root = oracle("netpol-analyzer");
const scenarios = readdirSync(root, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

function run(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [cliPath, ...args], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

describe("np-guard/netpol-analyzer connectivity scenarios (semantic equality)", () => {
  it("has all 30 scenarios", () => {
    assert.equal(scenarios.length, 30);
  });
  for (const name of scenarios) {
    it(name, () => {
      const dir = join(root, name);
      const r = run(["connectivity", "-q", "-o", "json", join(dir, "input")]);
      assert.equal(r.status, 0, r.stderr);
      const actual = JSON.parse(r.stdout) as ConnLine[];
      const expected = parseTxt(readFileSync(join(dir, "expected.txt"), "utf8"));
      const diffs = compareConnLists(actual, expected);
      assert.deepEqual(diffs.slice(0, 20), [], `${diffs.length} differences`);
    });
  }
  for (const name of scenarios.filter((s) => readdirSync(join(root, s)).includes("expected.json"))) {
    it(`${name}: json expected file`, () => {
      const dir = join(root, name);
      const r = run(["connectivity", "-q", "-o", "json", join(dir, "input")]);
      const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as ConnLine[];
      assert.deepEqual(compareConnLists(JSON.parse(r.stdout) as ConnLine[], expected), []);
    });
  }
});
