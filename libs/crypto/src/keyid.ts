import { createHash } from "node:crypto"

/** Key id of an Ed25519 public key: hex of the first 8 bytes of its SHA-256. */
export const keyIdOf = (publicKey: Uint8Array): string =>
  createHash("sha256").update(publicKey).digest("hex").slice(0, 16)
