import type { X509Certificate } from "node:crypto";
import { EventEmitter } from "node:events";
import tls from "node:tls";
import type { X509BundleSource } from "../../spiffe/bundle/x509bundle.js";
import { peerChain, secureContextOptions, type TlsSource, verifyPeer } from "../../spiffe/tls.js";
import { X509SvidError } from "../../spiffe/x509errors.js";

/** Why a peer's certificate was refused, as metrics and logs name it. */
export type HandshakeFailureReason =
  | "plaintext-refused"
  | "no-client-certificate"
  | "expired"
  | "not-yet-valid"
  | "untrusted-trust-domain"
  | "unknown-authority"
  | "invalid-certificate"
  | "identity-mismatch"
  | "tls-error"
  | "not-ready";

export class HandshakeFailure extends Error {
  constructor(
    readonly reason: HandshakeFailureReason,
    message: string,
    /** For certificate-time failures: how far the peer's validity is from this host's clock, in ms. */
    readonly clockOffsetMs?: number,
  ) {
    super(message);
  }

  /** A hint for people when the failure is about time: clocks that disagree look like bad certificates. */
  get clockSkewHint(): string | undefined {
    if (this.clockOffsetMs === undefined) return undefined;
    const s = (this.clockOffsetMs / 1000).toFixed(1);
    return this.reason === "not-yet-valid"
      ? `possible clock skew: the peer certificate becomes valid ${s} s after this host's clock; check NTP on both hosts`
      : `possible clock skew: the peer certificate expired ${s} s before this host's clock; check NTP on both hosts, or the peer's SVID rotation`;
  }
}

/**
 * The workload's X.509-SVID as TLS contexts, following rotation: every update of the source
 * builds new server and client contexts; connections already open keep theirs, new ones get
 * the new SVID. Until the first SVID arrives the identity is not ready and the sidecar refuses
 * traffic.
 */
export class ProxyIdentity extends EventEmitter {
  #context: tls.SecureContext | undefined;
  #id: string | undefined;
  #source: TlsSource | undefined;
  readonly #onUpdate = () => this.#refresh();

  constructor(private readonly now: () => Date = () => new Date()) {
    super();
  }

  /** Follows a source (an X509Source from the Workload API). */
  attach(source: TlsSource): void {
    this.#source?.off("update", this.#onUpdate);
    this.#source = source;
    source.on("update", this.#onUpdate);
    this.#refresh();
  }

  detach(): void {
    this.#source?.off("update", this.#onUpdate);
    this.#source = undefined;
    this.#context = undefined;
    this.#id = undefined;
  }

  #refresh(): void {
    const source = this.#source;
    if (!source) return;
    try {
      const svid = source.getX509Svid();
      this.#context = tls.createSecureContext(secureContextOptions(source));
      const previous = this.#id;
      this.#id = svid.id.toString();
      this.emit("rotated", { id: this.#id, previous, notAfter: new Date(svid.leaf.validTo) });
    } catch (err) {
      // The Workload API withdrew the identity (PermissionDenied): refuse until it grants one again.
      this.#context = undefined;
      this.#id = undefined;
      this.emit("withdrawn", err);
    }
  }

  get ready(): boolean {
    return this.#context !== undefined;
  }

  /** The workload's own SPIFFE ID, when it holds one. */
  get id(): string | undefined {
    return this.#id;
  }

  /** The current context; throws when there is no identity (callers refuse the traffic). */
  get secureContext(): tls.SecureContext {
    if (!this.#context) throw new HandshakeFailure("not-ready", "the sidecar has no identity yet");
    return this.#context;
  }

  get bundles(): X509BundleSource {
    if (!this.#source) throw new HandshakeFailure("not-ready", "the sidecar has no identity yet");
    return this.#source;
  }

  /**
   * Verifies the peer of an established TLS socket against the bundle of the peer's own trust
   * domain and returns its SPIFFE ID; throws a HandshakeFailure that says why not.
   */
  verify(socket: tls.TLSSocket): string {
    const cert = socket.getPeerCertificate(true);
    if (!cert || !("raw" in cert) || !cert.raw) {
      throw new HandshakeFailure("no-client-certificate", "the peer presented no certificate");
    }
    return this.verifyChain(peerChain(cert));
  }

  verifyChain(chain: readonly X509Certificate[]): string {
    const at = this.now();
    try {
      return verifyPeer(chain, this.bundles, () => undefined, at).toString();
    } catch (err) {
      throw classify(err, chain[0], at);
    }
  }
}

function classify(err: unknown, leaf: X509Certificate | undefined, at: Date): HandshakeFailure {
  if (err instanceof HandshakeFailure) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof X509SvidError)) return new HandshakeFailure("invalid-certificate", message);
  switch (err.reason) {
    case "expired": {
      const offset = leaf ? at.getTime() - new Date(leaf.validTo).getTime() : undefined;
      return new HandshakeFailure("expired", message, offset);
    }
    case "not-yet-valid": {
      const offset = leaf ? new Date(leaf.validFrom).getTime() - at.getTime() : undefined;
      return new HandshakeFailure("not-yet-valid", message, offset);
    }
    case "no-bundle-for-trust-domain":
      return new HandshakeFailure("untrusted-trust-domain", message);
    case "unknown-authority":
      return new HandshakeFailure("unknown-authority", message);
    default:
      return new HandshakeFailure("invalid-certificate", message);
  }
}
