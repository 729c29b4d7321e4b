/**
 * The CA's fast certificate encoder and the CertificateAuthority, checked against independent
 * readers: node:crypto's X509Certificate (OpenSSL's parser), the SPIFFE library's own DER reader
 * and SVID rules (X509Svid, validateX509SvidChain, x509SvidProblems, verifyX509Svid), and the
 * openssl command (`openssl verify`, `openssl x509 -text`, `openssl asn1parse`).
 *
 * About the reference encoding: the issue asks to compare the fast encoder with a
 * general-purpose X.509 library (@peculiar/x509). That library cannot be loaded here (its
 * tsyringe dependency needs a reflect-metadata polyfill that is not installed, and the package
 * is not in node_modules), so the field-for-field reference is OpenSSL's decoding instead:
 * `openssl x509 -text -noout` (with -serial, -startdate/-enddate in ISO 8601) for serial,
 * validity, names, signature algorithm and every extension with its criticality, and
 * `openssl asn1parse` for the DER types chosen (version, serial INTEGER, UTCTime vs
 * GeneralizedTime). The expected values are computed in this file from the inputs (the key
 * identifiers from the keys' own exports), never from the encoder's output.
 */
import assert from "node:assert/strict";
import { createHash, type KeyObject, X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import fc from "fast-check";
import {
  type CaKeyType,
  type CaState,
  CertificateAuthority,
  type SignedX509Svid,
} from "../../../../src/identity/server/ca/ca.js";
import { readTlv, TAG, type Tlv } from "../../../../src/identity/server/ca/der.js";
import {
  type CertificateIssuer,
  encodeCaCertificate,
  encodeName,
  encodeX509Svid,
} from "../../../../src/identity/server/ca/encoder.js";
import { CaError } from "../../../../src/identity/server/ca/errors.js";
import { generateCaKeyPair, keyIdentifier } from "../../../../src/identity/server/ca/keys.js";
import { SpiffeId, TrustDomain } from "../../../../src/spiffe/id.js";
import { validateJwtSvid } from "../../../../src/spiffe/jwtsvid.js";
import {
  certificateFacts,
  validateX509SvidChain,
  verifyX509Svid,
  X509Svid,
  X509SvidError,
  x509SvidProblems,
} from "../../../../src/spiffe/x509svid.js";
import { bundleSource, der, derTlv, TestCa } from "../../../spiffe/testca.js";
import {
  isoOpenssl,
  keyPool,
  makeCsr,
  openssl,
  opensslAsn1,
  opensslFields,
  TempDir,
  type TestKeyPair,
  WORKLOAD_KEY_TYPES,
  type WorkloadKeyType,
} from "./helpers.js";

const CA_TYPES: readonly CaKeyType[] = ["ec-p256", "ec-p384", "rsa-2048"];
const SIG_NAME: Record<CaKeyType, string> = {
  "ec-p256": "ecdsa-with-SHA256",
  "ec-p384": "ecdsa-with-SHA384",
  "rsa-2048": "sha256WithRSAEncryption",
};
const HOUR = 3600_000;

let pool: Map<WorkloadKeyType, TestKeyPair[]>;
/** Self-signed test issuers, valid 1950..9999, one per CA key type. */
const issuers = new Map<CaKeyType, { issuer: CertificateIssuer; cert: X509Certificate; rfc2253: string }>();
const dir = new TempDir();

before(async () => {
  pool = await keyPool(2);
  for (const t of CA_TYPES) {
    const pair = await generateCaKeyPair(t);
    const spki = pair.publicKey.export({ type: "spki", format: "der" });
    const cn = `Test issuer ${t}`;
    const nameDer = encodeName([
      ["C", "US"],
      ["O", "Tessera tests"],
      ["CN", cn],
    ]);
    const certDer = encodeCaCertificate({
      privateKey: pair.privateKey,
      subjectNameDer: nameDer,
      subjectPublicKeyDer: spki,
      trustDomain: "example.org",
      serial: Buffer.from([0x01, 0x02]),
      notBefore: new Date("1950-01-01T00:00:00Z"),
      notAfter: new Date("9999-12-31T23:59:59Z"),
    });
    issuers.set(t, {
      issuer: { nameDer, keyId: keyIdentifier(spki), privateKey: pair.privateKey },
      cert: new X509Certificate(certDer),
      rfc2253: `CN=${cn},O=Tessera tests,C=US`,
    });
  }
});
after(() => dir.done());

function issuerOf(t: CaKeyType) {
  const i = issuers.get(t);
  if (!i) throw new Error(`no issuer ${t}`);
  return i;
}

function poolKey(t: WorkloadKeyType, i: number): TestKeyPair {
  const keys = pool.get(t) as TestKeyPair[];
  return keys[i % keys.length] as TestKeyPair;
}

/** SHA-1 of the subjectPublicKey bits, from the key's own exports (not from any SPKI parsing). */
function expectedKeyId(key: KeyObject): string {
  let bits: Buffer;
  if (key.asymmetricKeyType === "rsa") bits = key.export({ type: "pkcs1", format: "der" });
  else {
    const jwk = key.export({ format: "jwk" });
    bits = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x as string, "base64url"),
      Buffer.from(jwk.y as string, "base64url"),
    ]);
  }
  return colonHex(createHash("sha1").update(bits).digest());
}

function colonHex(b: Buffer): string {
  return b.toString("hex").toUpperCase().match(/../g)?.join(":") ?? "";
}

function serialHex(serial: Uint8Array): string {
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  return Buffer.from(serial.subarray(i)).toString("hex").toUpperCase();
}

function secondFloor(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** Every TLV of the certificate read with the strict reader (minimal lengths), recursively. */
function walkStrict(buf: Buffer, t: Tlv = readTlv(buf, 0, buf.length)): number {
  let n = 1;
  if (t.tag & 0x20) {
    for (let p = t.body; p < t.end; ) {
      const c = readTlv(buf, p, t.end);
      n += walkStrict(buf, c);
      p = c.end;
    }
  } else if (t.tag === TAG.OCTET_STRING && buf[t.body] === 0x30) {
    // extnValue: the extension's own DER.
    const inner = readTlv(buf, t.body, t.end);
    assert.equal(inner.end, t.end, "nothing after an extension value");
    n += walkStrict(buf, inner);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((s) => s !== "." && s !== "..");
const trustDomain = fc.constantFrom(
  "example.org",
  "td",
  "prod.example.com",
  "a-b_c.d9",
  "xn--bcher-kva.example",
);
const spiffeIdArb = fc
  .tuple(trustDomain, fc.array(segment, { minLength: 1, maxLength: 5 }))
  .map(([td, segs]) => `spiffe://${td}/${segs.join("/")}`);
const label = fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9-]{0,14}[A-Za-z0-9])?$/);
const dnsName = fc
  .tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 4 }))
  .map(([wild, labels]) => `${wild && labels.length > 1 ? "*." : ""}${labels.join(".")}`);
