import { sha256 } from "@noble/hashes/sha2.js"
import { decodeBase64, encodeBase64 } from "@vigil/bytes"
import { type Ed25519, fastEd25519, randomSeed } from "@vigil/crypto"
import { hex8, isValidKeyName, utf8 } from "./encoding.ts"
import { NoteError } from "./errors.ts"

/** c2sp.org/signed-note signature type 0x01: Ed25519 over the note text. The only type this package speaks. */
export const SIGNATURE_TYPE_ED25519 = 0x01

/** A known Ed25519 key: the tuple (name, keyId) names it in signature lines. */
export interface VerifierKey {
  readonly name: string
  /** uint32, big-endian first 4 bytes of SHA-256(name || 0x0A || 0x01 || publicKey). */
  readonly keyId: number
  readonly publicKey: Uint8Array
}

/** A key that signs: the verifier key plus the 32-byte RFC 8032 seed. */
export interface SignerKey extends VerifierKey {
  readonly seed: Uint8Array
}

const uint32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0)

/** Go `keyHash`: SHA-256(name || 0x0A || key)[:4] as a big-endian uint32, `key` being type byte || public key. */
const keyHash = (name: string, key: Uint8Array): number => {
  const nameBytes = utf8(name)
  const input = new Uint8Array(nameBytes.length + 1 + key.length)
  input.set(nameBytes)
  input[nameBytes.length] = 0x0a
  input.set(key, nameBytes.length + 1)
  return uint32(sha256(input))
}

const typed = (publicKey: Uint8Array): Uint8Array => {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new NoteError("MALFORMED_KEY", "Ed25519 public key must be 32 bytes")
  }
  const key = new Uint8Array(33)
  key[0] = SIGNATURE_TYPE_ED25519
  key.set(publicKey, 1)
  return key
}

/** Key id = SHA-256(name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4], as a uint32. */
export const keyId = (name: string, publicKey: Uint8Array): number => keyHash(name, typed(publicKey))

/** Go `chop`: split at the first `sep`; without one, everything is `before`. */
const chop = (s: string, sep: string): [before: string, after: string] => {
  const i = s.indexOf(sep)
  return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + sep.length)]
}

/** Go `strconv.ParseUint(hash16, 16, 32)` with `len(hash16) == 8`. */
const parseHex8 = (s: string): number | undefined => (/^[0-9A-Fa-f]{8}$/.test(s) ? Number.parseInt(s, 16) : undefined)

const checkName = (name: string): void => {
  if (!isValidKeyName(name)) throw new NoteError("MALFORMED_KEY", `invalid key name ${JSON.stringify(name)}`)
}

/** `name+hex8(keyid)+base64(0x01 || publicKey)` (Go `NewEd25519VerifierKey`). */
export const encodeVerifierKey = (name: string, publicKey: Uint8Array): string => {
  checkName(name)
  const key = typed(publicKey)
  return `${name}+${hex8(keyHash(name, key))}+${encodeBase64(key)}`
}

/** Parses `name+hex8(keyid)+base64(0x01 || publicKey)`, checks the key id, in Go `NewVerifier`'s order. */
export const parseVerifierKey = (vkey: string): VerifierKey => {
  const [name, rest] = chop(vkey, "+")
  const [hash16, key64] = chop(rest, "+")
  const id = parseHex8(hash16)
  const key = decodeBase64(key64)
  if (id === undefined || key === undefined || !isValidKeyName(name) || key.length === 0) {
    throw new NoteError("MALFORMED_KEY", "malformed verifier key")
  }
  if (id !== keyHash(name, key)) throw new NoteError("KEY_ID_MISMATCH", `key id ${hash16} does not match the key`)
  if (key[0] !== SIGNATURE_TYPE_ED25519) {
    throw new NoteError("UNKNOWN_ALGORITHM", `unknown signature type ${key[0]}`)
  }
  if (key.length !== 33) throw new NoteError("MALFORMED_KEY", "Ed25519 public key must be 32 bytes")
  return { name, keyId: id, publicKey: key.slice(1) }
}

/** `PRIVATE+KEY+name+hex8(keyid)+base64(0x01 || seed)`; the key id is that of the seed's public key. */
export const encodeSignerKey = (name: string, seed: Uint8Array, ed25519: Ed25519 = fastEd25519): string => {
  checkName(name)
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new NoteError("MALFORMED_KEY", "Ed25519 seed must be 32 bytes")
  }
  const key = new Uint8Array(33)
  key[0] = SIGNATURE_TYPE_ED25519
  key.set(seed, 1)
  return `PRIVATE+KEY+${name}+${hex8(keyId(name, ed25519.publicKey(seed)))}+${encodeBase64(key)}`
}

/** Parses a signer key, derives its public key and checks the key id against it, in Go `NewSigner`'s order. */
export const parseSignerKey = (skey: string, ed25519: Ed25519 = fastEd25519): SignerKey => {
  const [priv1, rest1] = chop(skey, "+")
  const [priv2, rest2] = chop(rest1, "+")
  const [name, rest3] = chop(rest2, "+")
  const [hash16, key64] = chop(rest3, "+")
  const id = parseHex8(hash16)
  const key = decodeBase64(key64)
  if (
    priv1 !== "PRIVATE" ||
    priv2 !== "KEY" ||
    id === undefined ||
    key === undefined ||
    !isValidKeyName(name) ||
    key.length === 0
  ) {
    throw new NoteError("MALFORMED_KEY", "malformed signer key")
  }
  if (key[0] !== SIGNATURE_TYPE_ED25519) {
    throw new NoteError("UNKNOWN_ALGORITHM", `unknown signature type ${key[0]}`)
  }
  if (key.length !== 33) throw new NoteError("MALFORMED_KEY", "Ed25519 seed must be 32 bytes")
  const seed = key.slice(1)
  const publicKey = ed25519.publicKey(seed)
  if (id !== keyId(name, publicKey)) throw new NoteError("KEY_ID_MISMATCH", `key id ${hash16} does not match the key`)
  return { name, keyId: id, publicKey, seed }
}

/** A fresh Ed25519 key named `name`, in both encodings (Go `GenerateKey`). Keep `signerKey` secret. */
export const generateSignerKey = (
  name: string,
  ed25519: Ed25519 = fastEd25519,
): { readonly signerKey: string; readonly verifierKey: string } => {
  checkName(name)
  const seed = randomSeed()
  return {
    signerKey: encodeSignerKey(name, seed, ed25519),
    verifierKey: encodeVerifierKey(name, ed25519.publicKey(seed)),
  }
}
