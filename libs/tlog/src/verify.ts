import { equalBytes } from "@vigil/bytes"
import { CompactRange, emptyRoot, type HashReader, leafHash, MerkleError, rootAt } from "@vigil/merkle"
import { readOptional } from "./io.ts"
import { BUNDLE_LAYOUTS, bundlePath, parseBundle, TILE_WIDTH, tilePath } from "./layout.ts"
import { decodeState, type LogState, STATE_FILE } from "./state.ts"
import { Lru, TileNodes } from "./tiles.ts"

/**
 * Why `verifyStore` refused a log, with the first leaf index affected:
 *
 * - `LEAF_HASH_MISMATCH`: an entry does not hash to its leaf hash in the level-0 tile (edited, swapped, inserted or
 *   deleted entry bytes), and the tile is the one the tree above vouches for.
 * - `TILE_MISMATCH`: a stored tile hash is not the hash recomputed from below (its children, or for a level-0 tile
 *   the entries when those are the ones the tree above vouches for).
 * - `MISSING_TILE` / `MISSING_ENTRY`: a tile or bundle the committed size needs is absent, or a bundle ends (at an
 *   entry boundary) before the entries it must hold.
 * - `TRUNCATED`: a file is cut short: a bundle inside an entry, or a tile inside or before a hash it must hold; also
 *   a log shorter than a trusted checkpoint.
 * - `EXTRA_DATA`: a file the committed size needs holds more than it should (an entry or bytes past its width).
 * - `ROOT_MISMATCH`: everything agrees with everything else but not with the committed root (or a trusted
 *   checkpoint's root): `state.json` or the whole tree was rewritten.
 * - `BAD_STATE`: `state.json` is missing or does not parse.
 */
export type StoreProblem =
  | "LEAF_HASH_MISMATCH"
  | "TILE_MISMATCH"
  | "MISSING_TILE"
  | "MISSING_ENTRY"
  | "TRUNCATED"
  | "EXTRA_DATA"
  | "ROOT_MISMATCH"
  | "BAD_STATE"

export interface VerifyStoreOptions {
  /** Told after each bundle: leaves verified so far and the committed size. */
  readonly onProgress?: (verified: number, size: number) => void
  /** A trusted tree head (e.g. a signed checkpoint's size and root) the log must contain. */
  readonly checkpoint?: { readonly size: number | bigint; readonly rootHash: Uint8Array }
}

export type VerifyStoreResult =
  | { readonly ok: true; readonly size: number; readonly root: Uint8Array }
  | {
      readonly ok: false
      readonly size: number
      readonly code: StoreProblem
      /** First leaf index affected (for a tile hash, the first leaf under it); absent for a state or root problem. */
      readonly index?: number
      /** The file at fault, relative to the log directory. */
      readonly path?: string
      readonly message: string
    }

type Failure = Extract<VerifyStoreResult, { ok: false }>

const span = (level: number): number => TILE_WIDTH ** level

/** A stored tile as the committed size expects it: `expected` hashes; `stored` of them are present. */
interface StoredTile {
  readonly file: string
  readonly expected: number
  readonly stored: number
  /** Bytes past the expected width (or a ragged tail). */
  readonly extra: boolean
  readonly nodes: TileNodes
}

/** Reads tiles as they must be at `size`: full, or partial at the width `size` gives (falling back to the full one). */
class StoredTiles implements HashReader {
  readonly #dir: string
  readonly #size: number
  readonly #cache = new Lru<number, StoredTile>(64)
  readonly #override = new Map<number, TileNodes>()

  constructor(dir: string, size: number) {
    this.#dir = dir
    this.#size = size
  }