const serialArb = fc
  .uint8Array({ minLength: 1, maxLength: 20 })
  .map((b) => {
    const s = Buffer.from(b);
    if (s.length === 20) s[0] = (s[0] as number) & 0x7f;
    return s;
  })
  .filter((s) => s.some((x) => x !== 0));
const workloadKeyArb = fc.tuple(fc.constantFrom(...WORKLOAD_KEY_TYPES), fc.nat(1));

interface EncodeCase {
  issuerType: CaKeyType;
  key: [WorkloadKeyType, number];
  id: string;
  dns: string[];
  serial: Buffer;
  notBefore: Date;
  seconds: number;
}

function encodeCaseArb(minDate: string, maxDate: string, minSeconds = 0): fc.Arbitrary<EncodeCase> {
  return fc.record({
    issuerType: fc.constantFrom(...CA_TYPES),
    key: workloadKeyArb,
    id: spiffeIdArb,
    dns: fc.array(dnsName, { maxLength: 3 }),
    serial: serialArb,
    notBefore: fc.date({ min: new Date(minDate), max: new Date(maxDate), noInvalidDate: true }),
    seconds: fc.oneof(
      fc.integer({ min: minSeconds, max: 3600 }),
      fc.integer({ min: 1, max: 5 * 365 * 86400 }),
    ),
  });
}

function encodeCase(c: EncodeCase): { der: Buffer; leafKey: TestKeyPair; notBefore: Date; notAfter: Date } {
  const leafKey = poolKey(c.key[0], c.key[1]);
  const notBefore = secondFloor(c.notBefore);
  const notAfter = new Date(notBefore.getTime() + c.seconds * 1000);
  const certDer = encodeX509Svid({
    issuer: issuerOf(c.issuerType).issuer,
    subjectPublicKeyDer: leafKey.publicKey.export({ type: "spki", format: "der" }),
    spiffeId: c.id,
    dnsNames: c.dns,
    serial: c.serial,
    notBefore,
    notAfter,
  });
  return { der: certDer, leafKey, notBefore, notAfter };
}

