/**
 * SPIFFE verification throughput on one core: X.509-SVID chain verifications and JWT-SVID
 * validations per second, each next to node:crypto's raw signature verification of the same
 * signatures in the same run (the ceiling). Target: at least 50% of the ceiling.
 *
 *   node dist/bench/spiffe.js [--quick]
 */
import {
  createPublicKey,
  verify as cryptoVerify,
  generateKeyPairSync,
  type KeyObject,
  X509Certificate,
} from "node:crypto";
import { JwtBundle } from "../src/spiffe/bundle/jwtbundle.js";
import { X509BundleSet } from "../src/spiffe/bundle/set.js";
import { X509Bundle } from "../src/spiffe/bundle/x509bundle.js";
import { SpiffeId, TrustDomain } from "../src/spiffe/id.js";
import { type JwtSvidAlgorithm, signJwtSvid, validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { type KeyType, TestCa } from "../test/spiffe/testca.js";
import { formatCount, median, table } from "./stats.js";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 5;
const ROUND_MS = quick ? 250 : 600;

/** Operations per second of `op`, as the median of several timed rounds. */
async function opsPerSecond(op: () => unknown | Promise<unknown>): Promise<number> {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    let n = 0;
    let elapsed = 0;
    do {
      for (let i = 0; i < 16; i++) {
        // Await only real promises: a microtask per call would slow the synchronous ceiling.
        const result = op();
        if (result instanceof Promise) await result;
      }
      n += 16;
      elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    } while (elapsed < ROUND_MS);
    rates.push((n * 1000) / elapsed);
  }
  return median(rates);
}

/** Interleaves two measurements round by round so machine noise hits both alike. */
async function paired(a: () => unknown, b: () => unknown): Promise<[number, number]> {
  const ra: number[] = [];
  const rb: number[] = [];
  for (let r = 0; r < 3; r++) {
    ra.push(await opsPerSecond(a));
    rb.push(await opsPerSecond(b));
  }
  return [median(ra), median(rb)];
}

const rows: string[][] = [];
const results: Array<{ what: string; ratio: number }> = [];

async function x509Case(keyType: KeyType): Promise<void> {
  const root = await TestCa.create("example.org", { keyType });
  const intermediate = await root.createIntermediate({ keyType });
  const svid = await intermediate.issueSvid("spiffe://example.org/bench", { keyType });
  const [leaf, inter] = svid.certificates as [X509Certificate, X509Certificate];
  const anchor = root.authorities[0] as X509Certificate;
  const bundles = new X509BundleSet([
    X509Bundle.fromCertificates(TrustDomain.parse("example.org"), root.authorities),
  ]);
  const at = new Date();
  const ders = svid.certificates.map((c) => c.raw);
  // The ceiling: the two signatures of the path (leaf by intermediate, intermediate by root).
  const ceiling = () => leaf.verify(inter.publicKey) && inter.verify(anchor.publicKey);
  const verifyCached = () => verifyX509Svid(svid.certificates, bundles, { at });
  // A TLS handshake hands over fresh DER each time: parsing is part of the cost.
  const verifyFresh = () =>
    verifyX509Svid(
      ders.map((d) => new X509Certificate(d)),
      bundles,
      { at },
    );
  const ceilingFresh = () => {
    const [l, i] = ders.map((d) => new X509Certificate(d)) as [X509Certificate, X509Certificate];
    return l.verify(i.publicKey) && i.verify(anchor.publicKey);
  };
  const [ceil, cached] = await paired(ceiling, verifyCached);
  const [ceilFresh, fresh] = await paired(ceilingFresh, verifyFresh);
  rows.push([
    `X.509-SVID chain (${keyType}, leaf+intermediate)`,
    formatCount(Math.round(ceil)),
    formatCount(Math.round(cached)),
    `${((100 * cached) / ceil).toFixed(0)}%`,
  ]);
  rows.push([
    `  same, fresh DER each time`,
    formatCount(Math.round(ceilFresh)),
    formatCount(Math.round(fresh)),
    `${((100 * fresh) / ceilFresh).toFixed(0)}%`,
  ]);
  results.push(
    { what: `X.509 ${keyType}`, ratio: cached / ceil },
    { what: `X.509 ${keyType} fresh`, ratio: fresh / ceilFresh },
  );
}

const CURVES: Record<string, string> = { ES256: "P-256", ES384: "P-384" };
const HASH: Record<string, string> = { ES256: "sha256", ES384: "sha384", RS256: "sha256", PS256: "sha256" };

async function jwtCase(alg: JwtSvidAlgorithm): Promise<void> {
  const pair = alg.startsWith("ES")
    ? generateKeyPairSync("ec", { namedCurve: CURVES[alg] as string })
    : generateKeyPairSync("rsa", { modulusLength: 2048 });
  const td = TrustDomain.parse("example.org");
  const token = await signJwtSvid({
    id: SpiffeId.parse("spiffe://example.org/client"),
    audience: "spiffe://example.org/server",
    expiresAt: new Date(Date.now() + 3600_000),
    key: pair.privateKey,
    kid: "k1",
    alg,
  });
  const bundle = JwtBundle.fromAuthorities(td, [["k1", pair.publicKey]]);
  const bundles = { getJwtBundleForTrustDomain: (t: TrustDomain) => (t.equals(td) ? bundle : undefined) };
  const [h, p, s] = token.split(".") as [string, string, string];
  const input = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(s, "base64url");
  const key: KeyObject = createPublicKey(pair.publicKey.export({ format: "pem", type: "spki" }));
  const options = alg.startsWith("ES")
    ? { key, dsaEncoding: "ieee-p1363" as const }
    : alg.startsWith("PS")
      ? { key, padding: 6, saltLength: 32 }
      : { key };
  const ceiling = () => cryptoVerify(HASH[alg] as string, input, options, signature);
  const validate = () => validateJwtSvid(token, bundles, "spiffe://example.org/server");
  if (!ceiling()) throw new Error("ceiling signature did not verify");
  const [ceil, ours] = await paired(ceiling, validate);
  rows.push([
    `JWT-SVID ${alg}`,
    formatCount(Math.round(ceil)),
    formatCount(Math.round(ours)),
    `${((100 * ours) / ceil).toFixed(0)}%`,
  ]);
  results.push({ what: `JWT ${alg}`, ratio: ours / ceil });
}

async function main(): Promise<void> {
  const t0 = Date.now();
  for (const k of quick ? (["ec-p256"] as const) : (["ec-p256", "rsa-2048"] as const)) await x509Case(k);
  for (const a of quick ? (["ES256"] as const) : (["ES256", "RS256", "PS256"] as const)) await jwtCase(a);
  process.stdout.write(
    `\nSPIFFE verification, one core (median of 3 paired rounds, each the median of ${ROUNDS} × ${ROUND_MS} ms)\n`,
  );
  process.stdout.write(
    `${table(["operation", "ceiling: raw node:crypto verify/s", "Tessera/s", "of ceiling"], rows)}\n`,
  );
  process.stdout.write("\ntargets (≥ 50% of the ceiling):\n");
  for (const r of results)
    process.stdout.write(
      `  ${r.what}: ${(100 * r.ratio).toFixed(0)}%  ${r.ratio >= 0.5 ? "ok" : "MISSED"}\n`,
    );
  process.stdout.write(`\ntotal SPIFFE benchmark time ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

await main();
