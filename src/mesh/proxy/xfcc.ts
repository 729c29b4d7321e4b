import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";

/**
 * The X-Forwarded-Client-Cert value Istio's sidecar sets on inbound mTLS requests:
 * `By=<own SPIFFE ID>;Hash=<SHA-256 of the peer's leaf DER, hex>;Subject="";URI=<peer SPIFFE ID>`.
 * Any such header from the client is dropped first: the value comes from the verified
 * certificate, never from what the peer wrote.
 */
export function xfccValue(ownId: string, peerId: string, peerLeafDer: Buffer): string {
  const hash = createHash("sha256").update(peerLeafDer).digest("hex");
  return `By=${ownId};Hash=${hash};Subject="";URI=${peerId}`;
}

export function xfccOf(socket: TLSSocket, ownId: string, peerId: string): string {
  const raw = socket.getPeerCertificate(false)?.raw;
  return xfccValue(ownId, peerId, raw ?? Buffer.alloc(0));
}

export const XFCC_HEADER = "x-forwarded-client-cert";
