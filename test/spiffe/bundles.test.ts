/**
 * Bundles against the shared oracle (bundles.json: X.509 bundles, JWT bundles, SPIFFE bundles,
 * bundle maps), marshal/parse round trips, edge cases the oracle does not cover, and the rule
 * that a bundle set never answers with another trust domain's bundle.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { marshalBundleMap, parseBundleMap } from "../../src/spiffe/bundle/bundlemap.js";
import { BundleError } from "../../src/spiffe/bundle/errors.js";
import { JwtBundle } from "../../src/spiffe/bundle/jwtbundle.js";
import { BundleSet, JwtBundleSet, SpiffeBundleSet, X509BundleSet } from "../../src/spiffe/bundle/set.js";
import { SpiffeBundle } from "../../src/spiffe/bundle/spiffebundle.js";
import { X509Bundle } from "../../src/spiffe/bundle/x509bundle.js";
import { SpiffeError } from "../../src/spiffe/errors.js";
import { TrustDomain } from "../../src/spiffe/id.js";
import { oracle } from "../helpers/paths.js";

interface Common {
  file?: string;
  input?: string;
  expect: "ok" | "error";
  reason?: string;
  altReasons?: string[];
  alsoAcceptable?: string;
  source: string;
}
interface X509Case extends Common {
  encoding: "pem" | "der";
  authorities?: number;
}
interface JwtCase extends Common {
  authorities?: number;
  kids?: string[];
}
interface SpiffeCase extends Common {
  x509Authorities?: number;
  jwtAuthorities?: number;
  jwtKids?: string[];
  witAuthorities?: number;
  sequence?: string | null;
  refreshHintSeconds?: number | null;
}
interface MapCase extends Common {
  trustDomains?: string[];
}
interface Oracle {
  x509Bundles: X509Case[];
  jwtBundles: JwtCase[];
  spiffeBundles: SpiffeCase[];
  bundleMaps: MapCase[];
}

const data = JSON.parse(readFileSync(oracle("spiffe", "bundles.json"), "utf8")) as Oracle;
const td = TrustDomain.parse("example.org");
const otherTd = TrustDomain.parse("example.com");

/**
 * Oracle cases where the code knowingly gives another answer, with the reason. Keep it empty:
 * `alsoAcceptable` answers are handled case by case below, not listed here.
 */
const DIFFERING: readonly { section: keyof Oracle; name: string; why: string }[] = [];

function inputOf(c: Common): Buffer {
  if (c.input !== undefined) return Buffer.from(c.input, "utf8");
  return readFileSync(oracle("spiffe", c.file as string));
}

function nameOf(c: Common, i: number): string {
  const what = c.file ?? JSON.stringify(c.input).slice(0, 70);
  return `#${i} ${what} → ${c.expect === "ok" ? "ok" : c.reason}`;
}

/** Runs `body` expecting a BundleError whose reason is the case's reason or one of its altReasons. */
function assertRejects(c: Common, body: () => unknown): void {
  const accepted = [c.reason, ...(c.altReasons ?? [])];
  assert.throws(body, (err: unknown) => {
    assert.ok(err instanceof BundleError, `expected BundleError, got ${String(err)}`);
    assert.ok(err instanceof SpiffeError);
    assert.ok(
      accepted.includes(err.reason),
      `reason ${err.reason} not in ${JSON.stringify(accepted)}: ${err.message}`,
    );
    assert.equal(err.code, `invalid-bundle:${err.reason}`);
    return true;
  });
}

function skipFor(section: keyof Oracle, c: Common): string | false {
  return DIFFERING.find((d) => d.section === section && d.name === (c.file ?? c.input))?.why ?? false;
}

function jwkOf(key: KeyObject): string {
  return JSON.stringify(key.export({ format: "jwk" }));
}

function assertSameJwtKeys(a: ReadonlyMap<string, KeyObject>, b: ReadonlyMap<string, KeyObject>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [kid, key] of a) assert.equal(jwkOf(b.get(kid) as KeyObject), jwkOf(key));
}

function assertSameCerts(a: readonly X509Certificate[], b: readonly X509Certificate[]): void {
  assert.equal(a.length, b.length);
  a.forEach((c, i) => {
    assert.ok(c.raw.equals((b[i] as X509Certificate).raw));
  });
}

