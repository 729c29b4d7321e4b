import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Diagnostics, InputError } from "../../kube/errors.js";
import { loadCluster } from "../../kube/index.js";
import type { MeshConfig } from "../../policy/istio/mesh.js";
import { WorkloadPolicy } from "./workload-policy.js";

/**
 * The sidecar's policies, read from manifests and kept current: the files are checked every
 * `intervalMs` (and on `reload()`, e.g. SIGHUP) and recompiled when their content changed.
 * A change that does not load keeps the last good policies and reports the error with file
 * and line: a typo never opens the workload, and never closes it either.
 */
export class PolicySource extends EventEmitter {
  #current: WorkloadPolicy | undefined;
  #fingerprint = "";
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly paths: readonly string[],
    readonly workload: string,
    readonly meshOptions: Partial<MeshConfig> = {},
  ) {
    super();
  }

  get current(): WorkloadPolicy | undefined {
    return this.#current;
  }

  /** Loads now; throws the input error when the very first load fails. */
  load(): WorkloadPolicy {
    const policy = this.#compile();
    this.#current = policy;
    this.#fingerprint = fingerprint(this.paths);
    return policy;
  }

  /** Reloads when the files changed; returns whether new policies are in force. */
  reload(force = false): boolean {
    let print: string;
    try {
      print = fingerprint(this.paths);
    } catch (err) {
      this.emit("error", err);
      return false;
    }
    if (!force && print === this.#fingerprint) return false;
    this.#fingerprint = print;
    try {
      this.#current = this.#compile();
    } catch (err) {
      this.emit("error", err);
      return false;
    }
    this.emit("update", this.#current);
    return true;
  }

  watch(intervalMs: number): void {
    this.#timer ??= setInterval(() => this.reload(), intervalMs);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #compile(): WorkloadPolicy {
    const diagnostics = new Diagnostics();
    const { cluster } = loadCluster(
      this.paths,
      () => {
        throw new InputError("no-stdin", "the sidecar cannot read policies from stdin");
      },
      diagnostics,
    );
    return WorkloadPolicy.build(cluster, this.workload, diagnostics, this.meshOptions);
  }
}

/** A digest of every file's content under the paths (directories walked, sorted). */
function fingerprint(paths: readonly string[]): string {
  const hash = createHash("sha256");
  const visit = (path: string) => {
    const stat = statSync(path);
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
      return;
    }
    hash.update(path).update("\0").update(readFileSync(path)).update("\0");
  };
  for (const p of paths) visit(p);
  return hash.digest("hex");
}
