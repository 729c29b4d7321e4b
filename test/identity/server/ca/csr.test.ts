import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { MAX_CSR_BYTES, parseCsr } from "../../../../src/identity/server/ca/csr.js";
import { CaError } from "../../../../src/identity/server/ca/errors.js";
import { parseSubjectPublicKeyInfo } from "../../../../src/identity/server/ca/keys.js";
import { der, derTlv } from "../../../spiffe/testca.js";
import {
  type CsrSigAlg,
  keyPool,
  makeCsr,
  opensslCsr,
  TempDir,
  type TestKeyPair,
  toPem,
  WORKLOAD_KEY_TYPES,
  type WorkloadKeyType,
} from "./helpers.js";

let pool: Map<WorkloadKeyType, TestKeyPair[]>;
const dir = new TempDir();
before(async () => {
  pool = await keyPool(1);
});
after(() => dir.done());

const key = (t: WorkloadKeyType): TestKeyPair => (pool.get(t) as TestKeyPair[])[0] as TestKeyPair;

function refused(fn: () => unknown, reason: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CaError, `expected a CaError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.equal(e.code, `ca:${reason}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

function samePublicKey(a: KeyObject, b: KeyObject): void {
  assert.deepEqual(a.export({ type: "spki", format: "der" }), b.export({ type: "spki", format: "der" }));
}

describe("parseCsr: accepted requests", () => {
  it("every workload key type with every fitting algorithm, DER and PEM", () => {
    const algs: Record<string, CsrSigAlg[]> = {
      ec: ["ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"],
      rsa: ["rsa-sha256", "rsa-sha384", "rsa-sha512"],
    };
    for (const t of WORKLOAD_KEY_TYPES) {
      const k = key(t);
      for (const alg of algs[t.startsWith("rsa") ? "rsa" : "ec"] as CsrSigAlg[]) {
        const csr = makeCsr(k, { alg });
        for (const input of [
          csr,
          toPem("CERTIFICATE REQUEST", csr),
          Buffer.from(toPem("NEW CERTIFICATE REQUEST", csr)),
        ]) {
          const parsed = parseCsr(input);
          samePublicKey(parsed.publicKey, k.publicKey);
          assert.deepEqual(parsed.subjectPublicKeyInfo, k.publicKey.export({ type: "spki", format: "der" }));
          assert.equal(parsed.keyType, t.startsWith("rsa") ? "rsa" : t);
        }
      }
    }
  });

  it("CSRs written by openssl req", () => {
    for (const t of WORKLOAD_KEY_TYPES) {
      const k = key(t);
      const pem = k.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      for (const digest of ["-sha256", "-sha384", "-sha512"]) {
        const csr = opensslCsr(dir, pem, [digest]);
        const parsed = parseCsr(csr);
        samePublicKey(parsed.publicKey, k.publicKey);
        assert.match(parsed.signatureAlgorithm, new RegExp(digest.slice(4)));
      }
    }
  });

  it("ignores the subject and the attributes (an extensionRequest asking for another ID)", () => {
    const k = key("ec-p256");
    const evilSan = der.seq(derTlv(0x86, Buffer.from("spiffe://evil.example/admin")));
    const extReq = der.seq(
      der.oid("1.2.840.113549.1.9.14"),
      der.set(der.seq(der.seq(der.oid("2.5.29.17"), der.octets(evilSan)))),
    );
    const subject = der.seq(der.set(der.seq(der.oid("2.5.4.3"), der.utf8("spiffe://evil.example/admin"))));
    const parsed = parseCsr(makeCsr(k, { attributes: [extReq], subject }));
    samePublicKey(parsed.publicKey, k.publicKey);
    // Also an empty subject and no attributes field at all (some encoders leave it out).
    parseCsr(makeCsr(k, { subject: der.seq(), omitAttributes: true }));
  });

  it("PEM with CRLF line ends and surrounding whitespace", () => {
    const csr = makeCsr(key("ec-p384"));
    parseCsr(`\n  ${toPem("CERTIFICATE REQUEST", csr).replace(/\n/g, "\r\n")}  \n`);
  });
});

describe("parseCsr: refusals with clear errors", () => {
  it("a signature by another key", () => {
    const other = key("ec-p384");
    refused(
      () =>
        parseCsr(
          makeCsr(key("ec-p256"), {
            signWith: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
          }),
        ),
      "csr-signature-invalid",
      /does not verify/,
    );
    refused(
      () => parseCsr(makeCsr(key("rsa-2048"), { signWith: key("rsa-3072").privateKey })),
      "csr-signature-invalid",
    );
    void other;
  });

  it("weak or unsupported signature algorithms", () => {
    refused(
      () => parseCsr(makeCsr(key("rsa-2048"), { alg: "rsa-sha1" })),
      "unsupported-algorithm",
      /sha1WithRSAEncryption/,
    );
    const rsa = key("rsa-2048").privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    refused(() => parseCsr(opensslCsr(dir, rsa, ["-sha1"])), "unsupported-algorithm", /sha1WithRSA/);
    refused(
      () => parseCsr(opensslCsr(dir, rsa, ["-sha256", "-sigopt", "rsa_padding_mode:pss"])),
      "unsupported-algorithm",
      /RSASSA-PSS/,
    );
    const ed = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    refused(() => parseCsr(opensslCsr(dir, ed)), "unsupported-algorithm", /Ed25519/);
  });

  it("keys of unsupported types and sizes", () => {
    const k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    refused(() => parseCsr(opensslCsr(dir, k1 as string)), "unsupported-key", /1\.3\.132\.0\.10/);
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    refused(() => parseCsr(opensslCsr(dir, small as string)), "unsupported-key", /1024 bits/);
  });

  it("an EC key that does not fit the algorithm, and points that are not on the curve or compressed", () => {
    refused(() => parseCsr(makeCsr(key("ec-p256"), { alg: "rsa-sha256" })), "malformed-csr", /does not fit/);
    const good = makeCsr(key("ec-p256"));
    const spki = key("ec-p256").publicKey.export({ type: "spki", format: "der" });
    const at = good.indexOf(spki);
    const offCurve = Buffer.from(good);
    offCurve[at + spki.length - 1] = (offCurve[at + spki.length - 1] as number) ^ 1;
    refused(() => parseCsr(offCurve), "invalid-key", /not a valid point on P-256/);
    const compressed = der.seq(
      der.seq(der.oid("1.2.840.10045.2.1"), der.oid("1.2.840.10045.3.1.7")),
      der.bits(Buffer.concat([Buffer.from([0x02]), spki.subarray(spki.length - 64, spki.length - 32)])),
    );
    refused(() => parseSubjectPublicKeyInfo(compressed), "unsupported-key", /compressed/);
  });

  it("structural faults", () => {
    const k = key("ec-p256");
    const good = makeCsr(k);
    refused(() => parseCsr(makeCsr(k, { version: 1 })), "malformed-csr", /version must be 0/);
    refused(() => parseCsr(Buffer.concat([good, Buffer.from([0])])), "malformed-csr", /after the request/);
    refused(() => parseCsr(good.subarray(0, good.length - 1)), "malformed-csr");
    refused(() => parseCsr(Buffer.alloc(0)), "malformed-csr", /empty/);
    refused(() => parseCsr(""), "malformed-csr");
    refused(() => parseCsr("hello"), "malformed-csr", /neither PEM/);
    refused(() => parseCsr(toPem("CERTIFICATE", good)), "malformed-csr", /"CERTIFICATE"/);
    refused(
      () => parseCsr(toPem("CERTIFICATE REQUEST", good).replace("-----END", "!!-----END")),
      "malformed-csr",
    );
    refused(() => parseCsr(Buffer.alloc(MAX_CSR_BYTES + 10, 0x30)), "malformed-csr", /larger than/);
    refused(() => parseCsr(42 as unknown as Buffer), "malformed-csr");
    // ECDSA with NULL parameters.
    const cri = der.seq(
      der.int(0),
      der.seq(),
      k.publicKey.export({ type: "spki", format: "der" }),
      derTlv(0xa0),
    );
    const withNull = der.seq(
      cri,
      der.seq(der.oid("1.2.840.10045.4.3.2"), der.null()),
      der.bits(Buffer.alloc(70, 1)),
    );
    refused(() => parseCsr(withNull), "malformed-csr", /no parameters/);
    // A signature BIT STRING with unused bits.
    const unused = der.seq(cri, der.seq(der.oid("1.2.840.10045.4.3.2")), der.bits(Buffer.alloc(70, 1), 1));
    refused(() => parseCsr(unused), "malformed-csr", /unused bits/);
  });
});

describe("parseCsr: fuzzing (only CaError, never a crash)", () => {
  const onlyCaError = (input: Buffer | string) => {
    try {
      parseCsr(input);
      return true;
    } catch (e) {
      if (!(e instanceof CaError)) throw new Error(`not a CaError: ${(e as Error)?.stack ?? String(e)}`);
      assert.ok(e.message.length > 10);
      return false;
    }
  };

  it("random bytes, random DER-looking bytes and random strings", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        onlyCaError(Buffer.from(bytes));
        onlyCaError(
          Buffer.concat([Buffer.from([0x30, 0x82, bytes.length >> 8, bytes.length & 0xff]), bytes]),
        );
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        onlyCaError(s);
        onlyCaError(`-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----\n`);
      }),
      { numRuns: 1000 },
    );
  });

  it("mutations of valid CSRs: flipped, inserted, deleted bytes and truncation", () => {
    const csrs = WORKLOAD_KEY_TYPES.map((t) => makeCsr(key(t)));
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({
        kind: fc.constant("insert" as const),
        at: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
    );
    let accepted = 0;
    let total = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: csrs.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        (i, ms) => {
          let b = Buffer.from(csrs[i] as Buffer);
          for (const m of ms) {
            const at = m.at % b.length;
            if (m.kind === "flip") b[at] = (b[at] as number) ^ (1 << m.bit);
            else if (m.kind === "set") b[at] = m.value;
            else if (m.kind === "insert")
              b = Buffer.concat([b.subarray(0, at), Buffer.from([m.value]), b.subarray(at)]);
            else if (m.kind === "delete") b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
            else b = b.subarray(0, at);
            if (b.length === 0) break;
          }
          total++;
          if (b.length && onlyCaError(b)) accepted++;
        },
      ),
      { numRuns: 3000 },
    );
    // A mutation can only pass when it changed nothing (e.g. a byte set to its own value).
    assert.ok(accepted < total / 10, `${accepted} of ${total} mutated CSRs were accepted`);
  });
});
