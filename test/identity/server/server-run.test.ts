import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cliPath } from "../../helpers/paths.js";

describe("tessera server run", () => {
  it("creates its CA with the key type asked for (--ca-key-type)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tessera-server-run-"));
    const child = spawn(
      process.execPath,
      [
        cliPath,
        "server",
        "run",
        "--data-dir",
        dir,
        "--bind",
        "127.0.0.1:0",
        "--trust-domain",
        "p384.test",
        "--ca-key-type",
        "ec-p384",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      let out = "";
      child.stdout.setEncoding("utf8");
      child.stderr.setEncoding("utf8");
      const up = new Promise<void>((resolve, reject) => {
        const onData = (d: string) => {
          out += d;
          if (out.includes("admin socket")) resolve();
        };
        child.stdout.on("data", onData);
        child.stderr.on("data", onData);
        child.once("exit", (code) => reject(new Error(`server exited with ${code}: ${out}`)));
      });
      await up;
      const r = spawnSync(process.execPath, [cliPath, "bundle", "show", "--data-dir", dir], {
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      const root = new X509Certificate(r.stdout);
      assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, "secp384r1");
    } finally {
      child.kill("SIGTERM");
      if (child.exitCode === null) await once(child, "exit");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