describe("bundles.json: X.509 bundles", () => {
  data.x509Bundles.forEach((c, i) => {
    it(nameOf(c, i), { skip: skipFor("x509Bundles", c) }, () => {
      const bytes = inputOf(c);
      const parse = () =>
        c.encoding === "der" ? X509Bundle.fromDer(td, bytes) : X509Bundle.parse(td, bytes);
      if (c.expect === "ok") {
        const b = parse();
        assert.equal(b.authorities.length, c.authorities);
        assert.ok(b.trustDomain.equals(td));
        // parse() must find the same certificates whatever the encoding, and from a string too.
        assertSameCerts(X509Bundle.parse(td, bytes).authorities, b.authorities);
        if (c.encoding === "pem")
          assertSameCerts(X509Bundle.parse(td, bytes.toString("utf8")).authorities, b.authorities);
        // Round trips through both forms.
        assertSameCerts(X509Bundle.parse(td, b.marshal()).authorities, b.authorities);
        assertSameCerts(X509Bundle.fromDer(td, b.marshalDer()).authorities, b.authorities);
        for (const a of b.authorities) assert.ok(b.hasAuthority(new X509Certificate(a.raw)));
        return;
      }
      if (c.alsoAcceptable === "ok-empty") {
        // Either refuse with the reason, or give a bundle that trusts nothing.
        try {
          assert.equal(parse().authorities.length, 0);
          return;
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
        }
      }
      assertRejects(c, parse);
    });
  });
});

describe("bundles.json: JWT bundles", () => {
  data.jwtBundles.forEach((c, i) => {
    it(nameOf(c, i), { skip: skipFor("jwtBundles", c) }, () => {
      const bytes = inputOf(c);
      if (c.expect === "error") {
        // alsoAcceptable "ignore-entry" is allowed, but this implementation follows the SDKs and rejects.
        assertRejects(c, () => JwtBundle.parse(td, bytes));
        return;
      }
      const b = JwtBundle.parse(td, bytes);
      assert.equal(b.authorities.size, c.authorities);
      if (c.kids !== undefined) assert.deepEqual([...b.authorities.keys()], c.kids);
      for (const [kid, key] of b.authorities) {
        assert.equal(key.type, "public");
        assert.equal(b.findKey(kid), key);
        const jwk = key.export({ format: "jwk" });
        for (const priv of ["d", "p", "q", "dp", "dq", "qi"]) assert.equal(priv in jwk, false);
      }
      assert.equal(b.findKey("no-such-kid"), undefined);
      // String and Buffer inputs agree; marshal gives back the same keys; nothing private leaks.
      assertSameJwtKeys(JwtBundle.parse(td, bytes.toString("utf8")).authorities, b.authorities);
      const text = b.marshal();
      assert.doesNotMatch(text, /"(d|p|q|dp|dq|qi)":/);
      assertSameJwtKeys(JwtBundle.parse(td, text).authorities, b.authorities);
      // The marshalled form is also a SPIFFE bundle holding the same JWT authorities.
      assertSameJwtKeys(SpiffeBundle.parse(td, text).jwtAuthorities, b.authorities);
    });
  });
});

