/**
 * JWT-SVIDs against the SPIFFE oracle (../shared/oracles/spiffe/jwt-svid.json): its rule data,
 * its 46 run-time recipes (tokens built by hand, exactly the header and claims given), sign →
 * validate round trips for every algorithm and key type, interop with jose, secrecy of the
 * token, and a fast-check round-trip property.
 */
import assert from "node:assert/strict";
import { constants, createHmac, sign as cryptoSign, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import fc from "fast-check";
import * as jose from "jose";
import { JwtBundle, type JwtBundleSource } from "../../src/spiffe/bundle/jwtbundle.js";
import { SpiffeId, TrustDomain } from "../../src/spiffe/id.js";
import {
  JWT_SVID_ALGORITHMS,
  JwtSvid,
  type JwtSvidAlgorithm,
  type JwtSvidBundleSource,
  JwtSvidError,
  type JwtSvidErrorReason,
  parseJwtSvidInsecure,
  signJwtSvid,
  validateJwtSvid,
} from "../../src/spiffe/jwtsvid.js";
import { oracle } from "../helpers/paths.js";

// ---------------------------------------------------------------------------------------------
// Oracle data

interface Recipe {
  case: string;
  mode: "validate" | "insecure";
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  signWith?: string;
  token?: string;
  serialization?: "json";
  audience: string[] | null;
  expect: "ok" | "error" | "leeway-dependent";
  reason?: JwtSvidErrorReason;
  altReasons?: JwtSvidErrorReason[];
  expectByLeewaySeconds?: Record<string, "ok" | "error">;
  expectSvid?: { spiffeId?: string; audience?: string[]; expiry?: string };
}

interface JwtSvidOracle {
  allowedAlgs: string[];
  rejectedAlgsExamples: string[];
  algKeyTypes: Record<string, string>;
  header: {
    allowedMembers: string[];
    typ: { required: boolean; allowedValues: string[]; caseSensitive: boolean };
  };
  claims: { required: string[] };
  serialization: string;
  fixtures: {
    trustDomainBundles: Record<string, Record<string, string>>;
    unlistedKeys: Record<string, string>;
  };
  literalTokens: Record<string, string>;
  recipes: Recipe[];
}

const O = JSON.parse(readFileSync(oracle("spiffe", "jwt-svid.json"), "utf8")) as JwtSvidOracle;

interface IdCase {
  kind: string;
  input: string;
  valid: boolean;
  normalized?: string;
}
const ID_CASES = (JSON.parse(readFileSync(oracle("spiffe", "spiffe-id.json"), "utf8")) as IdCase[]).filter(
  (c) => c.kind === "id",
);

/**
 * Oracle cases where this implementation deliberately answers differently, with the reason.
 * A listed case is skipped; an unknown name here fails the suite. Empty: every case passes.
 */
const KNOWN_DIFFERENCES: Record<string, string> = {};

/** The leeway used for recipes that are not leeway-dependent (the library's default). */
const DEFAULT_LEEWAY = 0;

// ---------------------------------------------------------------------------------------------
// Keys and bundles (fixtures step 1)

function generate(kind: string): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (kind) {
    case "ec-p256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" });
    case "ec-p384":
      return generateKeyPairSync("ec", { namedCurve: "P-384" });
    case "ec-p521":
      return generateKeyPairSync("ec", { namedCurve: "P-521" });
    case "rsa-2048":
      return generateKeyPairSync("rsa", { modulusLength: 2048 });
    case "rsa-1024":
      return generateKeyPairSync("rsa", { modulusLength: 1024 });
    case "rsa-pss-2048":
      return generateKeyPairSync("rsa-pss", { modulusLength: 2048 });
    case "ed25519":
      return generateKeyPairSync("ed25519");
    default:
      throw new Error(`unknown key kind ${kind}`);
  }
}

/** Key kind named in the oracle ("ec-p384 key that is in no bundle" → "ec-p384"). */
const kindOf = (text: string): string => text.split(" ")[0] as string;

const KEYS = new Map<string, { privateKey: KeyObject; publicKey: KeyObject; kind: string }>();
for (const keys of Object.values(O.fixtures.trustDomainBundles)) {
  for (const [name, kind] of Object.entries(keys)) KEYS.set(name, { ...generate(kind), kind });
}
for (const [name, text] of Object.entries(O.fixtures.unlistedKeys)) {
  KEYS.set(name, { ...generate(kindOf(text)), kind: kindOf(text) });
}
const ED25519 = generate("ed25519");

function key(name: string): { privateKey: KeyObject; publicKey: KeyObject; kind: string } {
  const k = KEYS.get(name);
  if (k === undefined) throw new Error(`no fixture key ${name}`);
  return k;
}

/** A minimal JWT bundle: what bundle/jwtbundle.ts's JwtBundle offers validation. */
class MapBundle {
  constructor(
    readonly trustDomain: TrustDomain,
    readonly authorities: ReadonlyMap<string, KeyObject>,
  ) {}
  findKey(kid: string): KeyObject | undefined {
    return this.authorities.get(kid);
  }
}

/** A JwtBundleSource over a Map, recording which trust domains were asked for. */
class MapSource implements JwtSvidBundleSource {
  readonly asked: string[] = [];
  readonly bundles = new Map<string, MapBundle>();
  constructor(domains: Record<string, Record<string, KeyObject>>) {
    for (const [td, keys] of Object.entries(domains)) {
      this.bundles.set(td, new MapBundle(TrustDomain.parse(td), new Map(Object.entries(keys))));
    }
  }
  getJwtBundleForTrustDomain(td: TrustDomain): MapBundle | undefined {
    this.asked.push(td.name);
    return this.bundles.get(td.name);
  }
}

function fixtureDomains(): Record<string, Record<string, KeyObject>> {
  const out: Record<string, Record<string, KeyObject>> = {};
  for (const [td, keys] of Object.entries(O.fixtures.trustDomainBundles)) {
    out[td] = Object.fromEntries(Object.keys(keys).map((name) => [name, key(name).publicKey]));
  }
  return out;
}
const SOURCE = new MapSource(fixtureDomains());

// ---------------------------------------------------------------------------------------------
// Hand-built tokens (steps 2 and 3)

/** Validation time of every recipe, whole seconds. */
const NOW_S = Math.floor(Date.now() / 1000);
const AT = new Date(NOW_S * 1000);

