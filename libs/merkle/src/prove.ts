import { isPowerOfTwo, isUint, levelOf, splitPoint } from "./_math.ts"
import { MerkleError } from "./errors.ts"
import { emptyRoot, nodeHash } from "./hash.ts"
import type { HashReader } from "./store.ts"

/**
 * MTH of the first `size` leaves, from stored subtrees: O(log n) reads and at most log n node hashes, for any size
 * the reader covers (so also roots of past checkpoints).
 */
export const rootAt = (reader: HashReader, size: number): Uint8Array => {
  if (!isUint(size)) throw new MerkleError("SIZE_OUT_OF_RANGE", `size ${size} is not a non-negative safe integer`)
  if (size === 0) return emptyRoot()
  return subtreeHash(reader, 0, size)
}

/**
 * RFC 9162 2.1.3.1 inclusion proof `PATH(m, D[n])` for leaf `index` in the tree of the first `size` leaves, ordered
 * from the leaf up, as `verifyInclusion` takes it.
 */
export const inclusionProof = (reader: HashReader, index: number, size: number): Uint8Array[] => {
  if (!isUint(size)) throw new MerkleError("SIZE_OUT_OF_RANGE", `size ${size} is not a non-negative safe integer`)
  if (!isUint(index) || index >= size) {
    throw new MerkleError("INDEX_OUT_OF_RANGE", `index ${index} is not in [0, ${size})`)
  }
  const proof: Uint8Array[] = []
  path(reader, index, 0, size, proof)
  return proof
}

/**
 * RFC 9162 2.1.4.1 consistency proof `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)` between the trees of the first
 * `size1` and `size2` leaves, as `verifyConsistency` takes it. Empty when the sizes are equal.
 */
export const consistencyProof = (reader: HashReader, size1: number, size2: number): Uint8Array[] => {
  if (!isUint(size1) || !isUint(size2)) {
    throw new MerkleError("SIZE_OUT_OF_RANGE", `sizes ${size1}, ${size2} are not non-negative safe integers`)
  }
  if (size1 > size2) throw new MerkleError("SIZE_DECREASED", `size1 ${size1} > size2 ${size2}`)
  // The RFC defines PROOF(m, D[n]) for 0 < m <= n only: nothing proves a tree extends the empty one.
  if (size1 === 0) throw new MerkleError("SIZE_ZERO", "no consistency proof from the empty tree")
  const proof: Uint8Array[] = []
  subproof(reader, size1, 0, size2, true, proof)
  return proof
}

// PATH(m, D[begin:end]) with m relative to begin: the sibling of each subtree on the way down, pushed after the
// deeper part so the result runs leaf to root.
const path = (reader: HashReader, m: number, begin: number, end: number, out: Uint8Array[]): void => {
  const n = end - begin
  if (n === 1) return
  const k = splitPoint(n)
  if (m < k) {
    path(reader, m, begin, begin + k, out)
    out.push(subtreeHash(reader, begin + k, end))
  } else {
    path(reader, m - k, begin + k, end, out)
    out.push(subtreeHash(reader, begin, begin + k))
  }
}

// SUBPROOF(m, D[begin:end], b) with m relative to begin. `b` records whether the subtree for m leaves is the whole
// old tree, whose root the verifier already has.
const subproof = (reader: HashReader, m: number, begin: number, end: number, b: boolean, out: Uint8Array[]): void => {
  const n = end - begin
  if (m === n) {
    if (!b) out.push(subtreeHash(reader, begin, end))
    return
  }
  const k = splitPoint(n)
  if (m <= k) {
    subproof(reader, m, begin, begin + k, b, out)
    out.push(subtreeHash(reader, begin + k, end))
  } else {
    subproof(reader, m - k, begin + k, end, false, out)
    out.push(subtreeHash(reader, begin, begin + k))
  }
}

// MTH(D[begin:end]) for a subtree that PATH or SUBPROOF names, end > begin. Such a range is either perfect (one read)
// or the right edge of the tree, whose left part is perfect again: at most log n reads and hashes, and only along the
// right edge, the one part of a growing tree that has no stored node.
const subtreeHash = (reader: HashReader, begin: number, end: number): Uint8Array => {
  const n = end - begin
  if (isPowerOfTwo(n)) {
    if (begin % n !== 0) throw new MerkleError("INDEX_OUT_OF_RANGE", `subtree [${begin}, ${end}) is not aligned`)
    return reader.get(levelOf(n), begin / n)
  }
  const k = splitPoint(n)
  return nodeHash(subtreeHash(reader, begin, begin + k), subtreeHash(reader, begin + k, end))
}
