/**
 * SO_ORIGINAL_DST: the struct decoding against a byte-by-byte reference (fast-check), and the
 * real getsockopt on connections this process redirects to itself over loopback. The redirect
 * is a host nft table named with the mesh prefix and a suffix unique to this run, matching only
 * 127.0.0.2 on ports picked here, removed in `after`. Needs root (CI runs as root).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  OriginalDestinationError,
  originalDestination,
  parseSockaddrIn,
  SOCKADDR_IN_SIZE,
} from "../../../src/mesh/local/original-dst.js";

/** The obviously-correct reading of struct sockaddr_in, one byte at a time. */
function referenceSockaddrIn(
  bytes: Uint8Array,
  hostEndianness: "LE" | "BE",
): { family: number; address: string; port: number } {
  const b = (i: number): number => bytes[i] as number;
  const family = hostEndianness === "LE" ? b(0) + b(1) * 256 : b(0) * 256 + b(1);
  return { family, address: `${b(4)}.${b(5)}.${b(6)}.${b(7)}`, port: b(2) * 256 + b(3) };
}

function sockaddrIn(family: number, octets: number[], port: number, hostEndianness: "LE" | "BE"): Uint8Array {
  const bytes = new Uint8Array(SOCKADDR_IN_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, family, hostEndianness === "LE");
  view.setUint16(2, port, false);
  bytes.set(octets, 4);
  return bytes;
}

describe("sockaddr_in decoding", () => {
  const endiannessArb = fc.constantFrom<"LE" | "BE">("LE", "BE");

  it("reads back any IPv4 address and port in either host byte order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 65535 }),
        endiannessArb,
        (octets, port, order) => {
          assert.deepEqual(parseSockaddrIn(sockaddrIn(2, octets, port, order), order), {
            address: octets.join("."),
            port,
          });
        },
      ),
    );
  });

  it("agrees with the byte-by-byte reference on arbitrary bytes, and refuses any other family", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), endiannessArb, (bytes, order) => {
        const expected = referenceSockaddrIn(bytes, order);
        if (expected.family === 2) {
          assert.deepEqual(parseSockaddrIn(bytes, order), { address: expected.address, port: expected.port });
        } else {
          assert.throws(() => parseSockaddrIn(bytes, order), OriginalDestinationError);
        }
      }),
    );
    assert.throws(
      () => parseSockaddrIn(sockaddrIn(10, [0, 0, 0, 0], 80, "LE"), "LE"),
      /not IPv4 \(address family 10/,
    );
  });

  it("refuses a buffer of any other size", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 40 }).filter((b) => b.length !== SOCKADDR_IN_SIZE),
        (bytes) => {
          assert.throws(() => parseSockaddrIn(bytes), /sockaddr_in is 16 bytes/);
        },
      ),
    );
  });

  it("decodes a view into a larger buffer at its own offset", () => {
    const backing = new Uint8Array(32).fill(0xee);
    backing.set(sockaddrIn(2, [10, 214, 0, 20], 8000, "LE"), 8);
    assert.deepEqual(parseSockaddrIn(backing.subarray(8, 24), "LE"), { address: "10.214.0.20", port: 8000 });
  });
});

describe("originalDestination on redirected loopback connections (root)", () => {
  const table = `tsrt-o${randomBytes(3).toString("hex")}_odst`;
  /** Connections to 127.0.0.2 on these ports are redirected to the listener. */
  const firstPort = 40000 + Math.floor(Math.random() * 20000);
  const portCount = 16;
  let server: Server;
  let listenerPort: number;
  let tableCreated = false;

  before(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error(
        "these tests add an nft table to redirect loopback connections and need root: run them as root (CI does)",
      );
    }
    server = createServer((socket) => {
      // The closed-socket test resets its connection before the reply arrives.
      socket.on("error", () => undefined);
      let reply: string;
      try {
        reply = JSON.stringify({ ok: originalDestination(socket), localPort: socket.localPort });
      } catch (err) {
        reply = JSON.stringify({ error: (err as Error).message, name: (err as Error).name });
      }
      socket.end(reply);
    });
    // No host: a dual-stack :: listener where IPv6 exists (IPv4 peers arrive as ::ffff:a.b.c.d),
    // 0.0.0.0 otherwise, as a sidecar would listen.
    await new Promise<void>((resolve) => server.listen(0, resolve));
    listenerPort = (server.address() as AddressInfo).port;
    execFileSync("nft", ["-f", "-"], {
      input: [
        `table ip ${table} {`,
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        `    ip daddr 127.0.0.2 tcp dport ${firstPort}-${firstPort + portCount - 1} redirect to :${listenerPort}`,
        "  }",
        "}",
        "",
      ].join("\n"),
    });
    tableCreated = true;
  });

  after(async () => {
    if (tableCreated) execFileSync("nft", ["delete", "table", "ip", table]);
    await new Promise((resolve) => server?.close(resolve));
  });

  async function ask(host: string, port: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      let text = "";
      const socket = connect(port, host);
      socket.setEncoding("utf8").on("data", (d: string) => {
        text += d;
      });
      socket.on("end", () => resolve(JSON.parse(text) as Record<string, unknown>)).on("error", reject);
    });
  }

  it("reports the destination each connection dialed before it was redirected", async () => {
    const ports = Array.from({ length: portCount }, (_, i) => firstPort + i);
    const answers = await Promise.all(ports.map((port) => ask("127.0.0.2", port)));
    answers.forEach((answer, i) => {
      assert.deepEqual(answer, { ok: { address: "127.0.0.2", port: ports[i] }, localPort: listenerPort });
    });
  });

  it("refuses a connection that was not redirected: it would point the sidecar at itself", async () => {
    const answer = await ask("127.0.0.1", listenerPort);
    assert.equal(answer.name, "OriginalDestinationError");
    assert.match(String(answer.error), /not redirected/);
  });

  it("refuses a closed socket and an IPv6 connection with a clear error", async () => {
    const closed = await new Promise<Socket>((resolve, reject) => {
      const socket = connect(firstPort, "127.0.0.2", () => resolve(socket)).on("error", reject);
    });
    closed.destroy();
    assert.throws(() => originalDestination(closed), /no file descriptor/);
    const ipv6 = { localAddress: "fd00::1", _handle: { fd: 0 } } as unknown as Socket;
    assert.throws(() => originalDestination(ipv6), /is IPv6 \(local address fd00::1\)/);
  });
});
