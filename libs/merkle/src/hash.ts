import { createHash, hash } from "node:crypto"
import { MerkleError } from "./errors.ts"

/** SHA-256 output size: every leaf hash, node hash, root and proof element is exactly this long. */
export const HASH_SIZE = 32

// One-shot `crypto.hash` over a reused input buffer is about 1.5x faster than `createHash().update()...digest()`,
// which matters at one leaf hash plus about one node hash per appended event. Hashing is synchronous, so a shared
// input buffer is never seen by two calls at once.
const SCRATCH_MAX = 1024
const leafInput = new Uint8Array(1 + SCRATCH_MAX) // [0x00, ...entry], entries up to SCRATCH_MAX
const nodeInput = new Uint8Array(1 + 2 * 32) // [0x01, ...left, ...right]
nodeInput[0] = 0x01
const LEAF_PREFIX = new Uint8Array([0x00])

// Hashes leave this library as plain Uint8Arrays, not Buffers: `Buffer#slice` returns a view where `Uint8Array#slice`
// copies, a trap for any caller that copies a hash before altering it. A digest Buffer owns its 32-byte ArrayBuffer,
// so the plain view costs no copy.
const plain = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)

/**
 * RFC 9162 2.1.1 leaf hash: `HASH(0x00 || entry)`. The prefix keeps a leaf from ever hashing like an interior node
 * (second-preimage resistance).
 * @example leafHash(new Uint8Array()) // 6e340b9c…afa01d
 */
export const leafHash = (entry: Uint8Array): Uint8Array => {
  if (entry.length > SCRATCH_MAX) return plain(createHash("sha256").update(LEAF_PREFIX).update(entry).digest())
  leafInput.set(entry, 1)
  return plain(hash("sha256", leafInput.subarray(0, 1 + entry.length), "buffer"))
}

/**
 * RFC 9162 2.1.1 interior node hash: `HASH(0x01 || left || right)`. Both children must be `HASH_SIZE` bytes; the
 * verifiers check that before calling, so this throws only on misuse.
 */
export const nodeHash = (left: Uint8Array, right: Uint8Array): Uint8Array => {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    throw new MerkleError(
      "BAD_HASH_SIZE",
      `node children must be ${HASH_SIZE} bytes, got ${left.length} and ${right.length}`,
    )
  }
  nodeInput.set(left, 1)
  nodeInput.set(right, 1 + HASH_SIZE)
  return plain(hash("sha256", nodeInput, "buffer"))
}

/**
 * RFC 9162 2.1.1: the hash of the empty tree is `HASH()`, the hash of the empty string.
 * @example emptyRoot() // e3b0c442…b855
 */
export const emptyRoot = (): Uint8Array => plain(hash("sha256", new Uint8Array(), "buffer"))
