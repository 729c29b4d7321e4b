import { EventEmitter } from "node:events";
import type { X509Bundle } from "../../src/spiffe/bundle/x509bundle.js";
import type { TrustDomain } from "../../src/spiffe/id.js";
import type { TlsSource } from "../../src/spiffe/tls.js";
import { X509Svid } from "../../src/spiffe/x509svid.js";
import type { IssuedSvid } from "./testca.js";

/** A source whose SVID the test sets and rotates by hand. */
export class ManualSource extends EventEmitter implements TlsSource {
  constructor(
    private svid: X509Svid,
    private bundles: X509Bundle[],
  ) {
    super();
  }
  getX509Svid(): X509Svid {
    return this.svid;
  }
  getX509Bundles(): readonly X509Bundle[] {
    return this.bundles;
  }
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.bundles.find((b) => b.trustDomain.equals(td));
  }
  rotate(svid: X509Svid, bundles?: X509Bundle[]): void {
    this.svid = svid;
    if (bundles) this.bundles = bundles;
    this.emit("update");
  }
}

export const toSvid = (issued: IssuedSvid) => X509Svid.parse(issued.certificatesPem, issued.privateKeyPem);