/** DNS names as the encoder keeps them: duplicates (case-insensitive) dropped. */
function dedupe(names: readonly string[]): string[] {
  const seen = new Set<string>();
  return names.filter((n) => {
    const k = n.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------

describe("encodeX509Svid: property checks with node:crypto and the SPIFFE library", () => {
  it("parses, follows every X.509-SVID rule (strict too) and verifies against the issuer inside its validity", () => {
    fc.assert(
      fc.property(encodeCaseArb("1950-01-01T00:00:00Z", "2300-01-01T00:00:00Z"), (c) => {
        const { der: certDer, leafKey, notBefore, notAfter } = encodeCase(c);
        const { cert: caCert } = issuerOf(c.issuerType);
        const leaf = new X509Certificate(certDer);
        assert.ok(walkStrict(certDer) > 20);
        // node:crypto (OpenSSL's parser).
        const dns = dedupe(c.dns);
        assert.equal(leaf.subjectAltName, [`URI:${c.id}`, ...dns.map((d) => `DNS:${d}`)].join(", "));
        assert.equal(leaf.serialNumber, serialHex(c.serial));
        assert.equal(leaf.subject, "O=Tessera");
        assert.equal(leaf.ca, false);
        assert.deepEqual([...(leaf.keyUsage ?? [])].sort(), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
        assert.ok(leaf.checkIssued(caCert));
        assert.ok(leaf.verify(caCert.publicKey));
        assert.ok(leaf.checkPrivateKey(leafKey.privateKey));
        // The SPIFFE library's reader and rules.
        const facts = certificateFacts(leaf);
        assert.equal(facts.notBefore.getTime(), notBefore.getTime());
        assert.equal(facts.notAfter.getTime(), notAfter.getTime());
        assert.deepEqual(facts.keyUsage, ["digitalSignature", "keyEncipherment", "keyAgreement"]);
        assert.equal(facts.keyUsageCritical, true);
        assert.deepEqual(facts.uriSans, [c.id]);
        assert.deepEqual(facts.dnsSans, dns);
        assert.deepEqual(facts.unhandledCriticalExtensions, []);
        assert.deepEqual(x509SvidProblems([leaf], { strict: true }), []);
        assert.equal(
          validateX509SvidChain([leaf], { strict: true }).toString(),
          SpiffeId.parse(c.id).toString(),
        );
        const svid = X509Svid.fromParts([leaf], leafKey.privateKey, undefined, { strict: true });
        assert.equal(svid.id.toString(), SpiffeId.parse(c.id).toString());
        const td = SpiffeId.parse(c.id).trustDomain.name;
        const bundles = bundleSource({ [td]: [caCert] });
        const mid = new Date(
          notBefore.getTime() + Math.floor((notAfter.getTime() - notBefore.getTime()) / 2),
        );
        const verified = verifyX509Svid([leaf], bundles, { at: mid, strict: true });
        assert.equal(verified.id.toString(), svid.id.toString());
        assert.throws(
          () => verifyX509Svid([leaf], bundles, { at: new Date(notBefore.getTime() - 1000) }),
          /not valid before/,
        );
        assert.throws(
          () => verifyX509Svid([leaf], bundles, { at: new Date(notAfter.getTime() + 1000) }),
          /expired/,
        );
        // Another issuer does not verify it.
        const other = issuerOf(c.issuerType === "ec-p256" ? "ec-p384" : "ec-p256").cert;
        assert.throws(
          () => verifyX509Svid([leaf], bundleSource({ [td]: [other] }), { at: mid }),
          X509SvidError,
        );
      }),
      { numRuns: 150 },
    );
  });
});

describe("encodeX509Svid: openssl as the independent reference", () => {
  it("openssl verify accepts it, and openssl's decoding matches every field", () => {
    // 24 cases: openssl runs cost a few milliseconds each. At least one second of validity:
    // OpenSSL's X509_cmp_time treats notAfter as exclusive, so a zero-length validity (which
    // RFC 5280's inclusive rule and the SPIFFE library accept at that one instant) fails there.
    fc.assert(
      fc.property(encodeCaseArb("1971-01-01T00:00:00Z", "2200-01-01T00:00:00Z", 1), (c) => {
        const { der: certDer, leafKey, notBefore, notAfter } = encodeCase(c);
        const { cert: caCert, rfc2253 } = issuerOf(c.issuerType);
        const leafPem = new X509Certificate(certDer).toString();
        const caFile = dir.write("bundle.pem", caCert.toString());
        const leafFile = dir.write("leaf.pem", leafPem);
        const at = Math.floor((notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2) / 1000);
        for (const purpose of ["sslserver", "sslclient"]) {
          const r = openssl([
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-attime",
            String(at),
            "-CAfile",
            caFile,
            leafFile,
          ]);
          assert.equal(r.status, 0, `openssl verify (${purpose}): ${r.stdout}${r.stderr}`);
          assert.match(r.stdout, /: OK/);
        }
        const late = openssl([
          "verify",
          "-attime",
          String(Math.floor(notAfter.getTime() / 1000) + 10),
          "-CAfile",
          caFile,
          leafFile,
        ]);
        assert.notEqual(late.status, 0, "expired after notAfter");

        const f = opensslFields(dir, certDer);
        assert.equal(f.version, "3 (0x2)");
        assert.equal(f.serial, serialHex(c.serial));
        assert.equal(f.notBefore, isoOpenssl(notBefore));
        assert.equal(f.notAfter, isoOpenssl(notAfter));
        assert.equal(f.subject, "O=Tessera");
        assert.equal(f.issuer, rfc2253);
        assert.equal(f.signatureAlgorithm, SIG_NAME[c.issuerType]);
        const ext = Object.fromEntries(f.extensions);
        assert.deepEqual(Object.keys(ext).sort(), [
          "X509v3 Authority Key Identifier",
          "X509v3 Basic Constraints",
          "X509v3 Extended Key Usage",
          "X509v3 Key Usage",
          "X509v3 Subject Alternative Name",
          "X509v3 Subject Key Identifier",
        ]);
        assert.deepEqual(ext["X509v3 Key Usage"], {
          critical: true,
          value: "Digital Signature, Key Encipherment, Key Agreement",
        });
        assert.deepEqual(ext["X509v3 Extended Key Usage"], {
          critical: false,
          value: "TLS Web Server Authentication, TLS Web Client Authentication",
        });
        assert.deepEqual(ext["X509v3 Basic Constraints"], { critical: true, value: "CA:FALSE" });
        const dns = dedupe(c.dns);
        assert.deepEqual(ext["X509v3 Subject Alternative Name"], {
          critical: false,
          value: [`URI:${c.id}`, ...dns.map((d) => `DNS:${d}`)].join(", "),
        });
        assert.deepEqual(ext["X509v3 Subject Key Identifier"], {
          critical: false,
          value: expectedKeyId(leafKey.publicKey),
        });
        const caSki = expectedKeyId(caCert.publicKey);
        assert.equal(ext["X509v3 Authority Key Identifier"]?.critical, false);
        assert.equal(ext["X509v3 Authority Key Identifier"]?.value.replace(/^keyid:/, ""), caSki);

        // DER types: version [0] INTEGER 2, serial INTEGER, UTCTime through 2049 else GeneralizedTime.
        const asn = opensslAsn1(dir, certDer);
        assert.equal(asn[3]?.kind, "INTEGER");
        assert.equal(asn[3]?.value, "02");
        assert.equal(asn[4]?.kind, "INTEGER");
        assert.equal(asn[4]?.value.replace(/^0+(?=.)/, ""), serialHex(c.serial).replace(/^0+(?=.)/, ""));
        const times = asn.filter((l) => l.kind === "UTCTIME" || l.kind === "GENERALIZEDTIME");
        assert.equal(times.length, 2);
        for (const [i, d] of [notBefore, notAfter].entries()) {
          const y = d.getUTCFullYear();
          assert.equal(
            times[i]?.kind,
            y >= 1950 && y < 2050 ? "UTCTIME" : "GENERALIZEDTIME",
            `${d.toISOString()}`,
          );
        }
      }),
      { numRuns: 24 },
    );
  });

  it("CA certificates: openssl reads cA, key usage, the trust domain URI and the key identifiers", () => {
    for (const t of CA_TYPES) {
      const { cert } = issuerOf(t);
      const f = opensslFields(dir, cert.raw);
      const ext = Object.fromEntries(f.extensions);
      assert.deepEqual(ext["X509v3 Basic Constraints"], { critical: true, value: "CA:TRUE" });
      assert.deepEqual(ext["X509v3 Key Usage"], { critical: true, value: "Certificate Sign, CRL Sign" });
      assert.deepEqual(ext["X509v3 Subject Alternative Name"], {
        critical: false,
        value: "URI:spiffe://example.org",
      });
      assert.equal(ext["X509v3 Subject Key Identifier"]?.value, expectedKeyId(cert.publicKey));
      assert.equal(f.notBefore, "1950-01-01 00:00:00Z");
      assert.equal(f.notAfter, "9999-12-31 23:59:59Z");
      assert.equal(f.signatureAlgorithm, SIG_NAME[t]);
      const file = dir.write("root.pem", cert.toString());
      const r = openssl(["verify", "-x509_strict", "-CAfile", file, file]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }
  });
});

describe("encodeX509Svid: argument checks", () => {
  it("refuses bad IDs, DNS names, serials and dates with CaError", () => {
    const issuer = issuerOf("ec-p256").issuer;
    const base = {
      issuer,
      subjectPublicKeyDer: poolKey("ec-p256", 0).publicKey.export({ type: "spki", format: "der" }),
      spiffeId: "spiffe://example.org/w",
      serial: Buffer.from([1]),
      notBefore: new Date("2030-01-01T00:00:00Z"),
      notAfter: new Date("2030-01-02T00:00:00Z"),
    };
    encodeX509Svid(base);
    const cases: [Partial<typeof base> & { dnsNames?: string[] }, string][] = [
      [{ spiffeId: "spiffe://example.org" }, "invalid-spiffe-id"],
      [{ spiffeId: "https://example.org/w" }, "invalid-spiffe-id"],
      [{ dnsNames: ["bad..name"] }, "invalid-dns-name"],
      [{ dnsNames: ["-x.example"] }, "invalid-dns-name"],
      [{ dnsNames: ["a.*.example"] }, "invalid-dns-name"],
      [{ dnsNames: [`${"a".repeat(64)}.example`] }, "invalid-dns-name"],
      [{ dnsNames: ["ünïcode.example"] }, "invalid-dns-name"],
      [{ serial: Buffer.from([0, 0]) }, "invalid-argument"],
      [{ serial: Buffer.alloc(20, 0xff) }, "invalid-argument"],
      [{ notAfter: new Date("2029-01-01T00:00:00Z") }, "invalid-argument"],
      [{ notBefore: new Date(Number.NaN) }, "invalid-argument"],
      [{ subjectPublicKeyDer: Buffer.from([0x30, 0x03, 0x02, 0x01]) }, "invalid-key"],
    ];
    for (const [patch, reason] of cases) {
      assert.throws(
        () => encodeX509Svid({ ...base, ...patch }),
        (e: unknown) => e instanceof CaError && e.reason === reason,
        JSON.stringify(patch),
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The CertificateAuthority.

class FakeClock {
  constructor(public ms: number) {}
  readonly now = (): Date => new Date(this.ms);
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

function leafOf(svid: SignedX509Svid): X509Certificate {
  return new X509Certificate(svid.certificates[0] as Buffer);
}

function chainOf(svid: SignedX509Svid): X509Certificate[] {
  return svid.certificates.map((d) => new X509Certificate(d));
}

function opensslVerifyChain(ca: CertificateAuthority, svid: SignedX509Svid, at: Date): void {
  const bundleFile = dir.write(
    "bundle.pem",
    ca
      .bundle()
      .x509Authorities.map((c) => c.toString())
      .join(""),
  );
  const leafFile = dir.write("leaf.pem", leafOf(svid).toString());
  const args = [
    "verify",
    "-x509_strict",
    "-attime",
    String(Math.floor(at.getTime() / 1000)),
    "-CAfile",
    bundleFile,
  ];
  if (svid.certificates.length > 1) {
    const chainFile = dir.write(
      "chain.pem",
      chainOf(svid)
        .slice(1)
        .map((c) => c.toString())
        .join(""),
    );
    args.push("-untrusted", chainFile);
  }
  const r = openssl([...args, leafFile]);
  assert.equal(r.status, 0, `openssl verify: ${r.stdout}${r.stderr}`);
}

const TD = "example.org";

describe("CertificateAuthority: signing from CSRs", () => {
  const cas = new Map<CaKeyType, { ca: CertificateAuthority; clock: FakeClock }>();
  before(async () => {
    for (const t of CA_TYPES) {
      const clock = new FakeClock(Date.parse("2031-05-06T07:08:09.500Z"));
      cas.set(t, {
        ca: await CertificateAuthority.create({ trustDomain: TD, keyType: t, clock: clock.now }),
        clock,
      });
    }
  });

  it("defaults: EC P-256, 24 h, self-signed root with the trust domain URI, sequence 1", async () => {
    const ca = await CertificateAuthority.create({ trustDomain: "Example.ORG" });
    assert.equal(ca.keyType, "ec-p256");
    assert.equal(ca.caTtlSeconds, 86400);
    assert.equal(ca.trustDomain.name, "example.org");
    const root = ca.x509Authorities.active.certificate;
    assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.equal(root.ca, true);
    assert.equal(root.subjectAltName, "URI:spiffe://example.org");
    assert.ok(root.checkIssued(root) && root.verify(root.publicKey));
    const life = ca.x509Authorities.active.notAfter.getTime() - ca.x509Authorities.active.notBefore.getTime();
    assert.equal(life, (86400 + 10) * 1000);
    const b = ca.bundle();
    assert.equal(b.sequence, 1n);
    assert.equal(b.x509Authorities.length, 1);
    assert.equal(b.jwtAuthorities.size, 1);
    assert.equal(ca.bundle(), b, "the same bundle object until something changes");
  });

  it("property: random IDs, DNS names, workload keys, TTLs and times verify against the bundle (and openssl for a sample)", async () => {
    let opensslRuns = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...CA_TYPES),
        workloadKeyArb,
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.array(dnsName, { maxLength: 3 }),
        fc.integer({ min: 1, max: 200_000 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        async (t, [kt, ki], segs, dns, ttl, when) => {
          const { ca, clock } = cas.get(t) as { ca: CertificateAuthority; clock: FakeClock };
          const active = ca.x509Authorities.active;
          const nb = active.notBefore.getTime();
          const na = active.notAfter.getTime();
          clock.ms = Math.floor(nb + 10_000 + when * (na - nb - 10_000));
          const key = poolKey(kt, ki);
          const id = `spiffe://${TD}/${segs.join("/")}`;
          const svid = ca.signX509Svid({ csr: makeCsr(key), spiffeId: id, ttlSeconds: ttl, dnsNames: dns });
          const now = Math.floor(clock.ms / 1000) * 1000;
          assert.equal(
            svid.notAfter.getTime(),
            Math.min(now + ttl * 1000, na),
            "TTL capped to the CA's life",
          );
          assert.equal(svid.notBefore.getTime(), Math.max(now - 10_000, nb), "backdated 10 s");
          assert.equal(svid.certificates.length, 1, "self-signed: the leaf alone");
          const leaf = leafOf(svid);
          assert.equal(leaf.serialNumber, svid.serialNumber);
          assert.equal(leaf.subjectAltName, [`URI:${id}`, ...dedupe(dns).map((d) => `DNS:${d}`)].join(", "));
          assert.ok(leaf.checkPrivateKey(key.privateKey));
          const at = new Date((svid.notBefore.getTime() + svid.notAfter.getTime()) / 2);
          const v = verifyX509Svid(chainOf(svid), ca.bundle(), { at, strict: true });
          assert.equal(v.id.toString(), id);
          assert.equal(v.chain[v.chain.length - 1], ca.x509Authorities.active.certificate);
          X509Svid.fromParts(chainOf(svid), key.privateKey, undefined, { strict: true });
          if (opensslRuns < 20) {
            opensslRuns++;
            opensslVerifyChain(ca, svid, at);
          }
        },
      ),
      { numRuns: 60 },
    );
    assert.equal(opensslRuns, 20);
  });

  it("CAs created at random dates 1990..2090 (UTCTime and GeneralizedTime validity) issue verifiable SVIDs", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.date({
          min: new Date("1990-01-01T00:00:00Z"),
          max: new Date("2090-01-01T00:00:00Z"),
          noInvalidDate: true,
        }),
        async (d) => {
          const clock = new FakeClock(d.getTime());
          const ca = await CertificateAuthority.create({
            trustDomain: TD,
            clock: clock.now,
            caTtlSeconds: 7 * 86400,
          });
          clock.advance(60);
          const svid = ca.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/w` });
          const at = new Date(clock.ms);
          verifyX509Svid(chainOf(svid), ca.bundle(), { at, strict: true });
          opensslVerifyChain(ca, svid, at);
        },
      ),
      { numRuns: 10 },
    );
  });

  it("uses only the CSR's public key: the CSR's subject and SAN request are ignored", () => {
    const { ca, clock } = cas.get("ec-p256") as { ca: CertificateAuthority; clock: FakeClock };
    clock.ms = ca.x509Authorities.active.notBefore.getTime() + HOUR;
    const evilSan = der.seq(derTlv(0x86, Buffer.from("spiffe://evil.example/admin")));
    const extReq = der.seq(
      der.oid("1.2.840.113549.1.9.14"),
      der.set(der.seq(der.seq(der.oid("2.5.29.17"), der.octets(evilSan)))),
    );
    const subject = der.seq(der.set(der.seq(der.oid("2.5.4.3"), der.utf8("admin"))));
    const svid = ca.signX509Svid({
      csr: makeCsr(poolKey("ec-p256", 1), { subject, attributes: [extReq] }),
      spiffeId: `spiffe://${TD}/w`,
    });
    const leaf = leafOf(svid);
    assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/w`);
    assert.equal(leaf.subject, "O=Tessera");
    assert.equal(svid.notAfter.getTime() - Math.floor(clock.ms / 1000) * 1000, HOUR, "default TTL 1 h");
  });

  it("signX509SvidFromKey takes public keys only", () => {
    const { ca, clock } = cas.get("ec-p256") as { ca: CertificateAuthority; clock: FakeClock };
    clock.ms = ca.x509Authorities.active.notBefore.getTime() + HOUR;
    for (const t of WORKLOAD_KEY_TYPES) {
      const k = poolKey(t, 0);
      const svid = ca.signX509SvidFromKey(k.publicKey, {
        spiffeId: `spiffe://${TD}/k`,
        dnsNames: ["k.example"],
      });
      assert.ok(leafOf(svid).checkPrivateKey(k.privateKey));
    }
    assert.throws(
      () => ca.signX509SvidFromKey(poolKey("ec-p256", 0).privateKey, { spiffeId: `spiffe://${TD}/k` }),
      (e: unknown) =>
        e instanceof CaError &&
        e.reason === "invalid-argument" &&
        /never handles workload private keys/.test(e.message),
    );
  });

  it("a malformed CSR or request gets a clear error and changes nothing", () => {
    const { ca, clock } = cas.get("ec-p256") as { ca: CertificateAuthority; clock: FakeClock };
    clock.ms = ca.x509Authorities.active.notBefore.getTime() + HOUR;
    const before = JSON.stringify(ca.exportState());
    const bundle = ca.bundle();
    const csr = makeCsr(poolKey("ec-p256", 0));
    const cases: [() => unknown, string, RegExp][] = [
      [
        () => ca.signX509Svid({ csr: Buffer.from("junk"), spiffeId: `spiffe://${TD}/w` }),
        "malformed-csr",
        /neither DER/,
      ],
      [
        () => ca.signX509Svid({ csr: csr.subarray(0, 50), spiffeId: `spiffe://${TD}/w` }),
        "malformed-csr",
        /PKCS#10/,
      ],
      [
        () => ca.signX509Svid({ csr, spiffeId: "spiffe://other.org/w" }),
        "wrong-trust-domain",
        /only for example\.org/,
      ],
      [() => ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}` }), "invalid-spiffe-id", /no path/],
      [
        () => ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/a/../b` }),
        "invalid-spiffe-id",
        /not a SPIFFE ID/,
      ],
      [() => ca.signX509Svid({ csr, spiffeId: 7 as unknown as string }), "invalid-spiffe-id", /must be/],
      [
        () => ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/w`, ttlSeconds: 0 }),
        "invalid-ttl",
        /whole number/,
      ],
      [
        () => ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/w`, ttlSeconds: 1.5 }),
        "invalid-ttl",
        /whole number/,
      ],
      [
        () => ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/w`, dnsNames: ["a b"] }),
        "invalid-dns-name",
        /not a valid host name/,
      ],
      [
        () =>
          ca.signX509Svid({
            csr,
            spiffeId: `spiffe://${TD}/w`,
            dnsNames: Array.from({ length: 101 }, (_, i) => `n${i}.x`),
          }),
        "invalid-dns-name",
        /at most 100/,
      ],
      [
        () => ca.signX509Svid(null as unknown as { csr: Buffer; spiffeId: string }),
        "invalid-argument",
        /required/,
      ],
      [() => ca.activate(), "not-prepared", /prepare\(\) first/],
    ];
    for (const [fn, reason, message] of cases) {
      assert.throws(fn, (e: unknown) => {
        assert.ok(e instanceof CaError, String(e));
        assert.equal(e.reason, reason, e.message);
        assert.match(e.message, message);
        return true;
      });
    }
    assert.equal(JSON.stringify(ca.exportState()), before);
    assert.equal(ca.bundle(), bundle);
  });

  it("refuses to sign once the active authority has expired and rotateIfDue() has not run", async () => {
    const clock = new FakeClock(Date.parse("2030-01-01T00:00:00Z"));
    const ca = await CertificateAuthority.create({ trustDomain: TD, clock: clock.now, caTtlSeconds: 600 });
    clock.advance(700);
    assert.throws(
      () => ca.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/w` }),
      (e: unknown) => e instanceof CaError && e.reason === "ca-expired",
    );
    await assert.rejects(
      ca.signJwtSvid({ spiffeId: `spiffe://${TD}/w`, audience: "a" }),
      (e: unknown) => e instanceof CaError && e.reason === "ca-expired",
    );
    const r = await ca.rotateIfDue();
    assert.ok(r.prepared && r.activated && r.bundleChanged);
    const svid = ca.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/w` });
    verifyX509Svid(chainOf(svid), ca.bundle(), { at: new Date(clock.ms) });
    assert.equal(ca.bundle().x509Authorities.length, 1, "the expired root is pruned");
  });

  it("refuses bad options", async () => {
    const bad: [Parameters<typeof CertificateAuthority.create>[0], string][] = [
      [{ trustDomain: "bad domain" }, "invalid-argument"],
      [{ trustDomain: TD, keyType: "ec-p521" as CaKeyType }, "invalid-argument"],
      [{ trustDomain: TD, caTtlSeconds: 30 }, "invalid-ttl"],
      [{ trustDomain: TD, caTtlSeconds: 1.5 }, "invalid-ttl"],
      [{ trustDomain: TD, refreshHintSeconds: -1 }, "invalid-argument"],
    ];
    for (const [o, reason] of bad) {
      await assert.rejects(
        CertificateAuthority.create(o),
        (e: unknown) => e instanceof CaError && e.reason === reason,
        JSON.stringify(o),
      );
    }
  });
});

describe("CertificateAuthority: rotation", () => {
  it("prepare at 1/2, activate at 5/6; old SVIDs stay valid until they expire, new ones chain to the new CA; sequence increases", async () => {
    const clock = new FakeClock(Date.parse("2032-02-03T04:05:06Z"));
    const ca = await CertificateAuthority.create({ trustDomain: TD, clock: clock.now, caTtlSeconds: 6000 });
    const key = poolKey("ec-p256", 0);
    const csr = makeCsr(key);
    const id = `spiffe://${TD}/rotating`;
    const ca1 = ca.x509Authorities.active;
    const sched = ca.schedule();
    const life = ca1.notAfter.getTime() - ca1.notBefore.getTime();
    assert.equal(sched.prepareAt.getTime(), ca1.notBefore.getTime() + Math.floor(life / 2));
    assert.equal(sched.activateAt.getTime(), ca1.notBefore.getTime() + Math.floor((life * 5) / 6));
    const sequences: bigint[] = [ca.bundle().sequence as bigint];

    const svid1 = ca.signX509Svid({ csr, spiffeId: id, ttlSeconds: 100_000 });
    assert.equal(svid1.notAfter.getTime(), ca1.notAfter.getTime(), "capped to CA1's life");
    const jwt1 = await ca.signJwtSvid({ spiffeId: id, audience: ["db", "cache"], ttlSeconds: 100_000 });
    assert.equal(jwt1.expiresAt.getTime(), Math.floor(ca.jwtKeys.active.notAfter.getTime() / 1000) * 1000);

    clock.ms = sched.prepareAt.getTime() - 1000;
    assert.deepEqual(await ca.rotateIfDue(), {
      prepared: false,
      activated: false,
      pruned: 0,
      bundleChanged: false,
    });

    clock.ms = sched.prepareAt.getTime();
    const r1 = await ca.rotateIfDue();
    assert.deepEqual(r1, { prepared: true, activated: false, pruned: 0, bundleChanged: true });
    sequences.push(ca.bundle().sequence as bigint);
    const ca2 = ca.x509Authorities.prepared;
    assert.ok(ca2);
    assert.deepEqual(
      ca
        .bundle()
        .x509Authorities.map((c) => c.fingerprint256)
        .sort(),
      [ca1.certificate.fingerprint256, ca2.certificate.fingerprint256].sort(),
      "the prepared root is published before use",
    );
    assert.equal(ca.bundle().jwtAuthorities.size, 2);
    // Still signing with CA1.
    const mid = ca.signX509Svid({ csr, spiffeId: id });
    assert.ok(leafOf(mid).verify(ca1.certificate.publicKey));

    clock.ms = sched.activateAt.getTime();
    const r2 = await ca.rotateIfDue();
    assert.equal(r2.activated, true);
    assert.equal(r2.bundleChanged, false, "activation does not change the bundle's content");
    assert.equal(ca.x509Authorities.active.certificate, ca2.certificate);
    assert.deepEqual(
      ca.x509Authorities.old.map((a) => a.certificate),
      [ca1.certificate],
    );

    const svid2 = ca.signX509Svid({ csr, spiffeId: id });
    const bundle = ca.bundle();
    const at = new Date(clock.ms);
    // New SVIDs chain to the new CA only.
    assert.equal(verifyX509Svid(chainOf(svid2), bundle, { at }).chain[1], ca2.certificate);
    assert.throws(
      () => verifyX509Svid(chainOf(svid2), bundleSource({ [TD]: [ca1.certificate] }), { at }),
      /does not lead/,
    );
    // Old SVIDs still verify against the current bundle (both roots during the overlap).
    assert.equal(verifyX509Svid(chainOf(svid1), bundle, { at }).chain[1], ca1.certificate);
    opensslVerifyChain(ca, svid1, at);
    opensslVerifyChain(ca, svid2, at);
    // JWT-SVIDs signed before the rotation validate with the new bundle until they expire.
    const claims = await validateJwtSvid(jwt1.token, bundle, "db", { at });
    assert.equal(claims.id.toString(), id);
    const jwt2 = await ca.signJwtSvid({ spiffeId: id, audience: "db" });
    assert.notEqual(jwt2.kid, jwt1.kid);
    assert.equal(jwt2.expiresAt.getTime() - jwt2.issuedAt.getTime(), 300_000, "JWT-SVID default TTL 5 min");
    await validateJwtSvid(jwt2.token, bundle, "db", { at });

    // After CA1 expires: svid1 is expired, CA1 leaves the bundle, the sequence increases.
    clock.ms = ca1.notAfter.getTime() + 1000;
    assert.throws(() => verifyX509Svid(chainOf(svid1), ca.bundle(), { at: new Date(clock.ms) }), /expired/);
    const r3 = await ca.rotateIfDue();
    assert.ok(r3.pruned >= 2, "CA1 and the first JWT key");
    assert.ok(r3.bundleChanged);
    sequences.push(ca.bundle().sequence as bigint);
    assert.ok(!ca.bundle().x509Authorities.some((c) => c.fingerprint256 === ca1.certificate.fingerprint256));
    assert.ok(!ca.bundle().jwtAuthorities.has(jwt1.kid));
    await assert.rejects(validateJwtSvid(jwt1.token, ca.bundle(), "db", { at: new Date(clock.ms) }));
    // svid2 keeps verifying until its own expiry.
    verifyX509Svid(chainOf(svid2), ca.bundle(), { at: new Date(clock.ms) });

    // Many more rotations: the sequence only ever increases, the bundle never holds an expired root.
    for (let i = 0; i < 12; i++) {
      clock.advance(1000 + (i % 3) * 700);
      const r = await ca.rotateIfDue();
      if (r.bundleChanged) sequences.push(ca.bundle().sequence as bigint);
      const now = clock.ms;
      for (const c of ca.bundle().x509Authorities) assert.ok(certificateFacts(c).notAfter.getTime() > now);
      const s = ca.signX509Svid({ csr, spiffeId: id });
      verifyX509Svid(chainOf(s), ca.bundle(), { at: new Date(now), strict: true });
    }
    for (let i = 1; i < sequences.length; i++)
      assert.ok((sequences[i] as bigint) > (sequences[i - 1] as bigint), `${sequences}`);
    assert.ok(sequences.length >= 6);
    // The bundle document carries the sequence.
    assert.match(ca.bundle().marshal(), new RegExp(`"spiffe_sequence":${ca.sequence}`));
  });

  it("prepare() twice replaces the prepared pair; activate() without prepare() is refused", async () => {
    const clock = new FakeClock(Date.parse("2033-01-01T00:00:00Z"));
    const ca = await CertificateAuthority.create({ trustDomain: TD, clock: clock.now, caTtlSeconds: 600 });
    await ca.prepare();
    const first = ca.x509Authorities.prepared?.certificate;
    const s1 = ca.sequence;
    await ca.prepare();
    assert.notEqual(ca.x509Authorities.prepared?.certificate, first);
    assert.equal(ca.sequence, s1 + 1n);
    assert.equal(ca.bundle().x509Authorities.length, 2, "the replaced prepared root is no longer published");
    ca.activate();
    assert.throws(
      () => ca.activate(),
      (e: unknown) => e instanceof CaError && e.reason === "not-prepared",
    );
  });

  it("works the same with RSA-2048 and P-384 authorities", async () => {
    for (const keyType of ["rsa-2048", "ec-p384"] as const) {
      const clock = new FakeClock(Date.parse("2034-01-01T00:00:00Z"));
      const ca = await CertificateAuthority.create({
        trustDomain: TD,
        clock: clock.now,
        caTtlSeconds: 1200,
        keyType,
      });
      const csr = makeCsr(poolKey("ec-p256", 0));
      const old = ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/x` });
      const jwt = await ca.signJwtSvid({ spiffeId: `spiffe://${TD}/x`, audience: "a", ttlSeconds: 1100 });
      assert.match(
        jwt.token.split(".")[0] ?? "",
        new RegExp(
          Buffer.from(`{"alg":"${keyType === "rsa-2048" ? "RS256" : "ES384"}"`)
            .toString("base64url")
            .slice(0, 12),
        ),
      );
      clock.ms = ca.schedule().activateAt.getTime();
      await ca.rotateIfDue();
      await ca.rotateIfDue();
      const fresh = ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/x` });
      const at = new Date(clock.ms);
      verifyX509Svid(chainOf(old), ca.bundle(), { at, strict: true });
      verifyX509Svid(chainOf(fresh), ca.bundle(), { at, strict: true });
      await validateJwtSvid(jwt.token, ca.bundle(), "a", { at });
      assert.equal(ca.x509Authorities.old.length, 1);
    }
  });
});

describe("CertificateAuthority: upstream CA", () => {
  let upRoot: TestCa;
  let upInter: TestCa;
  before(async () => {
    upRoot = await TestCa.create(TD, { keyType: "rsa-2048" });
    upInter = await upRoot.createIntermediate({ keyType: "ec-p384" });
  });

  function upstream(): { certificatesPem: string; keyPem: string } {
    return {
      certificatesPem: upInter.issued.pem + upRoot.issued.pem,
      keyPem: upInter.issued.privateKeyPem,
    };
  }

  it("signs intermediates with the upstream key; SVID chains reach the upstream root, which the bundle holds", async () => {
    const ca = await CertificateAuthority.create({ trustDomain: TD, upstream: upstream() });
    assert.ok(ca.upstreamMode);
    const bundle = ca.bundle();
    assert.deepEqual(
      bundle.x509Authorities.map((c) => c.raw),
      [upRoot.certificate.raw],
    );
    const ours = ca.x509Authorities.active;
    assert.ok(
      ours.certificate.checkIssued(upInter.certificate) &&
        ours.certificate.verify(upInter.certificate.publicKey),
    );
    assert.ok(ours.notAfter.getTime() <= upInter.issued.notAfter.getTime(), "capped to the upstream's life");
    for (const t of WORKLOAD_KEY_TYPES) {
      const key = poolKey(t, 0);
      const svid = ca.signX509Svid({
        csr: makeCsr(key),
        spiffeId: `spiffe://${TD}/up/${t}`,
        dnsNames: ["up.example"],
      });
      assert.deepEqual(svid.certificates.slice(1), [ours.certificate.raw, upInter.certificate.raw]);
      const v = verifyX509Svid(chainOf(svid), bundle, { strict: true });
      assert.equal(v.chain.length, 4);
      assert.deepEqual(x509SvidProblems(chainOf(svid), { strict: true }), []);
      X509Svid.fromParts(chainOf(svid), key.privateKey, undefined, { strict: true });
      opensslVerifyChain(ca, svid, new Date());
    }
  });

  it("rotation keeps the bundle's X.509 roots; new SVIDs carry the new intermediate", async () => {
    const clock = new FakeClock(Date.now());
    const ca = await CertificateAuthority.create({
      trustDomain: TD,
      upstream: upstream(),
      clock: clock.now,
      caTtlSeconds: 3600,
    });
    const csr = makeCsr(poolKey("rsa-2048", 0));
    const s1 = ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/a` });
    const seq = ca.sequence;
    clock.ms = ca.schedule().prepareAt.getTime();
    await ca.rotateIfDue();
    assert.equal(ca.sequence, seq + 1n, "the new JWT key changes the bundle");
    assert.equal(ca.bundle().x509Authorities.length, 1);
    clock.ms = ca.schedule().activateAt.getTime();
    await ca.rotateIfDue();
    const s2 = ca.signX509Svid({ csr, spiffeId: `spiffe://${TD}/a` });
    assert.notDeepEqual(s2.certificates[1], s1.certificates[1]);
    const at = new Date(clock.ms);
    verifyX509Svid(chainOf(s1), ca.bundle(), { at, strict: true });
    verifyX509Svid(chainOf(s2), ca.bundle(), { at, strict: true });
    opensslVerifyChain(ca, s1, at);
    opensslVerifyChain(ca, s2, at);
  });

  it("roots can be given apart (bundlePem) when certificatesPem holds no self-signed root", async () => {
    const ca = await CertificateAuthority.create({
      trustDomain: TD,
      upstream: {
        certificatesPem: upInter.issued.pem,
        keyPem: upInter.issued.privateKeyPem,
        bundlePem: upRoot.issued.pem,
      },
    });
    const svid = ca.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/b` });
    verifyX509Svid(chainOf(svid), ca.bundle(), { strict: true });
  });

  it("refuses unusable upstream material with clear errors", async () => {
    const otherKey = (await TestCa.create(TD)).issued.privateKeyPem;
    const expired = await TestCa.create(TD, {
      notBefore: new Date(Date.now() - 3 * 86400_000),
      notAfter: new Date(Date.now() - 86400_000),
    });
    const leafOnly = await upRoot.issueSvid(`spiffe://${TD}/not-a-ca`);
    const cases: [Record<string, string>, RegExp][] = [
      [{ certificatesPem: upInter.issued.pem + upRoot.issued.pem, keyPem: otherKey }, /does not belong/],
      [{ certificatesPem: upInter.issued.pem, keyPem: upInter.issued.privateKeyPem }, /no self-signed root/],
      [
        { certificatesPem: "not pem", keyPem: upInter.issued.privateKeyPem },
        /not valid PEM|holds no certificate/,
      ],
      [
        {
          certificatesPem: upInter.issued.pem + upRoot.issued.pem,
          keyPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        },
        /not a readable/,
      ],
      [{ certificatesPem: expired.issued.pem, keyPem: expired.issued.privateKeyPem }, /not valid now/],
      [
        { certificatesPem: leafOnly.certificatesPem + upRoot.issued.pem, keyPem: leafOnly.privateKeyPem },
        /not a CA/,
      ],
      [
        {
          certificatesPem: upInter.issued.pem + (await TestCa.create(TD)).issued.pem,
          keyPem: upInter.issued.privateKeyPem,
        },
        /does not chain/,
      ],
    ];
    for (const [u, message] of cases) {
      await assert.rejects(
        CertificateAuthority.create({
          trustDomain: TD,
          upstream: u as { certificatesPem: string; keyPem: string },
        }),
        (e: unknown) => {
          assert.ok(e instanceof CaError, String(e));
          assert.equal(e.reason, "invalid-upstream");
          assert.match(e.message, message);
          assert.ok(!e.message.includes("PRIVATE KEY"), "no key material in messages");
          return true;
        },
      );
    }
  });
});

