import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, realpath } from "node:fs/promises";
import { describe, it } from "node:test";
import {
  AttestationError,
  attestWorkload,
  formatSelector,
  parseSelector,
  selectorKey,
  type WorkloadAttestor,
} from "../../../src/identity/agent/attestor.js";
import {
  type ExeFile,
  ProcessGuard,
  type ProcReader,
  parseIdNames,
  parseProcStatus,
  parseStartTime,
  systemProcReader,
  UnixAttestor,
} from "../../../src/identity/agent/unix-attestor.js";

/** A /proc/<pid>/stat line with the given command name and start time (field 22). */
function statLine(pid: number, comm: string, starttime: string): string {
  // Fields 3..21, then 22 = starttime, then a few more.
  const middle = [
    "S",
    "1",
    "1",
    "1",
    "0",
    "-1",
    "4194560",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0",
    "0",
    "20",
    "0",
    "1",
    "0",
  ];
  return `${pid} (${comm}) ${middle.join(" ")} ${starttime} 1000 200 18446744073709551615\n`;
}

function statusText(uids: string, gids: string, groups: string): string {
  return `Name:\tapp\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t42\nUid:\t${uids}\nGid:\t${gids}\nFDSize:\t64\nGroups:\t${groups}\n`;
}

/** A fake /proc and /etc: every answer is a field the test can change between calls. */
class FakeProc implements ProcReader {
  statusText = statusText("1000\t1001\t1001\t1001", "100\t101\t101\t101", "27 44 ");
  startTime = "123456";
  ownerIds = { uid: 1001, gid: 101 };
  gone = false;
  path = "/usr/local/bin/app";
  content = Buffer.from("#!/bin/true\nthe app\n");
  passwdText = "root:x:0:0:root:/root:/bin/sh\napp:x:1001:101::/home/app:/bin/sh\n";
  groupText = "root:x:0:\napps:x:101:\nsudo:x:27:app\n";
  hashes = 0;
  identitySuffix = "";

  private alive(pid: number): void {
    if (this.gone) throw Object.assign(new Error(`ENOENT: /proc/${pid}`), { code: "ENOENT" });
  }

  async status(pid: number): Promise<string> {
    this.alive(pid);
    return this.statusText;
  }
  async stat(pid: number): Promise<string> {
    this.alive(pid);
    return statLine(pid, "my (weird) app", this.startTime);
  }
  async owner(pid: number): Promise<{ uid: number; gid: number }> {
    this.alive(pid);
    return { ...this.ownerIds };
  }
  async exePath(pid: number): Promise<string> {
    this.alive(pid);
    return this.path;
  }
  async exeFile(pid: number): Promise<ExeFile> {
    this.alive(pid);
    const content = this.content;
    return {
      size: content.length,
      identity: `fake:${content.length}${this.identitySuffix}`,
      sha256: async (max) => {
        this.hashes++;
        return content.length > max ? undefined : createHash("sha256").update(content).digest("hex");
      },
    };
  }
  async passwd(): Promise<string> {
    return this.passwdText;
  }
  async group(): Promise<string> {
    return this.groupText;
  }
}

const CREDS = { pid: 42, uid: 1001, gid: 101 };

describe("parsing /proc and /etc", () => {
  it("takes the effective uid and gid and the supplementary groups from /proc/<pid>/status", () => {
    assert.deepEqual(parseProcStatus(statusText("0\t1000\t0\t0", "5\t6\t7\t8", "1 2 3")), {
      uid: 1000,
      gid: 6,
      groups: [1, 2, 3],
    });
    assert.deepEqual(parseProcStatus(statusText("0\t0\t0\t0", "0\t0\t0\t0", " ")).groups, []);
    assert.throws(() => parseProcStatus("Name:\tx\n"), /no Uid line/);
    assert.throws(() => parseProcStatus(statusText("a\tb", "0\t0", "")), /malformed/);
  });

  it("counts /proc/<pid>/stat fields from the last parenthesis", () => {
    assert.equal(parseStartTime(statLine(7, "a) (b c) d", "987654")), "987654");
    assert.equal(parseStartTime(statLine(7, "plain", "1")), "1");
    assert.throws(() => parseStartTime("7 noparens S 1"), /parenthesized/);
    assert.throws(() => parseStartTime("7 (x) S 1 2"), /no start time/);
  });

  it("maps ids to the first name in passwd and group files, skipping comments and junk", () => {
    const m = parseIdNames(
      "# comment\nroot:x:0:0::/:/bin/sh\nbad line\ntoor:x:0:0::/:/bin/sh\nn:x::\nnobody:x:65534:65534::/:/x\n",
    );
    assert.deepEqual(
      [...m],
      [
        [0, "root"],
        [65534, "nobody"],
      ],
    );
  });

  it("formats, parses and keys selectors", () => {
    assert.deepEqual(parseSelector("unix:uid:0"), { type: "unix", value: "uid:0" });
    assert.equal(formatSelector({ type: "k8s", value: "ns:default" }), "k8s:ns:default");
    assert.throws(() => parseSelector("unix"), /type:value/);
    assert.throws(() => parseSelector(":x"), /type:value/);
    assert.equal(
      selectorKey([parseSelector("unix:uid:1"), parseSelector("unix:gid:2"), parseSelector("unix:uid:1")]),
      "unix:gid:2\nunix:uid:1",
    );
  });
});

