import { createPrivateKey, createPublicKey, type KeyObject, sign as nodeSign, verify as nodeVerify } from "node:crypto"
import * as ed from "@noble/ed25519"
import { sha512 } from "@noble/hashes/sha2.js"

// noble needs a synchronous SHA-512 for its sync API; the browser UI configures the same hash.
ed.hashes.sha512 = sha512

/**
 * Ed25519 in two implementations that must agree byte for byte (RFC 8032 signatures are deterministic):
 * `noble` is the audited reference, also used by the browser UI; `node` (OpenSSL via node:crypto) is the fast
 * path services use. Tests cross-verify both directions.
 */
export interface Ed25519 {
  readonly name: "noble" | "node"
  publicKey(seed: Uint8Array): Uint8Array
  sign(message: Uint8Array, seed: Uint8Array): Uint8Array
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
}

const checkLen = (what: string, bytes: Uint8Array, len: number) => {
  if (!(bytes instanceof Uint8Array) || bytes.length !== len) {
    throw new TypeError(
      `${what} must be ${len} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`,
    )
  }
}

export const noble: Ed25519 = {
  name: "noble",
  publicKey: (seed) => {
    checkLen("seed", seed, 32)
    return ed.getPublicKey(seed)
  },
  sign: (message, seed) => {
    checkLen("seed", seed, 32)
    return ed.sign(message, seed)
  },
  verify: (signature, message, publicKey) => {
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      // noble's default (ZIP-215) and even its strict mode check the cofactored equation [8][S]B = [8]R + [8][k]A,
      // which accepts signatures whose R or A carries a small-order component; OpenSSL checks the cofactorless
      // [S]B = R + [k]A and refuses small-order R and A. A key holder could otherwise craft an event that the
      // noble verifiers (browser UI) accept and the node:crypto verifiers (services) refuse. Strict mode first
      // (canonical encodings, S < L, small-order A refused), then the cofactorless checks on top.
      if (!ed.verify(signature, message, publicKey, { zip215: false })) return false
      return cofactorlessHolds(signature, message, publicKey)
    } catch {
      return false // malformed points are "does not verify", never an exception on the hot path
    }
  },
}

/** Order of the Ed25519 prime-order subgroup (RFC 8032 section 5.1). */
const L = 2n ** 252n + 27742317777372353535851937790883648493n

const littleEndian = (bytes: Uint8Array): bigint => {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] as number)
  return n
}

/** R is not small-order and R equals the encoding of [S]B - [k]A, as RFC 8032 section 5.1.7 and OpenSSL check it. */
const cofactorlessHolds = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean => {
  const rBytes = signature.subarray(0, 32)
  if (ed.Point.fromBytes(rBytes).isSmallOrder()) return false
  const k = ed.etc.mod(littleEndian(sha512(ed.etc.concatBytes(rBytes, publicKey, message))), L)
  const s = littleEndian(signature.subarray(32, 64))
  const expected = ed.Point.BASE.multiply(s, false).subtract(ed.Point.fromBytes(publicKey).multiply(k, false)).toBytes()
  return Buffer.from(expected).equals(rBytes)
}

// DER wrappers (RFC 8410) that turn raw 32-byte keys into the KeyObjects node:crypto wants.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex")

export const privateKeyObject = (seed: Uint8Array): KeyObject => {
  checkLen("seed", seed, 32)
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" })
}

export const publicKeyObject = (publicKey: Uint8Array): KeyObject => {
  checkLen("public key", publicKey, 32)
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" })
}

// KeyObject creation costs about as much as a verify; services see few distinct keys, so cache them.
const privCache = new Map<string, KeyObject>()
const pubCache = new Map<string, KeyObject>()
const cached = (cache: Map<string, KeyObject>, raw: Uint8Array, make: (raw: Uint8Array) => KeyObject) => {
  const k = Buffer.from(raw).toString("base64")
  let obj = cache.get(k)
  if (obj === undefined) {
    if (cache.size > 1024) cache.clear()
    obj = make(raw)
    cache.set(k, obj)
  }
  return obj
}

export const node: Ed25519 = {
  name: "node",
  publicKey: (seed) => {
    const jwk = createPublicKey(privateKeyObject(seed)).export({ format: "jwk" })
    return new Uint8Array(Buffer.from(jwk.x ?? "", "base64url"))
  },
  sign: (message, seed) => new Uint8Array(nodeSign(null, message, cached(privCache, seed, privateKeyObject))),
  verify: (signature, message, publicKey) => {
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return nodeVerify(null, message, cached(pubCache, publicKey, publicKeyObject), signature)
    } catch {
      return false
    }
  },
}

/** A fresh random 32-byte Ed25519 seed (the RFC 8032 private key). */
export const randomSeed = (): Uint8Array => ed.utils.randomSecretKey()
