import { equalBytes } from "@vigil/bytes"
import { isPowerOfTwo, isUint, lsb, shr } from "./_math.ts"
import { refuse, VERIFIED, type VerifyResult } from "./errors.ts"
import { HASH_SIZE, nodeHash } from "./hash.ts"

/**
 * RFC 9162 2.1.3.2: does `proof` show that `leafHash` is leaf `index` of the tree of `size` leaves whose root is
 * `root`? Returns a result, never throws. Every hash must be exactly `HASH_SIZE` bytes, so an empty leaf and an empty
 * root that "match" in a one-leaf tree are refused.
 *
 * An inclusion proof binds the size only through the shape of the path: a proof for `(index, size)` also verifies
 * for another size whose path from `index` has the same shape (e.g. index 0 at sizes 3 and 4). Take `size` and
 * `root` together from one signed checkpoint.
 * @example
 * const r = verifyInclusion(index, checkpoint.size, leafHash(entry), proof, checkpoint.root)
 * if (!r.ok) refuse(r.code) // 'ROOT_MISMATCH', 'WRONG_PROOF_SIZE', …
 */
export const verifyInclusion = (
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): VerifyResult => {
  if (!isUint(size)) return refuse("SIZE_OUT_OF_RANGE", `tree size ${size} is not a non-negative safe integer`)
  // 1. If leaf_index is greater than or equal to tree_size, then fail the proof verification.
  if (!isUint(index) || index >= size) return refuse("INDEX_OUT_OF_RANGE", `leaf index ${index} is not in [0, ${size})`)
  const badHash = checkHashes(leafHash, root, proof)
  if (badHash !== undefined) return badHash

  // 2. Set fn to leaf_index and sn to tree_size - 1.
  let fn = index
  let sn = size - 1
  // 3. Set r to hash.
  let r = leafHash
  // 4. For each value p in the inclusion_path array:
  for (const p of proof) {
    // a. If sn is 0, then stop the iteration and fail the proof verification.
    if (sn === 0) return refuse("WRONG_PROOF_SIZE", `proof has ${proof.length} elements, more than the path needs`)
    // b. If LSB(fn) is set, or if fn is equal to sn, then:
    if (lsb(fn) || fn === sn) {
      // i. Set r to HASH(0x01 || p || r).
      r = nodeHash(p, r)
      // ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either LSB(fn) is set or fn is 0.
      while (!lsb(fn) && fn !== 0) {
        fn = shr(fn)
        sn = shr(sn)
      }
    } else {
      // Otherwise: i. Set r to HASH(0x01 || r || p).
      r = nodeHash(r, p)
    }
    // c. Finally, right-shift both fn and sn one time.
    fn = shr(fn)
    sn = shr(sn)
  }
  // 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and the root_hash are equal, then
  // the log has proven the inclusion of hash. Otherwise, fail the proof verification.
  if (sn !== 0) return refuse("WRONG_PROOF_SIZE", `proof has ${proof.length} elements, fewer than the path needs`)
  if (!equalBytes(r, root)) return refuse("ROOT_MISMATCH", "proof leads to a different root")
  return VERIFIED
}

/**
 * RFC 9162 2.1.4.2: does `proof` show that the tree of `size2` leaves with root `root2` extends the tree of `size1`
 * leaves with root `root1`? Returns a result, never throws. Beyond the RFC's `0 < first < second`:
 * - `size1 === 0` is always refused (`SIZE_ZERO`), even with `size2 === 0`: the RFC defines no such proof, and
 *   accepting one would vouch for a root nobody checked;
 * - `size1 === size2` needs an empty proof and equal roots;
 * - every root and proof element must be exactly `HASH_SIZE` bytes, also when the sizes are equal.
 * @example
 * verifyConsistency(old.size, latest.size, proof, old.root, latest.root) // { ok: true } or a failure with a code
 */
