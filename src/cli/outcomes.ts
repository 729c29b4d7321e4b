import type { Outcome } from "../policy/model.js";

/** What a caller observes, in the words its tools print. */
export const OUTCOME_TEXT: Readonly<Record<Outcome, string>> = {
  forwarded: "forwarded: the server answers",
  dropped: "dropped at L3/L4 by NetworkPolicy: no answer, the caller times out",
  "dns-blocked": "name resolution blocked: the Service name does not resolve",
  "connection-reset": "connection reset (curl: (56) Recv failure: Connection reset by peer)",
  "handshake-failed": "TLS handshake failed: the peer's trust domain is not trusted",
  "http-403": "403 RBAC: access denied",
  "grpc-permission-denied": "gRPC PermissionDenied: RBAC: access denied",
  "tcp-closed": "connection closed by the proxy (RBAC: access denied)",
};
