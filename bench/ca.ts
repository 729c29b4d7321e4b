/**
 * Identity server X.509-SVID signing rate from CSRs, one core (synchronous calls on the main
 * thread): parse the PKCS#10 CSR, check its self-signature, encode the certificate, sign it.
 *
 * Next to it, in the same run and on the same core:
 *   - the raw node:crypto `sign` ceiling for the CA's key type (a signature over a TBS-sized
 *     buffer, nothing else);
 *   - the crypto floor of the whole job: import the CSR's key + verify the CSR + sign, with no
 *     DER work at all (what a perfect encoder would reach);
 *   - encode + sign alone (the encoder with a known key, no CSR);
 *   - a naive encoder of the same certificate (Buffer.concat per value, as test/spiffe/testca.ts
 *     writes DER) + sign, as the "no template" baseline.
 * A general-purpose X.509 library baseline (@peculiar/x509) is not available: it is not
 * installed, and it could not be loaded without a reflect-metadata polyfill. The issue quotes
 * about 300 SVIDs/s for such a library; that figure is printed for reference, not measured.
 *
 * Target: ≥ 5,000 SVIDs/s for an EC P-256 CA (workload CSRs are EC P-256).
 *
 *   node dist/bench/ca.js [--quick]
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from "node:crypto";
import { type CaKeyType, CertificateAuthority } from "../src/identity/server/ca/ca.js";
import { parseCsr } from "../src/identity/server/ca/csr.js";
import { readTlv } from "../src/identity/server/ca/der.js";
import { encodeX509Svid, SVID_SUBJECT } from "../src/identity/server/ca/encoder.js";
import { SpiffeId } from "../src/spiffe/id.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { makeCsr, type TestKeyPair, workloadKey } from "../test/identity/server/ca/helpers.js";
import { der, derTlv } from "../test/spiffe/testca.js";
import { formatCount, median, table } from "./stats.js";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 5;
const ROUND_MS = quick ? 150 : 400;
const CSR_COUNT = 64;
const TARGET = 5000;
const GENERAL_PURPOSE_QUOTED = 300;
const ID = "spiffe://example.org/ns/default/sa/frontend";
const DNS = ["frontend.default.svc", "frontend.default.svc.cluster.local"];

/** Operations per second of `op`, for ROUND_MS. */
function rate(op: (i: number) => unknown): number {
  const t0 = process.hrtime.bigint();
  let n = 0;
  let elapsed = 0;
  do {
    for (let i = 0; i < 8; i++) op(n + i);
    n += 8;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  } while (elapsed < ROUND_MS);
  return (n * 1000) / elapsed;
}

/** Runs the operations round-robin, ROUNDS times, so machine noise hits all alike; medians. */
function measure(ops: Record<string, (i: number) => unknown>): Record<string, number> {
  const names = Object.keys(ops);
  const rates = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const n of names) ops[n]?.(0); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of names) rates.get(n)?.push(rate(ops[n] as (i: number) => unknown));
  }
  return Object.fromEntries(names.map((n) => [n, median(rates.get(n) as number[])]));
}

const HASH: Record<CaKeyType, string> = { "ec-p256": "sha256", "ec-p384": "sha384", "rsa-2048": "sha256" };
const SIG_OID: Record<CaKeyType, string> = {
  "ec-p256": "1.2.840.10045.4.3.2",
  "ec-p384": "1.2.840.10045.4.3.3",
  "rsa-2048": "1.2.840.113549.1.1.11",
};

