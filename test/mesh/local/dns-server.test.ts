/**
 * The mesh's cluster DNS: the wire codec (round trips, compression, malformed input, fuzz),
 * the answers (A, NODATA, NXDOMAIN with SOA, short names, errors, EDNS, truncation), and the
 * live server over UDP and TCP with real clients: dig, Node's resolver, and glibc's resolver
 * (`getent hosts`, `dig +search`) through a resolv.conf search list inside a network namespace.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  DNS_CLASS,
  DNS_OPCODE,
  DNS_RCODE,
  DNS_TYPE,
  type DnsMessage,
  type DnsRecord,
  DnsWireError,
  decodeMessage,
  encodeMessage,
  nameToWire,
  optRecord,
  readName,
  readOpt,
} from "../../../src/mesh/local/dns-message.js";
import {
  answerQuery,
  type DnsServer,
  type DnsZone,
  startDnsServer,
  ZoneIndex,
  zoneFromServices,
} from "../../../src/mesh/local/dns-server.js";
import { runCommand } from "../../../src/mesh/local/exec.js";

const NUM_RUNS = Number(process.env.TESSERA_FC_RUNS ?? 300);

const ZONE: DnsZone = zoneFromServices(
  [
    { name: "httpbin", namespace: "default", clusterIp: "10.214.0.11" },
    { name: "sleep", namespace: "ns-a", clusterIp: "10.214.0.12" },
    { name: "sleep", namespace: "ns-a", clusterIp: "10.214.0.13" },
  ],
  [
    { namespace: "default", ip: "10.213.0.2" },
    { namespace: "default", ip: "10.213.0.3", hostname: "web-0", subdomain: "web" },
  ],
);

const QUERY_FLAGS = {
  response: false,
  opcode: DNS_OPCODE.QUERY,
  authoritative: false,
  truncated: false,
  recursionDesired: true,
  recursionAvailable: false,
  authenticData: false,
  checkingDisabled: false,
  rcode: 0,
} as const;

function query(
  name: string,
  type: number = DNS_TYPE.A,
  extra: { id?: number; opcode?: number; klass?: number; additional?: DnsRecord[]; questions?: number } = {},
): Uint8Array {
  const question = { name, type, class: extra.klass ?? DNS_CLASS.IN };
  return encodeMessage({
    id: extra.id ?? 0x1234,
    flags: { ...QUERY_FLAGS, opcode: extra.opcode ?? DNS_OPCODE.QUERY },
    questions: Array.from({ length: extra.questions ?? 1 }, () => question),
    answers: [],
    authority: [],
    additional: extra.additional ?? [],
  });
}

function ask(request: Uint8Array, transport: "udp" | "tcp" = "udp", zone: DnsZone = ZONE): DnsMessage {
  const response = answerQuery(new ZoneIndex(zone, 1), request, transport);
  assert.ok(response, "expected an answer");
  return decodeMessage(response);
}

function ipsOf(m: DnsMessage): string[] {
  return m.answers.filter((rr) => rr.type === DNS_TYPE.A).map((rr) => [...rr.data].join("."));
}

/** Records as plain objects, so they compare equal to what the decoder builds. */
const PLAIN = { noNullPrototype: true } as const;

/** A name built from arbitrary label bytes, as it travels on the wire. */
const wireNameArb = fc
  .array(fc.uint8Array({ minLength: 1, maxLength: 63 }), { maxLength: 4 })
  .filter((labels) => labels.reduce((n, l) => n + l.length + 1, 1) <= 255)
  .map((labels) => Uint8Array.from([...labels.flatMap((l) => [l.length, ...l]), 0]));

const recordArb: fc.Arbitrary<DnsRecord> = fc.record(
  {
    name: wireNameArb.map((w) => readName(w, 0).name),
    type: fc.integer({ min: 0, max: 0xffff }),
    class: fc.integer({ min: 0, max: 0xffff }),
    ttl: fc.integer({ min: 0, max: 0xffffffff }),
    data: fc.uint8Array({ maxLength: 40 }),
  },
  PLAIN,
);

