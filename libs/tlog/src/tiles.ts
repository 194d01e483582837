import { HASH_SIZE, nodeHash } from "@vigil/merkle"
import { TILE_HEIGHT, TILE_WIDTH } from "./layout.ts"

// Offsets of the rows of an expanded tile in one buffer: row h holds 256 >> h hashes, 511 in all (16,352 bytes).
const ROW_OFFSETS: number[] = []
let total = 0
for (let h = 0; h < TILE_HEIGHT; h++) {
  ROW_OFFSETS.push(total * HASH_SIZE)
  total += TILE_WIDTH >> h
}
const EXPANDED_BYTES = total * HASH_SIZE

/**
 * One tile with every node inside it: row 0 is the tile as stored (hashes at Merkle level `8 * level`), rows 1..7 the
 * levels a tile does not store, so any node of the tile is one copy away. A tile of `width` < 256 is partial: only
 * nodes whose whole subtree lies within the width are complete (and only those are ever read).
 */
export class TileNodes {
  readonly level: number
  readonly index: number
  /** Row-0 hashes present, 1..256. */
  width = 0
  readonly #buf = new Uint8Array(EXPANDED_BYTES)

  constructor(level: number, index: number) {
    this.level = level
    this.index = index
  }

  /** Expands stored tile bytes (`width` hashes) into every complete node: `width - popcount(width)` node hashes. */
  static fromRow0(level: number, index: number, row0: Uint8Array, width: number): TileNodes {
    const tile = new TileNodes(level, index)
    tile.#buf.set(row0.subarray(0, width * HASH_SIZE), 0)
    tile.width = width
    const buf = tile.#buf
    for (let h = 1; h < TILE_HEIGHT; h++) {
      const count = Math.floor(width / 2 ** h)
      const below = ROW_OFFSETS[h - 1]!
      const here = ROW_OFFSETS[h]!
      for (let p = 0; p < count; p++) {
        const left = below + 2 * p * HASH_SIZE
        const hash = nodeHash(
          buf.subarray(left, left + HASH_SIZE),
          buf.subarray(left + HASH_SIZE, left + 2 * HASH_SIZE),
        )
        buf.set(hash, here + p * HASH_SIZE)
      }
    }
    return tile
  }

  /** Stores node `(h, pos)`, as `CompactRange.append` reports it. */
  set(h: number, pos: number, hash: Uint8Array): void {
    this.#buf.set(hash, ROW_OFFSETS[h]! + pos * HASH_SIZE)
    if (h === 0) this.width = pos + 1
  }

  /** Whether node `(h, pos)` is complete in this tile. */
  has(h: number, pos: number): boolean {
    return (pos + 1) * 2 ** h <= this.width
  }

  /** A copy of node `(h, pos)`; callers check `has` first. */
  node(h: number, pos: number): Uint8Array {
    const at = ROW_OFFSETS[h]! + pos * HASH_SIZE
    return this.#buf.slice(at, at + HASH_SIZE)
  }

  /** A view of the row-0 hashes: the tile file's bytes. */
  row0(): Uint8Array {
    return this.#buf.subarray(0, this.width * HASH_SIZE)
  }

  /** MTH of a full tile: the hash its parent tile stores. */
  root(): Uint8Array {
    const at = ROW_OFFSETS[TILE_HEIGHT - 1]!
    return nodeHash(this.#buf.subarray(at, at + HASH_SIZE), this.#buf.subarray(at + HASH_SIZE, at + 2 * HASH_SIZE))
  }
}

/** A bounded least-recently-used map (insertion order of a `Map` is the recency order). */
export class Lru<K, V> {
  readonly #map = new Map<K, V>()
  readonly #capacity: number

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity)
  }

  get(key: K): V | undefined {
    const value = this.#map.get(key)
    if (value !== undefined) {
      this.#map.delete(key)
      this.#map.set(key, value)
    }
    return value
  }

  set(key: K, value: V): void {
    this.#map.delete(key)
    this.#map.set(key, value)
    if (this.#map.size > this.#capacity) this.#map.delete(this.#map.keys().next().value as K)
  }

  clear(): void {
    this.#map.clear()
  }

  get size(): number {
    return this.#map.size
  }
}