describe("bundles.json: SPIFFE bundles", () => {
  data.spiffeBundles.forEach((c, i) => {
    it(nameOf(c, i), { skip: skipFor("spiffeBundles", c) }, () => {
      const bytes = inputOf(c);
      if (c.expect === "error") {
        assertRejects(c, () => SpiffeBundle.parse(td, bytes));
        return;
      }
      const b = SpiffeBundle.parse(td, bytes);
      if (c.x509Authorities !== undefined) assert.equal(b.x509Authorities.length, c.x509Authorities);
      if (c.jwtAuthorities !== undefined) assert.equal(b.jwtAuthorities.size, c.jwtAuthorities);
      if (c.jwtKids !== undefined) assert.deepEqual([...b.jwtAuthorities.keys()], c.jwtKids);
      if (c.witAuthorities !== undefined) assert.equal(b.witAuthorities.size, c.witAuthorities);
      if ("sequence" in c) {
        // Compared as BigInt: a JS Number would turn 9007199254740993 into ...992.
        assert.equal(b.sequence, c.sequence === null ? undefined : BigInt(c.sequence as string));
      }
      if ("refreshHintSeconds" in c) {
        assert.equal(b.refreshHintSeconds, c.refreshHintSeconds === null ? undefined : c.refreshHintSeconds);
      }
      // The X.509 and JWT views hold the same authorities, for this trust domain only.
      assertSameCerts(b.x509Bundle().authorities, b.x509Authorities);
      assertSameJwtKeys(b.jwtBundle().authorities, b.jwtAuthorities);
      assert.equal(b.getX509BundleForTrustDomain(td), b.x509Bundle());
      assert.equal(b.getX509BundleForTrustDomain(otherTd), undefined);
      assert.equal(b.getJwtBundleForTrustDomain(otherTd), undefined);
      // Round trip.
      const text = b.marshal();
      const back = SpiffeBundle.parse(td, text);
      assertSameCerts(back.x509Authorities, b.x509Authorities);
      assertSameJwtKeys(back.jwtAuthorities, b.jwtAuthorities);
      assertSameJwtKeys(back.witAuthorities, b.witAuthorities);
      assert.equal(back.sequence, b.sequence);
      assert.equal(back.refreshHintSeconds, b.refreshHintSeconds);
      if (b.sequence !== undefined) assert.ok(text.includes(`"spiffe_sequence":${b.sequence}`));
    });
  });
});

describe("bundles.json: bundle maps", () => {
  data.bundleMaps.forEach((c, i) => {
    it(nameOf(c, i), { skip: skipFor("bundleMaps", c) }, () => {
      const bytes = inputOf(c);
      if (c.expect === "error") {
        assertRejects(c, () => parseBundleMap(bytes));
        return;
      }
      const m = parseBundleMap(bytes);
      assert.deepEqual([...m.keys()], c.trustDomains);
      for (const [name, b] of m) assert.equal(b.trustDomain.name, name);
      const back = parseBundleMap(marshalBundleMap(m.values()));
      assert.deepEqual([...back.keys()], [...m.keys()]);
      for (const [name, b] of back) assert.equal(b.refreshHintSeconds, m.get(name)?.refreshHintSeconds);
    });
  });

  it("lists no differing case", () => {
    assert.equal(DIFFERING.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Beyond the oracle.

const certsPem = readFileSync(
  oracle("spiffe", "vectors/go-spiffe/bundle/x509bundle/testdata/certs.pem"),
  "utf8",
);
const twoCerts = X509Bundle.parse(td, certsPem).authorities;
const certA = twoCerts[0] as X509Certificate;
const certB = twoCerts[1] as X509Certificate;
const keyPem = readFileSync(oracle("spiffe", "vectors/go-spiffe/bundle/x509bundle/testdata/key.pem"), "utf8");
const spiffeValid1 = readFileSync(
  oracle("spiffe", "vectors/go-spiffe/bundle/spiffebundle/testdata/spiffebundle_valid_1.json"),
  "utf8",
);

function reasonOf(body: () => unknown): string {
  try {
    body();
  } catch (e) {
    if (e instanceof BundleError) return e.reason;
    throw e;
  }
  return "ok";
}

function ecKey(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
}

describe("X.509 bundle edge cases", () => {
  const der = Buffer.concat([certA.raw, certB.raw]);

  it("concatenated DER is cut at each certificate; leftovers are errors", () => {
    assert.equal(X509Bundle.fromDer(td, der).authorities.length, 2);
    assert.equal(X509Bundle.fromDer(td, Buffer.alloc(0)).authorities.length, 0);
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, Buffer.concat([der, Buffer.from([0])]))),
      "corrupt",
    );
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, Buffer.concat([der, Buffer.from([0x30, 0x00])]))),
      "corrupt",
    );
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, der.subarray(0, der.length - 1))),
      "corrupt",
    );
    // BER indefinite length and non-minimal lengths are not DER.
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, Buffer.from([0x30, 0x80, 0, 0]))),
      "corrupt",
    );
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, Buffer.from([0x30, 0x81, 0x05, 1, 2, 3, 4, 5]))),
      "corrupt",
    );
    assert.equal(
      reasonOf(() => X509Bundle.fromDer(td, Buffer.from([0x30, 0x82, 0x00, 0x85]))),
      "corrupt",
    );
  });

  it("PEM: only CERTIFICATE blocks, complete and exact", () => {
    assert.equal(
      reasonOf(() => X509Bundle.parse(td, certsPem + keyPem)),
      "not-certificate",
    );
    assert.equal(
      reasonOf(() => X509Bundle.parse(td, keyPem)),
      "no-certificates",
    );
    assert.equal(
      reasonOf(() => X509Bundle.parse(td, certsPem.replace(/-----END CERTIFICATE-----\s*$/, ""))),
      "corrupt",
    );
    assert.equal(
      reasonOf(() => X509Bundle.parse(td, certsPem.replace("MII", "M!I"))),
      "corrupt",
    );
    // A certificate followed by extra bytes inside one block.
    const padded = Buffer.concat([certA.raw, Buffer.from([0, 0, 0])]).toString("base64");
    assert.equal(
      reasonOf(() =>
        X509Bundle.parse(td, `-----BEGIN CERTIFICATE-----\n${padded}\n-----END CERTIFICATE-----\n`),
      ),
      "corrupt",
    );
    // Explanatory text between blocks is allowed (RFC 7468 §5.2), as in CA bundle files.
    assert.equal(
      X509Bundle.parse(td, `# Root A\n${certA.toString()}\nsome note\n${certB.toString()}`).authorities
        .length,
      2,
    );
    assert.equal(X509Bundle.parse(td, "\n  \n").authorities.length, 0);
  });

  it("duplicates collapse; hasAuthority compares DER", () => {
    const b = X509Bundle.fromCertificates(td, [certA, certA, certB]);
    assert.equal(b.authorities.length, 2);
    assert.ok(b.hasAuthority(certB));
    assert.equal(X509Bundle.fromCertificates(td, [certA]).hasAuthority(certB), false);
    assert.ok(Object.isFrozen(b.authorities));
  });

  it("a bundle is a source for its own trust domain only", () => {
    const b = X509Bundle.fromCertificates(td, [certA]);
    assert.equal(b.getX509BundleForTrustDomain(td), b);
    assert.equal(b.getX509BundleForTrustDomain(otherTd), undefined);
  });
});