describe("UnixAttestor (fake /proc)", () => {
  it("produces SPIRE's unix selectors: effective ids, names, supplementary groups, path and sha256", async () => {
    const proc = new FakeProc();
    const a = new UnixAttestor({ proc });
    const selectors = (await a.attest(42)).map(formatSelector);
    const digest = createHash("sha256").update(proc.content).digest("hex");
    assert.deepEqual(selectors, [
      "unix:uid:1001",
      "unix:user:app",
      "unix:gid:101",
      "unix:group:apps",
      "unix:supplementary_gid:27",
      "unix:supplementary_group:sudo",
      "unix:supplementary_gid:44",
      "unix:path:/usr/local/bin/app",
      `unix:sha256:${digest}`,
    ]);
  });

  it("hashes an executable once while it is unchanged", async () => {
    const proc = new FakeProc();
    const a = new UnixAttestor({ proc });
    await a.attest(42);
    await a.attest(42);
    assert.equal(proc.hashes, 1);
    proc.identitySuffix = ":changed";
    await a.attest(42);
    assert.equal(proc.hashes, 2);
  });

  it("skips sha256 above the size limit, with one warning per file", async () => {
    const proc = new FakeProc();
    const warnings: string[] = [];
    const a = new UnixAttestor({ proc, workloadSizeLimit: 4, warn: (m) => warnings.push(m) });
    const first = (await a.attest(42)).map(formatSelector);
    await a.attest(42);
    assert.ok(first.includes("unix:path:/usr/local/bin/app"));
    assert.ok(!first.some((s) => s.startsWith("unix:sha256:")));
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] ?? "",
      /larger than the workload size limit of 4 bytes; no unix:sha256 selector/,
    );
    // A negative limit never hashes, silently; path discovery can be turned off.
    const never = new UnixAttestor({ proc, workloadSizeLimit: -1, warn: (m) => warnings.push(m) });
    assert.ok(!(await never.attest(42)).some((s) => s.value.startsWith("sha256:")));
    const noPath = new UnixAttestor({ proc, discoverWorkloadPath: false });
    assert.ok(!(await noPath.attest(42)).some((s) => s.value.startsWith("path:")));
    assert.equal(warnings.length, 1);
  });

  it("gives no name selectors for ids without a name", async () => {
    const proc = new FakeProc();
    proc.passwdText = "";
    proc.groupText = "";
    const values = (await new UnixAttestor({ proc, discoverWorkloadPath: false }).attest(42)).map(
      (s) => s.value,
    );
    assert.deepEqual(values, ["uid:1001", "gid:101", "supplementary_gid:27", "supplementary_gid:44"]);
  });

  it("fails when the process is gone, and attestWorkload fails as a whole", async () => {
    const proc = new FakeProc();
    proc.gone = true;
    await assert.rejects(new UnixAttestor({ proc }).attest(42), /ENOENT/);
    const ok: WorkloadAttestor = { name: "ok", attest: async () => [{ type: "ok", value: "1" }] };
    await assert.rejects(attestWorkload([ok, new UnixAttestor({ proc })], CREDS), (err: unknown) => {
      assert.ok(err instanceof AttestationError);
      assert.equal(err.reason, "attestor-failed");
      assert.match(err.message, /workload attestor "unix" failed for pid 42/);
      return true;
    });
  });

  it("attestWorkload unions the attestors' selectors without duplicates", async () => {
    const a: WorkloadAttestor = {
      name: "a",
      attest: async () => [parseSelector("unix:uid:1"), parseSelector("x:1")],
    };
    const b: WorkloadAttestor = {
      name: "b",
      attest: async () => [parseSelector("x:1"), parseSelector("k8s:ns:default")],
    };
    assert.deepEqual((await attestWorkload([a, b], CREDS)).map(formatSelector), [
      "unix:uid:1",
      "x:1",
      "k8s:ns:default",
    ]);
  });
});

