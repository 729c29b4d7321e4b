/**
 * A test certificate authority for SPIFFE tests: roots, intermediates, X.509-SVIDs and
 * deliberately malformed certificates, generated at run time with node:crypto keys and a small
 * DER writer (no third-party ASN.1 library, so every byte of a test certificate is under the
 * test's control). Reusable by any test (x509svid, bundles, mTLS):
 *
 *   const ca = await TestCa.create("example.org");
 *   const svid = await ca.issueSvid("spiffe://example.org/workload", { keyType: "rsa-2048" });
 *   verifyX509Svid(svid.certificates, bundleSource({ "example.org": ca.authorities }), { at });
 *
 * Everything comes in node:crypto form (X509Certificate, KeyObject) and as PEM/DER bytes.
 */
import {
  createHash,
  generateKeyPair as generateKeyPairCb,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from "node:crypto";
import { promisify } from "node:util";
import { X509Bundle, type X509BundleSource } from "../../src/spiffe/bundle/x509bundle.js";
import { TrustDomain } from "../../src/spiffe/id.js";
import type { KeyUsageName } from "../../src/spiffe/x509svid.js";

const generateKeyPairAsync = promisify(generateKeyPairCb);

export type KeyType = "ec-p256" | "ec-p384" | "rsa-2048";

export interface KeyPair {
  readonly type: KeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export async function generateKeyPair(type: KeyType = "ec-p256"): Promise<KeyPair> {
  const pair =
    type === "rsa-2048"
      ? await generateKeyPairAsync("rsa", { modulusLength: 2048 })
      : await generateKeyPairAsync("ec", { namedCurve: type === "ec-p384" ? "P-384" : "P-256" });
  return { type, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

// ---------------------------------------------------------------------------------------------
// A small DER writer.

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function derTlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export const der = {
  seq: (...parts: Buffer[]) => derTlv(0x30, ...parts),
  set: (...parts: Buffer[]) => derTlv(0x31, ...parts),
  bool: (v: boolean) => derTlv(0x01, Buffer.from([v ? 0xff : 0x00])),
  int(value: number | Buffer): Buffer {
    let b = value as Buffer;
    if (typeof value === "number") {
      const hex = value.toString(16);
      b = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
    }
    while (b.length > 1 && b[0] === 0 && ((b[1] as number) & 0x80) === 0) b = b.subarray(1);
    if (((b[0] as number) & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
    return derTlv(0x02, b);
  },
  oid(dotted: string): Buffer {
    const [a = 0, b = 0, ...rest] = dotted.split(".").map(Number);
    const bytes: number[] = [a * 40 + b];
    for (const v of rest) {
      const chunk: number[] = [v & 0x7f];
      for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
      bytes.push(...chunk);
    }
    return derTlv(0x06, Buffer.from(bytes));
  },
  octets: (b: Buffer) => derTlv(0x04, b),
  bits: (b: Buffer, unused = 0) => derTlv(0x03, Buffer.from([unused]), b),
  null: () => Buffer.from([0x05, 0x00]),
  utf8: (s: string) => derTlv(0x0c, Buffer.from(s, "utf8")),
  printable: (s: string) => derTlv(0x13, Buffer.from(s, "latin1")),
  time(d: Date): Buffer {
    const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
    const digits = iso.slice(0, 19).replace(/[-:T]/g, "");
    const year = d.getUTCFullYear();
    return year >= 1950 && year < 2050
      ? derTlv(0x17, Buffer.from(`${digits.slice(2)}Z`, "latin1"))
      : derTlv(0x18, Buffer.from(`${digits}Z`, "latin1"));
  },
};

const NAME_ATTRIBUTES: Record<string, string> = {
  C: "2.5.4.6",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  CN: "2.5.4.3",
  L: "2.5.4.7",
  ST: "2.5.4.8",
};

/** "O=Tessera, CN=x" in DER order (first attribute first); "" is the empty name. */
export function encodeName(text: string): Buffer {
  if (text.trim() === "") return der.seq();
  const rdns = text.split(",").map((part) => {
    const eq = part.indexOf("=");
    const type = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    const oid = NAME_ATTRIBUTES[type];
    if (!oid) throw new Error(`unknown name attribute ${type}`);
    return der.set(der.seq(der.oid(oid), type === "C" ? der.printable(value) : der.utf8(value)));
  });
  return der.seq(...rdns);
}

const KEY_USAGE_BITS: readonly KeyUsageName[] = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
];

function keyUsageValue(names: readonly KeyUsageName[]): Buffer {
  const set = new Set(names.map((n) => KEY_USAGE_BITS.indexOf(n)));
  const high = Math.max(-1, ...set);
  if (high < 0) return der.bits(Buffer.alloc(0));
  const bytes = Buffer.alloc((high >> 3) + 1);
  for (const i of set) bytes[i >> 3] = (bytes[i >> 3] as number) | (0x80 >> (i & 7));
  return der.bits(bytes, 7 - (high & 7));
}

const EKU_OIDS = { serverAuth: "1.3.6.1.5.5.7.3.1", clientAuth: "1.3.6.1.5.5.7.3.2" } as const;

export interface NameConstraintsSpec {
  readonly permittedUris?: readonly string[];
  readonly excludedUris?: readonly string[];
  readonly permittedDns?: readonly string[];
  readonly excludedDns?: readonly string[];
  readonly critical?: boolean;
}

function nameConstraintsValue(nc: NameConstraintsSpec): Buffer {
  const subtrees = (uris: readonly string[] = [], dns: readonly string[] = []) =>
    Buffer.concat([
      ...dns.map((d) => der.seq(derTlv(0x82, Buffer.from(d, "latin1")))),
      ...uris.map((u) => der.seq(derTlv(0x86, Buffer.from(u, "latin1")))),
    ]);
  const parts: Buffer[] = [];
  const permitted = subtrees(nc.permittedUris, nc.permittedDns);
  const excluded = subtrees(nc.excludedUris, nc.excludedDns);
  if (permitted.length) parts.push(derTlv(0xa0, permitted));
  if (excluded.length) parts.push(derTlv(0xa1, excluded));
  return der.seq(...parts);
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return der.seq(der.oid(oid), ...(critical ? [der.bool(true)] : []), der.octets(value));
}

function signatureAlgorithm(type: KeyType): { algId: Buffer; hash: string } {
  switch (type) {
    case "rsa-2048":
      return { algId: der.seq(der.oid("1.2.840.113549.1.1.11"), der.null()), hash: "sha256" };
    case "ec-p384":
      return { algId: der.seq(der.oid("1.2.840.10045.4.3.3")), hash: "sha384" };
    default:
      return { algId: der.seq(der.oid("1.2.840.10045.4.3.2")), hash: "sha256" };
  }
}

function keyId(publicKey: KeyObject): Buffer {
  return createHash("sha1")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest();
}

/** Everything about one certificate to generate; unset fields get SVID-leaf defaults. */
export interface CertificateSpec {
  /** "O=x, CN=y" (DER order); "" gives an empty subject. Default "O=Tessera Test". */
  readonly subject?: string;
  readonly uriSans?: readonly string[];
  readonly dnsSans?: readonly string[];
  /** Default: critical only when the subject is empty. */
  readonly sanCritical?: boolean;
  /** basicConstraints cA; null leaves the extension out. Default false. */
  readonly ca?: boolean | null;
  readonly pathLen?: number;
  /** Default true. */
  readonly bcCritical?: boolean;
  /** null leaves the extension out. Default ["digitalSignature"]. */
  readonly keyUsage?: readonly KeyUsageName[] | null;
  /** Default true. */
  readonly kuCritical?: boolean;
  /** null or absent leaves the extension out. */
  readonly extKeyUsage?: readonly ("serverAuth" | "clientAuth")[] | null;
  readonly nameConstraints?: NameConstraintsSpec;
  readonly extraExtensions?: readonly { oid: string; critical: boolean; value: Buffer }[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly keyType?: KeyType;
  /** Reuse a key pair (saves RSA key generation). */
  readonly key?: KeyPair;
}

export interface IssuedCertificate {
  readonly certificate: X509Certificate;
  readonly der: Buffer;
  readonly pem: string;
  readonly key: KeyPair;
  readonly privateKeyPem: string;
  readonly privateKeyDer: Buffer;
  readonly subjectDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssuedSvid {
  readonly id: string;
  readonly leaf: X509Certificate;
  /** Leaf first, then the intermediates up to (not including) the root. */
  readonly certificates: X509Certificate[];
  readonly privateKey: KeyObject;
  readonly key: KeyPair;
  readonly certificatesPem: string;
  /** Concatenated DER, the Workload API form. */
  readonly certificatesDer: Buffer;
  readonly privateKeyPem: string;
  readonly privateKeyDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const HOUR = 3600_000;

interface Signer {
  readonly subjectDer: Buffer;
  readonly key: KeyPair;
}

async function build(spec: CertificateSpec, issuer: Signer | undefined): Promise<IssuedCertificate> {
  const key = spec.key ?? (await generateKeyPair(spec.keyType ?? "ec-p256"));
  const subject = spec.subject ?? "O=Tessera Test";
  const subjectDer = encodeName(subject);
  const extensions: Buffer[] = [];
  if (spec.ca !== null) {
    const bc = der.seq(
      ...(spec.ca ? [der.bool(true)] : []),
      ...(spec.pathLen === undefined ? [] : [der.int(spec.pathLen)]),
    );
    extensions.push(extension("2.5.29.19", spec.bcCritical ?? true, bc));
  }
  const ku = spec.keyUsage === undefined ? (["digitalSignature"] as const) : spec.keyUsage;
  if (ku !== null) extensions.push(extension("2.5.29.15", spec.kuCritical ?? true, keyUsageValue(ku)));
  const names = [
    ...(spec.uriSans ?? []).map((u) => derTlv(0x86, Buffer.from(u, "latin1"))),
    ...(spec.dnsSans ?? []).map((d) => derTlv(0x82, Buffer.from(d, "latin1"))),
  ];
  if (names.length)
    extensions.push(extension("2.5.29.17", spec.sanCritical ?? subject === "", der.seq(...names)));
  if (spec.extKeyUsage) {
    extensions.push(
      extension("2.5.29.37", false, der.seq(...spec.extKeyUsage.map((u) => der.oid(EKU_OIDS[u])))),
    );
  }
  if (spec.nameConstraints) {
    extensions.push(
      extension(
        "2.5.29.30",
        spec.nameConstraints.critical ?? true,
        nameConstraintsValue(spec.nameConstraints),
      ),
    );
  }
  for (const e of spec.extraExtensions ?? []) extensions.push(extension(e.oid, e.critical, e.value));
  extensions.push(extension("2.5.29.14", false, der.octets(keyId(key.publicKey))));
  const signer = issuer ?? { subjectDer, key };
  extensions.push(extension("2.5.29.35", false, der.seq(derTlv(0x80, keyId(signer.key.publicKey)))));

  const now = Date.now();
  const notBefore = spec.notBefore ?? new Date(now - 5 * 60_000);
  const notAfter = spec.notAfter ?? new Date(now + HOUR);
  const serial = randomBytes(16);
  serial[0] = ((serial[0] as number) & 0x7f) | 0x01;
  const { algId, hash } = signatureAlgorithm(signer.key.type);
  const tbs = der.seq(
    derTlv(0xa0, der.int(2)),
    der.int(serial),
    algId,
    signer.subjectDer,
    der.seq(der.time(notBefore), der.time(notAfter)),
    subjectDer,
    key.publicKey.export({ type: "spki", format: "der" }),
    derTlv(0xa3, der.seq(...extensions)),
  );
  const signature = sign(hash, tbs, signer.key.privateKey);
  const certDer = der.seq(tbs, algId, der.bits(signature));
  const certificate = new X509Certificate(certDer);
  return {
    certificate,
    der: certDer,
    pem: certificate.toString(),
    key,
    privateKeyPem: key.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    privateKeyDer: key.privateKey.export({ type: "pkcs8", format: "der" }) as Buffer,
    subjectDer,
    notBefore: new Date(Math.floor(notBefore.getTime() / 1000) * 1000),
    notAfter: new Date(Math.floor(notAfter.getTime() / 1000) * 1000),
  };
}

export interface CaOptions {
  readonly keyType?: KeyType;
  readonly key?: KeyPair;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly pathLen?: number;
  readonly nameConstraints?: NameConstraintsSpec;
  readonly subject?: string;
  /** The CA's own URI SAN; default spiffe://<trust domain>; null for none. */
  readonly id?: string | null;
  readonly keyUsage?: readonly KeyUsageName[];
}

export type SvidOptions = Omit<CertificateSpec, "uriSans">;

/** A root or intermediate CA of one trust domain. */
export class TestCa {
  private constructor(
    readonly trustDomain: string,
    readonly issued: IssuedCertificate,
    readonly parent: TestCa | undefined,
  ) {}

  /** A self-signed root CA for `trustDomain` (default validity: one day before to one day after now). */
  static async create(trustDomain: string, options: CaOptions = {}): Promise<TestCa> {
    return new TestCa(trustDomain, await build(TestCa.caSpec(trustDomain, options), undefined), undefined);
  }

  private static caSpec(trustDomain: string, o: CaOptions): CertificateSpec {
    const now = Date.now();
    const id = o.id === undefined ? `spiffe://${trustDomain}` : o.id;
    return {
      subject: o.subject ?? `O=Tessera Test CA, CN=${trustDomain} ${randomBytes(3).toString("hex")}`,
      uriSans: id === null ? [] : [id],
      ca: true,
      pathLen: o.pathLen,
      keyUsage: o.keyUsage ?? ["keyCertSign", "cRLSign"],
      nameConstraints: o.nameConstraints,
      notBefore: o.notBefore ?? new Date(now - 24 * HOUR),
      notAfter: o.notAfter ?? new Date(now + 24 * HOUR),
      keyType: o.keyType ?? "ec-p256",
      key: o.key,
    };
  }

  /** A certificate self-signed by its own fresh key (for malformed-leaf cases). */
  static async selfSigned(spec: CertificateSpec): Promise<IssuedCertificate> {
    return build(spec, undefined);
  }

  get certificate(): X509Certificate {
    return this.issued.certificate;
  }

  get privateKey(): KeyObject {
    return this.issued.key.privateKey;
  }

  get root(): TestCa {
    return this.parent ? this.parent.root : this;
  }

  /** What a bundle of this trust domain holds: the root certificate. */
  get authorities(): X509Certificate[] {
    return [this.root.certificate];
  }

  /** This CA's certificate and its ancestors', up to but not including the root. */
  get intermediates(): X509Certificate[] {
    return this.parent ? [this.certificate, ...this.parent.intermediates] : [];
  }

  /** An intermediate CA signed by this one (same trust domain unless `trustDomain` is given). */
  async createIntermediate(options: CaOptions & { trustDomain?: string } = {}): Promise<TestCa> {
    const td = options.trustDomain ?? this.trustDomain;
    return new TestCa(td, await this.issue(TestCa.caSpec(td, options)), this);
  }

  /** Any certificate signed by this CA. */
  async issue(spec: CertificateSpec): Promise<IssuedCertificate> {
    return build(spec, this.issued);
  }

  /**
   * An X.509-SVID for `id`: digitalSignature, cA false, EKU serverAuth+clientAuth, valid from
   * 5 minutes ago for one hour unless told otherwise. `options` may override any field.
   */
  async issueSvid(id: string, options: SvidOptions = {}): Promise<IssuedSvid> {
    const leaf = await this.issue({
      extKeyUsage: ["serverAuth", "clientAuth"],
      subject: "O=Tessera Test Workload",
      ...options,
      uriSans: [id],
    });
    const certificates = [leaf.certificate, ...this.intermediates];
    const facts = { notBefore: leaf.notBefore, notAfter: leaf.notAfter };
    return {
      id,
      leaf: leaf.certificate,
      certificates,
      privateKey: leaf.key.privateKey,
      key: leaf.key,
      certificatesPem: certificates.map((c) => c.toString()).join(""),
      certificatesDer: Buffer.concat(certificates.map((c) => c.raw)),
      privateKeyPem: leaf.privateKeyPem,
      privateKeyDer: leaf.privateKeyDer,
      ...facts,
    };
  }
}

/** A bundle source over fixed authorities: `{ "example.org": [cert, ...] }`. */
export function bundleSource(entries: Record<string, readonly X509Certificate[]>): X509BundleSource {
  const bundles = new Map<string, X509Bundle>();
  for (const [name, certs] of Object.entries(entries)) {
    const td = TrustDomain.parse(name);
    bundles.set(td.name, X509Bundle.fromCertificates(td, certs));
  }
  return { getX509BundleForTrustDomain: (td) => bundles.get(td.name) };
}