const messageArb: fc.Arbitrary<DnsMessage> = fc.record(
  {
    id: fc.integer({ min: 0, max: 0xffff }),
    flags: fc.record(
      {
        response: fc.boolean(),
        opcode: fc.integer({ min: 0, max: 15 }),
        authoritative: fc.boolean(),
        truncated: fc.boolean(),
        recursionDesired: fc.boolean(),
        recursionAvailable: fc.boolean(),
        authenticData: fc.boolean(),
        checkingDisabled: fc.boolean(),
        rcode: fc.integer({ min: 0, max: 15 }),
      },
      PLAIN,
    ),
    questions: fc.array(
      fc.record(
        {
          name: wireNameArb.map((w) => readName(w, 0).name),
          type: fc.integer({ min: 0, max: 0xffff }),
          class: fc.integer({ min: 0, max: 0xffff }),
        },
        PLAIN,
      ),
      { maxLength: 3 },
    ),
    answers: fc.array(recordArb, { maxLength: 3 }),
    authority: fc.array(recordArb, { maxLength: 2 }),
    additional: fc.array(recordArb, { maxLength: 2 }),
  },
  PLAIN,
);

describe("DNS wire codec", () => {
  it("reads any wire name back to the same bytes (escapes for dots, backslashes, binary)", () => {
    fc.assert(
      fc.property(wireNameArb, (wire) => {
        const { name, next } = readName(wire, 0);
        assert.equal(next, wire.length);
        assert.deepEqual(nameToWire(name), wire);
      }),
      { numRuns: NUM_RUNS },
    );
    assert.equal(readName(Uint8Array.of(3, 0x61, 0x2e, 0x5c, 1, 0x00, 0), 0).name, "a\\.\\\\.\\000");
  });

  it("round-trips whole messages", () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        assert.deepEqual(decodeMessage(encodeMessage(m)), m);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("follows compression pointers and refuses loops and forward pointers", () => {
    // Question "www.cluster.local", answer name "cluster.local" as a pointer to offset 16.
    const header = [0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    const question = [
      3,
      0x77,
      0x77,
      0x77,
      7,
      ...Buffer.from("cluster"),
      5,
      ...Buffer.from("local"),
      0,
      0,
      1,
      0,
      1,
    ];
    const answer = [0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1];
    const m = decodeMessage(Uint8Array.from([...header, ...question, ...answer]));
    assert.equal(m.questions[0]?.name, "www.cluster.local");
    assert.equal(m.answers[0]?.name, "cluster.local");

    const pointerTo = (target: number) => [0xc0 | (target >> 8), target & 0xff];
    const bad: Array<[string, number[]]> = [
      ["self", [...header.slice(0, 4), 0, 1, 0, 0, 0, 0, 0, 0, ...pointerTo(12), 0, 1, 0, 1]],
      ["forward", [...header.slice(0, 4), 0, 1, 0, 0, 0, 0, 0, 0, ...pointerTo(14), 0, 1, 0, 1]],
      // Two pointers pointing at each other: the second points back at the first, which points forward.
      [
        "cycle",
        [...header.slice(0, 4), 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, ...pointerTo(16), ...pointerTo(12), 0, 1],
      ],
    ];
    for (const [what, bytes] of bad) {
      assert.throws(
        () => decodeMessage(Uint8Array.from(bytes)),
        (e) => e instanceof DnsWireError && e.code === "bad-pointer",
        what,
      );
    }
  });

  it("refuses malformed messages with a DnsWireError naming the problem", () => {
    const ok = query("httpbin.default.svc.cluster.local");
    const cases: Array<[Uint8Array, string]> = [
      [ok.subarray(0, 11), "truncated"],
      [ok.subarray(0, ok.length - 1), "truncated"],
      [Uint8Array.from([...ok, 0]), "trailing-bytes"],
      [Uint8Array.from([...ok.subarray(0, 12), 0x40, 0, 0, 1, 0, 1]), "bad-label-type"],
      [
        Uint8Array.from([
          ...ok.subarray(0, 12),
          ...Array.from({ length: 5 }, () => [63, ...new Array(63).fill(0x61)]).flat(),
          0,
          0,
          1,
          0,
          1,
        ]),
        "name-too-long",
      ],
    ];
    for (const [bytes, code] of cases) {
      assert.throws(
        () => decodeMessage(bytes),
        (e) => e instanceof DnsWireError && e.code === code,
        code,
      );
    }
    assert.throws(() => nameToWire("a..b"), /empty label/);
    assert.throws(() => nameToWire("x".repeat(64)), /longer than 63/);
    assert.throws(() => nameToWire("caf\u00e9"), /must be written/);
  });

  it("never throws anything but DnsWireError on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeMessage(bytes);
        } catch (e) {
          assert.ok(e instanceof DnsWireError, String(e));
        }
      }),
      { numRuns: NUM_RUNS * 3 },
    );
  });
});

