/**
 * Test helpers for the CA: workload key pools, PKCS#10 CSRs built with the independent DER
 * writer of test/spiffe/testca.ts (not the CA's own encoder), and `openssl` runs.
 */
import { spawnSync } from "node:child_process";
import { generateKeyPair as generateKeyPairCb, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { der, derTlv } from "../../../spiffe/testca.js";

const generateKeyPairAsync = promisify(generateKeyPairCb);

export type WorkloadKeyType = "ec-p256" | "ec-p384" | "ec-p521" | "rsa-2048" | "rsa-3072";
export const WORKLOAD_KEY_TYPES: readonly WorkloadKeyType[] = [
  "ec-p256",
  "ec-p384",
  "ec-p521",
  "rsa-2048",
  "rsa-3072",
];

export interface TestKeyPair {
  readonly type: WorkloadKeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export async function workloadKey(type: WorkloadKeyType): Promise<TestKeyPair> {
  const pair = type.startsWith("rsa")
    ? await generateKeyPairAsync("rsa", { modulusLength: type === "rsa-3072" ? 3072 : 2048 })
    : await generateKeyPairAsync("ec", {
        namedCurve: type === "ec-p256" ? "P-256" : type === "ec-p384" ? "P-384" : "P-521",
      });
  return { type, ...pair };
}

/** A few keys of each type, made once (RSA key generation is slow). */
export async function keyPool(perType = 2): Promise<Map<WorkloadKeyType, TestKeyPair[]>> {
  const pool = new Map<WorkloadKeyType, TestKeyPair[]>();
  await Promise.all(
    WORKLOAD_KEY_TYPES.map(async (t) => {
      const keys: TestKeyPair[] = [];
      for (let i = 0; i < perType; i++) keys.push(await workloadKey(t));
      pool.set(t, keys);
    }),
  );
  return pool;
}

const SIG_ALGS = {
  "ecdsa-sha256": { oid: "1.2.840.10045.4.3.2", hash: "sha256", params: false },
  "ecdsa-sha384": { oid: "1.2.840.10045.4.3.3", hash: "sha384", params: false },
  "ecdsa-sha512": { oid: "1.2.840.10045.4.3.4", hash: "sha512", params: false },
  "rsa-sha256": { oid: "1.2.840.113549.1.1.11", hash: "sha256", params: true },
  "rsa-sha384": { oid: "1.2.840.113549.1.1.12", hash: "sha384", params: true },
  "rsa-sha512": { oid: "1.2.840.113549.1.1.13", hash: "sha512", params: true },
  "rsa-sha1": { oid: "1.2.840.113549.1.1.5", hash: "sha1", params: true },
} as const;
export type CsrSigAlg = keyof typeof SIG_ALGS;

export interface CsrOptions {
  readonly alg?: CsrSigAlg;
  /** Subject Name DER; default CN=workload. */
  readonly subject?: Buffer;
  /** Attribute DERs inside [0]; default none (an empty [0]). */
  readonly attributes?: Buffer[];
  /** Leave out the [0] attributes field entirely. */
  readonly omitAttributes?: boolean;
  readonly version?: number;
  /** Sign with this key instead of the subject's own. */
  readonly signWith?: KeyObject;
}

export function defaultAlg(key: TestKeyPair): CsrSigAlg {
  return key.type.startsWith("rsa") ? "rsa-sha256" : key.type === "ec-p384" ? "ecdsa-sha384" : "ecdsa-sha256";
}

/** A PKCS#10 CSR (DER) for `key`, written with testca's DER writer. */
export function makeCsr(key: TestKeyPair, o: CsrOptions = {}): Buffer {
  const alg = SIG_ALGS[o.alg ?? defaultAlg(key)];
  const subject = o.subject ?? der.seq(der.set(der.seq(der.oid("2.5.4.3"), der.utf8("workload"))));
  const spki = key.publicKey.export({ type: "spki", format: "der" });
  const cri = der.seq(
    der.int(o.version ?? 0),
    subject,
    spki,
    ...(o.omitAttributes ? [] : [derTlv(0xa0, ...(o.attributes ?? []))]),
  );
  const algId = alg.params ? der.seq(der.oid(alg.oid), der.null()) : der.seq(der.oid(alg.oid));
  const signature = sign(alg.hash, cri, o.signWith ?? key.privateKey);
  return der.seq(cri, algId, der.bits(signature));
}

export function toPem(label: string, body: Buffer): string {
  const b64 = body.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// openssl.

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function openssl(args: readonly string[], input?: Buffer | string): RunResult {
  const r = spawnSync("openssl", args, { input, encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A temporary directory for openssl files, removed by `done()`. */
export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), "tessera-ca-test-"));

  write(name: string, data: Buffer | string): string {
    const p = join(this.path, name);
    writeFileSync(p, data);
    return p;
  }

  done(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** A CSR made by `openssl req` for a key given as PEM (with extra `req` arguments). */
export function opensslCsr(dir: TempDir, keyPem: string, extra: readonly string[] = []): Buffer {
  const keyFile = dir.write(`key-${Math.random().toString(36).slice(2)}.pem`, keyPem);
  const r = spawnSync(
    "openssl",
    ["req", "-new", "-key", keyFile, "-subj", "/CN=openssl workload", "-outform", "DER", ...extra],
    {
      maxBuffer: 1024 * 1024,
    },
  );
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr.toString()}`);
  return r.stdout;
}

/** Fields of a certificate as `openssl x509 -text` shows them: the reference for field values. */
export interface OpensslFields {
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly subject: string;
  readonly issuer: string;
  readonly version: string;
  readonly signatureAlgorithm: string;
  /** Extension name → { critical, value (lines joined by " ") }. */
  readonly extensions: Map<string, { critical: boolean; value: string }>;
}

export function opensslFields(dir: TempDir, certDer: Buffer): OpensslFields {
  const file = dir.write("cert.der", certDer);
  const r = openssl([
    "x509",
    "-inform",
    "DER",
    "-in",
    file,
    "-noout",
    "-serial",
    "-dateopt",
    "iso_8601",
    "-startdate",
    "-enddate",
    "-nameopt",
    "RFC2253",
    "-subject",
    "-issuer",
    "-text",
  ]);
  if (r.status !== 0) throw new Error(`openssl x509 failed: ${r.stderr}`);
  const lines = r.stdout.split("\n");
  const value = (prefix: string) => {
    const l = lines.find((x) => x.startsWith(prefix));
    if (l === undefined) throw new Error(`no ${prefix} in openssl output`);
    return l.slice(prefix.length).trim();
  };
  const extensions = new Map<string, { critical: boolean; value: string }>();
  const start = lines.findIndex((l) => l.trim() === "X509v3 extensions:");
  if (start >= 0) {
    let i = start + 1;
    while (i < lines.length) {
      const m = /^ {12}(\S.*?):( critical)?\s*$/.exec(lines[i] ?? "");
      if (!m) break;
      const vals: string[] = [];
      i++;
      while (i < lines.length && /^ {16}/.test(lines[i] ?? "")) {
        vals.push((lines[i] ?? "").trim());
        i++;
      }
      extensions.set(m[1] ?? "", { critical: m[2] !== undefined, value: vals.join(" ") });
    }
  }
  return {
    serial: value("serial="),
    notBefore: value("notBefore="),
    notAfter: value("notAfter="),
    subject: value("subject="),
    issuer: value("issuer="),
    version: value("        Version:"),
    signatureAlgorithm: value("    Signature Algorithm:"),
    extensions,
  };
}

/** The `openssl asn1parse` lines of a DER value: offset, depth, tag name and value. */
export interface Asn1Line {
  readonly offset: number;
  readonly depth: number;
  readonly kind: string;
  readonly value: string;
}

export function opensslAsn1(dir: TempDir, derBytes: Buffer): Asn1Line[] {
  const file = dir.write("value.der", derBytes);
  const r = openssl(["asn1parse", "-inform", "DER", "-in", file]);
  if (r.status !== 0) throw new Error(`openssl asn1parse failed: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const m = /^\s*(\d+):d=(\d+)\s+hl=\s*\d+\s+l=\s*\d+\s+(?:prim|cons):\s*(.*?)\s*(?::(.*))?$/.exec(l);
      if (!m) throw new Error(`unexpected asn1parse line ${l}`);
      return {
        offset: Number(m[1]),
        depth: Number(m[2]),
        kind: (m[3] ?? "").trim(),
        value: (m[4] ?? "").trim(),
      };
    });
}

/** openssl's date for `-dateopt iso_8601`: "2026-11-27 00:56:39Z". */
export function isoOpenssl(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;
}
