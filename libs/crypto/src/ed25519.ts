import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
  randomBytes,
} from "node:crypto"
import * as ed from "@noble/ed25519"
import { sha512 } from "@noble/hashes/sha2.js"
import sodiumNative from "sodium-native"

// noble needs a synchronous SHA-512 for its sync API; the browser UI configures the same hash.
ed.hashes.sha512 = sha512

/**
 * Ed25519 in three implementations that must agree byte for byte (RFC 8032 signatures are deterministic) and on
 * every verdict: `nobleEd25519` is the audited reference, also used by the browser UI; `sodiumEd25519` (libsodium) is
 * the fast path services use (ADR 0012: it verifies twice as fast as OpenSSL here); `nodeEd25519` (OpenSSL via
 * node:crypto) is the second native implementation the other two are checked against, and what the libuv-pool
 * verifier uses. Tests cross-verify every pair.
 */
export interface Ed25519 {
  readonly name: "noble" | "node" | "sodium"
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

export const nobleEd25519: Ed25519 = {
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

// KeyObject creation costs about as much as a verify; services see few distinct keys, so cache them (bounded).
// Private keys are cached under an HMAC of the seed with a key that exists only in this process, never under the
// seed itself (a string cache key would put the secret in the heap, unmovable and unwipeable); keying by content
// rather than by the Uint8Array object keeps the cache right if a caller reuses or wipes a seed buffer in place.
const CACHE_MAX = 1024
const cacheMac = randomBytes(32)
const privCache = new Map<string, KeyObject>()
const pubCache = new Map<string, KeyObject>()
const cachedKey = (cache: Map<string, KeyObject>, k: string, raw: Uint8Array, make: (raw: Uint8Array) => KeyObject) => {
  let obj = cache.get(k)
  if (obj === undefined) {
    if (cache.size >= CACHE_MAX) cache.clear()
    obj = make(raw)
    cache.set(k, obj)
  }
  return obj
}
const privateKeyOf = (seed: Uint8Array): KeyObject => {
  checkLen("seed", seed, 32)
  return cachedKey(privCache, createHmac("sha256", cacheMac).update(seed).digest("base64"), seed, privateKeyObject)
}
const publicKeyOf = (publicKey: Uint8Array): KeyObject =>
  cachedKey(pubCache, Buffer.from(publicKey).toString("base64"), publicKey, publicKeyObject)

export const nodeEd25519: Ed25519 = {
  name: "node",
  publicKey: (seed) => {
    const jwk = createPublicKey(privateKeyObject(seed)).export({ format: "jwk" })
    return new Uint8Array(Buffer.from(jwk.x ?? "", "base64url"))
  },
  sign: (message, seed) => new Uint8Array(nodeSign(null, message, privateKeyOf(seed))),
  verify: (signature, message, publicKey) => {
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return nodeVerify(null, message, publicKeyOf(publicKey), signature)
    } catch {
      return false
    }
  },
}

/**
 * `nodeEd25519.verify` on libuv's thread pool (node:crypto's callback form): the same key handling, checks and answers,
 * but the Ed25519 work leaves the event loop. Kept as a second off-thread checker to measure the worker pool
 * against (test/bench). Resolves false, never rejects, for anything that does not verify.
 */
export const nodeVerifyAsync = (
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
): Promise<boolean> => {
  if (signature.length !== 64 || publicKey.length !== 32) return Promise.resolve(false)
  return new Promise((resolve) => {
    try {
      nodeVerify(null, message, publicKeyOf(publicKey), signature, (err, ok) => resolve(err === null && ok))
    } catch {
      resolve(false)
    }
  })
}

// libsodium wants the 64-byte secret key (seed ‖ public key); deriving it costs a scalar multiplication, so the
// derived keys are cached like node's KeyObjects, in sodium_malloc'd memory (guarded, locked, never swapped).
const sodiumSecretCache = new Map<string, Uint8Array>()
// A service signs with the same seed object for its whole life: remember the derived key by object too, and trust
// that entry only while the object still holds the seed the key was derived from (the key's first 32 bytes), so a
// seed changed in place still finds its own key. Saves the HMAC on every signature.
let sodiumSecretBySeed = new WeakMap<Uint8Array, Uint8Array>()
const sodiumSecretKeyOf = (seed: Uint8Array): Uint8Array => {
  checkLen("seed", seed, 32)
  const known = sodiumSecretBySeed.get(seed)
  if (known !== undefined && sodiumNative.sodium_memcmp(known.subarray(0, 32), seed)) return known
  const sk = sodiumSecretKeyByContent(seed)
  sodiumSecretBySeed.set(seed, sk)
  return sk
}
const sodiumSecretKeyByContent = (seed: Uint8Array): Uint8Array => {
  const k = createHmac("sha256", cacheMac).update(seed).digest("base64")
  let sk = sodiumSecretCache.get(k)
  if (sk === undefined) {
    if (sodiumSecretCache.size >= CACHE_MAX) {
      for (const old of sodiumSecretCache.values()) sodiumNative.sodium_memzero(old)
      sodiumSecretCache.clear()
      sodiumSecretBySeed = new WeakMap() // its keys were just wiped
    }
    sk = sodiumNative.sodium_malloc(64)
    sodiumNative.crypto_sign_seed_keypair(new Uint8Array(32), sk, seed)
    sodiumSecretCache.set(k, sk)
  }
  return sk
}

export const sodiumEd25519: Ed25519 = {
  name: "sodium",
  publicKey: (seed) => {
    checkLen("seed", seed, 32)
    const pk = new Uint8Array(32)
    const sk = sodiumNative.sodium_malloc(64)
    sodiumNative.crypto_sign_seed_keypair(pk, sk, seed)
    sodiumNative.sodium_memzero(sk)
    return pk
  },
  sign: (message, seed) => {
    const sig = new Uint8Array(64)
    sodiumNative.crypto_sign_detached(sig, message, sodiumSecretKeyOf(seed))
    return sig
  },
  verify: (signature, message, publicKey) => {
    if (!(signature instanceof Uint8Array) || !(publicKey instanceof Uint8Array)) return false
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return sodiumNative.crypto_sign_verify_detached(signature, message, publicKey)
    } catch {
      return false
    }
  },
}

/** The implementation services sign and verify with. */
export const fastEd25519: Ed25519 = sodiumEd25519

/** A fresh random 32-byte Ed25519 seed (the RFC 8032 private key). */
export const randomSeed = (): Uint8Array => ed.utils.randomSecretKey()