describe("zoneFromServices", () => {
  it("names Services, pods by address, and pods with hostname and subdomain", () => {
    assert.deepEqual([...ZONE.records.entries()].sort(), [
      ["10-213-0-2.default.pod.cluster.local", ["10.213.0.2"]],
      ["10-213-0-3.default.pod.cluster.local", ["10.213.0.3"]],
      ["httpbin.default.svc.cluster.local", ["10.214.0.11"]],
      ["sleep.ns-a.svc.cluster.local", ["10.214.0.12", "10.214.0.13"]],
      ["web-0.web.default.svc.cluster.local", ["10.213.0.3"]],
    ]);
    assert.equal(ZONE.clusterDomain, "cluster.local");
    const other = zoneFromServices(
      [{ name: "Db", namespace: "prod", clusterIp: "10.0.0.1" }],
      [],
      "Corp.Example.",
    );
    assert.deepEqual([...other.records.keys()], ["db.prod.svc.corp.example"]);
  });

  it("refuses bad addresses and names outside the domain, naming them", () => {
    assert.throws(
      () => zoneFromServices([{ name: "x", namespace: "y", clusterIp: "10.0.0.256" }]),
      /Service y\/x: "10.0.0.256" is not an IPv4 address/,
    );
    assert.throws(
      () =>
        new ZoneIndex(
          { clusterDomain: "cluster.local", records: new Map([["a.example.com", ["1.2.3.4"]]]) },
          1,
        ),
      /not inside the cluster domain/,
    );
    assert.throws(
      () =>
        new ZoneIndex(
          { clusterDomain: "cluster.local", records: new Map([["a.cluster.local", ["::1"]]]) },
          1,
        ),
      /not an IPv4 address/,
    );
    assert.throws(
      () => new ZoneIndex({ clusterDomain: "bad..domain", records: new Map() }, 1),
      /not a DNS name/,
    );
  });
});