/** The same certificate as the fast encoder's, written value by value with Buffer.concat. */
function naiveSvid(
  keyType: CaKeyType,
  issuerName: Buffer,
  issuerKeyId: Buffer,
  key: KeyObject,
  spki: Buffer,
  serial: Buffer,
  notBefore: Date,
  notAfter: Date,
): Buffer {
  const algId =
    keyType === "rsa-2048"
      ? der.seq(der.oid(SIG_OID[keyType]), der.null())
      : der.seq(der.oid(SIG_OID[keyType]));
  const ext = (oid: string, critical: boolean, value: Buffer) =>
    der.seq(der.oid(oid), ...(critical ? [der.bool(true)] : []), der.octets(value));
  const bits = spki.subarray(spki.length - 65);
  const tbs = der.seq(
    derTlv(0xa0, der.int(2)),
    der.int(serial),
    algId,
    issuerName,
    der.seq(der.time(notBefore), der.time(notAfter)),
    SVID_SUBJECT,
    spki,
    derTlv(
      0xa3,
      der.seq(
        ext("2.5.29.15", true, der.bits(Buffer.from([0xa8]), 3)),
        ext("2.5.29.37", false, der.seq(der.oid("1.3.6.1.5.5.7.3.1"), der.oid("1.3.6.1.5.5.7.3.2"))),
        ext("2.5.29.19", true, der.seq()),
        ext("2.5.29.14", false, der.octets(createHash("sha1").update(bits).digest())),
        ext("2.5.29.35", false, der.seq(derTlv(0x80, issuerKeyId))),
        ext(
          "2.5.29.17",
          false,
          der.seq(
            derTlv(0x86, Buffer.from(ID, "latin1")),
            ...DNS.map((d) => derTlv(0x82, Buffer.from(d, "latin1"))),
          ),
        ),
      ),
    ),
  );
  return der.seq(tbs, algId, der.bits(sign(HASH[keyType], tbs, key)));
}

interface Row {
  keyType: CaKeyType;
  figures: Record<string, number>;
}

async function caseFor(keyType: CaKeyType, workloads: TestKeyPair[]): Promise<Row> {
  const ca = await CertificateAuthority.create({ trustDomain: "example.org", keyType });
  const csrs = workloads.map((k) => makeCsr(k));
  const spkis = workloads.map((k) => k.publicKey.export({ type: "spki", format: "der" }));
  const jwks = workloads.map((k) => k.publicKey.export({ format: "jwk" }));
  // The CSR self-signatures and their signed parts, for the crypto floor.
  const parts = csrs.map((csr) => {
    const top = readTlv(csr, 0, csr.length);
    const cri = readTlv(csr, top.body, top.end);
    const alg = readTlv(csr, cri.end, top.end);
    const sig = readTlv(csr, alg.end, top.end);
    return { cri: csr.subarray(cri.start, cri.end), sig: csr.subarray(sig.body + 1, sig.end) };
  });
  // The signing key and the issuer the CA uses, for the raw and the encode-only figures.
  const caKey = createPrivateKey(ca.exportState().x509.active.privateKeyPem as string);
  const probe = ca.signX509Svid({ csr: csrs[0] as Buffer, spiffeId: ID, dnsNames: DNS });
  const leaf = new X509Certificate(probe.certificates[0] as Buffer);
  verifyX509Svid([leaf], ca.bundle(), { strict: true }); // the bench measures real, valid SVIDs
  const issuer = {
    nameDer: issuerNameOf(leaf.raw),
    keyId: Buffer.from(ca.x509Authorities.active.keyId, "hex"),
    privateKey: caKey,
  };
  const tbsSized = Buffer.alloc(leaf.raw.length - 80, 0x5a);
  const notBefore = new Date();
  const notAfter = new Date(Date.now() + 3600_000);
  const serial = Buffer.alloc(16, 0x42);
  const hash = HASH[keyType];
  const id = SpiffeId.parse(ID); // as the CA passes it
  const workloadHash = "sha256";

  const figures = measure({
    "raw crypto.sign (TBS-sized input)": () => sign(hash, tbsSized, caKey),
    "crypto floor: import CSR key + verify CSR + sign": (i) => {
      const k = i & (CSR_COUNT - 1);
      const p = parts[k] as { cri: Buffer; sig: Buffer };
      const pub = createPublicKey({ key: jwks[k] as JsonWebKey, format: "jwk" });
      if (!verify(workloadHash, p.cri, pub, p.sig)) throw new Error("CSR signature");
      return sign(hash, tbsSized, caKey);
    },
    "encode + sign (no CSR)": (i) =>
      encodeX509Svid({
        issuer,
        subjectPublicKeyDer: spkis[i & (CSR_COUNT - 1)] as Buffer,
        spiffeId: id,
        dnsNames: DNS,
        serial,
        notBefore,
        notAfter,
      }),
    "naive Buffer.concat encoder + sign (no CSR)": (i) =>
      naiveSvid(
        keyType,
        issuer.nameDer,
        issuer.keyId,
        caKey,
        spkis[i & (CSR_COUNT - 1)] as Buffer,
        serial,
        notBefore,
        notAfter,
      ),
    "parseCsr alone (parse + key import + verify)": (i) => parseCsr(csrs[i & (CSR_COUNT - 1)] as Buffer),
    "Tessera signX509Svid from CSR": (i) =>
      ca.signX509Svid({ csr: csrs[i & (CSR_COUNT - 1)] as Buffer, spiffeId: ID, dnsNames: DNS }),
  });
  return { keyType, figures };
}