export const verifyConsistency = (
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): VerifyResult => {
  if (!isUint(size1) || !isUint(size2)) {
    return refuse("SIZE_OUT_OF_RANGE", `tree sizes ${size1}, ${size2} are not non-negative safe integers`)
  }
  if (size1 > size2) return refuse("SIZE_DECREASED", `second size ${size2} is smaller than first size ${size1}`)
  if (size1 === 0) return refuse("SIZE_ZERO", "a consistency proof from the empty tree proves nothing")
  const badHash = checkHashes(root1, root2, proof)
  if (badHash !== undefined) return badHash
  if (size1 === size2) {
    if (proof.length !== 0) return refuse("WRONG_PROOF_SIZE", `equal sizes need an empty proof, got ${proof.length}`)
    if (!equalBytes(root1, root2)) return refuse("ROOT_MISMATCH", "equal sizes but different roots")
    return VERIFIED
  }

  // Now 0 < first < second, where the RFC's algorithm applies as written.
  // 1. If consistency_path is an empty array, stop and fail the proof verification.
  if (proof.length === 0) return refuse("WRONG_PROOF_SIZE", "empty proof for different sizes")
  // 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof
  // 3. Set fn to first - 1 and sn to second - 1.
  let fn = size1 - 1
  let sn = size2 - 1
  // 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
  while (lsb(fn)) {
    fn = shr(fn)
    sn = shr(sn)
  }
  // 5. Set both fr and sr to the first value in the consistency_path array.
  let fr = path[0]!
  let sr = fr
  // 6. For each subsequent value c in the consistency_path array:
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!
    // a. If sn is 0, then stop the iteration and fail the proof verification.
    if (sn === 0) return refuse("WRONG_PROOF_SIZE", `proof has ${proof.length} elements, more than the sizes need`)
    // b. If LSB(fn) is set, or if fn is equal to sn, then:
    if (lsb(fn) || fn === sn) {
      // i. Set fr to HASH(0x01 || c || fr).  ii. Set sr to HASH(0x01 || c || sr).
      fr = nodeHash(c, fr)
      sr = nodeHash(c, sr)
      // iii. If LSB(fn) is not set, then right-shift both fn and sn equally until either LSB(fn) is set or fn is 0.
      while (!lsb(fn) && fn !== 0) {
        fn = shr(fn)
        sn = shr(sn)
      }
    } else {
      // Otherwise: i. Set sr to HASH(0x01 || sr || c).
      sr = nodeHash(sr, c)
    }
    // c. Finally, right-shift both fn and sn one time.
    fn = shr(fn)
    sn = shr(sn)
  }
  // 7. Verify that the fr calculated is equal to the first_hash supplied, that the sr calculated is equal to the
  // second_hash supplied, and that sn is 0.
  if (sn !== 0) return refuse("WRONG_PROOF_SIZE", `proof has ${proof.length} elements, fewer than the sizes need`)
  if (!equalBytes(fr, root1)) return refuse("ROOT_MISMATCH", "proof leads to a different first root")
  if (!equalBytes(sr, root2)) return refuse("ROOT_MISMATCH", "proof leads to a different second root")
  return VERIFIED
}

// Input check shared by both verifiers, before any hashing: wrong-length input would otherwise either throw from
// nodeHash or, in a one-leaf tree, compare two equally malformed values as equal.
const checkHashes = (a: Uint8Array, b: Uint8Array, proof: readonly Uint8Array[]): VerifyResult | undefined => {
  if (a.length !== HASH_SIZE || b.length !== HASH_SIZE) {
    return refuse("BAD_HASH_SIZE", `hashes are ${a.length} and ${b.length} bytes, want ${HASH_SIZE}`)
  }
  for (let i = 0; i < proof.length; i++) {
    const len = proof[i]!.length
    if (len !== HASH_SIZE) return refuse("BAD_HASH_SIZE", `proof element ${i} is ${len} bytes, want ${HASH_SIZE}`)
  }
  return undefined
}
