import { copyBytes } from "@vigil/bytes"
import { isUint, splitPoint } from "./_math.ts"
import { MerkleError } from "./errors.ts"
import { emptyRoot, HASH_SIZE, nodeHash } from "./hash.ts"

/**
 * RFC 9162 2.1.1 Merkle Tree Hash `MTH(D[begin:end])` over leaf hashes, split at the largest power of two smaller
 * than the range. Costs `end - begin - 1` node hashes and keeps nothing; use `CompactRange` to follow a growing log.
 * @example rootFromLeafHashes([leafHash(a), leafHash(b)]) // nodeHash(leafHash(a), leafHash(b))
 */
export const rootFromLeafHashes = (
  hashes: readonly Uint8Array[],
  begin = 0,
  end: number = hashes.length,
): Uint8Array => {
  if (!isUint(begin) || !isUint(end) || begin > end || end > hashes.length) {
    throw new MerkleError("INDEX_OUT_OF_RANGE", `range [${begin}, ${end}) is not within [0, ${hashes.length})`)
  }
  if (begin === end) return emptyRoot()
  // A one-leaf tree's root is the leaf hash itself: hand back a copy, not the caller's array element.
  return end - begin === 1 ? copyBytes(mth(hashes, begin, end)) : mth(hashes, begin, end)
}

const mth = (hashes: readonly Uint8Array[], begin: number, end: number): Uint8Array => {
  const n = end - begin
  if (n === 1) {
    // MTH({d(0)}) is the leaf hash itself; it is checked here because it is the only place a leaf is read.
    const leaf = hashes[begin]!
    if (leaf.length !== HASH_SIZE) {
      throw new MerkleError("BAD_HASH_SIZE", `leaf hash ${begin} is ${leaf.length} bytes, want ${HASH_SIZE}`)
    }
    return leaf
  }
  const k = splitPoint(n)
  return nodeHash(mth(hashes, begin, begin + k), mth(hashes, begin + k, end))
}
