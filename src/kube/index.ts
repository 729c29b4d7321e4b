import { buildCluster } from "./cluster.js";
import { Diagnostics } from "./errors.js";
import { parseObjects, readInputs } from "./load.js";
import type { Cluster } from "./objects.js";

export interface LoadedCluster {
  readonly cluster: Cluster;
  readonly diagnostics: Diagnostics;
}

/** Reads paths (files, directories, `-`) into a cluster model; throws InputError on bad input. */
export function loadCluster(
  paths: readonly string[],
  readStdin: () => string,
  diagnostics = new Diagnostics(),
): LoadedCluster {
  const objects = readInputs(paths, readStdin).flatMap(parseObjects);
  return { cluster: buildCluster(objects, diagnostics), diagnostics };
}

/** Builds a cluster from YAML text (tests, stdin). */
export function clusterFromText(
  text: string,
  name = "<text>",
  diagnostics = new Diagnostics(),
): LoadedCluster {
  return { cluster: buildCluster(parseObjects({ name, text }), diagnostics), diagnostics };
}

/** Builds a cluster from plain objects (tests, generated clusters); sources are `<memory>:index`. */
export function clusterFromObjects(
  objects: readonly object[],
  name = "<memory>",
  diagnostics = new Diagnostics(),
): LoadedCluster {
  const raws = objects.map((value, i) => ({
    value: value as Record<string, unknown>,
    source: { file: name, line: i + 1 },
  }));
  return { cluster: buildCluster(raws, diagnostics), diagnostics };
}
