import assert from "node:assert/strict";
import { type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import fc from "fast-check";
import type { X509BundleSource } from "../../src/spiffe/bundle/x509bundle.js";
import { SpiffeError } from "../../src/spiffe/errors.js";
import {
  certificateFacts,
  parseAndVerifyX509Svid,
  parseCertificates,
  parsePrivateKey,
  validateX509SvidChain,
  verifyX509Svid,
  X509Svid,
  X509SvidError,
} from "../../src/spiffe/x509svid.js";
import { oracle } from "../helpers/paths.js";
import {
  bundleSource,
  type CertificateSpec,
  der,
  derTlv,
  generateKeyPair,
  type KeyPair,
  type KeyType,
  TestCa,
} from "./testca.js";

// ---------------------------------------------------------------------------------------------
// Oracle data (read in place).

interface CertFact {
  subject: string;
  uriSans: string[];
  ca: boolean | null;
  keyUsage: string[] | null;
  keyUsageCritical?: boolean;
  notBefore: string;
  notAfter: string;
  publicKey: string;
  serialNumber?: string;
}

interface Vector {
  file: string;
  kind: string;
  encoding: string;
  expect: "ok" | "error";
  reason?: string;
  altReasons?: string[];
  spiffeId?: string;
  chainLength?: number;
  certCount?: number;
  keyFile?: string;
  keyType?: string;
  certs?: CertFact[];
  specStrict?: { expect: "error"; reasons: string[] };
}

interface ParseCase {
  certs: string;
  key: string;
  encoding: "pem" | "der";
  expect: "ok" | "error";
  reason?: string;
  altReasons?: string[];
  spiffeId?: string;
  chainLength?: number;
  specStrict?: { expect: "error"; reasons: string[] };
}

interface VerifyCase {
  chain: string;
  bundles: Record<string, string[]>;
  time: string;
  expect: "ok" | "error";
  reason?: string;
  altReasons?: string[];
  spiffeId?: string;
}

interface Recipe {
  case: string;
  expect: "ok" | "error";
  reason?: string;
  altReasons?: string[];
  spiffeId?: string;
  leaf?: {
    uriSans: string[];
    keyUsage: string[];
    ca: boolean;
    bcCritical?: boolean;
    selfSigned: boolean;
    keyType?: KeyType;
  };
  base?: string;
  mutation?: string;
  key?: string;
  certs?: string;
  certsInline?: string;
  keyInline?: string;
}

const ORACLE = JSON.parse(readFileSync(oracle("spiffe", "x509-svid.json"), "utf8")) as {
  vectors: Vector[];
  parseCases: ParseCase[];
  verifyCases: VerifyCase[];
  parseRecipes: Recipe[];
  verifyRecipes: Recipe[];
};

/** Oracle entries on which this implementation knowingly differs, with the reason. Aim: none. */
const KNOWN_DIFFERENCES: Record<string, string> = {};

function file(rel: string): Buffer {
  return readFileSync(oracle("spiffe", rel));
}

/** `path` or `path#N` (the N-th certificate of the file). */
function certsOf(ref: string): X509Certificate[] {
  const [path, index] = ref.split("#");
  const certs = parseCertificates(file(path as string));
  if (index === undefined) return certs;
  const one = certs[Number(index)];
  assert.ok(one, `${ref}: no such certificate`);
  return [one];
}

function reasonsOf(c: { reason?: string; altReasons?: string[] }): string[] {
  return [c.reason, ...(c.altReasons ?? [])].filter((r): r is string => r !== undefined);
}

function expectError(fn: () => unknown, reasons: readonly string[], label = ""): X509SvidError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${label}: expected an error (${reasons.join(" | ")}), got success`);
  assert.ok(caught instanceof X509SvidError, `${label}: expected X509SvidError, got ${inspect(caught)}`);
  assert.ok(
    reasons.includes(caught.reason),
    `${label}: reason ${caught.reason} not in [${reasons.join(", ")}]: ${caught.message}`,
  );
  assert.equal(caught.code, `invalid-x509-svid:${caught.reason}`);
  assert.ok(caught instanceof SpiffeError);
  return caught;
}

function keyTypeOf(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa") return `rsa-${d.modulusLength}`;
  if (key.asymmetricKeyType === "ec") {
    return (
      { prime256v1: "ec-p256", secp384r1: "ec-p384", secp521r1: "ec-p521" }[d.namedCurve ?? ""] ??
      `ec-${d.namedCurve}`
    );
  }
  return String(key.asymmetricKeyType);
}

/** node's subject is one attribute per line in DER order; the oracle writes RFC 4514 order. */
function subjectOf(cert: X509Certificate): string {
  return (cert.subject ?? "").split("\n").filter(Boolean).reverse().join(",");
}

function checkFacts(
  certs: readonly X509Certificate[],
  facts: readonly CertFact[] | undefined,
  label: string,
): void {
  if (!facts) return;
  assert.equal(certs.length, facts.length, `${label}: certificate count`);
  facts.forEach((want, i) => {
    const cert = certs[i] as X509Certificate;
    const got = certificateFacts(cert);
    const at = `${label}#${i}`;
    assert.equal(subjectOf(cert), want.subject, `${at} subject`);
    assert.equal(got.emptySubject, want.subject === "", `${at} empty subject`);
    assert.deepEqual(got.uriSans, want.uriSans, `${at} URI SANs`);
    assert.equal(got.ca, want.ca, `${at} cA`);
    assert.deepEqual(got.keyUsage, want.keyUsage, `${at} keyUsage`);
    if (want.keyUsageCritical !== undefined)
      assert.equal(got.keyUsageCritical, want.keyUsageCritical, `${at} keyUsage critical`);
    assert.equal(got.notBefore.getTime(), Date.parse(want.notBefore), `${at} notBefore`);
    assert.equal(got.notAfter.getTime(), Date.parse(want.notAfter), `${at} notAfter`);
    assert.equal(keyTypeOf(cert.publicKey), want.publicKey, `${at} public key`);
    if (want.serialNumber !== undefined) {
      assert.equal(BigInt(`0x${cert.serialNumber}`), BigInt(want.serialNumber), `${at} serial number`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// vectors

describe("x509-svid.json vectors", () => {
  for (const v of ORACLE.vectors) {
    const label = `${v.kind} ${v.file}`;
    it(label, { skip: KNOWN_DIFFERENCES[label] ?? false }, () => {
      const data = file(v.file);
      switch (v.kind) {
        case "svid-chain": {
          const certs = parseCertificates(data);
          if (v.chainLength !== undefined) assert.equal(certs.length, v.chainLength);
          checkFacts(certs, v.certs, label);
          if (v.expect === "ok") {
            assert.equal(validateX509SvidChain(certs).toString(), v.spiffeId);
            if (v.specStrict) {
              expectError(
                () => validateX509SvidChain(certs, { strict: true }),
                v.specStrict.reasons,
                `${label} strict`,
              );
            } else {
              assert.equal(
                validateX509SvidChain(certs, { strict: true }).toString(),
                v.spiffeId,
                "strict mode",
              );
            }
            if (v.keyFile) {
              const svid = X509Svid.parse(data, file(v.keyFile));
              assert.equal(svid.id.toString(), v.spiffeId);
              assert.equal(svid.certificates.length, certs.length);
            }
          } else {
            const reasons = reasonsOf(v);
            expectError(() => validateX509SvidChain(certs), reasons, label);
            if (v.keyFile)
              expectError(() => X509Svid.parse(data, file(v.keyFile as string)), reasons, `${label} parse`);
          }
          break;
        }
        case "svid-cert-and-key": {
          assert.equal(v.expect, "ok");
          const svid = X509Svid.parse(data, data);
          assert.equal(svid.id.toString(), v.spiffeId);
          if (v.chainLength !== undefined) assert.equal(svid.certificates.length, v.chainLength);
          checkFacts(svid.certificates, v.certs, label);
          break;
        }
        case "svid-key": {
          if (v.expect === "ok") {
            const key = parsePrivateKey(data);
            assert.equal(key.type, "private");
            if (v.keyType) assert.equal(keyTypeOf(key), v.keyType);
          } else {
            expectError(() => parsePrivateKey(data), reasonsOf(v), label);
          }
          break;
        }
        case "ca-cert":
        case "bundle":
        case "empty": {
          assert.equal(v.expect, "ok");
          const certs = parseCertificates(data);
          assert.equal(certs.length, v.certCount ?? 0);
          checkFacts(certs, v.certs, label);
          break;
        }
        case "corrupt": {
          const isKey = data.includes("PRIVATE KEY");
          expectError(() => (isKey ? parsePrivateKey(data) : parseCertificates(data)), reasonsOf(v), label);
          break;
        }
        case "not-pem": {
          expectError(() => parseCertificates(data), reasonsOf(v), `${label} as certificates`);
          expectError(() => parsePrivateKey(data), reasonsOf(v), `${label} as key`);
          break;
        }
        default:
          assert.fail(`unknown vector kind ${v.kind}`);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// parseCases

describe("x509-svid.json parseCases", () => {
  ORACLE.parseCases.forEach((c, n) => {
    const label = `#${n} ${c.encoding} ${c.certs} + ${c.key}`;
    it(label, { skip: KNOWN_DIFFERENCES[label] ?? false }, () => {
      const certs = file(c.certs);
      const key = file(c.key);
      const run = () => (c.encoding === "der" ? X509Svid.parseRaw(certs, key) : X509Svid.parse(certs, key));
      if (c.expect === "ok") {
        const svid = run();
        assert.equal(svid.id.toString(), c.spiffeId);
        assert.equal(svid.certificates.length, c.chainLength);
        // parse() detects DER too.
        assert.equal(X509Svid.parse(certs, key).id.toString(), c.spiffeId);
        if (c.specStrict) {
          expectError(
            () => validateX509SvidChain(svid.certificates, { strict: true }),
            c.specStrict.reasons,
            label,
          );
        }
      } else {
        expectError(run, reasonsOf(c), label);
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// verifyCases

describe("x509-svid.json verifyCases", () => {
  ORACLE.verifyCases.forEach((c, n) => {
    const label = `#${n} ${c.chain} at ${c.time} with ${JSON.stringify(c.bundles)}`;
    it(label, { skip: KNOWN_DIFFERENCES[label] ?? false }, () => {
      const chain = certsOf(c.chain);
      const bundles = bundleSource(
        Object.fromEntries(Object.entries(c.bundles).map(([td, refs]) => [td, refs.flatMap(certsOf)])),
      );
      const run = () => verifyX509Svid(chain, bundles, { at: new Date(c.time) });
      if (c.expect === "ok") {
        const result = run();
        assert.equal(result.id.toString(), c.spiffeId);
        assert.equal(result.chain[0], chain[0]);
        const anchor = result.chain.at(-1) as X509Certificate;
        const td = result.id.trustDomain;
        assert.ok(
          bundles.getX509BundleForTrustDomain(td)?.hasAuthority(anchor),
          "the path ends at an authority",
        );
      } else {
        expectError(run, reasonsOf(c), label);
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Recipes built at run time.

const keyPool = new Map<KeyType, Promise<KeyPair>[]>();
/** Key pairs are reused (RSA generation is slow); `slot` picks one of a few per type. */
function pooledKey(type: KeyType, slot = 0): Promise<KeyPair> {
  let pool = keyPool.get(type);
  if (!pool) {
    pool = [];
    keyPool.set(type, pool);
  }
  pool[slot] ??= generateKeyPair(type);
  return pool[slot] as Promise<KeyPair>;
}

/** Expands "spiffe://example.org/ + 'x' * 2028" into the string it describes. */
function expandUri(text: string): string {
  const m = /^(.*) \+ '(.)' \* (\d+)$/.exec(text);
  return m ? `${m[1]}${(m[2] as string).repeat(Number(m[3]))}` : text;
}

/** Overwrites the extnValue content of extension `oid` in the `certIndex`-th certificate with 0xFF. */
function corruptExtension(chain: Buffer, oid: string, certIndex: number): Buffer {
  const out = Buffer.from(chain);
  const readLen = (p: number): [number, number] => {
    const first = out[p] as number;
    if (first < 0x80) return [first, p + 1];
    let len = 0;
    for (let i = 0; i < (first & 0x7f); i++) len = len * 256 + (out[p + 1 + i] as number);
    return [len, p + 1 + (first & 0x7f)];
  };
  let start = 0;
  for (let i = 0; i < certIndex; i++) {
    const [len, body] = readLen(start + 1);
    start = body + len;
  }
  const [certLen, certBody] = readLen(start + 1);
  const oidBytes = der.oid(oid);
  let p = out.indexOf(oidBytes, start);
  assert.ok(p > 0 && p < certBody + certLen, `extension ${oid} not found in certificate #${certIndex}`);
  p += oidBytes.length;
  if (out[p] === 0x01) p += 3; // critical BOOLEAN
  assert.equal(out[p], 0x04, "extnValue OCTET STRING");
  const [len, body] = readLen(p + 1);
  out.fill(0xff, body, body + len);
  return out;
}

async function selfSignedLeaf(leaf: NonNullable<Recipe["leaf"]>): Promise<{ pem: string; keyPem: string }> {
  const spec: CertificateSpec = {
    uriSans: leaf.uriSans.map(expandUri),
    keyUsage: leaf.keyUsage as CertificateSpec["keyUsage"],
    ca: leaf.ca,
    bcCritical: leaf.bcCritical ?? true,
    key: await pooledKey(leaf.keyType ?? "ec-p256"),
  };
  const cert = await TestCa.selfSigned(spec);
  return { pem: cert.pem, keyPem: cert.privateKeyPem };
}

const RSA_KEY_PEM = "vectors/go-spiffe/svid/x509svid/testdata/key-pkcs8-rsa.pem";

/** Each parse recipe that is not a generic `leaf` or `base`+`mutation` one, by its `case`. */
const PARSE_RECIPES: Record<string, () => X509Svid> = {
  "empty certificate bytes": () =>
    X509Svid.parseRaw(Buffer.alloc(0), file("vectors/rust-spiffe/spiffe/tests/testdata/svid/x509/1-key.der")),
  "cert bytes 'not-DER-encoded'": () =>
    X509Svid.parseRaw(
      Buffer.from("not-DER-encoded"),
      parsePrivateKey(file(RSA_KEY_PEM)).export({ type: "pkcs8", format: "der" }) as Buffer,
    ),
  "key bytes 'not-DER-encoded'": () =>
    X509Svid.parseRaw(
      (
        parseCertificates(
          file("vectors/go-spiffe/svid/x509svid/testdata/good-leaf-only.pem"),
        )[0] as X509Certificate
      ).raw,
      Buffer.from("not-DER-encoded"),
    ),
};

function mutationRuns(r: Recipe): (() => X509Svid)[] {
  const base = file(r.base as string);
  const key = r.key ? file(r.key) : file(`${(r.base as string).replace(/\.der$/, "")}-key.der`);
  const m = r.mutation as string;
  if (m.startsWith("append bytes")) {
    const extra = Buffer.from(
      m
        .replace("append bytes", "")
        .trim()
        .split(/\s+/)
        .map((h) => Number.parseInt(h, 16)),
    );
    const data = Buffer.concat([base, extra]);
    return [() => X509Svid.parseRaw(data, key), () => X509Svid.parse(data, key)];
  }
  const times = /concatenate the file (\d+) times/.exec(m);
  if (times) {
    const data = Buffer.concat(Array.from({ length: Number(times[1]) }, () => base));
    return [() => X509Svid.parseRaw(data, key)];
  }
  const oids = [...m.matchAll(/2\.5\.29\.\d+/g)].map((x) => x[0]);
  const certIndex = m.includes("second certificate") ? 1 : 0;
  assert.ok(oids.length > 0, `unknown mutation: ${m}`);
  return oids.map((oid) => () => X509Svid.parseRaw(corruptExtension(base, oid, certIndex), key));
}

describe("x509-svid.json parseRecipes", () => {
  for (const r of ORACLE.parseRecipes) {
    it(r.case, { skip: KNOWN_DIFFERENCES[r.case] ?? false }, async () => {
      let runs: (() => X509Svid)[];
      if (r.leaf) {
        const { pem, keyPem } = await selfSignedLeaf(r.leaf);
        runs = [() => X509Svid.parse(pem, keyPem)];
      } else if (r.base && r.mutation) {
        runs = mutationRuns(r);
      } else {
        const run = PARSE_RECIPES[r.case];
        assert.ok(run, `no implementation for parse recipe "${r.case}"`);
        runs = [run];
      }
      for (const run of runs) {
        if (r.expect === "ok") assert.equal(run().id.toString(), r.spiffeId);
        else expectError(run, reasonsOf(r), r.case);
      }
    });
  }
});

describe("x509-svid.json verifyRecipes", async () => {
  const now = new Date();
  const ca1 = await TestCa.create("domain1.test");
  const ca2 = await TestCa.create("domain2.test");
  const good = await ca1.issueSvid("spiffe://domain1.test/workload");
  const bundles = bundleSource({ "domain1.test": ca1.authorities });
  const leafWith = async (spec: CertificateSpec) => [(await ca1.issue(spec)).certificate];
  const verify =
    (chain: X509Certificate[], source: X509BundleSource = bundles, at = now) =>
    () =>
      verifyX509Svid(chain, source, { at });
  const id = "spiffe://domain1.test/workload";

  const VERIFY_RECIPES: Record<string, () => Promise<() => unknown>> = {
    "empty chain": async () => verify([]),
    "zero-value bundle (no trust domain, no authorities)": async () =>
      verify(good.certificates, bundleSource({})),
    "no bundle source given (nil)": async () =>
      verify(good.certificates, null as unknown as X509BundleSource),
    "bundle source for a different trust domain only (domain2.test)": async () =>
      verify(good.certificates, bundleSource({ "domain2.test": ca2.authorities })),
    "bundle for domain1.test with zero authorities": async () =>
      verify(good.certificates, bundleSource({ "domain1.test": [] })),
    "leaf URI SAN scheme 'sparfe'": async () =>
      verify(await leafWith({ uriSans: ["sparfe://domain1.test/workload"] })),
    "bundle for domain1.test holds domain2.test's CA": async () =>
      verify(good.certificates, bundleSource({ "domain1.test": ca2.authorities })),
    "leaf without URI SAN": async () => verify(await leafWith({ dnsSans: ["workload.domain1.test"] })),
    "leaf with its URI SAN duplicated (two URI SANs)": async () =>
      verify(await leafWith({ uriSans: [id, id] })),
    "leaf with cA=true": async () => verify(await leafWith({ uriSans: [id], ca: true })),
    "leaf keyUsage |= keyCertSign": async () =>
      verify(await leafWith({ uriSans: [id], keyUsage: ["digitalSignature", "keyCertSign"] })),
    "leaf keyUsage |= cRLSign": async () =>
      verify(await leafWith({ uriSans: [id], keyUsage: ["digitalSignature", "cRLSign"] })),
    "verify at time = leaf.notAfter + 1s": async () =>
      verify(good.certificates, bundles, new Date(good.notAfter.getTime() + 1000)),
    "valid leaf, correct bundle, current time": async () => verify(good.certificates),
    "ParseAndVerify with the first DER byte changed to 0x27": async () => {
      const raw = good.certificates.map((c) => Buffer.from(c.raw));
      (raw[0] as Buffer)[0] = 0x27;
      return () => parseAndVerifyX509Svid(raw, bundles, { at: now });
    },
    "leaf with root-path SPIFFE ID (spiffe://example.org)": async () =>
      verify(await leafWith({ uriSans: ["spiffe://domain1.test"] })),
    "leaf without digitalSignature": async () =>
      verify(await leafWith({ uriSans: [id], keyUsage: ["keyEncipherment"] })),
  };

  for (const r of ORACLE.verifyRecipes) {
    it(r.case, { skip: KNOWN_DIFFERENCES[r.case] ?? false }, async () => {
      const make = VERIFY_RECIPES[r.case];
      assert.ok(make, `no implementation for verify recipe "${r.case}"`);
      const run = await make();
      if (r.expect === "ok") {
        const result = run() as { id: { toString(): string }; chain: X509Certificate[] };
        assert.equal(result.id.toString(), id);
        assert.equal(result.chain.at(-1), ca1.certificate);
      } else {
        expectError(run, reasonsOf(r), r.case);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Rules the oracle does not exercise.

describe("path validation beyond the oracle", async () => {
  const root = await TestCa.create("example.org");
  const inter = await root.createIntermediate();
  const bundles = bundleSource({ "example.org": root.authorities });
  const now = new Date();

  it("verifies leaf -> intermediate -> root, with or without the root in the presented chain", async () => {
    const svid = await inter.issueSvid("spiffe://example.org/a/b");
    const r = verifyX509Svid(svid.certificates, bundles, { at: now });
    assert.deepEqual(r.chain, [svid.leaf, inter.certificate, root.certificate]);
    const withRoot = verifyX509Svid([...svid.certificates, root.certificate], bundles, { at: now });
    assert.equal(withRoot.id.toString(), "spiffe://example.org/a/b");
    // parseAndVerify with the Workload API's concatenated DER
    assert.equal(parseAndVerifyX509Svid(svid.certificatesDer, bundles, { at: now }).chain.length, 3);
  });

  it("refuses a leaf whose intermediate is missing", async () => {
    const svid = await inter.issueSvid("spiffe://example.org/a");
    expectError(() => verifyX509Svid([svid.leaf], bundles, { at: now }), ["unknown-authority"]);
  });

  it("refuses a chain signed by another trust domain's CA even when that CA is in another bundle", async () => {
    const other = await TestCa.create("other.org");
    const forged = await other.issueSvid("spiffe://example.org/a");
    const both = bundleSource({ "example.org": root.authorities, "other.org": other.authorities });
    expectError(() => verifyX509Svid(forged.certificates, both, { at: now }), ["unknown-authority"]);
  });

  it("refuses a look-alike issuer (same name, different key)", async () => {
    const fake = await TestCa.create("example.org", { subject: "O=Look Alike" });
    const real = await TestCa.create("example.org", { subject: "O=Look Alike" });
    const svid = await fake.issueSvid("spiffe://example.org/a");
    expectError(
      () => verifyX509Svid(svid.certificates, bundleSource({ "example.org": real.authorities }), { at: now }),
      ["unknown-authority"],
    );
  });

  it("checks the validity of every certificate of the path, bounds included", async () => {
    const svid = await inter.issueSvid("spiffe://example.org/a");
    expectError(
      () => verifyX509Svid(svid.certificates, bundles, { at: new Date(svid.notBefore.getTime() - 1000) }),
      ["not-yet-valid"],
    );
    assert.ok(verifyX509Svid(svid.certificates, bundles, { at: svid.notBefore }));
    assert.ok(verifyX509Svid(svid.certificates, bundles, { at: svid.notAfter }));
    const shortInter = await root.createIntermediate({ notAfter: new Date(now.getTime() + 60_000) });
    const leaf = await shortInter.issueSvid("spiffe://example.org/a");
    const err = expectError(
      () => verifyX509Svid(leaf.certificates, bundles, { at: new Date(now.getTime() + 120_000) }),
      ["expired"],
    );
    assert.match(err.message, /signing certificate #1 expired/);
    const shortRoot = await TestCa.create("example.org", { notAfter: new Date(now.getTime() + 60_000) });
    const leaf2 = await shortRoot.issueSvid("spiffe://example.org/a");
    expectError(
      () =>
        verifyX509Svid(leaf2.certificates, bundleSource({ "example.org": shortRoot.authorities }), {
          at: new Date(now.getTime() + 120_000),
        }),
      ["expired"],
    );
  });

  it("enforces pathLenConstraint", async () => {
    const strictRoot = await TestCa.create("example.org", { pathLen: 0 });
    const i1 = await strictRoot.createIntermediate();
    const svid = await i1.issueSvid("spiffe://example.org/a");
    const src = bundleSource({ "example.org": strictRoot.authorities });
    expectError(() => verifyX509Svid(svid.certificates, src, { at: now }), ["path-len-exceeded"]);
    const direct = await strictRoot.issueSvid("spiffe://example.org/a");
    assert.ok(verifyX509Svid(direct.certificates, src, { at: now }));
    const i2 = await (await root.createIntermediate({ pathLen: 0 })).createIntermediate();
    const deep = await i2.issueSvid("spiffe://example.org/a");
    expectError(() => verifyX509Svid(deep.certificates, bundles, { at: now }), ["path-len-exceeded"]);
  });

  it("enforces URI and DNS name constraints of signing certificates", async () => {
    const permitted = await root.createIntermediate({ nameConstraints: { permittedUris: ["example.org"] } });
    assert.ok(
      verifyX509Svid((await permitted.issueSvid("spiffe://example.org/a")).certificates, bundles, {
        at: now,
      }),
    );
    const elsewhere = await root.createIntermediate({ nameConstraints: { permittedUris: ["other.org"] } });
    const svid = await elsewhere.issueSvid("spiffe://example.org/a");
    expectError(() => verifyX509Svid(svid.certificates, bundles, { at: now }), ["name-constraints"]);
    const excluded = await root.createIntermediate({ nameConstraints: { excludedUris: ["example.org"] } });
    const ex = await excluded.issueSvid("spiffe://example.org/a");
    expectError(() => verifyX509Svid(ex.certificates, bundles, { at: now }), ["name-constraints"]);
    const subdomainsOnly = await root.createIntermediate({
      nameConstraints: { permittedUris: [".example.org"] },
    });
    const sd = await subdomainsOnly.issueSvid("spiffe://example.org/a");
    expectError(() => verifyX509Svid(sd.certificates, bundles, { at: now }), ["name-constraints"]);
    const dns = await root.createIntermediate({ nameConstraints: { permittedDns: ["svc.example.org"] } });
    const okDns = await dns.issueSvid("spiffe://example.org/a", { dnsSans: ["a.svc.example.org"] });
    assert.ok(verifyX509Svid(okDns.certificates, bundles, { at: now }));
    const badDns = await dns.issueSvid("spiffe://example.org/a", { dnsSans: ["evil.com"] });
    expectError(() => verifyX509Svid(badDns.certificates, bundles, { at: now }), ["name-constraints"]);
  });

  it("bounds path building on adversarial chains (many mutually signing intermediates)", async () => {
    const evil = await TestCa.create("example.org", { subject: "O=Evil" });
    const spec = { subject: "O=Evil", key: evil.issued.key, ca: true, keyUsage: ["keyCertSign"] } as const;
    const loops = await Promise.all(Array.from({ length: 15 }, () => evil.issue(spec)));
    const leaf = await evil.issueSvid("spiffe://example.org/a");
    const started = performance.now();
    const err = expectError(
      () => verifyX509Svid([leaf.leaf, ...loops.map((l) => l.certificate)], bundles, { at: now }),
      ["unknown-authority"],
    );
    assert.ok(performance.now() - started < 2000, "path building must stay bounded");
    assert.match(err.message, /gave up after 100 signature checks/);
  });

  it("refuses unknown critical extensions at verification (not at parsing)", async () => {
    const ext = { oid: "1.3.6.1.4.1.55555.1", critical: true, value: der.null() };
    const leaf = await root.issue({ uriSans: ["spiffe://example.org/a"], extraExtensions: [ext] });
    assert.equal(validateX509SvidChain([leaf.certificate]).toString(), "spiffe://example.org/a");
    expectError(
      () => verifyX509Svid([leaf.certificate], bundles, { at: now }),
      ["unhandled-critical-extension"],
    );
    const nonCritical = await root.issue({
      uriSans: ["spiffe://example.org/a"],
      extraExtensions: [{ ...ext, critical: false }],
    });
    assert.ok(verifyX509Svid([nonCritical.certificate], bundles, { at: now }));
  });

  it("refuses duplicate extensions (a second SAN could smuggle a second ID)", async () => {
    const san = derTlv(0x30, derTlv(0x86, Buffer.from("spiffe://example.org/b")));
    const leaf = await root.issue({
      uriSans: ["spiffe://example.org/a"],
      extraExtensions: [{ oid: "2.5.29.17", critical: false, value: san }],
    });
    expectError(() => validateX509SvidChain([leaf.certificate]), ["unparseable-extension"]);
  });

  it("takes the bundle of the leaf's trust domain only and needs a valid Date", async () => {
    const svid = await root.issueSvid("spiffe://example.org/a");
    expectError(
      () => verifyX509Svid(svid.certificates, bundleSource({ "other.org": root.authorities }), { at: now }),
      ["no-bundle-for-trust-domain"],
    );
    assert.throws(() => verifyX509Svid(svid.certificates, bundles, { at: new Date(Number.NaN) }), TypeError);
    // default time: now
    assert.equal(verifyX509Svid(svid.certificates, bundles).id.toString(), "spiffe://example.org/a");
  });

  it("checks the structural rules on presented intermediates", async () => {
    const notCa = await root.issue({
      uriSans: ["spiffe://example.org"],
      ca: false,
      keyUsage: ["keyCertSign"],
    });
    const svid = await root.issueSvid("spiffe://example.org/a");
    expectError(
      () => verifyX509Svid([svid.leaf, notCa.certificate], bundles, { at: now }),
      ["intermediate-no-ca"],
    );
  });
});

describe("strict mode (X509-SVID MUST rules no SDK checks)", async () => {
  const root = await TestCa.create("example.org");
  const id = "spiffe://example.org/a";

  it("accepts a fully conforming SVID", async () => {
    const svid = await root.issueSvid(id);
    assert.equal(validateX509SvidChain(svid.certificates, { strict: true }).toString(), id);
  });

  it("requires keyUsage critical", async () => {
    const svid = await root.issueSvid(id, { kuCritical: false });
    assert.equal(validateX509SvidChain(svid.certificates).toString(), id);
    expectError(() => validateX509SvidChain(svid.certificates, { strict: true }), ["key-usage-not-critical"]);
  });

  it("requires a critical SAN when the subject is empty", async () => {
    const svid = await root.issueSvid(id, { subject: "", sanCritical: false });
    expectError(
      () => validateX509SvidChain(svid.certificates, { strict: true }),
      ["empty-subject-san-not-critical"],
    );
    const ok = await root.issueSvid(id, { subject: "" });
    assert.equal(validateX509SvidChain(ok.certificates, { strict: true }).toString(), id);
  });

  it("requires serverAuth and clientAuth when EKU is present", async () => {
    const svid = await root.issueSvid(id, { extKeyUsage: ["serverAuth"] });
    expectError(() => validateX509SvidChain(svid.certificates, { strict: true }), ["leaf-ext-key-usage"]);
    const none = await root.issueSvid(id, { extKeyUsage: null });
    assert.equal(validateX509SvidChain(none.certificates, { strict: true }).toString(), id);
  });

  it("refuses a signing certificate whose SPIFFE ID has a path", async () => {
    const inter = await root.createIntermediate({ id: "spiffe://example.org/ca" });
    const svid = await inter.issueSvid(id);
    assert.equal(validateX509SvidChain(svid.certificates).toString(), id);
    expectError(
      () => validateX509SvidChain(svid.certificates, { strict: true }),
      ["signing-cert-id-has-path"],
    );
  });
});

describe("keys and the X509Svid object", async () => {
  const root = await TestCa.create("example.org");
  const svid = await root.issueSvid("spiffe://example.org/w", { key: await pooledKey("rsa-2048") });
  const keyB64 = svid.privateKeyDer.toString("base64");
  const keyLines = svid.privateKeyPem.split("\n").filter((l) => l && !l.startsWith("-----"));

  function assertNoKey(text: string): void {
    assert.ok(!text.includes(keyB64.slice(0, 40)), "key material leaked");
    for (const line of keyLines) assert.ok(!text.includes(line), "key material leaked");
  }

  it("parses PEM, DER and the Workload API form alike, and marshals back", () => {
    const a = X509Svid.parse(svid.certificatesPem, svid.privateKeyPem);
    const b = X509Svid.parse(svid.certificatesDer, svid.privateKeyDer);
    const c = X509Svid.parseRaw(svid.certificatesDer, svid.privateKeyDer, "internal");
    for (const s of [a, b, c]) assert.equal(s.id.toString(), "spiffe://example.org/w");
    assert.equal(c.hint, "internal");
    assert.equal(a.hint, undefined);
    assert.equal(a.leaf.raw.equals(svid.leaf.raw), true);
    const m = a.marshal();
    assert.equal(X509Svid.parse(m.certificates, m.privateKey).id.toString(), "spiffe://example.org/w");
    const raw = a.marshalRaw();
    assert.ok(raw.certificates.equals(svid.certificatesDer));
    assert.equal(X509Svid.parseRaw(raw.certificates, raw.privateKey).id.toString(), "spiffe://example.org/w");
  });

  it("never prints the key", () => {
    const s = X509Svid.parseRaw(svid.certificatesDer, svid.privateKeyDer, "h");
    for (const text of [
      String(s),
      inspect(s),
      inspect(s, { showHidden: true, depth: 10 }),
      JSON.stringify(s),
      `${s}`,
    ]) {
      assertNoKey(text);
    }
    assert.ok(!Object.keys(s).includes("privateKey"));
    assert.match(inspect(s), /privateKey: \[redacted\]/);
    assert.equal(s.privateKey.type, "private");
  });

  it("refuses keys that are not unencrypted PKCS#8, without echoing them", async () => {
    const rsa = (await pooledKey("rsa-2048")).privateKey;
    const ec = (await pooledKey("ec-p256")).privateKey;
    const pkcs1 = rsa.export({ type: "pkcs1", format: "pem" }) as string;
    const sec1 = ec.export({ type: "sec1", format: "pem" }) as string;
    const encrypted = rsa.export({
      type: "pkcs8",
      format: "pem",
      cipher: "aes-256-cbc",
      passphrase: "pw",
    }) as string;
    const encryptedDer = rsa.export({
      type: "pkcs8",
      format: "der",
      cipher: "aes-256-cbc",
      passphrase: "pw",
    }) as Buffer;
    const pkcs1Der = rsa.export({ type: "pkcs1", format: "der" }) as Buffer;
    const sec1Der = ec.export({ type: "sec1", format: "der" }) as Buffer;
    for (const k of [pkcs1, sec1, encrypted, encryptedDer, pkcs1Der, sec1Der]) {
      const err = expectError(() => X509Svid.parse(svid.certificatesPem, k), ["not-pkcs8"]);
      assert.match(err.message, /PKCS#8/);
    }
    expectError(() => X509Svid.parseRaw(svid.certificatesDer, pkcs1Der), ["not-pkcs8"]);
    // A corrupted PKCS#8 key: the error says so and carries none of its bytes.
    const truncated = svid.privateKeyDer.subarray(0, svid.privateKeyDer.length - 10);
    const broken = Buffer.from(svid.privateKeyDer);
    const inner = broken.indexOf(Buffer.from([0x04, 0x82]), 4); // PrivateKeyInfo.privateKey
    broken[inner + 4] = 0x31; // the RSAPrivateKey SEQUENCE is no longer one
    for (const k of [truncated, broken]) {
      const err = expectError(() => X509Svid.parseRaw(svid.certificatesDer, k), ["corrupt"]);
      assertNoKey(`${err.message} ${inspect(err)} ${err.stack}`);
    }
    const mismatch = expectError(
      () => X509Svid.parse(svid.certificatesPem, ec.export({ type: "pkcs8", format: "pem" }) as string),
      ["key-mismatch"],
    );
    assertNoKey(`${mismatch.message} ${inspect(mismatch)}`);
  });

  it("names the failed rule in messages", async () => {
    const bad = await root.issue({
      uriSans: ["spiffe://example.org/w"],
      keyUsage: ["digitalSignature", "keyCertSign"],
    });
    const err = expectError(() => validateX509SvidChain([bad.certificate]), ["leaf-key-cert-sign"]);
    assert.equal(
      err.message,
      "the leaf certificate must not have keyCertSign set in keyUsage (X509-SVID §4.3, §5.2)",
    );
    assert.equal(err.certIndex, 0);
  });

  it("caches decoded facts per certificate object", () => {
    const a = certificateFacts(svid.leaf);
    const b = certificateFacts(svid.leaf);
    assert.deepEqual(a, b);
    assert.deepEqual(certificateFacts(new X509Certificate(svid.leaf.raw)), a);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: random valid SVIDs parse back and verify exactly inside their validity window.

describe("property: issued SVIDs round-trip and verify only inside their validity", async () => {
  const base = Date.UTC(2031, 0, 1);
  const DAY = 86_400_000;
  const root = await TestCa.create("prop.example", {
    notBefore: new Date(base - 30 * DAY),
    notAfter: new Date(base + 30 * DAY),
    key: await pooledKey("ec-p384"),
  });
  const inter = await root.createIntermediate({
    notBefore: new Date(base - 30 * DAY),
    notAfter: new Date(base + 30 * DAY),
    key: await pooledKey("rsa-2048", 1),
  });
  const bundles = bundleSource({ "prop.example": root.authorities });
  const segment = fc.stringMatching(/^[a-zA-Z0-9._-]{1,10}$/).filter((s) => s !== "." && s !== "..");

  it("holds", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.constantFrom<KeyType>("ec-p256", "ec-p384", "rsa-2048"),
        fc.boolean(),
        fc.integer({ min: -10 * 86_400, max: 10 * 86_400 }),
        fc.integer({ min: 1, max: 5 * 86_400 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 86_400 }),
        async (segments, keyType, viaIntermediate, startOffset, lifetime, inside, outside) => {
          const id = `spiffe://prop.example/${segments.join("/")}`;
          const notBefore = new Date(base + startOffset * 1000);
          const notAfter = new Date(notBefore.getTime() + lifetime * 1000);
          const ca = viaIntermediate ? inter : root;
          const svid = await ca.issueSvid(id, { notBefore, notAfter, key: await pooledKey(keyType) });

          assert.equal(X509Svid.parse(svid.certificatesPem, svid.privateKeyPem).id.toString(), id);
          assert.equal(X509Svid.parseRaw(svid.certificatesDer, svid.privateKeyDer).id.toString(), id);

          const at = new Date(notBefore.getTime() + Math.floor(inside * lifetime) * 1000);
          const r = verifyX509Svid(svid.certificates, bundles, { at });
          assert.equal(r.id.toString(), id);
          assert.equal(r.chain.length, viaIntermediate ? 3 : 2);

          const before = new Date(notBefore.getTime() - outside * 1000);
          const after = new Date(notAfter.getTime() + outside * 1000);
          expectError(() => verifyX509Svid(svid.certificates, bundles, { at: before }), ["not-yet-valid"]);
          expectError(() => verifyX509Svid(svid.certificates, bundles, { at: after }), ["expired"]);
        },
      ),
      { numRuns: 40 },
    );
  });
});
