import { InvalidSpiffeIdError, TrustDomain } from "../id.js";
import { BundleError } from "./errors.js";
import { formatJsonPath, isJsonObject, JsonReadError, readJson } from "./json.js";
import { type SpiffeBundle, spiffeBundleFromJson } from "./spiffebundle.js";

/**
 * Reads a bundle map (SPIFFE_Trust_Domain_and_Bundle.md §5): `{"trust_domains": {name: bundle}}`.
 * The result is keyed by the normalised trust domain name, in document order.
 *
 * Keys are bare trust domain names, not `spiffe://` IDs. They are case-insensitive (SPIFFE-ID.md
 * §2.4), so `Example.org` and `example.org` are the same trust domain and, like any repeated
 * name, make the map ambiguous: it is refused rather than resolved by "last one wins".
 * Refresh hints inside entries belong to those bundles only; they say nothing about the map.
 */
export function parseBundleMap(json: Buffer | string): Map<string, SpiffeBundle> {
  let doc: ReturnType<typeof readJson>;
  try {
    doc = readJson(json);
  } catch (e) {
    if (!(e instanceof JsonReadError)) throw e;
    if (e.kind === "duplicate" && e.path.length === 1 && e.path[0] === "trust_domains") {
      throw new BundleError(
        "duplicate-trust-domain",
        `bundle map: trust domain ${JSON.stringify(e.member)} appears twice (§5.1.1)`,
      );
    }
    if (e.kind === "duplicate") throw new BundleError("duplicate-member", `bundle map: ${e.message}`);
    throw new BundleError("not-json", `bundle map is not valid JSON: ${e.message}`);
  }
  if (!isJsonObject(doc)) throw new BundleError("not-bundle-map", "a bundle map is a JSON object");
  const domains = doc.get("trust_domains");
  if (domains === undefined || domains === null) {
    throw new BundleError("trust-domains-missing", "a bundle map must have a trust_domains member (§5.1.1)");
  }
  if (!isJsonObject(domains)) {
    throw new BundleError("not-bundle-map", "trust_domains must be a JSON object keyed by trust domain name");
  }
  const out = new Map<string, SpiffeBundle>();
  for (const [name, value] of domains) {
    const where = formatJsonPath(["trust_domains", name]);
    const td = trustDomainKey(name, where);
    if (out.has(td.name)) {
      throw new BundleError(
        "duplicate-trust-domain",
        `bundle map: ${JSON.stringify(name)} is the same trust domain as an earlier key (names are case-insensitive)`,
      );
    }
    out.set(td.name, spiffeBundleFromJson(td, value, ["trust_domains", name]));
  }
  return out;
}

/** Writes the bundles as a §5 map; two bundles of one trust domain would be ambiguous, so that fails. */
export function marshalBundleMap(bundles: Iterable<SpiffeBundle>): string {
  const parts: string[] = [];
  const seen = new Set<string>();
  for (const b of bundles) {
    if (seen.has(b.trustDomain.name)) {
      throw new BundleError("duplicate-trust-domain", `two bundles for trust domain ${b.trustDomain.name}`);
    }
    seen.add(b.trustDomain.name);
    parts.push(`${JSON.stringify(b.trustDomain.name)}:${b.marshal()}`);
  }
  return `{"trust_domains":{${parts.join(",")}}}`;
}

function trustDomainKey(name: string, where: string): TrustDomain {
  // TrustDomain.parse would also take an ID ("spiffe://x"); a map key must be the bare name.
  if (name.includes(":")) {
    throw new BundleError(
      "invalid-trust-domain",
      `${where}: a key must be a bare trust domain name, not an ID`,
    );
  }
  try {
    return TrustDomain.parse(name);
  } catch (e) {
    if (e instanceof InvalidSpiffeIdError) {
      throw new BundleError("invalid-trust-domain", `${where}: not a trust domain name (${e.message})`);
    }
    throw e;
  }
}