describe("answers", () => {
  it("answers A for a known name, case-insensitively, authoritatively, TTL 5", () => {
    const m = ask(query("HttpBin.Default.SVC.cluster.local"));
    assert.equal(m.flags.rcode, DNS_RCODE.NOERROR);
    assert.ok(m.flags.response && m.flags.authoritative && !m.flags.recursionAvailable);
    assert.equal(m.id, 0x1234);
    assert.deepEqual(ipsOf(m), ["10.214.0.11"]);
    assert.equal(m.answers[0]?.name, "HttpBin.Default.SVC.cluster.local");
    assert.equal(m.answers[0]?.ttl, 5);
    assert.deepEqual(ipsOf(ask(query("sleep.ns-a.svc.cluster.local"))), ["10.214.0.12", "10.214.0.13"]);
    assert.deepEqual(ipsOf(ask(query("10-213-0-2.default.pod.cluster.local"))), ["10.213.0.2"]);
  });

  it("gives NODATA with the SOA for AAAA of a known name and for names with names below them", () => {
    for (const [name, type] of [
      ["httpbin.default.svc.cluster.local", DNS_TYPE.AAAA],
      ["httpbin.default.svc.cluster.local", DNS_TYPE.TXT],
      ["default.svc.cluster.local", DNS_TYPE.A],
      ["svc.cluster.local", DNS_TYPE.A],
      ["cluster.local", DNS_TYPE.A],
    ] as const) {
      const m = ask(query(name, type));
      assert.equal(m.flags.rcode, DNS_RCODE.NOERROR, name);
      assert.equal(m.answers.length, 0, name);
      assert.equal(m.authority[0]?.type, DNS_TYPE.SOA, name);
      assert.equal(m.authority[0]?.name, "cluster.local");
    }
    const soa = ask(query("cluster.local", DNS_TYPE.SOA));
    assert.equal(soa.answers[0]?.type, DNS_TYPE.SOA);
  });

  it("gives NXDOMAIN with the SOA for unknown names in the domain, and for short forms asked directly", () => {
    for (const name of [
      "nope.default.svc.cluster.local",
      "httpbin.default.svc.cluster.local.cluster.local",
      "x.httpbin.default.svc.cluster.local",
    ]) {
      const m = ask(query(name));
      assert.equal(m.flags.rcode, DNS_RCODE.NXDOMAIN, name);
      assert.ok(m.flags.authoritative);
      assert.equal(m.authority[0]?.type, DNS_TYPE.SOA, name);
    }
    for (const name of [
      "httpbin",
      "httpbin.default",
      "httpbin.default.svc",
      "example.com",
      "",
      "local",
      "xcluster.local",
      "a\\.cluster.local",
    ]) {
      const m = ask(query(name));
      assert.equal(m.flags.rcode, DNS_RCODE.NXDOMAIN, name);
      assert.equal(m.authority.length, 0, `${name}: outside the domain, no SOA`);
      assert.ok(!m.flags.authoritative);
    }
  });

  it("answers FORMERR, NOTIMP, REFUSED and BADVERS as the query deserves", () => {
    assert.equal(ask(query("a.cluster.local", DNS_TYPE.A, { questions: 0 })).flags.rcode, DNS_RCODE.FORMERR);
    assert.equal(ask(query("a.cluster.local", DNS_TYPE.A, { questions: 2 })).flags.rcode, DNS_RCODE.FORMERR);
    const notimp = ask(query("a.cluster.local", DNS_TYPE.A, { opcode: DNS_OPCODE.UPDATE }));
    assert.equal(notimp.flags.rcode, DNS_RCODE.NOTIMP);
    assert.equal(notimp.flags.opcode, DNS_OPCODE.UPDATE);
    assert.equal(
      ask(query("version.bind", DNS_TYPE.TXT, { klass: DNS_CLASS.CH })).flags.rcode,
      DNS_RCODE.REFUSED,
    );
    const garbage = Uint8Array.from([...query("httpbin.default.svc.cluster.local"), 1, 2, 3]);
    const formerr = ask(garbage);
    assert.equal(formerr.flags.rcode, DNS_RCODE.FORMERR);
    assert.equal(formerr.id, 0x1234);
    const two = [optRecord(4096, 0), optRecord(4096, 0)];
    assert.equal(
      ask(query("a.cluster.local", DNS_TYPE.A, { additional: two })).flags.rcode,
      DNS_RCODE.FORMERR,
    );
    const v1 = { ...optRecord(4096, 0), ttl: 1 << 16 };
    const badvers = ask(query("httpbin.default.svc.cluster.local", DNS_TYPE.A, { additional: [v1] }));
    const opt = badvers.additional.find((rr) => rr.type === DNS_TYPE.OPT);
    assert.ok(opt);
    assert.equal((readOpt(opt).extendedRcode << 4) | badvers.flags.rcode, DNS_RCODE.BADVERS);
  });

  it("sends nothing for responses and for packets shorter than a header", () => {
    const index = new ZoneIndex(ZONE, 1);
    const asResponse = query("httpbin.default.svc.cluster.local");
    asResponse[2] = (asResponse[2] as number) | 0x80;
    assert.equal(answerQuery(index, asResponse, "udp"), undefined);
    assert.equal(answerQuery(index, Uint8Array.of(1, 2, 3), "udp"), undefined);
  });

  it("tolerates EDNS and answers with an OPT record of its own", () => {
    const m = ask(
      query("httpbin.default.svc.cluster.local", DNS_TYPE.A, { additional: [optRecord(4096, 0)] }),
    );
    assert.deepEqual(ipsOf(m), ["10.214.0.11"]);
    const opt = m.additional.find((rr) => rr.type === DNS_TYPE.OPT);
    assert.ok(opt);
    assert.equal(readOpt(opt).udpPayloadSize, 1232);
    assert.equal(readOpt(opt).version, 0);
  });

  it("truncates UDP answers too large for the client, never TCP answers", () => {
    const many = new Map([
      ["big.default.svc.cluster.local", Array.from({ length: 20 }, (_, i) => `10.214.1.${i}`)],
    ]);
    const zone: DnsZone = { clusterDomain: "cluster.local", records: many };
    const udp = ask(query("big.default.svc.cluster.local"), "udp", zone);
    assert.ok(udp.flags.truncated);
    assert.equal(udp.answers.length, 0);
    const edns = ask(
      query("big.default.svc.cluster.local", DNS_TYPE.A, { additional: [optRecord(4096, 0)] }),
      "udp",
      zone,
    );
    assert.ok(!edns.flags.truncated);
    assert.equal(edns.answers.length, 20);
    const tcp = ask(query("big.default.svc.cluster.local"), "tcp", zone);
    assert.ok(!tcp.flags.truncated);
    assert.equal(tcp.answers.length, 20);
  });

  it("answers any bytes with nothing or a well-formed response carrying the query's id (fuzz)", () => {
    const index = new ZoneIndex(ZONE, 1);
    const valid = [
      query("httpbin.default.svc.cluster.local"),
      query("x.cluster.local", DNS_TYPE.AAAA, { additional: [optRecord(1232, 0)] }),
    ];
    const mutated = fc
      .tuple(
        fc.constantFrom(...valid),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      )
      .map(([base, edits]) => {
        const bytes = Uint8Array.from(base);
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        return bytes;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), mutated), (bytes) => {
        for (const transport of ["udp", "tcp"] as const) {
          const response = answerQuery(index, bytes, transport);
          if (response === undefined) continue;
          const m = decodeMessage(response);
          assert.ok(m.flags.response);
          assert.equal(m.id, (bytes[0] as number) * 256 + (bytes[1] as number));
        }
      }),
      { numRuns: NUM_RUNS * 3 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The live server

async function dig(
  port: number,
  args: string[],
): Promise<{ status: string; answers: string[]; text: string }> {
  const { stdout } = await runCommand([
    "dig",
    "@127.0.0.1",
    "-p",
    String(port),
    "+time=2",
    "+tries=1",
    ...args,
  ]);
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? "?";
  const section = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(stdout)?.[1] ?? "";
  const answers = section
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(/\s+/).at(-1) as string);
  return { status, answers, text: stdout };
}

/** What a stub resolver does with resolv.conf `search <ns>.svc.<d> svc.<d> <d>` and `ndots:5`. */
function searchCandidates(name: string, namespace: string, domain = "cluster.local"): string[] {
  if (name.endsWith(".")) return [name.slice(0, -1)];
  const search = [`${namespace}.svc.${domain}`, `svc.${domain}`, domain].map((s) => `${name}.${s}`);
  const dots = name.split(".").length - 1;
  return dots >= 5 ? [name, ...search] : [...search, name];
}

describe("the DNS server", () => {
  let server: DnsServer;
  const logged: string[] = [];

  before(async () => {
    server = await startDnsServer({ host: "127.0.0.1", port: 0, zone: ZONE, log: (l) => logged.push(l) });
  });
  after(async () => {
    await server?.close();
  });

  it("answers dig over UDP and TCP on the same port", async () => {
    const { port } = server.address;
    assert.ok(port > 0);
    for (const transport of ["+notcp", "+tcp"]) {
      const a = await dig(port, ["httpbin.default.svc.cluster.local", "A", transport]);
      assert.equal(a.status, "NOERROR", a.text);
      assert.deepEqual(a.answers, ["10.214.0.11"]);
      const nx = await dig(port, ["nope.default.svc.cluster.local", "A", transport]);
      assert.equal(nx.status, "NXDOMAIN");
      assert.match(nx.text, /AUTHORITY SECTION:\ncluster\.local\.\s+5\s+IN\s+SOA/);
      const aaaa = await dig(port, ["httpbin.default.svc.cluster.local", "AAAA", transport]);
      assert.equal(aaaa.status, "NOERROR");
      assert.deepEqual(aaaa.answers, []);
      const outside = await dig(port, ["example.com", "A", transport]);
      assert.equal(outside.status, "NXDOMAIN");
    }
  });

  it("answers Node's resolver; unknown names are ENOTFOUND, AAAA of known names ENODATA", async () => {
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${server.address.port}`]);
    assert.deepEqual(await resolver.resolve4("sleep.ns-a.svc.cluster.local"), ["10.214.0.12", "10.214.0.13"]);
    await assert.rejects(resolver.resolve4("nope.ns-a.svc.cluster.local"), { code: "ENOTFOUND" });
    await assert.rejects(resolver.resolve6("sleep.ns-a.svc.cluster.local"), { code: "ENODATA" });
  });

  it("resolves short names the way a search list expands them", async () => {
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${server.address.port}`]);
    const resolveLikeStub = async (name: string, namespace: string) => {
      for (const candidate of searchCandidates(name, namespace)) {
        try {
          return { candidate, ips: await resolver.resolve4(candidate) };
        } catch (e) {
          if ((e as { code?: string }).code !== "ENOTFOUND" && (e as { code?: string }).code !== "ENODATA")
            throw e;
        }
      }
      return undefined;
    };
    assert.deepEqual(await resolveLikeStub("httpbin", "default"), {
      candidate: "httpbin.default.svc.cluster.local",
      ips: ["10.214.0.11"],
    });
    assert.deepEqual(await resolveLikeStub("sleep.ns-a", "default"), {
      candidate: "sleep.ns-a.svc.cluster.local",
      ips: ["10.214.0.12", "10.214.0.13"],
    });
    assert.deepEqual(
      (await resolveLikeStub("httpbin.default.svc", "ns-a"))?.candidate,
      "httpbin.default.svc.cluster.local",
    );
    assert.equal(await resolveLikeStub("httpbin", "ns-a"), undefined, "no httpbin in ns-a");
  });

  it("answers several queries pipelined on one TCP connection, split across writes", async () => {
    const frames = [
      query("httpbin.default.svc.cluster.local", DNS_TYPE.A, { id: 1 }),
      query("nope.cluster.local", DNS_TYPE.A, { id: 2 }),
    ];
    const stream = Buffer.concat(
      frames.map((f) => Buffer.concat([Buffer.from([f.length >> 8, f.length & 255]), f])),
    );
    const responses = await new Promise<DnsMessage[]>((resolve, reject) => {
      const socket = connect(server.address.port, "127.0.0.1");
      let received = Buffer.alloc(0);
      const out: DnsMessage[] = [];
      socket.on("error", reject);
      socket.on("connect", () => {
        socket.write(stream.subarray(0, 5));
        setTimeout(() => socket.write(stream.subarray(5)), 20);
      });
      socket.on("data", (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        while (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
          out.push(decodeMessage(received.subarray(2, 2 + received.readUInt16BE(0))));
          received = received.subarray(2 + received.readUInt16BE(0));
        }
        if (out.length === 2) {
          socket.destroy();
          resolve(out);
        }
      });
    });
    assert.deepEqual(
      responses.map((r) => [r.id, r.flags.rcode]),
      [
        [1, DNS_RCODE.NOERROR],
        [2, DNS_RCODE.NXDOMAIN],
      ],
    );
  });

  it("survives random datagrams and keeps answering", async () => {
    const socket = createSocket("udp4");
    try {
      for (let i = 0; i < 200; i++) {
        const junk = randomBytes(1 + (i % 120));
        await new Promise<void>((resolve) =>
          socket.send(junk, server.address.port, "127.0.0.1", () => resolve()),
        );
      }
      const a = await dig(server.address.port, ["httpbin.default.svc.cluster.local", "A"]);
      assert.deepEqual(a.answers, ["10.214.0.11"]);
    } finally {
      socket.close();
    }
    assert.deepEqual(logged, []);
  });

  it("serves a new zone after setZone and keeps the old one when the new one is bad", async () => {
    server.setZone(zoneFromServices([{ name: "httpbin", namespace: "default", clusterIp: "10.214.0.99" }]));
    assert.deepEqual((await dig(server.address.port, ["httpbin.default.svc.cluster.local"])).answers, [
      "10.214.0.99",
    ]);
    assert.throws(() =>
      server.setZone({ clusterDomain: "cluster.local", records: new Map([["x.cluster.local", ["nope"]]]) }),
    );
    assert.deepEqual((await dig(server.address.port, ["httpbin.default.svc.cluster.local"])).answers, [
      "10.214.0.99",
    ]);
    server.setZone(ZONE);
  });
});

describe("glibc's resolver through a search list (in a network namespace)", () => {
  const netns = `tsrt-t-${randomBytes(4).toString("hex")}`;
  const etcDir = `/etc/netns/${netns}`;
  let child: ChildProcess | undefined;

  before(async () => {
    if (process.getuid?.() !== 0)
      throw new Error("this test creates a network namespace: run it as root (CI does)");
    await runCommand(["ip", "netns", "add", netns]);
    await runCommand(["ip", "link", "set", "lo", "up"], { netns });
    mkdirSync(etcDir, { recursive: true });
    // `ip netns exec` mounts this over /etc/resolv.conf for processes in the namespace.
    writeFileSync(
      `${etcDir}/resolv.conf`,
      "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n",
    );
    const serverModule = fileURLToPath(new URL("../../../src/mesh/local/dns-server.js", import.meta.url));
    const script = `
      const { startDnsServer, zoneFromServices } = await import(${JSON.stringify(serverModule)});
      const zone = zoneFromServices(JSON.parse(process.env.SERVICES));
      await startDnsServer({ host: "127.0.0.1", port: 53, zone });
      console.log("ready");`;
    const services = [
      { name: "httpbin", namespace: "default", clusterIp: "10.214.0.11" },
      { name: "sleep", namespace: "ns-a", clusterIp: "10.214.0.12" },
    ];
    const started = spawn(
      "ip",
      ["netns", "exec", netns, process.execPath, "--input-type=module", "-e", script],
      {
        env: { ...process.env, SERVICES: JSON.stringify(services) },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    child = started;
    await new Promise<void>((resolve, reject) => {
      let text = "";
      const timer = setTimeout(
        () => reject(new Error(`DNS server in ${netns} did not start: ${text}`)),
        5000,
      );
      const onData = (d: Buffer) => {
        text += d.toString();
        if (text.includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      };
      started.stdout?.on("data", onData);
      started.stderr?.on("data", onData);
      started.on("exit", (code) => reject(new Error(`DNS server exited ${code}: ${text}`)));
    });
  });

  after(async () => {
    if (child?.pid !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child.kill();
      await exited;
    }
    rmSync(etcDir, { recursive: true, force: true });
    await runCommand(["ip", "netns", "delete", netns], { allowFailure: true });
  });

  it("getent hosts resolves short names through the search list", async () => {
    const short = await runCommand(["getent", "hosts", "httpbin"], { netns });
    assert.match(short.stdout, /^10\.214\.0\.11\s+httpbin\.default\.svc\.cluster\.local/);
    const qualified = await runCommand(["getent", "hosts", "sleep.ns-a"], { netns });
    assert.match(qualified.stdout, /^10\.214\.0\.12\s+sleep\.ns-a\.svc\.cluster\.local/);
    const missing = await runCommand(["getent", "hosts", "nope"], { netns, allowFailure: true });
    assert.equal(missing.code, 2, "getent: not found");
  });

  it("dig +search expands with the search list and ndots", async () => {
    const { stdout } = await runCommand(["dig", "+search", "+short", "httpbin"], { netns });
    assert.equal(stdout.trim(), "10.214.0.11");
    const direct = await runCommand(["dig", "+nosearch", "httpbin.default"], { netns });
    assert.match(direct.stdout, /status: NXDOMAIN/);
  });
});
