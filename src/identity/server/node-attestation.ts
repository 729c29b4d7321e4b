/**
 * Node attestation: how an agent proves which node it runs on before it gets an agent SVID.
 *
 * - `join_token`: a one-use secret an administrator generated (`tessera token generate`). The
 *   store spends it atomically (one use across replicas, before its TTL). Agent ID, as SPIRE:
 *   `spiffe://<td>/spire/agent/join_token/<token>` (the token is spent: it no longer grants
 *   anything). No node selectors.
 * - `x509pop`: proof of possession of a node certificate issued by the CA given with
 *   `--x509pop-ca`. Step 1: the agent sends its certificate chain (leaf first, DER base64); the
 *   server checks it chains to that CA and answers a fresh nonce (32 random bytes, base64, one
 *   use, 60 s). Step 2: the agent signs the nonce bytes with the node key (ECDSA: SHA-256, DER
 *   signature; RSA: SHA-256 PKCS#1 v1.5; Ed25519: pure) and sends the chain, nonce, signature
 *   and its CSR. Agent ID, as SPIRE: `spiffe://<td>/spire/agent/x509pop/<SHA-1 hex of the leaf
 *   DER>`; node selectors `x509pop:subject:cn:<CN>`, `x509pop:serialnumber:<hex>` and
 *   `x509pop:ca:fingerprint:<SHA-1 hex>` of each CA certificate on the path.
 *   Nonces are kept in the memory of the replica that issued them: both steps must reach the
 *   same replica.
 */
import { createHash, randomBytes, verify as verifySignature, X509Certificate } from "node:crypto";
import type { TrustDomain } from "../../spiffe/id.js";
import type { Datastore } from "../store/datastore.js";
import { ApiFailure, badRequest, base64Field } from "./http.js";

export interface AttestedNode {
  readonly spiffeId: string;
  readonly attestationType: "join_token" | "x509pop";
  readonly selectors: readonly string[];
}

export const NONCE_TTL_MS = 60_000;
const MAX_PENDING_NONCES = 10_000;
const MAX_CHAIN = 8;

export function joinTokenAgentId(trustDomain: TrustDomain, token: string): string {
  return `${trustDomain.idString()}/spire/agent/join_token/${token}`;
}

/** Short, non-reversible form of a secret for logs. */
export function secretTag(secret: string): string {
  return `sha256:${createHash("sha256").update(secret).digest("hex").slice(0, 12)}`;
}

export async function attestJoinToken(
  store: Datastore,
  trustDomain: TrustDomain,
  token: string,
): Promise<AttestedNode> {
  if (!/^[A-Za-z0-9._-]{16,256}$/.test(token)) {
    throw new ApiFailure(
      403,
      "join-token-unknown",
      "the join token is not valid: generate one with `tessera token generate` on the server",
    );
  }
  const r = await store.spendJoinToken(token);
  switch (r.status) {
    case "ok":
      return { spiffeId: joinTokenAgentId(trustDomain, token), attestationType: "join_token", selectors: [] };
    case "used":
      throw new ApiFailure(
        403,
        "join-token-used",
        "the join token was already used (a join token is good for one attestation): generate a new one with `tessera token generate`",
      );
    case "expired":
      throw new ApiFailure(
        403,
        "join-token-expired",
        `the join token expired at ${r.expiresAt.toISOString()}: generate a new one with \`tessera token generate\``,
      );
    default:
      throw new ApiFailure(
        403,
        "join-token-unknown",
        "the server does not know this join token: generate one with `tessera token generate` on this server",
      );
  }
}