describe("ProcessGuard (PID reuse)", () => {
  it("passes while start time and owner are unchanged", async () => {
    const proc = new FakeProc();
    const guard = await ProcessGuard.capture(CREDS, proc);
    assert.equal(guard.startTime, "123456");
    await guard.check();
    await guard.check();
  });

  it("refuses when the PID now names a process with another start time", async () => {
    const proc = new FakeProc();
    const guard = await ProcessGuard.capture(CREDS, proc);
    proc.startTime = "999999";
    await assert.rejects(guard.check(), (err: unknown) => {
      assert.ok(err instanceof AttestationError);
      assert.equal(err.reason, "pid-reused");
      assert.match(
        err.message,
        /pid 42 now names another process \(start time 123456 when it connected, 999999 now\)/,
      );
      return true;
    });
  });

  it("refuses when the process changed owner, or is not owned by the connecting uid/gid", async () => {
    const proc = new FakeProc();
    const guard = await ProcessGuard.capture(CREDS, proc);
    proc.ownerIds = { uid: 0, gid: 101 };
    await assert.rejects(guard.check(), (err: unknown) => {
      assert.ok(err instanceof AttestationError);
      assert.equal(err.reason, "owner-changed");
      assert.match(err.message, /changed owner during attestation \(1001:101 → 0:101\)/);
      return true;
    });
    // Owned by someone else from the start: lost the race for the PID, or the caller changed users.
    const other = new FakeProc();
    other.ownerIds = { uid: 2000, gid: 101 };
    const g2 = await ProcessGuard.capture(CREDS, other);
    await assert.rejects(g2.check(), /runs as 2000:101, not as the 1001:101 that connected/);
  });

  it("refuses when the process exited (before or after it was recorded)", async () => {
    const proc = new FakeProc();
    const guard = await ProcessGuard.capture(CREDS, proc);
    proc.gone = true;
    await assert.rejects(guard.check(), (err: unknown) => {
      assert.ok(err instanceof AttestationError);
      assert.equal(err.reason, "process-exited");
      return true;
    });
    await assert.rejects(ProcessGuard.capture(CREDS, proc), /cannot be examined; it probably exited/);
    await assert.rejects(
      ProcessGuard.capture({ ...CREDS, pid: 0 }, new FakeProc()),
      /pid 0 cannot be examined/,
    );
  });

  it("works on real processes: this one passes, an exited child is refused", async () => {
    const me = { pid: process.pid, uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
    const guard = await ProcessGuard.capture(me, systemProcReader());
    await guard.check();

    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 10000)"], { stdio: "ignore" });
    const pid = child.pid as number;
    const exited = new Promise((r) => child.once("exit", r));
    const childGuard = await ProcessGuard.capture({ pid, uid: me.uid, gid: me.gid }, systemProcReader());
    await childGuard.check();
    child.kill("SIGKILL");
    await exited;
    await assert.rejects(childGuard.check(), (err: unknown) => {
      assert.ok(err instanceof AttestationError);
      assert.equal(err.reason, "process-exited");
      return true;
    });
  });
});

describe("UnixAttestor (real /proc)", () => {
  it("attests this process: uid, gid, names, path and sha256 of process.execPath", async () => {
    const warnings: string[] = [];
    const a = new UnixAttestor({ workloadSizeLimit: 1024 * 1024 * 1024, warn: (m) => warnings.push(m) });
    const selectors = (await a.attest(process.pid)).map(formatSelector);
    const uid = process.geteuid?.() ?? 0;
    const gid = process.getegid?.() ?? 0;
    const exe = await realpath(process.execPath);
    const digest = createHash("sha256")
      .update(await readFile(exe))
      .digest("hex");
    assert.ok(selectors.includes(`unix:uid:${uid}`), selectors.join(" "));
    assert.ok(selectors.includes(`unix:gid:${gid}`));
    if (uid === 0) assert.ok(selectors.includes("unix:user:root"));
    if (gid === 0) assert.ok(selectors.includes("unix:group:root"));
    assert.ok(selectors.includes(`unix:path:${exe}`), `${exe} in ${selectors.join(" ")}`);
    assert.ok(selectors.includes(`unix:sha256:${digest}`));
    assert.deepEqual(warnings, []);
  });

  it("with the default 64 MiB limit, a larger node binary gets no sha256 and a warning", async (t) => {
    const size = (await readFile(process.execPath)).length;
    if (size <= 64 * 1024 * 1024) {
      t.skip(`node is only ${size} bytes`);
      return;
    }
    const warnings: string[] = [];
    const a = new UnixAttestor({ warn: (m) => warnings.push(m) });
    const selectors = (await a.attest(process.pid)).map(formatSelector);
    assert.ok(!selectors.some((s) => s.startsWith("unix:sha256:")));
    assert.equal(warnings.length, 1);
  });
});
