import { isUint } from "./_math.ts"
import { CompactRange } from "./compact.ts"
import { MerkleError } from "./errors.ts"
import { consistencyProof, inclusionProof, rootAt } from "./prove.ts"
import { type HashReader, MemoryHashStore } from "./store.ts"

/**
 * A whole log in memory: a `CompactRange` for the current root plus a `MemoryHashStore` of every complete subtree for
 * proofs at any past size. About 64 bytes per leaf. The shape to copy for a file-backed log: swap the store.
 * @example
 * const tree = new MemoryTree()
 * const index = tree.append(leafHash(entry))
 * const size = tree.size, root = tree.root() // sign these as a checkpoint
 * verifyInclusion(index, size, leafHash(entry), tree.inclusionProof(index, size), root) // { ok: true }
 */
export class MemoryTree implements HashReader {
  readonly #range = new CompactRange()
  readonly #store = new MemoryHashStore()
  readonly #visit = (level: number, index: number, hash: Uint8Array): void => this.#store.put(level, index, hash)

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#range.size
  }

  /** Appends a leaf hash (see `leafHash`) and returns its index. */
  append(leafHash: Uint8Array): number {
    const index = this.#range.size
    this.#range.append(leafHash, this.#visit)
    return index
  }

  /** Root of the current tree, O(log n) hashes. */
  root(): Uint8Array {
    return this.#range.root()
  }

  /** Root of the tree of the first `size` leaves, for any past size. */
  rootAt(size: number): Uint8Array {
    return rootAt(this.#store, this.#checkSize(size))
  }

  get(level: number, index: number): Uint8Array {
    return this.#store.get(level, index)
  }

  /** RFC 9162 inclusion proof for leaf `index` in the tree of the first `size` leaves (default: all). */
  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    return inclusionProof(this.#store, index, this.#checkSize(size))
  }

  /** RFC 9162 consistency proof from the first `size1` to the first `size2` leaves (default: all). */
  consistencyProof(size1: number, size2: number = this.size): Uint8Array[] {
    return consistencyProof(this.#store, size1, this.#checkSize(size2))
  }

  #checkSize(size: number): number {
    if (!isUint(size) || size > this.size) {
      throw new MerkleError("SIZE_OUT_OF_RANGE", `size ${size} is not in [0, ${this.size}]`)
    }
    return size
  }
}