const TIME = /^now(?:([+-])(\d+)s)?$/;
function resolveTimes(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims)) {
    const m = typeof v === "string" ? TIME.exec(v) : null;
    out[k] = m ? NOW_S + (m[1] === "-" ? -1 : 1) * Number(m[2] ?? 0) : v;
  }
  return out;
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64url");

/** A JWS signature of `data` for `alg` with node:crypto (ES* as raw r||s). */
function rawSign(alg: string, data: Buffer, privateKey: KeyObject): Buffer {
  const hash = `sha${alg.slice(2)}`;
  switch (alg.slice(0, 2)) {
    case "ES":
      return cryptoSign(hash, data, { key: privateKey, dsaEncoding: "ieee-p1363" });
    case "RS":
      return cryptoSign(hash, data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    case "PS":
      return cryptoSign(hash, data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: Number(alg.slice(2)) / 8,
      });
    default:
      throw new Error(`test signer has no ${alg}`);
  }
}

interface Built {
  token: string;
  claims: Record<string, unknown>;
  signature: string;
}

/** Emits exactly `header` and `claims` (absent = absent) and signs as `signWith` says. */
function build(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  signWith: string,
  serialization?: "json",
): Built {
  const resolved = resolveTimes(claims);
  const h = b64(JSON.stringify(header));
  const p = b64(JSON.stringify(resolved));
  const input = Buffer.from(`${h}.${p}`, "ascii");
  let sig: Buffer;
  if (signWith === "none") sig = Buffer.alloc(0);
  else if (signWith === "ed25519") sig = cryptoSign(null, input, ED25519.privateKey);
  else if (signWith.startsWith("hs256:")) {
    const pem = key("authority2").publicKey.export({ type: "spki", format: "pem" }) as string;
    sig = createHmac("sha256", pem).update(input).digest();
  } else sig = rawSign(String(header.alg), input, key(signWith).privateKey);
  const s = b64(sig);
  const token =
    serialization === "json" ? JSON.stringify({ protected: h, payload: p, signature: s }) : `${h}.${p}.${s}`;
  return { token, claims: resolved, signature: s };
}

// ---------------------------------------------------------------------------------------------
// Running and asserting (steps 4 and 5)

const GOOD_HEADER = { alg: "ES384", typ: "JWT", kid: "authority1" };
const GOOD_CLAIMS = {
  sub: "spiffe://trustdomain/host",
  iss: "issuer",
  aud: ["audience"],
  exp: "now+60s",
  iat: "now",
};

type Mode = "validate" | "insecure";

async function run(
  mode: Mode,
  token: string,
  audience: readonly string[] | string,
  leewaySeconds = DEFAULT_LEEWAY,
  source: JwtSvidBundleSource = SOURCE,
): Promise<JwtSvid> {
  const options = { at: AT, leewaySeconds };
  return mode === "validate"
    ? validateJwtSvid(token, source, audience, options)
    : parseJwtSvidInsecure(token, audience, options);
}

/** Asserts a JwtSvidError with `reason` whose message holds neither the token nor its signature. */
async function rejectsWith(
  p: Promise<unknown>,
  reasons: JwtSvidErrorReason | readonly JwtSvidErrorReason[],
  token?: string,
): Promise<JwtSvidError> {
  const allowed = typeof reasons === "string" ? [reasons] : reasons;
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof JwtSvidError, `expected a JwtSvidError, got ${String(caught)}`);
  assert.ok(
    allowed.includes(caught.reason),
    `expected reason ${allowed.join("|")}, got ${caught.reason}: ${caught.message}`,
  );
  assert.equal(caught.code, `jwt-svid:${caught.reason}`);
  assert.ok(caught.message.length > 0);
  if (token !== undefined) assertNoSecret(caught, token);
  return caught;
}

function assertNoSecret(e: Error, token: string): void {
  const parts = token.split(".");
  const secrets = [token, ...(parts.length === 3 ? [parts[2] as string] : [])].filter((x) => x.length >= 8);
  for (const text of [e.message, e.stack ?? "", String(e), inspect(e, { showHidden: true, depth: 5 })]) {
    for (const s of secrets) assert.ok(!text.includes(s), "an error shows the token or its signature");
  }
}

function tokenPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8"));
}
function tokenHeader(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8"));
}

