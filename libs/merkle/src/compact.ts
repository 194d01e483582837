import { copyBytes } from "@vigil/bytes"
import { bitLength, isUint, shr } from "./_math.ts"
import { MerkleError } from "./errors.ts"
import { emptyRoot, HASH_SIZE, nodeHash } from "./hash.ts"
import type { HashReader } from "./store.ts"

/**
 * Told about every node a `CompactRange.append` completes, leaves included, in append order per level. `hash` is the
 * range's own: keep it if you like, but do not alter it.
 */
export type NodeVisitor = (level: number, index: number, hash: Uint8Array) => void

/**
 * The hashes of the perfect subtrees that cover leaves `[0, size)`: one per set bit of `size`, largest (leftmost)
 * first. That is all RFC 9162 2.1.1's MTH needs to extend the tree and to produce its root, so a growing log is
 * followed in O(log n) memory and O(1) amortised hashes per leaf.
 */
export class CompactRange {
  #size = 0
  #hashes: Uint8Array[] = []

  /**
   * Resumes at `size` from a store that holds every complete subtree of that tree (e.g. after a restart): reads the
   * perfect subtree for each set bit of `size`, largest first. Throws if the store lacks one.
   */
  static fromReader(reader: HashReader, size: number): CompactRange {
    if (!isUint(size)) throw new MerkleError("SIZE_OUT_OF_RANGE", `size ${size} is not a non-negative safe integer`)
    const range = new CompactRange()
    let begin = 0
    for (let level = bitLength(size) - 1; level >= 0; level--) {
      const width = 2 ** level
      if (size - begin < width) continue
      const hash = reader.get(level, begin / width)
      if (hash.length !== HASH_SIZE) throw new MerkleError("BAD_HASH_SIZE", `stored hash is ${hash.length} bytes`)
      range.#hashes.push(copyBytes(hash))
      begin += width
    }
    range.#size = size
    return range
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size
  }

  /** Copies of the perfect-subtree hashes, largest first. */
  hashes(): Uint8Array[] {
    return this.#hashes.map(copyBytes)
  }

  /**
   * Appends one leaf hash (not the entry: hash entries with `leafHash`). `visit` sees the leaf at level 0 and every
   * node this completes, which is exactly what a `HashReader` store has to keep to serve proofs later.
   */
  append(leaf: Uint8Array, visit?: NodeVisitor): void {
    if (leaf.length !== HASH_SIZE) throw new MerkleError("BAD_HASH_SIZE", `leaf hash is ${leaf.length} bytes`)
    if (this.#size === Number.MAX_SAFE_INTEGER) throw new MerkleError("SIZE_OUT_OF_RANGE", "tree is full")
    let hash = copyBytes(leaf) // the caller may reuse its buffer
    let index = this.#size
    let level = 0
    visit?.(level, index, hash)
    // Each trailing 1 bit of the old size is a perfect subtree of the same height waiting for a right sibling.
    while (index % 2 === 1) {
      hash = nodeHash(this.#hashes.pop()!, hash)
      index = shr(index)
      level++
      visit?.(level, index, hash)
    }
    this.#hashes.push(hash)
    this.#size++
  }

  /** RFC 9162 MTH of the leaves so far: the subtrees folded right to left, which is how MTH splits a right edge. */
  root(): Uint8Array {
    const n = this.#hashes.length
    if (n === 0) return emptyRoot()
    let root = this.#hashes[n - 1]!
    for (let i = n - 2; i >= 0; i--) root = nodeHash(this.#hashes[i]!, root)
    return n === 1 ? copyBytes(root) : root
  }
}