describe("JWT bundle edge cases", () => {
  const ec = {
    kty: "EC",
    crv: "P-256",
    x: "ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k",
    y: "tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM",
  };
  const jwks = (...keys: object[]) => JSON.stringify({ keys });

  it("refuses ambiguous or unusable keys", () => {
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ ...ec, kid: "a" }, { ...ec, kid: "a" }))),
      "duplicate-kid",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ ...ec, kid: "" }))),
      "missing-kid",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ kty: "oct", k: "c2VjcmV0", kid: "h" }))),
      "unsupported-key-type",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ ...ec, crv: "P-192", kid: "a" }))),
      "unsupported-key-type",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ ...ec, y: ec.x, kid: "a" }))),
      "invalid-key",
    );
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "jwk" });
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, jwks({ ...small, kid: "r" }))),
      "invalid-key",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, `{"keys":[{"kid":"a"}],"keys":[]}`)),
      "duplicate-member",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, `{"keys":{}}`)),
      "not-jwks",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, `{"keys":[1]}`)),
      "not-jwks",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, Buffer.from([0x7b, 0xff, 0x7d]))),
      "not-json",
    );
    assert.equal(
      reasonOf(() => JwtBundle.parse(td, "[".repeat(10000))),
      "not-json",
    );
  });

  it("skips entries meant for other SVID types", () => {
    const b = JwtBundle.parse(
      td,
      jwks({ ...ec, use: "x509-svid" }, { ...ec, use: "wit-svid", kid: "w" }, { ...ec, kid: "j" }),
    );
    assert.deepEqual([...b.authorities.keys()], ["j"]);
  });

  it("fromAuthorities applies the same rules", () => {
    const k = ecKey();
    assert.equal(JwtBundle.fromAuthorities(td, [["k", k]]).findKey("k"), k);
    assert.equal(
      reasonOf(() => JwtBundle.fromAuthorities(td, [["", k]])),
      "missing-kid",
    );
    const priv = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    assert.equal(
      reasonOf(() => JwtBundle.fromAuthorities(td, [["k", priv]])),
      "invalid-key",
    );
    const ed = generateKeyPairSync("ed25519").publicKey;
    assert.equal(
      reasonOf(() => JwtBundle.fromAuthorities(td, [["k", ed]])),
      "unsupported-key-type",
    );
  });
});