/** Builds a token from GOOD_* with changes (`undefined` removes a member). */
function variant(
  headerChanges: Record<string, unknown> = {},
  claimChanges: Record<string, unknown> = {},
  signWith = "authority1",
): Built {
  const strip = (o: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  return build(
    strip({ ...GOOD_HEADER, ...headerChanges }),
    strip({ ...GOOD_CLAIMS, ...claimChanges }),
    signWith,
  );
}

const MODES: Mode[] = ["validate", "insecure"];

// ---------------------------------------------------------------------------------------------
// The recipes

describe("jwt-svid.json recipes", () => {
  it("has the 46 recipes, and KNOWN_DIFFERENCES names only real ones", () => {
    assert.equal(O.recipes.length, 46);
    const names = new Set(O.recipes.map((r) => r.case));
    assert.equal(names.size, O.recipes.length, "recipe names are unique");
    for (const name of Object.keys(KNOWN_DIFFERENCES)) assert.ok(names.has(name), name);
  });

  for (const r of O.recipes) {
    const expectations: [string, number, "ok" | "error"][] =
      r.expect === "leeway-dependent"
        ? Object.entries(r.expectByLeewaySeconds ?? {}).map(
            ([l, e]) => [`${r.case} [leeway ${l} s]`, Number(l), e] as [string, number, "ok" | "error"],
          )
        : [[r.case, DEFAULT_LEEWAY, r.expect]];
    for (const [name, leeway, expect] of expectations) {
      const skip = KNOWN_DIFFERENCES[r.case];
      it(name.startsWith(`${r.mode}:`) ? name : `${r.mode}: ${name}`, { skip }, async () => {
        const built =
          r.token !== undefined
            ? { token: r.token, claims: undefined, signature: "" }
            : build(r.header ?? {}, r.claims ?? {}, r.signWith ?? "none", r.serialization);
        const p = run(r.mode, built.token, r.audience ?? [], leeway);
        if (expect === "error") {
          const reasons = r.reason === undefined ? [] : [r.reason, ...(r.altReasons ?? [])];
          if (reasons.length === 0) {
            // Leeway-dependent errors give no reason: the exp check is the only rule that applies.
            await rejectsWith(p, "expired", built.token);
          } else await rejectsWith(p, reasons, built.token);
          return;
        }
        const svid = await p;
        assert.ok(svid instanceof JwtSvid);
        assert.equal(svid.marshal(), built.token);
        const claims = built.claims ?? {};
        assert.deepEqual(svid.claims, claims);
        assert.equal(svid.id.toString(), SpiffeId.parse(String(claims.sub)).toString());
        assert.deepEqual(svid.audience, typeof claims.aud === "string" ? [claims.aud] : claims.aud);
        assert.equal(svid.expiry.getTime(), Number(claims.exp) * 1000);
        assert.equal(svid.hint, undefined);
        const want = r.expectSvid;
        if (want?.spiffeId !== undefined) assert.equal(svid.id.toString(), want.spiffeId);
        if (want?.audience !== undefined) assert.deepEqual(svid.audience, want.audience);
        if (want?.expiry === "exp claim") assert.equal(svid.expiry.getTime(), Number(claims.exp) * 1000);
      });
    }
  }
});

describe("jwt-svid.json literalTokens", () => {
  for (const [name, token] of Object.entries(O.literalTokens)) {
    for (const mode of MODES) {
      it(`${mode}: ${name} (HS256) is refused for its alg`, async () => {
        await rejectsWith(run(mode, token, ["audience"]), "alg-not-allowed", token);
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Rule data: algorithms

/** The fixture key for each allowed alg, from algKeyTypes. */
function keyNameFor(alg: string): string {
  const type = O.algKeyTypes[alg] ?? O.algKeyTypes[`${alg.slice(0, 2)}*`];
  const byType: Record<string, string> = {
    RSA: "authority2",
    "EC P-256": "authority4",
    "EC P-384": "authority1",
    "EC P-521": "authority3",
  };
  const name = type === undefined ? undefined : byType[type];
  if (name === undefined) throw new Error(`no fixture key for ${alg} (${type})`);
  return name;
}

describe("jwt-svid.json allowedAlgs and algKeyTypes", () => {
  it("JWT_SVID_ALGORITHMS is exactly allowedAlgs", () => {
    assert.deepEqual([...JWT_SVID_ALGORITHMS], O.allowedAlgs);
    assert.ok(Object.isFrozen(JWT_SVID_ALGORITHMS));
  });

  for (const alg of O.allowedAlgs) {
    const name = keyNameFor(alg);
    it(`${alg} verifies with a ${key(name).kind} key, by kid and without kid`, async () => {
      const withKid = variant({ alg, kid: name }, {}, name);
      const svid = await run("validate", withKid.token, "audience");
      assert.equal(svid.id.toString(), "spiffe://trustdomain/host");
      const noKid = variant({ alg, kid: undefined }, {}, name);
      await run("validate", noKid.token, "audience");
    });

    it(`${alg}: every key whose type does not fit is refused (signature-invalid)`, async () => {
      let wrong = 0;
      for (const other of ["authority1", "authority2", "authority3", "authority4"]) {
        if (key(other).kind === key(name).kind) continue;
        wrong++;
        // The right key signed, but kid names a key of another type: it must not be used.
        const t = variant({ alg, kid: other }, {}, name);
        await rejectsWith(run("validate", t.token, "audience"), "signature-invalid", t.token);
      }
      assert.ok(wrong >= 3);
      // A different key of the same type, under the right kid, fails too.
      const impostor = generate(key(name).kind);
      const h = b64(JSON.stringify({ alg, kid: name }));
      const p = b64(JSON.stringify(resolveTimes(GOOD_CLAIMS)));
      const token = `${h}.${p}.${b64(rawSign(alg, Buffer.from(`${h}.${p}`), impostor.privateKey))}`;
      await rejectsWith(run("validate", token, "audience"), "signature-invalid", token);
    });
  }

  it("RS* and PS* refuse an RSA key under 2048 bits (RFC 7518 §3.3, §3.5)", async () => {
    const small = generate("rsa-1024");
    const source = new MapSource({ trustdomain: { small: small.publicKey } });
    for (const alg of ["RS256", "PS256"]) {
      const h = b64(JSON.stringify({ alg, kid: "small" }));
      const p = b64(JSON.stringify(resolveTimes(GOOD_CLAIMS)));
      const token = `${h}.${p}.${b64(rawSign(alg, Buffer.from(`${h}.${p}`), small.privateKey))}`;
      await rejectsWith(run("validate", token, "audience", 0, source), "signature-invalid", token);
    }
  });

  for (const alg of O.rejectedAlgsExamples) {
    for (const mode of MODES) {
      it(`${mode}: rejected alg ${JSON.stringify(alg)}`, async () => {
        const t = variant({ alg }, {}, "none");
        // A real-looking signature so that only alg can be the reason.
        const token = `${t.token}${b64(Buffer.alloc(96, 7))}`;
        await rejectsWith(run(mode, token, "audience"), "alg-not-allowed", token);
      });
    }
  }

  const derivedBadAlgs: [string, unknown][] = [
    ["lowercase es256", "es256"],
    ["trailing space", "RS256 "],
    ["number", 256],
    ["null", null],
    ["array", ["ES256"]],
    ["RSA1_5 (JWE)", "RSA1_5"],
  ];
  for (const [label, alg] of derivedBadAlgs) {
    it(`derived: alg ${label} is not allowed`, async () => {
      const t = variant({ alg }, {}, "none");
      await rejectsWith(run("validate", `${t.token}AAAA`, "audience"), "alg-not-allowed");
    });
  }

  it("derived: a header without alg is refused as alg-not-allowed", async () => {
    const t = variant({ alg: undefined }, {}, "none");
    await rejectsWith(run("validate", `${t.token}AAAA`, "audience"), "alg-not-allowed");
  });

  it("alg is checked before anything else (extra headers, bad typ, garbage payload)", async () => {
    const h = b64(JSON.stringify({ alg: "HS256", jku: "https://x", typ: "nope" }));
    for (const mode of MODES) {
      await rejectsWith(run(mode, `${h}.%%%.!!`, "audience"), "alg-not-allowed");
      await rejectsWith(run(mode, `${h}.e30.AAAA`, []), "alg-not-allowed");
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rule data: header

describe("jwt-svid.json header", () => {
  it(`allowedMembers ${JSON.stringify(O.header.allowedMembers)}: all of them, and alg alone, are accepted`, async () => {
    assert.deepEqual([...O.header.allowedMembers].sort(), ["alg", "kid", "typ"]);
    await run("validate", variant().token, "audience");
    await run("validate", variant({ typ: undefined, kid: undefined }).token, "audience");
  });

  const others = [
    "jku",
    "jwk",
    "x5u",
    "x5c",
    "x5t",
    "x5t#S256",
    "cty",
    "crit",
    "b64",
    "zip",
    "enc",
    "epk",
    "foo",
  ];
  for (const member of others) {
    for (const mode of MODES) {
      it(`${mode}: otherMembers: header ${member} is refused`, async () => {
        const t = variant({ [member]: member === "crit" ? ["exp"] : "x" });
        await rejectsWith(run(mode, t.token, "audience"), "header-not-allowed", t.token);
      });
    }
  }

  for (const typ of O.header.typ.allowedValues) {
    it(`typ ${typ} is accepted`, async () => {
      await run("validate", variant({ typ }).token, "audience");
    });
  }
  it(`typ required: ${O.header.typ.required} (absent is accepted)`, async () => {
    assert.equal(O.header.typ.required, false);
    await run("validate", variant({ typ: undefined }).token, "audience");
  });
  const badTyps: unknown[] = O.header.typ.caseSensitive
    ? ["jwt", "jose", "Jwt", "JWT ", "", "at+jwt", 1, null]
    : [];
  for (const typ of badTyps) {
    for (const mode of MODES) {
      it(`${mode}: typ ${JSON.stringify(typ)} is refused (case-sensitive)`, async () => {
        const t = variant({ typ });
        await rejectsWith(run(mode, t.token, "audience"), "typ-invalid", t.token);
      });
    }
  }

  it("kid (thisOracle): without kid, the matching key is found among several of its bundle", async () => {
    // authority4 (P-256) is the last key of trustdomain's bundle; ES256 fits only it.
    await run("validate", variant({ alg: "ES256", kid: undefined }, {}, "authority4").token, "audience");
    // Two keys of the same type: the one that verifies wins, whatever its place.
    const extra = generate("ec-p384");
    const source = new MapSource({
      trustdomain: { a: extra.publicKey, b: key("authority1").publicKey, c: generate("ec-p384").publicKey },
    });
    await run("validate", variant({ kid: undefined }).token, "audience", 0, source);
  });

  it("kid (thisOracle): without kid, a key of another trust domain is never tried", async () => {
    const t = variant({ alg: "ES256", kid: undefined }, {}, "other1");
    await rejectsWith(run("validate", t.token, "audience"), "signature-invalid", t.token);
    // ... but the same token with an other.domain sub is fine.
    const ok = variant({ alg: "ES256", kid: undefined }, { sub: "spiffe://other.domain/w" }, "other1");
    await run("validate", ok.token, "audience");
  });

  it("kid (thisOracle): without kid, an unlisted key or an empty bundle is refused", async () => {
    const t = variant({ kid: undefined }, {}, "unlisted-ec-p384");
    await rejectsWith(run("validate", t.token, "audience"), "signature-invalid", t.token);
    const empty = new MapSource({ trustdomain: {} });
    const u = variant({ kid: undefined });
    await rejectsWith(run("validate", u.token, "audience", 0, empty), "signature-invalid", u.token);
    const k = variant();
    await rejectsWith(run("validate", k.token, "audience", 0, empty), "kid-not-found", k.token);
  });

  it("kid: empty is not found; a non-string kid is malformed", async () => {
    const t = variant({ kid: "" });
    await rejectsWith(run("validate", t.token, "audience"), "kid-not-found", t.token);
    for (const kid of [1, null, ["authority1"]]) {
      const u = variant({ kid });
      await rejectsWith(run("validate", u.token, "audience"), "malformed", u.token);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rule data: claims

describe("jwt-svid.json claims", () => {
  for (const claim of O.claims.required) {
    for (const mode of MODES) {
      it(`${mode}: required claim ${claim} missing`, async () => {
        const t = variant({}, { [claim]: undefined });
        await rejectsWith(run(mode, t.token, "audience"), `missing-${claim}` as JwtSvidErrorReason, t.token);
      });
    }
  }

  it("sub: every kind=id case of spiffe-id.json (insecure mode)", async () => {
    let n = 0;
    for (const c of ID_CASES) {
      const t = variant({}, { sub: c.input }, "unlisted-ec-p384");
      if (c.valid) {
        const svid = await run("insecure", t.token, "audience");
        assert.equal(svid.id.toString(), c.normalized ?? c.input, c.input);
      } else {
        await rejectsWith(
          run("insecure", t.token, "audience"),
          c.input === "" ? "missing-sub" : "invalid-sub",
        );
      }
      n++;
    }
    assert.ok(n > 500);
  });

  it("sub: a sub that is not a string is invalid", async () => {
    for (const sub of [42, null, ["spiffe://trustdomain/host"], { id: "spiffe://trustdomain/host" }]) {
      const t = variant({}, { sub });
      await rejectsWith(run("validate", t.token, "audience"), "invalid-sub", t.token);
    }
  });

  it("sub: its trust domain, and only that one, selects the bundle", async () => {
    const source = new MapSource(fixtureDomains());
    await run("validate", variant({}, { sub: "spiffe://TrustDomain/host" }).token, "audience", 0, source);
    assert.deepEqual(source.asked, ["trustdomain"]);
    const t = variant({}, { sub: "spiffe://other.domain/host" });
    await rejectsWith(run("validate", t.token, "audience", 0, source), "kid-not-found", t.token);
    assert.deepEqual(source.asked, ["trustdomain", "other.domain"]);
  });

  it("aud: a string or an array, containing one of the expected audiences", async () => {
    const one = variant({}, { aud: "audience" }).token;
    const many = variant({}, { aud: ["a", "b", "audience"] }).token;
    for (const token of [one, many]) {
      await run("validate", token, "audience");
      await run("validate", token, ["nope", "audience"]);
    }
    const svid = await run("validate", many, ["b"]);
    assert.deepEqual(svid.audience, ["a", "b", "audience"]);
    await rejectsWith(run("validate", many, ["Audience", "c"]), "audience-mismatch", many);
  });

  it("aud: the validator must have at least one expected audience (both modes)", async () => {
    for (const mode of MODES) {
      await rejectsWith(run(mode, variant().token, []), "no-expected-audience");
    }
    for (const bad of ["", [""], [1]] as unknown as string[]) {
      await rejectsWith(run("validate", variant().token, bad), "invalid-argument");
    }
  });

  it("aud: empty array is missing; other shapes are invalid claims", async () => {
    await rejectsWith(run("validate", variant({}, { aud: [] }).token, "audience"), "missing-aud");
    for (const aud of [42, null, {}, ["audience", 1], true]) {
      await rejectsWith(run("validate", variant({}, { aud }).token, "audience"), "invalid-claim");
    }
  });

  it("exp: a NumericDate, strictly after the validation time", async () => {
    await rejectsWith(run("validate", variant({}, { exp: "now" }).token, "audience"), "expired");
    await run("validate", variant({}, { exp: "now+1s" }).token, "audience");
    await run("validate", variant({}, { exp: NOW_S + 0.5 }).token, "audience");
    // java-spiffe's test exp (year 5881) is a valid NumericDate.
    const far = await run("validate", variant({}, { exp: 123434353455 }).token, "audience");
    assert.equal(far.expiry.getTime(), 123434353455000);
    for (const exp of [String(NOW_S + 60), null, [NOW_S + 60], 1e20, true]) {
      await rejectsWith(run("validate", variant({}, { exp }).token, "audience"), "invalid-claim");
    }
  });

  it("exp: leeway is 0 by default and applies when asked", async () => {
    const t = variant({}, { exp: "now-30s" }).token;
    await rejectsWith(validateJwtSvid(t, SOURCE, "audience", { at: AT }), "expired", t);
    await rejectsWith(run("validate", t, "audience", 30), "expired", t);
    await run("validate", t, "audience", 31);
    await rejectsWith(run("validate", t, "audience", -1), "invalid-argument");
    await rejectsWith(run("validate", t, "audience", Number.NaN), "invalid-argument");
    await rejectsWith(
      validateJwtSvid(t, SOURCE, "audience", { at: new Date(Number.NaN) }),
      "invalid-argument",
    );
  });

  it("exp: without `at`, the current time is used", async () => {
    const t = variant({}, { exp: Math.floor(Date.now() / 1000) + 120, iat: undefined }).token;
    await validateJwtSvid(t, SOURCE, "audience");
    const old = variant({}, { exp: Math.floor(Date.now() / 1000) - 120 }).token;
    await rejectsWith(validateJwtSvid(old, SOURCE, "audience"), "expired", old);
  });

  it("nbf (RFC 7519 §4.1.5): not before, with leeway", async () => {
    await run("validate", variant({}, { nbf: "now" }).token, "audience");
    await run("validate", variant({}, { nbf: "now-100s" }).token, "audience");
    const soon = variant({}, { nbf: "now+30s" }).token;
    await rejectsWith(run("validate", soon, "audience"), "not-yet-valid", soon);
    await rejectsWith(run("insecure", soon, "audience"), "not-yet-valid", soon);
    await run("validate", soon, "audience", 30);
    await rejectsWith(run("validate", variant({}, { nbf: "soon" }).token, "audience"), "invalid-claim");
  });

  it("iat (RFC 7519 §4.1.6): a NumericDate when present; a future iat is not refused", async () => {
    await run("validate", variant({}, { iat: undefined }).token, "audience");
    await run("validate", variant({}, { iat: "now+30s" }).token, "audience");
    await rejectsWith(run("validate", variant({}, { iat: "yesterday" }).token, "audience"), "invalid-claim");
  });

  it("otherRegistered/private claims are kept, frozen, in svid.claims", async () => {
    const t = variant({}, { jti: "abc", nested: { a: [1, { b: 2 }] }, "x-y": null });
    const svid = await run("validate", t.token, "audience");
    assert.deepEqual(svid.claims, t.claims);
    assert.ok(Object.isFrozen(svid.claims));
    assert.ok(Object.isFrozen((svid.claims.nested as { a: unknown[] }).a));
    assert.ok(Object.isFrozen(svid.audience));
    assert.throws(() => {
      (svid.audience as string[]).push("x");
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Rule data: serialization

describe("jwt-svid.json serialization", () => {
  it(`rule: ${O.serialization.slice(0, 60)}...`, async () => {
    const t = variant();
    await run("validate", t.token, "audience");
  });

  const good = variant();
  const [h, p, s] = good.token.split(".") as [string, string, string];

  const notCompact: [string, string][] = [
    ["flattened JSON", JSON.stringify({ protected: h, payload: p, signature: s })],
    ["general JSON", JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] })],
    ["JWE (5 parts)", `${b64(JSON.stringify({ alg: "RSA-OAEP", enc: "A256GCM" }))}.AAAA.AAAA.AAAA.AAAA`],
  ];
  for (const [label, token] of notCompact) {
    for (const mode of MODES) {
      it(`${mode}: ${label} is not the compact serialization`, async () => {
        await rejectsWith(run(mode, token, "audience"), "not-compact", token);
      });
    }
  }

  const malformed: [string, string][] = [
    ["empty", ""],
    ["one part", h],
    ["two parts", `${h}.${p}`],
    ["four parts", `${h}.${p}.${s}.${s}`],
    ["six parts", `${h}.${p}.${s}.${s}.${s}.${s}`],
    ["empty header", `.${p}.${s}`],
    ["empty payload", `${h}..${s}`],
    ["empty signature", `${h}.${p}.`],
    ["padded signature", `${h}.${p}.${s}==`],
    ["standard base64 signature", `${h}.${p}.${s.replace(/[-_]/g, "+")}+/`],
    ["whitespace inside", `${h}.${p}. ${s}`],
    ["leading space", ` ${h}.${p}.${s}`],
    ["Bearer prefix", `Bearer ${h}.${p}.${s}`],
    ["header not JSON", `${b64("{alg:ES384}")}.${p}.${s}`],
    ["header a JSON array", `${b64('["ES384"]')}.${p}.${s}`],
    ["header JSON null", `${b64("null")}.${p}.${s}`],
    ["header with a trailing extra character", `${h}A.${p}.${s}`],
    ["payload not JSON", `${h}.${b64("sub=x")}.${s}`],
    ["payload a JSON array", `${h}.${b64("[]")}.${s}`],
    ["payload a number", `${h}.${b64("42")}.${s}`],
    ["payload not UTF-8", `${h}.${b64(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))}.${s}`],
    [
      "payload with BOM",
      `${h}.${b64(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("{}")]))}.${s}`,
    ],
  ];
  for (const [label, token] of malformed) {
    for (const mode of MODES) {
      it(`${mode}: ${label} is malformed`, async () => {
        await rejectsWith(run(mode, token, "audience"), "malformed", token);
      });
    }
  }

  it("a token that is not a string is malformed", async () => {
    for (const token of [undefined, null, 42, Buffer.from(good.token)]) {
      await rejectsWith(run("validate", token as unknown as string, "audience"), "malformed");
    }
  });

  it("a non-canonical spelling of the signature is refused (no malleability)", async () => {
    // ES384: 96 bytes = 128 chars exactly, so use P-256 (64 bytes, 86 chars, 4 unused bits).
    const t = variant({ alg: "ES256", kid: "authority4" }, {}, "authority4");
    const [th, tp, ts] = t.token.split(".") as [string, string, string];
    const last = ts.charCodeAt(ts.length - 1);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const idx = alphabet.indexOf(String.fromCharCode(last));
    const twin = alphabet[idx ^ 1] as string; // flips an unused low bit
    const token = `${th}.${tp}.${ts.slice(0, -1)}${twin}`;
    assert.deepEqual(Buffer.from(token.split(".")[2] as string, "base64url"), Buffer.from(ts, "base64url"));
    await rejectsWith(run("validate", token, "audience"), "malformed", token);
  });

  it("any change to header, payload or signature breaks the signature", async () => {
    const t = variant({ alg: "RS256", kid: "authority2" }, {}, "authority2");
    const [th, tp, ts] = t.token.split(".") as [string, string, string];
    const payload2 = b64(JSON.stringify({ ...t.claims, aud: ["audience", "x"] }));
    const header2 = b64(JSON.stringify({ kid: "authority2", alg: "RS256" }));
    const sig = Buffer.from(ts, "base64url");
    sig[10] = (sig[10] ?? 0) ^ 1;
    for (const token of [`${th}.${payload2}.${ts}`, `${header2}.${tp}.${ts}`, `${th}.${tp}.${b64(sig)}`]) {
      await rejectsWith(run("validate", token, "audience"), "signature-invalid", token);
    }
    // ... and a truncated ES signature is refused without a crypto call.
    const e = variant();
    const [eh, ep, es] = e.token.split(".") as [string, string, string];
    const cut = `${eh}.${ep}.${b64(Buffer.from(es, "base64url").subarray(0, 64))}`;
    await rejectsWith(run("validate", cut, "audience"), "signature-invalid", cut);
  });
});

describe("jwt-svid.json bundleRules", () => {
  it("no bundle for the sub's trust domain: untrusted, even with a known kid", async () => {
    const t = variant({}, { sub: "spiffe://nowhere/x" });
    await rejectsWith(run("validate", t.token, "audience"), "no-bundle-for-trust-domain", t.token);
  });
});

describe("with bundle/jwtbundle.ts", () => {
  // JWK Sets of the fixture keys, parsed by JwtBundle; the source is typed JwtBundleSource.
  const bundles = new Map<string, JwtBundle>();
  for (const [td, keys] of Object.entries(O.fixtures.trustDomainBundles)) {
    const jwks = {
      keys: Object.keys(keys).map((kid) => ({
        use: "jwt-svid",
        kid,
        ...key(kid).publicKey.export({ format: "jwk" }),
      })),
    };
    bundles.set(td, JwtBundle.parse(TrustDomain.parse(td), JSON.stringify(jwks)));
  }
  const source: JwtBundleSource = { getJwtBundleForTrustDomain: (td) => bundles.get(td.name) };

  for (const r of O.recipes.filter(
    (x) => x.mode === "validate" && x.token === undefined && x.expect !== "leeway-dependent",
  )) {
    it(`${r.case}`, async () => {
      const built = build(r.header ?? {}, r.claims ?? {}, r.signWith ?? "none", r.serialization);
      const p = validateJwtSvid(built.token, source, r.audience ?? [], { at: AT });
      if (r.expect === "ok") assert.ok((await p).id instanceof SpiffeId);
      else await rejectsWith(p, [r.reason as JwtSvidErrorReason, ...(r.altReasons ?? [])], built.token);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Signing: round trips for every algorithm and key type

interface SignCase {
  label: string;
  kind: string;
  algs: JwtSvidAlgorithm[];
  inferred: JwtSvidAlgorithm;
}
const SIGN_CASES: SignCase[] = [
  {
    label: "RSA 2048",
    kind: "rsa-2048",
    algs: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    inferred: "RS256",
  },
  { label: "RSA-PSS 2048", kind: "rsa-pss-2048", algs: ["PS256", "PS384", "PS512"], inferred: "PS256" },
  { label: "EC P-256", kind: "ec-p256", algs: ["ES256"], inferred: "ES256" },
  { label: "EC P-384", kind: "ec-p384", algs: ["ES384"], inferred: "ES384" },
  { label: "EC P-521", kind: "ec-p521", algs: ["ES512"], inferred: "ES512" },
];
const ID = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web");

describe("signJwtSvid → validateJwtSvid", () => {
  it("covers every allowed algorithm", () => {
    const covered = new Set(SIGN_CASES.flatMap((c) => c.algs));
    assert.deepEqual([...covered].sort(), [...JWT_SVID_ALGORITHMS].sort());
  });

  for (const c of SIGN_CASES) {
    const pair = generate(c.kind);
    const source = new MapSource({ "example.org": { k1: pair.publicKey } });
    for (const alg of [...c.algs, undefined]) {
      it(`${c.label}: ${alg ?? `inferred (${c.inferred})`}`, async () => {
        const token = await signJwtSvid({
          id: ID,
          audience: ["svc-a", "svc-b"],
          expiresAt: new Date(AT.getTime() + 300_000),
          issuedAt: AT,
          key: pair.privateKey,
          kid: "k1",
          ...(alg === undefined ? {} : { alg }),
        });
        assert.deepEqual(tokenHeader(token), { alg: alg ?? c.inferred, kid: "k1", typ: "JWT" });
        assert.deepEqual(tokenPayload(token), {
          sub: ID.toString(),
          aud: ["svc-a", "svc-b"],
          exp: NOW_S + 300,
          iat: NOW_S,
        });
        const svid = await validateJwtSvid(token, source, "svc-b", { at: AT });
        assert.ok(svid.id.equals(ID));
        assert.deepEqual(svid.audience, ["svc-a", "svc-b"]);
        assert.equal(svid.expiry.getTime(), (NOW_S + 300) * 1000);
        assert.equal(svid.marshal(), token);
        // Without kid the same key is found too.
        const noKid = `${b64(JSON.stringify({ alg: alg ?? c.inferred }))}.${token.split(".")[1]}`;
        const signed = `${noKid}.${b64(rawSign(alg ?? c.inferred, Buffer.from(noKid), pair.privateKey))}`;
        await validateJwtSvid(signed, source, "svc-a", { at: AT });
        // jose (an independent implementation) accepts what we sign; it has no RSA-PSS KeyObjects.
        if (c.kind === "rsa-pss-2048") return;
        const { payload, protectedHeader } = await jose.jwtVerify(token, pair.publicKey, {
          audience: "svc-a",
          currentDate: AT,
        });
        assert.equal(payload.sub, ID.toString());
        assert.equal(protectedHeader.alg, alg ?? c.inferred);
      });
    }
  }

  it("an RSA-PSS key restricted to SHA-384 infers PS384 and refuses PS256", async () => {
    const pair = generateKeyPairSync("rsa-pss", {
      modulusLength: 2048,
      hashAlgorithm: "sha384",
      mgf1HashAlgorithm: "sha384",
    });
    const params = {
      id: ID,
      audience: "a",
      expiresAt: new Date(AT.getTime() + 60_000),
      issuedAt: AT,
      key: pair.privateKey,
      kid: "k",
    };
    const token = await signJwtSvid(params);
    assert.equal(tokenHeader(token).alg, "PS384");
    await validateJwtSvid(token, new MapSource({ "example.org": { k: pair.publicKey } }), "a", { at: AT });
    await rejectsWith(signJwtSvid({ ...params, alg: "PS256" }), "invalid-argument");
  });

  it("tokens signed by jose validate (ES256, PS384), without extra claims", async () => {
    for (const [alg, kind] of [
      ["ES256", "ec-p256"],
      ["PS384", "rsa-2048"],
    ] as const) {
      const pair = generate(kind);
      const token = await new jose.SignJWT({})
        .setProtectedHeader({ alg, kid: "j", typ: "JWT" })
        .setSubject(ID.toString())
        .setAudience("a")
        .setExpirationTime(NOW_S + 60)
        .sign(pair.privateKey);
      const svid = await validateJwtSvid(
        token,
        new MapSource({ "example.org": { j: pair.publicKey } }),
        "a",
        { at: AT },
      );
      assert.ok(svid.id.equals(ID));
    }
  });

  it("typ: default JWT, JOSE on request, null leaves it out; one audience is a string", async () => {
    const base = {
      id: ID,
      audience: ["only"],
      expiresAt: new Date(AT.getTime() + 60_000),
      issuedAt: AT,
      key: key("authority4").privateKey,
      kid: "authority4",
    };
    assert.equal(tokenHeader(await signJwtSvid(base)).typ, "JWT");
    assert.equal(tokenHeader(await signJwtSvid({ ...base, typ: "JOSE" })).typ, "JOSE");
    assert.deepEqual(tokenHeader(await signJwtSvid({ ...base, typ: null })), {
      alg: "ES256",
      kid: "authority4",
    });
    assert.equal(tokenPayload(await signJwtSvid(base)).aud, "only");
    const withExtra = await signJwtSvid({ ...base, extraClaims: { iss: "https://issuer", nbf: NOW_S } });
    assert.deepEqual(tokenPayload(withExtra), {
      sub: ID.toString(),
      aud: "only",
      exp: NOW_S + 60,
      iat: NOW_S,
      iss: "https://issuer",
      nbf: NOW_S,
    });
  });

  it("refuses bad parameters (invalid-argument), never echoing the key", async () => {
    const ec = key("authority4");
    const base = {
      id: ID,
      audience: "a",
      expiresAt: new Date(AT.getTime() + 60_000),
      issuedAt: AT,
      key: ec.privateKey,
      kid: "k",
    };
    const pem = ec.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const d = String(ec.privateKey.export({ format: "jwk" }).d);
    const cases: [string, Record<string, unknown>, JwtSvidErrorReason][] = [
      ["P-256 key for ES384", { alg: "ES384" }, "invalid-argument"],
      ["EC key for RS256", { alg: "RS256" }, "invalid-argument"],
      [
        "RSA-PSS key for RS256",
        { key: generate("rsa-pss-2048").privateKey, alg: "RS256" },
        "invalid-argument",
      ],
      ["RSA 1024", { key: generate("rsa-1024").privateKey }, "invalid-argument"],
      ["Ed25519 key", { key: ED25519.privateKey }, "invalid-argument"],
      ["EdDSA alg", { alg: "EdDSA" }, "alg-not-allowed"],
      ["HS256 alg", { alg: "HS256" }, "alg-not-allowed"],
      ["public key", { key: ec.publicKey }, "invalid-argument"],
      ["no audience", { audience: [] }, "invalid-argument"],
      ["empty audience", { audience: [""] }, "invalid-argument"],
      ["blank kid", { kid: " " }, "invalid-argument"],
      ["exp before iat", { expiresAt: AT }, "invalid-argument"],
      ["invalid date", { expiresAt: new Date(Number.NaN) }, "invalid-argument"],
      ["typ other", { typ: "at+jwt" }, "invalid-argument"],
      ["extra sub", { extraClaims: { sub: "spiffe://evil/x" } }, "invalid-argument"],
      ["extra exp", { extraClaims: { exp: 1 } }, "invalid-argument"],
      ["id not a SpiffeId", { id: "spiffe://example.org/x" }, "invalid-argument"],
    ];
    for (const [label, change, reason] of cases) {
      const e = await rejectsWith(
        signJwtSvid({ ...base, ...change } as Parameters<typeof signJwtSvid>[0]),
        reason,
      ).catch((err: Error) => {
        throw new Error(`${label}: ${err.message}`);
      });
      for (const text of [e.message, e.stack ?? "", inspect(e)]) {
        assert.ok(!text.includes(pem.split("\n")[1] as string), label);
        assert.ok(!text.includes(d), label);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Secrecy and the JwtSvid object

describe("the token never shows", () => {
  it("error messages, String(svid), util.inspect(svid) and JSON hold neither token nor signature", async () => {
    const t = variant({}, { secret: "s3cr3t-claim-is-fine-to-keep" });
    const sig = t.signature;
    // Every failing stage, each with the good token's signature attached.
    const [h, p] = t.token.split(".") as [string, string];
    const failures: [string, () => Promise<unknown>, string][] = [
      ["audience", () => run("validate", t.token, "other"), t.token],
      [
        "expired",
        () => validateJwtSvid(t.token, SOURCE, "audience", { at: new Date(AT.getTime() + 3_600_000) }),
        t.token,
      ],
      ["no bundle", () => run("validate", t.token, "audience", 0, new MapSource({})), t.token],
      ["kid", () => run("validate", t.token, "audience", 0, new MapSource({ trustdomain: {} })), t.token],
      [
        "signature",
        () =>
          run(
            "validate",
            t.token,
            "audience",
            0,
            new MapSource({ trustdomain: { authority1: generate("ec-p384").publicKey } }),
          ),
        t.token,
      ],
      [
        "payload",
        () => run("validate", `${h}.${b64(JSON.stringify({ ...t.claims, aud: "x" }))}.${sig}`, "x"),
        `${h}.${b64(JSON.stringify({ ...t.claims, aud: "x" }))}.${sig}`,
      ],
      ["parts", () => run("validate", `${h}.${p}.${sig}.${sig}`, "audience"), `${h}.${p}.${sig}.${sig}`],
      [
        "json",
        () => run("validate", JSON.stringify({ protected: h, payload: p, signature: sig }), "audience"),
        sig,
      ],
      ["kid = token", () => run("validate", variant({ kid: t.token }).token, "audience"), t.token],
      ["typ = token", () => run("validate", variant({ typ: t.token }).token, "audience"), t.token],
      [
        "alg = signature",
        () => run("validate", `${variant({ alg: sig }, {}, "none").token}${sig}`, "audience"),
        sig,
      ],
      ["aud = token", () => run("validate", variant({}, { aud: [t.token] }).token, "audience"), t.token],
    ];
    for (const [label, promise, secret] of failures) {
      let err: unknown;
      try {
        await promise();
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof JwtSvidError, label);
      for (const text of [err.message, err.stack ?? "", String(err), inspect(err, { showHidden: true })]) {
        assert.ok(!text.includes(secret), `${label}: ${err.message}`);
        assert.ok(!text.includes(sig), `${label}: ${err.message}`);
      }
    }

    const svid = await run("validate", t.token, "audience");
    const shown = [
      String(svid),
      `${svid}`,
      svid.toString(),
      inspect(svid),
      inspect(svid, { showHidden: true, depth: 10 }),
      inspect({ nested: [svid] }, { depth: 10 }),
      JSON.stringify(svid),
      JSON.stringify(Object.entries(svid)),
      Object.keys(svid).join(","),
    ];
    for (const text of shown) {
      assert.ok(!text.includes(t.token), text);
      assert.ok(!text.includes(sig), text);
      assert.ok(!text.includes(p), text);
    }
    assert.match(String(svid), /^JwtSvid\(spiffe:\/\/trustdomain\/host, aud=\["audience"\], exp=/);
    assert.equal(svid.marshal(), t.token);
  });

  it("JwtSvid cannot be constructed from outside, and withHint keeps the token private", async () => {
    assert.throws(
      () => new (JwtSvid as unknown as new (...a: unknown[]) => unknown)(Symbol("x"), "t", {}, {}, undefined),
      TypeError,
    );
    const t = variant();
    const svid = await run("validate", t.token, "audience");
    const hinted = svid.withHint("internal");
    assert.equal(hinted.hint, "internal");
    assert.equal(hinted.marshal(), t.token);
    assert.ok(hinted.id.equals(svid.id));
    assert.equal(svid.hint, undefined);
    assert.ok(!inspect(hinted).includes(t.signature));
    const insecure = parseJwtSvidInsecure(t.token, "audience", { at: AT, hint: "h" });
    assert.equal(insecure.hint, "h");
    // expiry is a fresh Date each time: mutating one does not change the SVID.
    svid.expiry.setTime(0);
    assert.equal(svid.expiry.getTime(), Number(t.claims.exp) * 1000);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: random claims and audiences round-trip

const RESERVED = new Set(["sub", "aud", "exp", "iat", "nbf", "__proto__"]);
const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((s) => s !== "." && s !== "..");
const PROPERTY_KEYS = [
  { kind: "ec-p256", ...generate("ec-p256") },
  { kind: "ec-p384", ...generate("ec-p384") },
  { kind: "rsa-2048", ...generate("rsa-2048") },
];

describe("property", () => {
  it("sign → validate returns the same ID, audience, expiry and claims", async () => {
    const source = new MapSource({
      "prop.example": Object.fromEntries(PROPERTY_KEYS.map((k) => [k.kind, k.publicKey])),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 16 }), { minLength: 1, maxLength: 4 }),
        fc.nat({ max: 3 }),
        fc.dictionary(
          fc.string({ maxLength: 10 }).filter((k) => !RESERVED.has(k)),
          fc.jsonValue({ maxDepth: 2 }),
          { maxKeys: 5 },
        ),
        fc.integer({ min: 1, max: 86_400 }),
        fc.constantFrom(...PROPERTY_KEYS),
        fc.boolean(),
        async (segments, audience, pick, extra, ttl, k, withKid) => {
          const id = SpiffeId.fromSegments(TrustDomain.parse("prop.example"), ...segments);
          const expected = audience[pick % audience.length] as string;
          const token = await signJwtSvid({
            id,
            audience,
            expiresAt: new Date(AT.getTime() + ttl * 1000),
            issuedAt: AT,
            key: k.privateKey,
            kid: k.kind,
            extraClaims: extra,
          });
          let used = token;
          if (!withKid) {
            const [, p] = token.split(".") as [string, string];
            const h = b64(JSON.stringify({ alg: tokenHeader(token).alg }));
            used = `${h}.${p}.${b64(rawSign(String(tokenHeader(token).alg), Buffer.from(`${h}.${p}`), k.privateKey))}`;
          }
          const svid = await validateJwtSvid(used, source, ["not-in-token-\u0000", expected], { at: AT });
          assert.ok(svid.id.equals(id));
          assert.deepEqual(svid.audience, audience);
          assert.equal(svid.expiry.getTime(), (NOW_S + ttl) * 1000);
          const want = JSON.parse(
            JSON.stringify({
              sub: id.toString(),
              aud: audience.length === 1 ? audience[0] : audience,
              exp: NOW_S + ttl,
              iat: NOW_S,
              ...extra,
            }),
          );
          assert.deepEqual(svid.claims, want);
          // At exp itself it is refused.
          await rejectsWith(
            validateJwtSvid(used, source, expected, { at: new Date((NOW_S + ttl) * 1000) }),
            "expired",
            used,
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});
