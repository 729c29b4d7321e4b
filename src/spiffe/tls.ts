import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import type { Authorizer } from "./authorizer.js";
import type { X509Bundle, X509BundleSource } from "./bundle/x509bundle.js";
import type { SpiffeId } from "./id.js";
import { verifyX509Svid, type X509Svid } from "./x509svid.js";

/**
 * What the TLS helpers need from an X.509 source (X509Source implements it): the current
 * SVID, bundles by trust domain, every bundle (for OpenSSL's path building) and rotation events.
 */
export interface TlsSource extends X509BundleSource {
  getX509Svid(): X509Svid;
  getX509Bundles(): readonly X509Bundle[];
  on(event: "update", listener: () => void): unknown;
  off(event: "update", listener: () => void): unknown;
}

/** A TLS socket whose peer presented a verified and authorized X.509-SVID. */
export type SpiffeTlsSocket = tls.TLSSocket & { readonly peerId: SpiffeId };

/**
 * Key, chain and trust store from the source's current state. `ca` holds every trust domain's
 * authorities because Node has one store per context; the per-trust-domain anchor check that
 * SPIFFE requires is done by `verifyPeer` before any application data is handed over.
 */
export function secureContextOptions(source: TlsSource): tls.SecureContextOptions {
  const svid = source.getX509Svid();
  const { certificates, privateKey } = svid.marshal();
  const ca = source.getX509Bundles().flatMap((b) => b.authorities.map((c) => c.toString()));
  return { key: privateKey, cert: certificates, ca, minVersion: "TLSv1.2" };
}

/** The peer's certificates, leaf first, as the handshake delivered them. */
export function peerChain(peer: tls.PeerCertificate | tls.DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let current: tls.DetailedPeerCertificate | undefined = peer as tls.DetailedPeerCertificate;
  while (current?.raw && !seen.has(current.fingerprint256)) {
    seen.add(current.fingerprint256);
    chain.push(new X509Certificate(current.raw));
    current = current.issuerCertificate;
  }
  return chain;
}

/**
 * Verifies a peer chain against the bundle of the peer's own trust domain only (never against
 * another domain's roots, which Node's single `ca` store would accept), then authorizes it.
 * Throws an error that says which rule failed.
 */
export function verifyPeer(
  chain: readonly X509Certificate[],
  bundles: X509BundleSource,
  authorizer: Authorizer,
  at: Date = new Date(),
): SpiffeId {
  // OpenSSL appends the anchor it found in the shared store; the SPIFFE check finds its own.
  const presented =
    chain.length > 1 && chain.at(-1)?.checkIssued(chain.at(-1) as X509Certificate)
      ? chain.slice(0, -1)
      : chain;
  const { id } = verifyX509Svid(presented, bundles, { at });
  authorizer(id, presented);
  return id;
}

export interface SpiffeServerOptions extends Omit<tls.TlsOptions, "key" | "cert" | "ca" | "requestCert"> {
  /** The clock for certificate validity (tests). */
  readonly now?: () => Date;
}

/**
 * A TLS server that requires a client X.509-SVID, verifies it per trust domain and authorizes
 * it before calling `onConnection`. Follows SVID rotation without restarting: on every update
 * of the source the server's secure context is replaced (`setSecureContext`), which also
 * covers clients that send no SNI (peers dialing an IP).
 */
export function createSpiffeTlsServer(
  source: TlsSource,
  authorizer: Authorizer,
  onConnection: (socket: SpiffeTlsSocket) => void,
  options: SpiffeServerOptions = {},
): tls.Server {
  const { now, ...tlsOptions } = options;
  const server = tls.createServer({
    ...tlsOptions,
    ...secureContextOptions(source),
    requestCert: true,
    rejectUnauthorized: true,
  });
  const onUpdate = () => server.setSecureContext(secureContextOptions(source));
  source.on("update", onUpdate);
  server.on("close", () => source.off("update", onUpdate));
  server.on("secureConnection", (socket) => {
    let peerId: SpiffeId;
    try {
      peerId = verifyPeer(
        peerChain(socket.getPeerCertificate(true)),
        source,
        authorizer,
        now?.() ?? new Date(),
      );
    } catch (e) {
      server.emit("spiffeError", e, socket);
      socket.destroy();
      return;
    }
    Object.defineProperty(socket, "peerId", { value: peerId, enumerable: true });
    onConnection(socket as SpiffeTlsSocket);
  });
  return server;
}

export interface SpiffeConnectOptions
  extends Omit<tls.ConnectionOptions, "key" | "cert" | "ca" | "checkServerIdentity"> {
  readonly now?: () => Date;
}

/**
 * Connects with the source's current SVID and resolves once the server's X.509-SVID verified
 * against the bundle of its own trust domain and passed the authorizer; otherwise rejects with
 * the error that names the failed rule. Each call uses the SVID current at that moment.
 */
export function connectSpiffeTls(
  source: TlsSource,
  authorizer: Authorizer,
  options: SpiffeConnectOptions,
): Promise<SpiffeTlsSocket> {
  const { now, ...connectOptions } = options;
  return new Promise((resolve, reject) => {
    let peerId: SpiffeId | undefined;
    const socket = tls.connect({
      ...connectOptions,
      ...secureContextOptions(source),
      rejectUnauthorized: true,
      // Called during the handshake, before "secureConnect": a refusal here means no
      // application data is ever written to an unverified server.
      checkServerIdentity: (_host, cert) => {
        try {
          peerId = verifyPeer(peerChain(cert), source, authorizer, now?.() ?? new Date());
          return undefined;
        } catch (e) {
          return e instanceof Error ? e : new Error(String(e));
        }
      },
    });
    socket.once("secureConnect", () => {
      socket.off("error", reject);
      if (!peerId) {
        socket.destroy();
        reject(new Error("the server identity was not verified"));
        return;
      }
      Object.defineProperty(socket, "peerId", { value: peerId, enumerable: true });
      resolve(socket as SpiffeTlsSocket);
    });
    socket.once("error", reject);
  });
}
