/**
 * A fake agent for server tests: node:https calls to the Agent API, with or without its agent
 * SVID as client certificate, and PEM helpers. The server's certificate is checked to be the
 * X.509-SVID `spiffe://<td>/spire/server` whenever a bundle is known.
 */
import { X509Certificate } from "node:crypto";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { authorizeId } from "../../../src/spiffe/authorizer.js";
import { SpiffeBundle } from "../../../src/spiffe/bundle/spiffebundle.js";
import { SpiffeId, TrustDomain } from "../../../src/spiffe/id.js";
import { peerChain, verifyPeer } from "../../../src/spiffe/tls.js";
import { makeCsr, type TestKeyPair, workloadKey } from "./ca/helpers.js";

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

export interface ClientSvid {
  readonly certificates: readonly X509Certificate[];
  readonly key: TestKeyPair;
}

export function svidFromResponse(svid: readonly string[], key: TestKeyPair): ClientSvid {
  return { certificates: svid.map((b) => new X509Certificate(Buffer.from(b, "base64"))), key };
}

export async function newKeyAndCsr(): Promise<{ key: TestKeyPair; csr: string }> {
  const key = await workloadKey("ec-p256");
  return { key, csr: makeCsr(key).toString("base64") };
}

export class FakeAgent {
  bundle: SpiffeBundle | undefined;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly trustDomain: string,
  ) {}

  call(method: string, path: string, body?: unknown, svid?: ClientSvid): Promise<ApiAnswer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: false,
          rejectUnauthorized: false,
          ...(svid
            ? {
                cert: svid.certificates.map((c) => c.toString()).join(""),
                key: svid.key.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
              }
            : {}),
          headers: payload === undefined ? {} : { "content-type": "application/json" },
        },
        (res) => {
          try {
            if (this.bundle) {
              const chain = peerChain((res.socket as TLSSocket).getPeerCertificate(true));
              const td = TrustDomain.parse(this.trustDomain);
              verifyPeer(chain, this.bundle, authorizeId(SpiffeId.fromSegments(td, "spire", "server")));
            }
          } catch (e) {
            reject(e);
            res.resume();
            return;
          }
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              parsed = { text };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** Remembers the bundle of an attest/renew/sync answer. */
  learnBundle(answer: ApiAnswer): SpiffeBundle {
    this.bundle = SpiffeBundle.parse(TrustDomain.parse(this.trustDomain), answer.body.bundle as string);
    return this.bundle;
  }
}
