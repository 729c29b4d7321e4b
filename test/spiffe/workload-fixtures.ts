/**
 * Workload API test material: X.509-SVIDs in Workload API form (from testca.ts), JWT
 * authorities with their JWK Sets, signed JWT-SVIDs, and builders for the protobuf responses
 * the fake server sends.
 */

import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { SpiffeId } from "../../src/spiffe/id.js";
import { signJwtSvid } from "../../src/spiffe/jwtsvid.js";
import {
  type JWTBundlesResponse,
  JWTBundlesResponseSchema,
  JWTSVIDSchema,
  type X509SVIDResponse,
  X509SVIDResponseSchema,
  X509SVIDSchema,
} from "../../src/spiffe/workload/gen/workloadapi_pb.js";
import { TestCa } from "./testca.js";

/** The Workload API form of an X.509-SVID: DER chain (leaf first) and PKCS#8 DER key. */
export interface SvidMaterial {
  id: string;
  chainDer: Buffer;
  keyDer: Buffer;
  /** The leaf's DER, to tell rotations apart. */
  leafDer: Buffer;
}

/** A CA of one trust domain (TestCa, from testca.ts) that hands out SVIDs in Workload API form. */
export class FixtureCa {
  private constructor(readonly ca: TestCa) {}

  static async create(trustDomain: string): Promise<FixtureCa> {
    return new FixtureCa(await TestCa.create(trustDomain));
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  /** The bundle in Workload API form: the root certificates' DER, back to back. */
  get bundleDer(): Buffer {
    return Buffer.concat(this.ca.authorities.map((c) => c.raw));
  }

  /** An intermediate CA: its SVIDs' chains hold the intermediate; the bundle stays the root. */
  async intermediate(): Promise<FixtureCa> {
    return new FixtureCa(await this.ca.createIntermediate());
  }

  async issue(path: string): Promise<SvidMaterial> {
    const id = `spiffe://${this.trustDomain}${path}`;
    const svid = await this.ca.issueSvid(id);
    return { id, chainDer: svid.certificatesDer, keyDer: svid.privateKeyDer, leafDer: svid.leaf.raw };
  }
}

/** An X509SVIDResponse: each SVID with its trust domain's bundle, plus federated bundles. */
export function x509Response(
  svids: { svid: SvidMaterial; bundle: Buffer; hint?: string }[],
  federated: Record<string, Buffer> = {},
): X509SVIDResponse {
  return create(X509SVIDResponseSchema, {
    svids: svids.map(({ svid, bundle, hint }) =>
      create(X509SVIDSchema, {
        spiffeId: svid.id,
        x509Svid: svid.chainDer,
        x509SvidKey: svid.keyDer,
        bundle,
        hint: hint ?? "",
      }),
    ),
    federatedBundles: federated,
  });
}

/** A JWT signing authority of a trust domain, and its JWK Set (as FetchJWTBundles sends it). */
export class JwtAuthority {
  readonly key: KeyObject;
  readonly publicKey: KeyObject;

  constructor(
    readonly trustDomain: string,
    readonly kid: string,
  ) {
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.key = pair.privateKey;
    this.publicKey = pair.publicKey;
  }

  jwks(): Buffer {
    const jwk = this.publicKey.export({ format: "jwk" });
    return Buffer.from(JSON.stringify({ keys: [{ ...jwk, kid: this.kid, use: "jwt-svid", alg: "ES256" }] }));
  }

  sign(path: string, audience: string | string[], ttlMs = 300_000): Promise<string> {
    return signJwtSvid({
      id: SpiffeId.parse(`spiffe://${this.trustDomain}${path}`),
      audience,
      expiresAt: new Date(Date.now() + ttlMs),
      key: this.key,
      kid: this.kid,
    });
  }
}

/** A JWTBundlesResponse keyed by trust-domain SPIFFE ID (`spiffe://example.org`). */
export function jwtBundlesResponse(bundles: Record<string, Buffer>): JWTBundlesResponse {
  const keyed: Record<string, Buffer> = {};
  for (const [td, jwks] of Object.entries(bundles)) keyed[`spiffe://${td}`] = jwks;
  return create(JWTBundlesResponseSchema, { bundles: keyed });
}

export function jwtSvidMessage(spiffeId: string, token: string, hint = "") {
  return create(JWTSVIDSchema, { spiffeId, svid: token, hint });
}