  /** Expected width of tile `(level, index)` at the committed size (0: no such tile). */
  width(level: number, index: number): number {
    const count = Math.floor(this.#size / span(level))
    return Math.max(0, Math.min(TILE_WIDTH, count - index * TILE_WIDTH))
  }

  /** The tile, or `undefined` if no file holds it. */
  load(level: number, index: number): StoredTile | undefined {
    const key = index * 8 + level
    const cached = this.#cache.get(key)
    if (cached !== undefined) return cached
    const expected = this.width(level, index)
    let file = tilePath(level, index, expected)
    let bytes = readOptional(this.#dir, file)
    if (bytes === undefined && expected < TILE_WIDTH) {
      // tlog-tiles: a log may delete a partial tile once the full one exists (a writer racing this check does).
      const full = readOptional(this.#dir, tilePath(level, index))
      if (full !== undefined && full.length === TILE_WIDTH * 32) {
        file = tilePath(level, index)
        bytes = full.subarray(0, expected * 32)
      }
    }
    if (bytes === undefined) return undefined
    const stored = Math.min(expected, Math.floor(bytes.length / 32))
    const tile: StoredTile = {
      file,
      expected,
      stored,
      extra: bytes.length > expected * 32 || (bytes.length < expected * 32 && bytes.length % 32 !== 0),
      nodes: TileNodes.fromRow0(level, index, bytes, stored),
    }
    this.#cache.set(key, tile)
    return tile
  }

  /** Reads tile `(level, index)` as `nodes` instead, for what-if roots. */
  override(level: number, index: number, nodes: TileNodes | undefined): void {
    if (nodes === undefined) this.#override.delete(index * 8 + level)
    else this.#override.set(index * 8 + level, nodes)
  }

  get(level: number, index: number): Uint8Array {
    const tileLevel = Math.floor(level / 8)
    const h = level % 8
    const perTile = TILE_WIDTH >>> h
    const tileIndex = Math.floor(index / perTile)
    const pos = index - tileIndex * perTile
    const nodes = this.#override.get(tileIndex * 8 + tileLevel) ?? this.load(tileLevel, tileIndex)?.nodes
    if (nodes === undefined || !nodes.has(h, pos)) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `node (${level}, ${index}) is not stored`)
    }
    return nodes.node(h, pos)
  }
}

/**
 * Recomputes the whole log from its entry bundles and compares every stored tile hash and the committed root:
 * every leaf hash from its entry, every tile hash from its children, the root from the tiles. Read-only, and needs no
 * lock; reads `state.json` once and checks exactly the committed size (files past it are crash leftovers, not
 * errors). Stops at the first problem, reporting its leaf index and the file at fault.
 */
export const verifyStore = (dir: string, options: VerifyStoreOptions = {}): VerifyStoreResult => {
  let state: LogState
  try {
    const bytes = readOptional(dir, STATE_FILE)
    if (bytes === undefined) {
      return { ok: false, size: 0, code: "BAD_STATE", path: STATE_FILE, message: `${STATE_FILE} is missing` }
    }
    state = decodeState(bytes)
  } catch (e) {
    return { ok: false, size: 0, code: "BAD_STATE", path: STATE_FILE, message: (e as Error).message }
  }
  const size = state.size
  const layout = BUNDLE_LAYOUTS[state.bundles]
  const fail = (code: StoreProblem, index: number | undefined, file: string, message: string): Failure =>
    index === undefined
      ? { ok: false, size, code, path: file, message }
      : { ok: false, size, code, index, path: file, message }

  const trusted = options.checkpoint
  const trustedSize = trusted === undefined ? undefined : Number(trusted.size)
  if (trusted !== undefined && trusted.size > BigInt(size)) {
    return fail("TRUNCATED", size, STATE_FILE, `the log has ${size} leaves, the trusted checkpoint ${trusted.size}`)
  }
  let trustedRoot = trustedSize === 0 ? emptyRoot() : undefined

  const stored = new StoredTiles(dir, size)
  const range = new CompactRange()
  let failure: Failure | undefined

  // Every node at a tile level above 0 is checked against its stored tile as soon as `CompactRange` completes it.
  const visit = (level: number, index: number, hash: Uint8Array): void => {
    if (failure !== undefined || level === 0 || level % 8 !== 0) return
    const tileLevel = level / 8
    const tileIndex = Math.floor(index / TILE_WIDTH)
    const pos = index - tileIndex * TILE_WIDTH
    const first = index * span(tileLevel)
    const tile = stored.load(tileLevel, tileIndex)
    const file = tilePath(tileLevel, tileIndex, stored.width(tileLevel, tileIndex))
    if (tile === undefined) {
      failure = fail("MISSING_TILE", first, file, `${file} is missing`)
    } else if (pos >= tile.stored) {
      failure = fail("TRUNCATED", first, tile.file, `${tile.file} is cut short before hash ${pos}`)
    } else if (!equalBytes(tile.nodes.node(0, pos), hash)) {
      failure = fail(
        "TILE_MISMATCH",
        first,
        tile.file,
        `hash ${pos} of ${tile.file} is not the hash of leaves [${first}, ${first + span(tileLevel)}) recomputed from below`,
      )
    } else if (pos === tile.expected - 1 && tile.extra) {
      failure = fail("EXTRA_DATA", first + span(tileLevel), tile.file, `${tile.file} runs past ${tile.expected} hashes`)
    }
  }

  for (let bundle = 0; bundle * TILE_WIDTH < size; bundle++) {
    const first = bundle * TILE_WIDTH
    const width = Math.min(TILE_WIDTH, size - first)
    const bundleFile = bundlePath(layout, bundle, width)
    let bytes = readOptional(dir, bundleFile)
    let bundleRead = bundleFile
    if (bytes === undefined && width < TILE_WIDTH) {
      bundleRead = bundlePath(layout, bundle)
      bytes = readOptional(dir, bundleRead)
    }
    if (bytes === undefined) return fail("MISSING_ENTRY", first, bundleFile, `${bundleFile} is missing`)
    const parsed = parseBundle(layout, bytes, width)
    // A full bundle standing in for a deleted partial one legitimately holds more entries.
    const extra = bundleRead === bundleFile && parsed.extra > 0

    const tile = stored.load(0, bundle)
    const tileFile = tilePath(0, bundle, width)
    if (tile === undefined) return fail("MISSING_TILE", first, tileFile, `${tileFile} is missing`)

    for (let j = 0; j < width; j++) {
      if (j >= parsed.entries.length) {
        return parsed.truncated
          ? fail("TRUNCATED", first + j, bundleRead, `${bundleRead} is cut short inside entry ${first + j}`)
          : fail("MISSING_ENTRY", first + j, bundleRead, `${bundleRead} ends before entry ${first + j}`)
      }
      if (j >= tile.stored) return fail("TRUNCATED", first + j, tile.file, `${tile.file} is cut short before hash ${j}`)
      const hash = leafHash(parsed.entries[j]!)
      if (!equalBytes(hash, tile.nodes.node(0, j))) {
        return attribute(stored, size, state.root, bundle, j, parsed.entries, tile, bundleRead, fail)
      }
      range.append(hash, visit)
      if (failure !== undefined) return failure
      if (range.size === trustedSize) trustedRoot = range.root()
    }
    if (extra) return fail("EXTRA_DATA", first + width, bundleRead, `${bundleRead} holds more than ${width} entries`)
    if (tile.extra) return fail("EXTRA_DATA", first + width, tile.file, `${tile.file} runs past ${width} hashes`)
    options.onProgress?.(first + width, size)
  }
  if (size === 0) options.onProgress?.(0, 0)

  const root = range.root()
  if (!equalBytes(root, state.root)) {
    return fail(
      "ROOT_MISMATCH",
      undefined,
      STATE_FILE,
      `entries and tiles agree, but not with the root in ${STATE_FILE}`,
    )
  }
  if (trusted !== undefined && !equalBytes(trustedRoot!, trusted.rootHash)) {
    return fail(
      "ROOT_MISMATCH",
      undefined,
      STATE_FILE,
      `the root at size ${trustedSize} is not the trusted checkpoint's`,
    )
  }
  return { ok: true, size, root }
}

/**
 * Entry `first + j` does not hash to the stored leaf hash. Blame the side the tree above vouches for: the stored
 * level-0 tile if its hash is the one its parent tile stores (or, for the partial tile, if it gives the committed
 * root), so the entry was altered; otherwise the tile, if the entries' own hashes are the ones vouched for.
 */
const attribute = (
  stored: StoredTiles,
  size: number,
  committedRoot: Uint8Array,
  bundle: number,
  j: number,
  entries: readonly Uint8Array[],
  tile: StoredTile,
  bundleFile: string,
  fail: (code: StoreProblem, index: number | undefined, file: string, message: string) => Failure,
): Failure => {
  const first = bundle * TILE_WIDTH
  const vouched = (nodes: TileNodes): boolean => {
    if (nodes.width === TILE_WIDTH) {
      const parent = stored.load(1, Math.floor(bundle / TILE_WIDTH))
      const pos = bundle % TILE_WIDTH
      return parent !== undefined && pos < parent.stored && equalBytes(parent.nodes.node(0, pos), nodes.root())
    }
    stored.override(0, bundle, nodes)
    try {
      return equalBytes(rootAt(stored, size), committedRoot)
    } catch {
      return false
    } finally {
      stored.override(0, bundle, undefined)
    }
  }
  if (tile.stored === tile.expected && entries.length >= tile.expected && !vouched(tile.nodes)) {
    const hashes = new Uint8Array(tile.expected * 32)
    for (let i = 0; i < tile.expected; i++) hashes.set(leafHash(entries[i]!), i * 32)
    if (vouched(TileNodes.fromRow0(0, bundle, hashes, tile.expected))) {
      return fail(
        "TILE_MISMATCH",
        first + j,
        tile.file,
        `hash ${j} of ${tile.file} is not the hash of entry ${first + j} (the entries match the tiles above)`,
      )
    }
  }
  return fail(
    "LEAF_HASH_MISMATCH",
    first + j,
    bundleFile,
    `entry ${first + j} in ${bundleFile} does not hash to its leaf hash in ${tile.file}`,
  )
}
