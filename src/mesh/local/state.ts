import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** One pod of the local mesh, as `up` made it. */
export interface PodState {
  readonly namespace: string;
  /** The workload name (`sleep`), which commands take as `ns/name` or `name`. */
  readonly workload: string;
  readonly netns: string;
  readonly ip: string;
  readonly serviceAccount: string;
  readonly inMesh: boolean;
  readonly appUid: number;
  readonly sidecarUid: number | undefined;
  readonly spiffeId: string | undefined;
  readonly appPid: number | undefined;
  readonly sidecarPid: number | undefined;
  readonly command: readonly string[];
}

export interface MeshState {
  readonly version: 1;
  readonly createdAt: string;
  readonly stateDir: string;
  readonly inputs: readonly string[];
  readonly serverPid: number;
  readonly agentPid: number;
  readonly agentSocket: string;
  readonly adminSocket: string;
  readonly pods: readonly PodState[];
  readonly services: readonly {
    readonly namespace: string;
    readonly name: string;
    readonly clusterIp: string;
  }[];
}

/** Where a running mesh keeps its state: commands find it from any shell. */
export function defaultStateDir(): string {
  return process.env.TESSERA_STATE_DIR ?? "/run/tessera/mesh";
}

export const stateFile = (dir: string) => join(dir, "state.json");
export const manifestsDir = (dir: string) => join(dir, "manifests");
export const policiesFile = (dir: string) => join(dir, "manifests", "policies.json");
export const logsDir = (dir: string) => join(dir, "logs");

export class NoMeshError extends Error {}

export function readState(dir: string): MeshState {
  const file = stateFile(dir);
  if (!existsSync(file)) {
    throw new NoMeshError(`no local mesh is running (no ${file}); start one with: tessera up PATH...`);
  }
  return JSON.parse(readFileSync(file, "utf8")) as MeshState;
}

export function writeState(dir: string, state: MeshState): void {
  mkdirSync(dir, { recursive: true });
  const tmp = `${stateFile(dir)}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, stateFile(dir));
}

/** The pod a command names: `ns/name`, or `name` in namespace default. */
export function findPod(state: MeshState, name: string): PodState {
  const [namespace, workload] = name.includes("/") ? name.split("/", 2) : ["default", name];
  const pod = state.pods.find((p) => p.namespace === namespace && p.workload === workload);
  if (!pod) {
    const known = state.pods.map((p) => `${p.namespace}/${p.workload}`).join(", ");
    throw new NoMeshError(`no workload ${namespace}/${workload} in the mesh (workloads: ${known})`);
  }
  return pod;
}
