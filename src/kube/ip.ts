/** IPv4 addresses as unsigned 32-bit integers; ranges are inclusive [start, end]. */

export const IPV4_MAX = 0xffffffff;

export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const octet = Number(p);
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export type Cidr = { family: 4; start: number; end: number; text: string } | { family: 6; text: string };

/** Parses `a.b.c.d/n` (host bits allowed, as the API server allows) or an IPv6 CIDR. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const addr = text.slice(0, slash);
  const bitsText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  if (addr.includes(":")) {
    if (bits > 128 || !/^[0-9a-fA-F:.]+$/.test(addr) || (addr.match(/::/g)?.length ?? 0) > 1)
      return undefined;
    return { family: 6, text };
  }
  const ip = parseIPv4(addr);
  if (ip === undefined || bits > 32) return undefined;
  const size = 2 ** (32 - bits);
  const start = ip - (ip % size);
  return { family: 4, start, end: start + size - 1, text };
}

export function formatRange(start: number, end: number): string {
  return `${formatIPv4(start)}-${formatIPv4(end)}`;
}
