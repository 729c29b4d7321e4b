/**
 * The wire contract between Tessera's identity server and its agents (Agent API) and admin
 * tools (Admin API). JSON over HTTP: the Agent API over TLS where every call but attestation
 * requires the agent's X.509-SVID (mutual TLS); the Admin API over a Unix socket whose file
 * permissions restrict it. Binary values (DER certificates, CSRs) are base64 (standard).
 */

/** Agent API paths (server, TLS on --bind, default 127.0.0.1:8081). */
export const AGENT_API = {
  /** Node attestation; no client certificate needed. Body: AttestRequest → AttestResponse. */
  attest: "/agent/v1/attest",
  /** Renew the agent SVID (mTLS). Body: { csr } → AgentSvidResponse. */
  renew: "/agent/v1/renew",
  /** The agent's authorized entries and the trust bundle (mTLS). GET → SyncResponse. */
  sync: "/agent/v1/sync",
  /** Sign workload X.509-SVIDs for authorized entries (mTLS). SignRequest → SignResponse. */
  sign: "/agent/v1/sign",
  /** Mint a JWT-SVID for an authorized entry (mTLS). JwtRequest → JwtResponse. */
  jwt: "/agent/v1/jwt",
} as const;

/** Admin API paths (server, HTTP on the Unix socket DATA_DIR/admin.sock). */
export const ADMIN_API = {
  entries: "/admin/v1/entries",
  /** + "/" + encodeURIComponent(id) for show (GET), update (PATCH with {revision, ...changes}), delete (DELETE). */
  entry: "/admin/v1/entries/",
  joinTokens: "/admin/v1/join-tokens",
  agents: "/admin/v1/agents",
  /** + encodeURIComponent(agentSpiffeId) [+ "/ban"]: DELETE deletes, POST .../ban bans. */
  agent: "/admin/v1/agents/",
  /** GET ?format=pem|spiffe */
  bundle: "/admin/v1/bundle",
  caPrepare: "/admin/v1/ca/prepare",
  caActivate: "/admin/v1/ca/activate",
  health: "/healthz",
} as const;

/** Errors on both APIs: HTTP status + this body. `code` is stable; `message` says what to do next. */
export interface ApiError {
  readonly code: string;
  readonly message: string;
}

export type AttestRequest =
  | { readonly method: "join_token"; readonly token: string; readonly csr: string }
  /** Step 1 of x509pop: the node presents its certificate chain; the server answers a nonce. */
  | { readonly method: "x509pop"; readonly certificates: readonly string[] }
  /** Step 2 of x509pop: the signature of the nonce with the node key proves possession. */
  | {
      readonly method: "x509pop_response";
      readonly certificates: readonly string[];
      readonly nonce: string;
      /** Signature over the nonce bytes with the node certificate's key (base64). */
      readonly signature: string;
      readonly csr: string;
    };

export interface X509PopChallenge {
  readonly nonce: string;
}

/** The agent's SVID: `spiffe://<td>/spire/agent/join_token/<token>` or `.../x509pop/<sha1 of node cert>`. */
export interface AgentSvidResponse {
  readonly spiffeId: string;
  /** DER certificates, leaf first (base64). */
  readonly svid: readonly string[];
  /** The trust domain's SPIFFE bundle (JWKS text with spiffe_sequence). */
  readonly bundle: string;
}

export type AttestResponse = AgentSvidResponse | X509PopChallenge;

export interface WireEntry {
  readonly id: string;
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly string[];
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly dnsNames: readonly string[];
  readonly hint: string;
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly expiresAt?: string;
  readonly revision: number;
}

export interface SyncResponse {
  readonly entries: readonly WireEntry[];
  readonly bundle: string;
}

export interface SignRequest {
  readonly requests: ReadonlyArray<{ readonly entryId: string; readonly csr: string }>;
}

export interface SignResponse {
  readonly svids: ReadonlyArray<{
    readonly entryId: string;
    readonly spiffeId: string;
    readonly certificates: readonly string[];
    readonly expiresAt: string;
  }>;
}

export interface JwtRequest {
  readonly entryId: string;
  readonly audience: readonly string[];
}

export interface JwtResponse {
  readonly spiffeId: string;
  readonly token: string;
  readonly expiresAt: string;
}
