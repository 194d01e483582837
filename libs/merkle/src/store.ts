import { isUint } from "./_math.ts"
import { MerkleError } from "./errors.ts"
import { HASH_SIZE } from "./hash.ts"

/**
 * Read access to the complete subtree hashes of a log: `get(level, index)` is the MTH of leaves
 * `[index * 2^level, (index + 1) * 2^level)`, so level 0 holds the leaf hashes. This is the layout of tlog tiles, so a
 * file-backed reader can serve the same proofs; a tree of n leaves has at most 2n such nodes, and any proof needs
 * O(log n) of them. Must throw (not return garbage) for a node it does not hold, and return memory the caller may keep
 * (a copy, or bytes that are never rewritten): proofs hand these hashes out as they are.
 */
export interface HashReader {
  get(level: number, index: number): Uint8Array
}

// Hashes live in fixed-size flat chunks per level: no per-hash objects for the GC to trace (2 * 10^6 nodes take
// 64 MiB), and no copying of a whole level when it grows.
const CHUNK_HASHES = 4096
const CHUNK_BYTES = CHUNK_HASHES * HASH_SIZE

interface Level {
  readonly chunks: Uint8Array[]
  count: number
}

/** In-memory `HashReader`, filled append-only level by level, e.g. as the visitor of `CompactRange.append`. */
export class MemoryHashStore implements HashReader {
  readonly #levels: Level[] = []

  /** Stores node `(level, index)`. Each level is append-only: `index` must be the number already stored there. */
  put(level: number, index: number, hash: Uint8Array): void {
    if (hash.length !== HASH_SIZE) throw new MerkleError("BAD_HASH_SIZE", `hash is ${hash.length} bytes`)
    if (!isUint(level) || level > this.#levels.length) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `level ${level} skips a level (have ${this.#levels.length})`)
    }
    const count = this.#levels[level]?.count ?? 0
    if (index !== count) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `level ${level} is append-only: next index is ${count}, got ${index}`)
    }
    if (level === this.#levels.length) this.#levels.push({ chunks: [], count: 0 })
    const stored = this.#levels[level]!
    const offset = (index % CHUNK_HASHES) * HASH_SIZE
    if (offset === 0) stored.chunks.push(new Uint8Array(CHUNK_BYTES))
    stored.chunks[stored.chunks.length - 1]!.set(hash, offset)
    stored.count++
  }

  /** A copy of node `(level, index)`, so callers may keep or alter it without touching the store. */
  get(level: number, index: number): Uint8Array {
    const stored = this.#levels[level]
    if (stored === undefined || !isUint(index) || index >= stored.count) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `node (${level}, ${index}) is not stored`)
    }
    const offset = (index % CHUNK_HASHES) * HASH_SIZE
    return stored.chunks[Math.floor(index / CHUNK_HASHES)]!.slice(offset, offset + HASH_SIZE)
  }

  /** Number of nodes stored at `level` (at level 0, the number of leaves). */
  count(level: number): number {
    return this.#levels[level]?.count ?? 0
  }
}