/** The issuer Name DER of a certificate. */
function issuerNameOf(certDer: Buffer): Buffer {
  const cert = readTlv(certDer, 0, certDer.length);
  const tbs = readTlv(certDer, cert.body, cert.end);
  let t = readTlv(certDer, tbs.body, tbs.end); // version
  for (let i = 0; i < 3; i++) t = readTlv(certDer, t.end, tbs.end); // serial, signature, issuer
  return certDer.subarray(t.start, t.end);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const workloads: TestKeyPair[] = [];
  for (let i = 0; i < CSR_COUNT; i++) workloads.push(await workloadKey("ec-p256"));
  const types: CaKeyType[] = quick ? ["ec-p256"] : ["ec-p256", "ec-p384", "rsa-2048"];
  const rows: string[][] = [];
  let p256: number | undefined;
  for (const keyType of types) {
    const { figures } = await caseFor(keyType, workloads);
    const ceiling = figures["raw crypto.sign (TBS-sized input)"] as number;
    const floor = figures["crypto floor: import CSR key + verify CSR + sign"] as number;
    for (const [what, perSecond] of Object.entries(figures)) {
      rows.push([
        `${keyType}  ${what}`,
        formatCount(Math.round(perSecond)),
        `${((100 * perSecond) / ceiling).toFixed(0)}%`,
        `${((100 * perSecond) / floor).toFixed(0)}%`,
      ]);
    }
    const ours = figures["Tessera signX509Svid from CSR"] as number;
    rows.push([
      `${keyType}  general-purpose X.509 library (quoted in the issue, not measured)`,
      `~${GENERAL_PURPOSE_QUOTED}`,
      "",
      `Tessera ${(ours / GENERAL_PURPOSE_QUOTED).toFixed(1)}x`,
    ]);
    if (keyType === "ec-p256") p256 = ours;
    rows.push(["", "", "", ""]);
  }
  process.stdout.write(
    `\nX.509-SVID signing from CSRs, one core (workload CSRs: EC P-256, 2 DNS names; median of ${ROUNDS} interleaved rounds × ${ROUND_MS} ms)\n`,
  );
  process.stdout.write(
    `${table(["CA key  operation", "per second", "of raw sign", "of crypto floor"], rows.slice(0, -1))}\n`,
  );
  process.stdout.write(
    "\ngeneral-purpose library baseline: not available here (@peculiar/x509 is not installed and needs a reflect-metadata polyfill)\n",
  );
  if (p256 !== undefined) {
    process.stdout.write(
      `\ntarget: ec-p256 signX509Svid from CSR ≥ ${formatCount(TARGET)}/s: ${formatCount(Math.round(p256))}/s  ${p256 >= TARGET ? "ok" : "MISSED"}\n`,
    );
  }
  process.stdout.write(`\ntotal CA benchmark time ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

await main();
