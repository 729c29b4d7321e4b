import type { TrustDomain } from "../id.js";
import type { JwtBundle, JwtBundleSource } from "./jwtbundle.js";
import type { SpiffeBundle } from "./spiffebundle.js";
import type { X509Bundle, X509BundleSource } from "./x509bundle.js";

/**
 * Bundles of several trust domains, at most one per trust domain. Bundles are never merged:
 * adding a bundle replaces the one of its trust domain as a whole, because the Workload API
 * sends complete state and a root left over from an old bundle (or borrowed from another trust
 * domain) must not keep verifying SVIDs (SPIFFE_Workload_API.md §4.6, X509-SVID.md §5).
 */
export class BundleSet<B extends { readonly trustDomain: TrustDomain }> implements Iterable<B> {
  private readonly byName = new Map<string, B>();

  constructor(bundles: Iterable<B> = []) {
    for (const b of bundles) this.add(b);
  }

  /** Sets the bundle of `bundle.trustDomain`, replacing any bundle that trust domain had. */
  add(bundle: B): void {
    this.byName.set(bundle.trustDomain.name, bundle);
  }

  /** The bundle of exactly this trust domain, or undefined: there is no fallback to another one. */
  get(trustDomain: TrustDomain): B | undefined {
    const b = this.byName.get(trustDomain.name);
    return b?.trustDomain.equals(trustDomain) ? b : undefined;
  }

  has(trustDomain: TrustDomain): boolean {
    return this.get(trustDomain) !== undefined;
  }

  /** Removes the bundle of that trust domain; true if there was one. */
  remove(trustDomain: TrustDomain): boolean {
    return this.byName.delete(trustDomain.name);
  }

  trustDomains(): TrustDomain[] {
    return [...this.byName.values()].map((b) => b.trustDomain);
  }

  bundles(): B[] {
    return [...this.byName.values()];
  }

  get size(): number {
    return this.byName.size;
  }

  [Symbol.iterator](): Iterator<B> {
    return this.byName.values();
  }
}

export class X509BundleSet extends BundleSet<X509Bundle> implements X509BundleSource {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.get(trustDomain);
  }
}

export class JwtBundleSet extends BundleSet<JwtBundle> implements JwtBundleSource {
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.get(trustDomain);
  }
}

/** Federated SPIFFE bundles, usable wherever X.509 or JWT bundles are asked for. */
export class SpiffeBundleSet extends BundleSet<SpiffeBundle> implements X509BundleSource, JwtBundleSource {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.get(trustDomain)?.x509Bundle();
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle | undefined {
    return this.get(trustDomain)?.jwtBundle();
  }
}
