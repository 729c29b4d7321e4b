import type { ContainerPort, Protocol } from "../../kube/objects.js";
import { ConnectionSet } from "../connset.js";
import type { NetpolPort } from "./model.js";

/** `name/PROTOCOL` → container port number, first container wins. */
export type NamedPorts = ReadonlyMap<string, number>;

export function namedPortsOf(ports: readonly ContainerPort[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of ports) {
    if (p.name === undefined) continue;
    const key = `${p.name}/${p.protocol}`;
    if (!out.has(key)) out.set(key, p.port);
  }
  return out;
}

export function namedPortsKey(named: NamedPorts): string {
  return [...named.entries()]
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(",");
}

/** The ports of a rule with its named ports resolved against one destination's containers. */
export function resolvePorts(ports: readonly NetpolPort[], named: NamedPorts | undefined): ConnectionSet {
  if (ports.length === 0) return ConnectionSet.ALL;
  let out = ConnectionSet.NONE;
  for (const p of ports) out = out.union(portSet(p.protocol, p.port, p.endPort, named));
  return out;
}

function portSet(
  protocol: Protocol,
  port: number | string | undefined,
  endPort: number | undefined,
  named: NamedPorts | undefined,
) {
  if (port === undefined) return ConnectionSet.allOf(protocol);
  if (typeof port === "number") return ConnectionSet.of(protocol, [port, endPort ?? port]);
  const resolved = named?.get(`${port}/${protocol}`);
  return resolved === undefined ? ConnectionSet.NONE : ConnectionSet.of(protocol, [resolved, resolved]);
}

/** True when some port of the rule is a name (its meaning then depends on the destination). */
export function hasNamedPort(ports: readonly NetpolPort[]): boolean {
  return ports.some((p) => typeof p.port === "string");
}