function fingerprintSha1(cert: X509Certificate): string {
  return createHash("sha1").update(cert.raw).digest("hex");
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

function commonName(cert: X509Certificate): string | undefined {
  for (const line of cert.subject.split("\n")) {
    if (line.startsWith("CN=")) return line.slice(3);
  }
  return undefined;
}

export class X509PopAttestor {
  readonly #roots: readonly X509Certificate[];
  readonly #nonces = new Map<string, { fingerprint: string; expires: number }>();

  constructor(
    private readonly trustDomain: TrustDomain,
    roots: readonly X509Certificate[],
    private readonly clock: () => Date = () => new Date(),
  ) {
    if (roots.length === 0) throw new Error("the x509pop CA file holds no certificate");
    this.#roots = roots;
  }

  /** Step 1: checks the chain, answers a one-use nonce. */
  challenge(certificates: unknown): { nonce: string } {
    const { leaf } = this.#verifyChain(certificates);
    const now = this.clock().getTime();
    for (const [n, v] of this.#nonces) if (v.expires <= now) this.#nonces.delete(n);
    if (this.#nonces.size >= MAX_PENDING_NONCES) {
      throw new ApiFailure(
        503,
        "too-many-challenges",
        "too many x509pop challenges are pending: try again in a minute",
        {
          "retry-after": "60",
        },
      );
    }
    const nonce = randomBytes(32).toString("base64");
    this.#nonces.set(nonce, { fingerprint: fingerprintSha1(leaf), expires: now + NONCE_TTL_MS });
    return { nonce };
  }

  /** Step 2: the signature of the nonce proves possession of the node key. */
  verify(certificates: unknown, nonce: unknown, signature: unknown): AttestedNode {
    const { leaf, path } = this.#verifyChain(certificates);
    if (typeof nonce !== "string" || nonce === "") badRequest('"nonce" must be the nonce the server sent');
    const sig = base64Field(signature, '"signature"');
    const pending = this.#nonces.get(nonce);
    const now = this.clock().getTime();
    if (!pending || pending.expires <= now || pending.fingerprint !== fingerprintSha1(leaf)) {
      throw new ApiFailure(
        403,
        "x509pop-unknown-nonce",
        "the nonce is unknown, expired or for another certificate: start x509pop attestation again (method x509pop)",
      );
    }
    this.#nonces.delete(nonce);
    const type = leaf.publicKey.asymmetricKeyType;
    const alg = type === "ed25519" || type === "ed448" ? null : "sha256";
    let ok = false;
    try {
      ok = verifySignature(alg, Buffer.from(nonce, "base64"), leaf.publicKey, sig);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new ApiFailure(
        403,
        "x509pop-bad-signature",
        "the signature does not verify with the node certificate's key: sign the nonce bytes (base64-decoded) with the node's private key, SHA-256",
      );
    }
    const fp = fingerprintSha1(leaf);
    const cn = commonName(leaf);
    const selectors = [
      ...(cn ? [`x509pop:subject:cn:${cn}`] : []),
      `x509pop:serialnumber:${leaf.serialNumber.toLowerCase()}`,
      ...path.slice(1).map((c) => `x509pop:ca:fingerprint:${fingerprintSha1(c)}`),
    ];
    return {
      spiffeId: `${this.trustDomain.idString()}/spire/agent/x509pop/${fp}`,
      attestationType: "x509pop",
      selectors,
    };
  }

  #verifyChain(certificates: unknown): { leaf: X509Certificate; path: X509Certificate[] } {
    if (!Array.isArray(certificates) || certificates.length === 0 || certificates.length > MAX_CHAIN) {
      badRequest(
        `"certificates" must be the node certificate chain, leaf first: 1 to ${MAX_CHAIN} base64 DER certificates`,
      );
    }
    const chain = certificates.map((c, i) => {
      const der = base64Field(c, `certificates[${i}]`);
      try {
        return new X509Certificate(der);
      } catch {
        return badRequest(`certificates[${i}] is not a DER X.509 certificate`, "malformed-certificate");
      }
    });
    const leaf = chain[0] as X509Certificate;
    const now = this.clock();
    const refuse = (m: string): never => {
      throw new ApiFailure(
        403,
        "x509pop-untrusted",
        `${m}: the node certificate must be issued by the --x509pop-ca of this server`,
      );
    };
    if (leaf.ca) refuse("the node certificate is a CA certificate");
    const path: X509Certificate[] = [leaf];
    let cur = leaf;
    for (let hops = 0; hops <= MAX_CHAIN; hops++) {
      if (new Date(cur.validFrom) > now || new Date(cur.validTo) <= now) {
        refuse(
          `the certificate ${cur.subject.replace(/\n/g, ", ")} is not valid now (${cur.validFrom} to ${cur.validTo})`,
        );
      }
      const root = this.#roots.find((r) => r.raw.equals(cur.raw) || issuedBy(cur, r));
      if (root) {
        if (!root.raw.equals(cur.raw)) path.push(root);
        return { leaf, path };
      }
      const next = chain.find((c) => c !== cur && c.ca && !path.includes(c) && issuedBy(cur, c));
      if (!next) break;
      path.push(next);
      cur = next;
    }
    return refuse("the node certificate does not chain to the x509pop CA");
  }
}