describe("CertificateAuthority: state export and restore", () => {
  it("round-trips through JSON: same bundle, same keys, signing and rotation continue", async () => {
    const clock = new FakeClock(Date.parse("2035-03-04T05:06:07Z"));
    const ca = await CertificateAuthority.create({
      trustDomain: TD,
      clock: clock.now,
      caTtlSeconds: 3000,
      refreshHintSeconds: 300,
    });
    clock.ms = ca.schedule().prepareAt.getTime();
    await ca.rotateIfDue();
    clock.ms = ca.schedule().activateAt.getTime();
    await ca.rotateIfDue();
    const state = ca.exportState();
    const json = JSON.stringify(state);
    assert.deepEqual(JSON.parse(json), state, "plain JSON");
    assert.equal(state.x509.old[0]?.privateKeyPem, null, "retired keys are not kept");
    assert.equal(state.jwt.old[0]?.privateKeyPem, null);
    const restored = CertificateAuthority.restore(JSON.parse(json) as CaState, { clock: clock.now });
    assert.equal(restored.bundle().marshal(), ca.bundle().marshal());
    assert.equal(restored.sequence, ca.sequence);
    assert.deepEqual(restored.exportState(), state);
    const csr = makeCsr(poolKey("ec-p384", 0));
    const svid = restored.signX509Svid({ csr, spiffeId: `spiffe://${TD}/r` });
    verifyX509Svid(chainOf(svid), ca.bundle(), { at: new Date(clock.ms), strict: true });
    const jwt = await restored.signJwtSvid({ spiffeId: `spiffe://${TD}/r`, audience: "x" });
    assert.equal(jwt.kid, ca.jwtKeys.active.kid);
    await validateJwtSvid(jwt.token, ca.bundle(), "x", { at: new Date(clock.ms) });
    clock.ms = restored.schedule().prepareAt.getTime();
    const r = await restored.rotateIfDue();
    assert.ok(r.prepared);
    assert.ok(restored.sequence > ca.sequence);
  });

  it("upstream mode: the key is not persisted; restoring without it signs but cannot prepare", async () => {
    const root = await TestCa.create(TD);
    const upstream = { certificatesPem: root.issued.pem, keyPem: root.issued.privateKeyPem };
    const ca = await CertificateAuthority.create({ trustDomain: TD, upstream });
    const state = JSON.parse(JSON.stringify(ca.exportState())) as CaState;
    assert.ok(!JSON.stringify(state).includes(root.issued.privateKeyPem.split("\n")[1] as string));
    const noKey = CertificateAuthority.restore(state);
    const svid = noKey.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/u` });
    verifyX509Svid(chainOf(svid), ca.bundle(), { strict: true });
    await assert.rejects(
      noKey.prepare(),
      (e: unknown) => e instanceof CaError && e.reason === "no-upstream-key",
    );
    const withKey = CertificateAuthority.restore(state, { upstream });
    await withKey.prepare();
    withKey.activate();
    const s2 = withKey.signX509Svid({ csr: makeCsr(poolKey("ec-p256", 0)), spiffeId: `spiffe://${TD}/u` });
    verifyX509Svid(chainOf(s2), withKey.bundle(), { strict: true });
  });

  it("refuses states that are not what exportState wrote", async () => {
    const clock = new FakeClock(Date.parse("2036-01-01T00:00:00Z"));
    const ca = await CertificateAuthority.create({ trustDomain: TD, clock: clock.now });
    await ca.prepare();
    const good = ca.exportState();
    const other = (await CertificateAuthority.create({ trustDomain: TD })).exportState();
    // biome-ignore lint/suspicious/noExplicitAny: tests poke at arbitrary members of a JSON copy
    const mutate = (f: (s: Record<string, any>) => void): CaState => {
      const s = JSON.parse(JSON.stringify(good));
      f(s);
      return s;
    };
    const cases: [CaState, RegExp][] = [
      [mutate((s) => (s.version = 2)), /version/],
      [mutate((s) => (s.trustDomain = "other.org")), /not an authority of other\.org/],
      [mutate((s) => (s.sequence = "-1")), /sequence/],
      [mutate((s) => (s.sequence = "18446744073709551616")), /64 bits/],
      [mutate((s) => (s.keyType = "dsa")), /keyType/],
      [mutate((s) => (s.x509.active.privateKeyPem = s.x509.prepared.privateKeyPem)), /does not match/],
      [mutate((s) => (s.x509.active.privateKeyPem = null)), /no private key/],
      [mutate((s) => (s.x509.active.certificatePem = other.x509.active.certificatePem)), /does not match/],
      [
        mutate((s) => (s.jwt.active.privateKeyPem = other.jwt.active.privateKeyPem)),
        /does not match its public key/,
      ],
      [mutate((s) => (s.jwt.prepared.kid = s.jwt.active.kid)), /share a kid/],
      [mutate((s) => (s.jwt.active.notAfter = "yesterday")), /invalid dates/],
      [mutate((s) => (s.x509.prepared = null)), /prepared together/],
      [mutate((s) => (s.x509.active.certificatePem = "junk")), /PEM/],
      [mutate((s) => delete s.jwt), /jwt is missing/],
      [null as unknown as CaState, /not an object/],
    ];
    for (const [state, message] of cases) {
      assert.throws(
        () => CertificateAuthority.restore(state),
        (e: unknown) => {
          assert.ok(e instanceof CaError, String(e));
          assert.equal(e.reason, "invalid-state", e.message);
          assert.match(e.message, message);
          assert.ok(!e.message.includes("PRIVATE KEY"));
          return true;
        },
      );
    }
  });
});