describe("SPIFFE bundle edge cases", () => {
  const withMembers = (members: string) => `{"keys":[]${members}}`;

  it("spiffe_sequence is an unsigned 64-bit integer, kept exactly", () => {
    assert.equal(SpiffeBundle.parse(td, withMembers(`,"spiffe_sequence":0`)).sequence, 0n);
    for (const bad of ["-1", "1.0", "1e3", "18446744073709551616", '"1"', "true"]) {
      assert.equal(
        reasonOf(() => SpiffeBundle.parse(td, withMembers(`,"spiffe_sequence":${bad}`))),
        "invalid-sequence",
        bad,
      );
    }
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => {
        const b = SpiffeBundle.parse(td, withMembers(`,"spiffe_sequence":${n}`));
        assert.equal(b.sequence, n);
        assert.equal(SpiffeBundle.parse(td, b.marshal()).sequence, n);
        assert.equal(SpiffeBundle.create(td, { sequence: n }).sequence, n);
      }),
      { numRuns: 300 },
    );
  });

  it("spiffe_refresh_hint is a non-negative integer", () => {
    assert.equal(SpiffeBundle.parse(td, withMembers(`,"spiffe_refresh_hint":0`)).refreshHintSeconds, 0);
    for (const bad of ["-5", "1.5", '"60"', "9007199254740993"]) {
      assert.equal(
        reasonOf(() => SpiffeBundle.parse(td, withMembers(`,"spiffe_refresh_hint":${bad}`))),
        "invalid-refresh-hint",
        bad,
      );
    }
  });

  it("x5c[0] must match the JWK's own key members (RFC 7517 §4.7)", () => {
    const doc = JSON.parse(spiffeValid1) as { keys: Record<string, unknown>[] };
    const x509Entry = doc.keys[0] as Record<string, unknown>;
    x509Entry.x = "ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k";
    assert.equal(
      reasonOf(() => SpiffeBundle.parse(td, JSON.stringify(doc))),
      "invalid-key",
    );
    x509Entry.x5c = "not-an-array";
    assert.equal(
      reasonOf(() => SpiffeBundle.parse(td, JSON.stringify(doc))),
      "invalid-x5c",
    );
    x509Entry.x5c = ["bm90IGEgY2VydGlmaWNhdGU="];
    assert.equal(
      reasonOf(() => SpiffeBundle.parse(td, JSON.stringify(doc))),
      "corrupt",
    );
  });

  it("refuses duplicate members and duplicate kids", () => {
    assert.equal(
      reasonOf(() => SpiffeBundle.parse(td, `{"keys":[],"keys":[]}`)),
      "duplicate-member",
    );
    const entry = `{"use":"jwt-svid","kty":"EC","kid":"a","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"}`;
    assert.equal(
      reasonOf(() => SpiffeBundle.parse(td, `{"keys":[${entry},${entry}]}`)),
      "duplicate-kid",
    );
  });

  it("create + marshal + parse keeps everything, WIT keys apart from JWT keys", () => {
    const jwt = ecKey();
    const wit = ecKey();
    const b = SpiffeBundle.create(td, {
      x509Authorities: [certA, certB],
      jwtAuthorities: [["j1", jwt]],
      witAuthorities: new Map([["w1", wit]]),
      sequence: 18446744073709551615n,
      refreshHintSeconds: 300,
    });
    const back = SpiffeBundle.parse(td, b.marshal());
    assertSameCerts(back.x509Authorities, [certA, certB]);
    assert.deepEqual([...back.jwtAuthorities.keys()], ["j1"]);
    assert.deepEqual([...back.witAuthorities.keys()], ["w1"]);
    assert.equal(back.jwtBundle().findKey("w1"), undefined);
    assert.equal(back.sequence, 18446744073709551615n);
    assert.equal(back.refreshHintSeconds, 300);
    assert.equal(
      reasonOf(() => SpiffeBundle.create(td, { sequence: -1n })),
      "invalid-sequence",
    );
  });
});

