/**
 * Removes what a local mesh left on the host, typically after a crash, so that `up` starts from
 * nothing and can say what it found. Ownership is by name only: a namespace, /etc/netns
 * directory or nft table whose name, or a veth or bridge whose alias, is the prefix or starts
 * with `<prefix>-` or `<prefix>_`. Anything else is never touched, whatever it looks like.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { LOCAL_MESH } from "./addresses.js";
import { runCommand } from "./exec.js";
import {
  checkPrefix,
  deletePod,
  ipBatch,
  isValidNetnsName,
  listLinks,
  listNetns,
  NETNS_ETC_DIR,
} from "./netns.js";

/** Whether a name belongs to the mesh with this prefix. */
export function isNamedByPrefix(name: string, prefix: string): boolean {
  return name === prefix || name.startsWith(`${prefix}-`) || name.startsWith(`${prefix}_`);
}

/** `table <family> <name>` lines of `nft list tables`. */
export function parseNftTables(listing: string): { family: string; name: string }[] {
  const tables: { family: string; name: string }[] = [];
  for (const line of listing.split("\n")) {
    const match = /^table (\S+) (\S+)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) tables.push({ family: match[1], name: match[2] });
  }
  return tables;
}

/**
 * Removes every pod namespace (with the processes still inside it), veth, bridge, /etc/netns
 * directory and host nft table the prefix names. Idempotent; returns what it removed, one
 * entry per object ("netns tessera-web", "bridge tsr0", "nft table inet tessera_filter", ...).
 */
export async function cleanupLocalMesh(options: { prefix?: string } = {}): Promise<string[]> {
  const prefix = checkPrefix(options.prefix ?? LOCAL_MESH.prefix);
  const removed: string[] = [];

  for (const netns of await listNetns()) {
    // A name with characters the mesh never uses was not made by it, whatever its start.
    if (isNamedByPrefix(netns, prefix) && isValidNetnsName(netns)) removed.push(...(await deletePod(netns)));
  }

  // Bridges, and any veth its namespace did not take with it.
  for (const link of await listLinks()) {
    const name = link.ifname;
    const kind = link.linkinfo?.info_kind;
    if (name === undefined || (kind !== "veth" && kind !== "bridge")) continue;
    const ownedByAlias = link.ifalias !== undefined && isNamedByPrefix(link.ifalias, prefix);
    // The mesh's own bridge name, for a crash between creating it and setting its alias.
    const ownedByName = kind === "bridge" && prefix === LOCAL_MESH.prefix && name === LOCAL_MESH.bridge;
    if (!ownedByAlias && !ownedByName) continue;
    await ipBatch([`link del dev ${name}`]);
    removed.push(`${kind} ${name}`);
  }

  let etcEntries: string[] = [];
  try {
    etcEntries = await readdir(NETNS_ETC_DIR);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  for (const entry of etcEntries) {
    if (!isNamedByPrefix(entry, prefix) || !isValidNetnsName(entry)) continue;
    const path = join(NETNS_ETC_DIR, entry);
    await rm(path, { recursive: true, force: true });
    removed.push(path);
  }

  // `nft -f -`, not `nft list tables`: it reads stdin before acting (see ipBatch).
  const { stdout } = await runCommand(["nft", "-f", "-"], { input: "list tables\n" });
  const tables = parseNftTables(stdout).filter((table) => isNamedByPrefix(table.name, prefix));
  if (tables.length > 0) {
    await runCommand(["nft", "-f", "-"], {
      input: tables.map((table) => `delete table ${table.family} ${table.name}\n`).join(""),
    });
    removed.push(...tables.map((table) => `nft table ${table.family} ${table.name}`));
  }
  return removed;
}