describe("CertificateAuthority: secrets", () => {
  it("never prints private keys (toString, inspect, JSON.stringify, errors)", async () => {
    const ca = await CertificateAuthority.create({ trustDomain: TD });
    const state = ca.exportState();
    const keyLines = [state.x509.active.privateKeyPem, state.jwt.active.privateKeyPem].map(
      (p) => (p ?? "").split("\n")[1] as string,
    );
    for (const text of [
      String(ca),
      inspect(ca, { depth: 10, showHidden: true }),
      JSON.stringify(ca),
      inspect(ca.x509Authorities, { depth: 5 }),
      inspect(ca.jwtKeys, { depth: 5 }),
    ]) {
      assert.ok(!text.includes("PRIVATE KEY"), text);
      for (const l of keyLines) assert.ok(!text.includes(l));
    }
    assert.match(String(ca), /CertificateAuthority\(example\.org, ec-p256, sequence 1\)/);
  });

  it("JWT-SVIDs: audience checks, default TTL, validation against the bundle", async () => {
    const ca = await CertificateAuthority.create({ trustDomain: TD, jwtKeyType: "rsa-2048" });
    const j = await ca.signJwtSvid({ spiffeId: `spiffe://${TD}/j`, audience: ["a", "b"] });
    const v = await validateJwtSvid(j.token, ca.bundle(), "b");
    assert.equal(v.id.toString(), `spiffe://${TD}/j`);
    assert.equal(j.audience.length, 2);
    for (const [p, reason] of [
      [{ spiffeId: `spiffe://${TD}/j`, audience: [] }, "invalid-argument"],
      [{ spiffeId: `spiffe://${TD}/j`, audience: "" }, "invalid-argument"],
      [{ spiffeId: "spiffe://other.org/j", audience: "a" }, "wrong-trust-domain"],
      [{ spiffeId: `spiffe://${TD}/j`, audience: "a", ttlSeconds: -5 }, "invalid-ttl"],
    ] as const) {
      await assert.rejects(
        ca.signJwtSvid(p as Parameters<typeof ca.signJwtSvid>[0]),
        (e: unknown) => e instanceof CaError && e.reason === reason,
      );
    }
    assert.equal(ca.bundle().jwtBundle().findKey(j.kid)?.asymmetricKeyType, "rsa");
    assert.ok(TrustDomain.parse(TD).equals(ca.bundle().trustDomain));
  });
});
