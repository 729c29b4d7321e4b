import { buildCluster } from "./cluster.js";
import { assumedClusterDns, clusterDnsPods } from "./dns.js";
import { Diagnostics } from "./errors.js";
import { parseObjects, type RawObject, readInputs } from "./load.js";
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
  options: { assumeClusterDns?: boolean } = {},
): LoadedCluster {
  return clusterOf(loadObjects(paths, readStdin), diagnostics, options);
}

/** The objects of every input, read once (stdin can only be read once). */
export function loadObjects(paths: readonly string[], readStdin: () => string): RawObject[] {
  return readInputs(paths, readStdin).flatMap(parseObjects);
}

/**
 * The cluster of some objects; with `assumeClusterDns`, a cluster DNS is added when the objects
 * hold none (see assumedClusterDns).
 */
export function clusterOf(
  objects: readonly RawObject[],
  diagnostics = new Diagnostics(),
  options: { assumeClusterDns?: boolean } = {},
): LoadedCluster {
  if (options.assumeClusterDns && clusterDnsPods(buildCluster(objects, new Diagnostics())).length === 0) {
    const assumed = assumedClusterDns(diagnostics);
    const hasKubeSystem = objects.some((o) => isNamespace(o, "kube-system"));
    const extra = hasKubeSystem ? assumed.filter((o) => !isNamespace(o, "kube-system")) : assumed;
    return { cluster: buildCluster([...objects, ...extra], diagnostics), diagnostics };
  }
  return { cluster: buildCluster(objects, diagnostics), diagnostics };
}

function isNamespace(o: RawObject, name: string): boolean {
  return o.value.kind === "Namespace" && (o.value.metadata as { name?: unknown } | undefined)?.name === name;
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
