/** `--config FILE` (src/cli/config-file.ts): precedence, unknown keys and wrong types with file:line. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { UsageError } from "../../src/cli/common.js";
import { applyConfigFile, ConfigFileError, parseConfig, schemaOf } from "../../src/cli/config-file.js";
import { cliPath } from "../helpers/paths.js";

interface Opts {
  config?: string;
  dataDir: string;
  bind: string;
  trustDomain?: string;
  syncInterval: string;
  quiet?: boolean;
}

function command(): Command {
  return new Command("run")
    .exitOverride()
    .option("--config <file>")
    .option("--data-dir <dir>", "data", "/default/data")
    .option("--bind <host:port>", "bind", "127.0.0.1:8081")
    .option("--trust-domain <td>")
    .option("--sync-interval <seconds>", "interval", "5")
    .option("--quiet")
    .action(() => undefined);
}

function parsed(args: string[]): Command {
  const cmd = command();
  cmd.parse(args, { from: "user" });
  return cmd;
}

describe("config files (--config)", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-config-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("the schema is the long options in camelCase, without config", () => {
    const schema = schemaOf(command(), ["syncInterval"]);
    assert.deepEqual(Object.fromEntries(schema), {
      dataDir: "string",
      bind: "string",
      trustDomain: "string",
      syncInterval: "number",
      quiet: "boolean",
    });
  });

  it("flags on the command line > config file > defaults", async () => {
    const file = join(dir, "p.yaml");
    await writeFile(
      file,
      "# a comment\ndataDir: /from/config\nbind: 0.0.0.0:9000\nsyncInterval: 2.5\nquiet: true\n",
    );
    const cmd = parsed(["--config", file, "--bind", "10.0.0.1:1"]);
    const o = applyConfigFile<Opts>(cmd, file, schemaOf(cmd, ["syncInterval"]));
    assert.equal(o.bind, "10.0.0.1:1"); // CLI wins
    assert.equal(o.dataDir, "/from/config"); // config beats the default
    assert.equal(o.syncInterval, "2.5"); // a YAML number becomes commander's string
    assert.equal(o.quiet, true);
    assert.equal(o.trustDomain, undefined); // neither: stays unset
    assert.equal(cmd.getOptionValueSource("dataDir"), "config");
    assert.equal(cmd.getOptionValueSource("bind"), "cli");
    // An empty file leaves the defaults.
    const empty = join(dir, "empty.yaml");
    await writeFile(empty, "# nothing\n");
    const cmd3 = parsed([]);
    assert.equal(applyConfigFile<Opts>(cmd3, empty, schemaOf(cmd3)).dataDir, "/default/data");
  });

  it("an unknown key is an error naming file:line (and the camelCase form of a kebab key)", () => {
    const schema = schemaOf(command(), ["syncInterval"]);
    assert.throws(
      () => parseConfig("bind: 1.2.3.4:5\n\nlisten: 1.2.3.4:5\n", "a.yaml", schema),
      (e: unknown) => {
        assert.ok(e instanceof ConfigFileError && e instanceof UsageError);
        assert.match(e.message, /^a\.yaml:3:1: unknown key "listen"/);
        assert.match(e.message, /known keys: bind, dataDir, quiet, syncInterval, trustDomain/);
        return true;
      },
    );
    assert.throws(
      () => parseConfig("data-dir: /x\n", "b.yaml", schema),
      /b\.yaml:1:1: .*did you mean dataDir\?/,
    );
  });

  it("a wrong type is an error naming file:line:column of the value", () => {
    const schema = schemaOf(command(), ["syncInterval"]);
    assert.throws(
      () => parseConfig("bind: x:1\nsyncInterval: soon\n", "c.yaml", schema),
      /^ConfigFileError: c\.yaml:2:15: "syncInterval" \(--sync-interval\) must be a number, not the string "soon"$/,
    );
    assert.throws(
      () => parseConfig("quiet: yes please\n", "d.yaml", schema),
      /d\.yaml:1:8: .*must be true or false/,
    );
    assert.throws(
      () => parseConfig("dataDir: 42\n", "e.yaml", schema),
      /e\.yaml:1:10: .*must be a non-empty string, not number 42/,
    );
    assert.throws(() => parseConfig("dataDir:\n  - a\n", "f.yaml", schema), /f\.yaml:2:3: .*not a list/);
    assert.throws(() => parseConfig("dataDir:\n", "g.yaml", schema), /g\.yaml:1:9: .*not empty/);
    assert.throws(
      () => parseConfig("- a\n- b\n", "h.yaml", schema),
      /h\.yaml:1:1: the config file must be a mapping/,
    );
    assert.throws(() => parseConfig("bind: a\nbind: b\n", "i.yaml", schema), /i\.yaml:2:1: not valid YAML/);
  });

  it("tessera server run --config with an unknown key exits 2 with file:line", async () => {
    const file = join(dir, "server.yaml");
    await writeFile(file, `dataDir: ${join(dir, "srv")}\nbind: 127.0.0.1:0\nbogus: 1\n`);
    const { status, stderr } = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [cliPath, "server", "run", "--config", file], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let err = "";
      child.stderr.on("data", (d: Buffer) => {
        err += d.toString();
      });
      child.on("close", (code) => resolve({ status: code, stderr: err }));
    });
    assert.equal(status, 2, stderr);
    assert.equal(
      stderr,
      `error: ${file}:3:1: unknown key "bogus"; known keys: adminSocket, bind, caKeyType, caTtl, dataDir, datastore, trustDomain, upstreamCaBundle, upstreamCaCert, upstreamCaKey, x509popCa\n`,
    );
  });
});
