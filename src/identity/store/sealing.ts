/**
 * Optional sealing of CA private keys at rest: AES-256-GCM under a 32-byte key encryption key
 * held outside the database (a file or a secret manager), with the key's ID as associated data
 * so a sealed key cannot be swapped onto another row. Without a key encryption key, private
 * keys are stored as PEM text (see README.md in this folder).
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { StoreError } from "./datastore.js";

const PREFIX = "sealed:aes-256-gcm:v1:";

export function checkKeyEncryptionKey(kek: Uint8Array | undefined): Buffer | undefined {
  if (kek === undefined) return undefined;
  if (!(kek instanceof Uint8Array) || kek.length !== 32) {
    throw new StoreError(
      "invalid",
      "keyEncryptionKey must be exactly 32 bytes (e.g. 32 random bytes from a file readable only by the server)",
    );
  }
  return Buffer.from(kek);
}

export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

export function seal(privateKeyPem: string, kek: Buffer | undefined, keyId: string): string {
  if (kek === undefined) return privateKeyPem;
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", kek, iv);
  cipher.setAAD(Buffer.from(keyId, "utf8"));
  const ct = Buffer.concat([cipher.update(privateKeyPem, "utf8"), cipher.final()]);
  const tag = cipher.getAuthTag();
  return `${PREFIX}${iv.toString("base64")}:${tag.toString("base64")}:${ct.toString("base64")}`;
}

export function unseal(stored: string, kek: Buffer | undefined, keyId: string): string {
  if (!isSealed(stored)) return stored;
  if (kek === undefined) {
    throw new StoreError(
      "unavailable",
      `the private key of CA key ${keyId} is sealed: open the store with the key encryption key that sealed it`,
    );
  }
  const [iv, tag, ct] = stored.slice(PREFIX.length).split(":");
  try {
    const decipher = createDecipheriv("aes-256-gcm", kek, Buffer.from(iv ?? "", "base64"));
    decipher.setAAD(Buffer.from(keyId, "utf8"));
    decipher.setAuthTag(Buffer.from(tag ?? "", "base64"));
    return Buffer.concat([decipher.update(Buffer.from(ct ?? "", "base64")), decipher.final()]).toString(
      "utf8",
    );
  } catch {
    throw new StoreError(
      "unavailable",
      `the private key of CA key ${keyId} does not open with this key encryption key: use the one that sealed it`,
    );
  }
}
