import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { JwtBundle } from "../../src/spiffe/bundle/jwtbundle.js";
import { SpiffeId, TrustDomain } from "../../src/spiffe/id.js";
import { signJwtSvid } from "../../src/spiffe/jwtsvid.js";
import { parseCertificates } from "../../src/spiffe/x509svid.js";
import { tessera } from "../helpers/cli.js";
import { oracle } from "../helpers/paths.js";
import { TestCa } from "../spiffe/testca.js";

const spiffe = oracle("spiffe");
const table = JSON.parse(readFileSync(join(spiffe, "x509-svid.json"), "utf8")) as {
  verifyCases: Array<{
    chain: string;
    bundles: Record<string, string[]>;
    time: string;
    expect: string;
    spiffeId?: string;
  }>;
  parseCases: Array<{ certs: string; key: string; encoding: string; expect: string }>;
};
const dir = mkdtempSync(join(tmpdir(), "tessera-inspect-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A bundle file of the oracle; `file#N` (the N-th certificate of a file) is cut out to a temp file. */
function bundleFile(ref: string, tag: string): string {
  const [file, index] = ref.split("#") as [string, string | undefined];
  if (index === undefined) return join(spiffe, file);
  const cert = parseCertificates(readFileSync(join(spiffe, file)))[Number(index)];
  assert.ok(cert, ref);
  const out = join(dir, `anchor-${tag}.pem`);
  writeFileSync(out, cert.toString());
  return out;
}

describe("tessera svid inspect", () => {
  it("agrees with every oracle verify case (exit 0 exactly when the chain verifies)", () => {
    table.verifyCases.forEach((c, i) => {
      const bundleArgs = Object.entries(c.bundles).flatMap(([td, files]) =>
        files.flatMap((f, j) => ["--bundle", `${td}=${bundleFile(f, `${i}-${j}`)}`]),
      );
      const r = tessera([
        "svid",
        "inspect",
        join(spiffe, c.chain),
        ...bundleArgs,
        "--at",
        c.time,
        "-o",
        "json",
      ]);
      assert.ok(r.status === 0 || r.status === 1 || r.status === 2, r.stderr);
      assert.equal(r.status === 0, c.expect === "ok", `case ${i} ${c.chain}: ${r.stdout}${r.stderr}`);
      if (c.expect === "ok") assert.equal(JSON.parse(r.stdout).spiffeId, c.spiffeId);
    });
  });

  it("agrees with every PEM oracle parse case (chain rules and key match)", () => {
    for (const c of table.parseCases.filter((p) => p.encoding === "pem")) {
      const r = tessera(["svid", "inspect", join(spiffe, c.certs), "--key", join(spiffe, c.key)]);
      assert.equal(r.status === 0, c.expect === "ok", `${c.certs} + ${c.key}: ${r.stdout}${r.stderr}`);
      assert.ok(!/-----BEGIN [A-Z ]*PRIVATE KEY/.test(r.stdout + r.stderr), "never prints a key");
    }
  });

  it("lists every rule a chain breaks, shows the facts, and exits 1", async () => {
    const ca = await TestCa.create("example.org");
    const bad = await ca.issue({
      uriSans: ["spiffe://example.org/w"],
      ca: true,
      keyUsage: ["keyCertSign", "cRLSign"],
    });
    const file = join(dir, "bad.pem");
    writeFileSync(file, bad.pem);
    const r = tessera(["svid", "inspect", file, "-o", "json"]);
    assert.equal(r.status, 1, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.spiffeId, "spiffe://example.org/w");
    assert.equal(out.trustDomain, "example.org");
    assert.match(out.keyType, /^EC /);
    assert.deepEqual(out.problems.map((p: { rule: string }) => p.rule).sort(), [
      "leaf-ca-true",
      "leaf-crl-sign",
      "leaf-key-cert-sign",
      "leaf-no-digital-signature",
    ]);
  });

  it("verifies a good SVID with its key and bundle; refuses one at a time outside its validity", async () => {
    const ca = await TestCa.create("example.org");
    const svid = await ca.issueSvid("spiffe://example.org/api");
    const chain = join(dir, "svid.pem");
    const key = join(dir, "svid.key");
    const bundle = join(dir, "bundle.pem");
    writeFileSync(chain, svid.certificatesPem);
    writeFileSync(key, svid.privateKeyPem);
    writeFileSync(bundle, ca.authorities.map((c) => c.toString()).join(""));
    const ok = tessera(["svid", "inspect", chain, "--key", key, "--bundle", `example.org=${bundle}`]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /SPIFFE ID: {4}spiffe:\/\/example\.org\/api/);
    assert.match(ok.stdout, /result: {7}a valid X\.509-SVID/);
    const late = tessera([
      "svid",
      "inspect",
      chain,
      "--bundle",
      `example.org=${bundle}`,
      "--at",
      "2099-01-01T00:00:00Z",
    ]);
    assert.equal(late.status, 1);
    assert.match(late.stdout, /expired/);
    const otherDomain = tessera(["svid", "inspect", chain, "--bundle", `other.org=${bundle}`]);
    assert.equal(otherDomain.status, 1, "roots of another trust domain never vouch");
  });

  it("exits 2 when an input cannot be read", () => {
    assert.equal(tessera(["svid", "inspect", join(dir, "missing.pem")]).status, 2);
    const junk = join(dir, "junk.txt");
    writeFileSync(junk, "not a certificate");
    assert.equal(tessera(["svid", "inspect", junk]).status, 2);
    assert.equal(
      tessera(["svid", "inspect", join(spiffe, table.verifyCases[0]?.chain ?? ""), "--at", "yesterday"])
        .status,
      2,
    );
  });
});

describe("tessera jwt inspect", () => {
  it("validates audience, expiry and signature; never prints the token", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const td = TrustDomain.parse("example.org");
    const token = await signJwtSvid({
      id: SpiffeId.parse("spiffe://example.org/client"),
      audience: "spiffe://example.org/db",
      expiresAt: new Date(Date.now() + 300_000),
      key: privateKey,
      kid: "k1",
    });
    const jwks = join(dir, "jwks.json");
    writeFileSync(jwks, JwtBundle.fromAuthorities(td, [["k1", publicKey]]).marshal());
    const tokenFile = join(dir, "token.jwt");
    writeFileSync(tokenFile, token);
    const signature = token.split(".")[2] as string;

    const ok = tessera([
      "jwt",
      "inspect",
      `@${tokenFile}`,
      "--audience",
      "spiffe://example.org/db",
      "--bundle",
      `example.org=${jwks}`,
    ]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /subject: {3}spiffe:\/\/example\.org\/client/);
    assert.match(ok.stdout, /signature: verified/);

    const noAudience = tessera(["jwt", "inspect", token]);
    assert.equal(noAudience.status, 1);
    assert.match(noAudience.stdout, /no-expected-audience/);

    const wrongAudience = tessera(["jwt", "inspect", token, "--audience", "other", "-o", "json"]);
    assert.equal(wrongAudience.status, 1);
    assert.equal(JSON.parse(wrongAudience.stdout).problems[0].rule, "audience-mismatch");

    const expired = tessera(
      ["jwt", "inspect", "-", "--audience", "spiffe://example.org/db", "--at", "2099-01-01T00:00:00Z"],
      token,
    );
    assert.equal(expired.status, 1);
    assert.match(expired.stdout, /expired/);

    const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    const wrongJwks = join(dir, "wrong.json");
    writeFileSync(wrongJwks, JwtBundle.fromAuthorities(td, [["k1", otherKey]]).marshal());
    const forged = tessera([
      "jwt",
      "inspect",
      token,
      "--audience",
      "spiffe://example.org/db",
      "--bundle",
      `example.org=${wrongJwks}`,
    ]);
    assert.equal(forged.status, 1);
    assert.match(forged.stdout, /signature: failed/);

    for (const r of [ok, noAudience, wrongAudience, expired, forged]) {
      assert.ok(!(r.stdout + r.stderr).includes(signature), "the token never appears in output");
    }
    assert.equal(tessera(["jwt", "inspect", "not-a-token"]).status, 2);
  });
});