describe("bundle map edge cases", () => {
  it("keys are bare trust domain names", () => {
    assert.equal(
      reasonOf(() => parseBundleMap(`{"trust_domains":{"spiffe://example.org":{"keys":[]}}}`)),
      "invalid-trust-domain",
    );
    assert.equal(
      reasonOf(() => parseBundleMap(`{"trust_domains":{"bad domain":{"keys":[]}}}`)),
      "invalid-trust-domain",
    );
    assert.equal(
      reasonOf(() => parseBundleMap(`{"trust_domains":[]}`)),
      "not-bundle-map",
    );
    assert.equal(
      reasonOf(() => parseBundleMap(`[]`)),
      "not-bundle-map",
    );
  });

  it("an entry's error names the trust domain", () => {
    assert.throws(
      () => parseBundleMap(`{"trust_domains":{"a.org":{"keys":[]},"b.org":{}}}`),
      (e: unknown) =>
        e instanceof BundleError && e.reason === "keys-missing" && e.message.includes('"b.org"'),
    );
  });

  it("a duplicate member inside an entry is not a duplicate trust domain", () => {
    assert.equal(
      reasonOf(() => parseBundleMap(`{"trust_domains":{"a.org":{"keys":[],"keys":[]}}}`)),
      "duplicate-member",
    );
  });

  it("marshalBundleMap refuses two bundles of one trust domain", () => {
    const a = SpiffeBundle.create(td);
    assert.equal(
      reasonOf(() => marshalBundleMap([a, SpiffeBundle.create(TrustDomain.parse("EXAMPLE.org"))])),
      "duplicate-trust-domain",
    );
  });
});

describe("bundle sets", () => {
  it("add replaces the bundle of that trust domain, never merges", () => {
    const set = new X509BundleSet();
    set.add(X509Bundle.fromCertificates(td, [certA]));
    set.add(X509Bundle.fromCertificates(td, [certB]));
    assert.equal(set.size, 1);
    const got = set.getX509BundleForTrustDomain(td);
    assert.ok(got?.hasAuthority(certB));
    assert.equal(got?.hasAuthority(certA), false);
    assert.equal(set.remove(td), true);
    assert.equal(set.remove(td), false);
    assert.equal(set.has(td), false);
  });

  it("never returns another trust domain's bundle", () => {
    const name = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/);
    fc.assert(
      fc.property(fc.uniqueArray(name, { maxLength: 8 }), name, (names, probe) => {
        const set = new JwtBundleSet(names.map((n) => JwtBundle.fromAuthorities(TrustDomain.parse(n), [])));
        assert.equal(set.size, names.length);
        assert.deepEqual(
          set.trustDomains().map((t) => t.name),
          names,
        );
        for (const n of [...names, probe]) {
          const t = TrustDomain.parse(n);
          const b = set.getJwtBundleForTrustDomain(t);
          if (names.includes(n)) assert.ok(b?.trustDomain.equals(t));
          else assert.equal(b, undefined);
        }
        for (const b of set) assert.ok(names.includes(b.trustDomain.name));
      }),
      { numRuns: 300 },
    );
  });

  it("lookups go by trust domain, case-insensitively, and nowhere else", () => {
    const set = new BundleSet<X509Bundle>([X509Bundle.fromCertificates(td, [certA])]);
    assert.ok(set.get(TrustDomain.parse("Example.ORG")));
    assert.equal(set.get(TrustDomain.parse("example.org.evil")), undefined);
    assert.equal(set.get(TrustDomain.parse("org")), undefined);
    assert.equal(set.bundles().length, 1);
  });

  it("a SPIFFE bundle set hands out the X.509 or JWT part of the right trust domain", () => {
    const k = ecKey();
    const set = new SpiffeBundleSet([
      SpiffeBundle.create(td, { x509Authorities: [certA], jwtAuthorities: [["k", k]] }),
      SpiffeBundle.create(otherTd, { x509Authorities: [certB] }),
    ]);
    assert.ok(set.getX509BundleForTrustDomain(td)?.hasAuthority(certA));
    assert.equal(set.getX509BundleForTrustDomain(td)?.hasAuthority(certB), false);
    assert.equal(set.getJwtBundleForTrustDomain(td)?.findKey("k"), k);
    assert.equal(set.getJwtBundleForTrustDomain(otherTd)?.findKey("k"), undefined);
    assert.equal(set.getJwtBundleForTrustDomain(TrustDomain.parse("third.org")), undefined);
  });
});
