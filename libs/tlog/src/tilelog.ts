import * as fs from "node:fs"
import * as path from "node:path"
import { equalBytes, toHex } from "@vigil/bytes"
import { fsyncDir, tempPathOf } from "@vigil/durable"
import {
  CompactRange,
  consistencyProof,
  type HashReader,
  inclusionProof,
  leafHash,
  MerkleError,
  rootAt,
} from "@vigil/merkle"
import {
  type Checkpoint,
  type OpenCheckpointOptions,
  openCheckpoint,
  parseCheckpoint,
  type VerifierKey,
} from "@vigil/note"
import { TlogError } from "./errors.ts"
import { DurableDir, type FaultHook, readOptional } from "./io.ts"
import {
  BUNDLE_LAYOUTS,
  type BundleFormat,
  type BundleLayout,
  bundlePath,
  checkEntry,
  encodeBundle,
  parseBundle,
  partialBundleDir,
  partialTileDir,
  TILE_WIDTH,
  tilePath,
} from "./layout.ts"
import { migrateBundles } from "./migrate.ts"
import { cloneMeta, decodeState, encodeState, type JsonValue, type LastAppend, STATE_FILE } from "./state.ts"
import { Lru, TileNodes } from "./tiles.ts"

export interface TileLogOptions {
  /**
   * Entry bundle format of a new log (default `"vigil-u32"`); for an existing log, must match if given, unless
   * `migrate` is set.
   */
  readonly bundleFormat?: BundleFormat
  /** An existing log in another bundle format is re-framed in `bundleFormat` at open (see `migrateBundles`). */
  readonly migrate?: boolean
  /** Create the log if `dir` has none (default true). */
  readonly create?: boolean
  /** Full tiles kept expanded in memory, 16 KiB each (default 2048, 32 MiB). */
  readonly cacheTiles?: number
  /** Full entry bundles kept parsed in memory (default 16). */
  readonly cacheBundles?: number
  /** Testing only: called before every mutating file operation; throw to simulate a crash there. */
  readonly faultHook?: FaultHook
}

/** What one committed `append` did. */
export interface AppendResult {
  /** Index of the batch's first leaf. */
  readonly start: number
  /** Tree size after the batch. */
  readonly size: number
  /** Root hash at `size`. */
  readonly root: Uint8Array
}

export const CHECKPOINT_FILE = "checkpoint"
const LOCK_FILE = "lock"
/** Files a crash may leave in a directory whose log was never committed. */
const CREATION_LEFTOVERS = new Set([LOCK_FILE, tempPathOf(STATE_FILE)])

const isUint = (x: number): boolean => Number.isSafeInteger(x) && x >= 0
/** `256 ** level`, the leaves under one hash of a level-`level` tile. */
const span = (level: number): number => TILE_WIDTH ** level

/** Logs open in this process, by real path: the lock file alone cannot tell two of our own handles apart. */
const openHere = new Set<string>()

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * An advisory single-writer lock: `lock` holds the writer's pid. A lock whose process is gone (a crash, SIGKILL) is
 * taken over. Two processes taking over the same stale lock at the same instant can both win; run one writer.
 */
const acquireLock = (dir: string): void => {
  const file = path.join(dir, LOCK_FILE)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx" })
      return
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    }
    const pid = Number.parseInt(readOptional(dir, LOCK_FILE)?.toString("utf8") ?? "", 10)
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new TlogError("LOCKED", `${dir} is held open by process ${pid}`, { path: LOCK_FILE })
    }
    fs.rmSync(file, { force: true })
  }
  throw new TlogError("LOCKED", `could not take the lock of ${dir}`, { path: LOCK_FILE })
}

/**
 * A crash-safe, append-only Merkle log on disk in the c2sp.org/tlog-tiles layout:
 *
 * - `tile/<L>/<N>` full tiles (256 hashes, written once) and `tile/<L>/<N>.p/<W>` partial tiles,
 * - entry bundles (see `BundleFormat` for the framing and where they live),
 * - `checkpoint`, the last signed checkpoint handed to `publishCheckpoint`,
 * - `state.json`, the commit record: `{ size, root, lastAppend }`. A batch counts once `state.json` names it and not
 *   before: every tile and bundle it needs is written and fsynced (files, then directories) before `state.json` is
 *   replaced by an fsynced temp file, a rename and a directory fsync. Files for sizes past the commit are never read
 *   and are overwritten or deleted later; files a commit needs are never rewritten (each new width is a new file).
 *
 * Also a `HashReader` for `inclusionProof` / `consistencyProof` / `rootAt` of @vigil/merkle at any size up to the
 * current one: full tiles come from disk through a bounded LRU of expanded tiles, and the right edge (the partial
 * tile of every level) stays in memory, filled by `CompactRange.append` as leaves arrive.
 *
 * Synchronous: an append is one short critical section (a few milliseconds of writes and fsyncs per batch), and
 * synchronous calls cannot interleave. One writer per directory (an advisory pid lock file guards that).
 */
export class TileLog implements HashReader {
  /** The log directory (resolved real path). */
  readonly dir: string
  /** How entries are framed in bundles; fixed when the log was created. */
  readonly bundleFormat: BundleFormat
  readonly #layout: BundleLayout
  readonly #io: DurableDir
  readonly #tiles: Lru<number, TileNodes>
  readonly #bundles: Lru<number, readonly Uint8Array[]>
  #status: "open" | "closed" | "broken" = "open"
  #size = 0
  #root: Uint8Array = new Uint8Array()
  #lastAppend: LastAppend | undefined
  #checkpointSize = 0
  #range = new CompactRange()
  /** Per tile level, the tile that received the latest node of that level: the partial tile, or a just-filled one. */
  #edge: (TileNodes | undefined)[] = []
  /** The entries of the last, partial bundle (leaves `[index * 256, size)`). */
  #bundle: { index: number; entries: Uint8Array[] } = { index: 0, entries: [] }

  private constructor(dir: string, bundleFormat: BundleFormat, options: TileLogOptions) {
    this.dir = dir
    this.bundleFormat = bundleFormat
    this.#layout = BUNDLE_LAYOUTS[bundleFormat]
    this.#io = new DurableDir(dir, options.faultHook)
    this.#tiles = new Lru(options.cacheTiles ?? 2048)
    this.#bundles = new Lru(options.cacheBundles ?? 16)
  }

  /**
   * Opens the log in `dir`, creating it (and `dir`) if there is none. Recovers exactly the committed size: whatever
   * a crash left beyond it is ignored (and the obvious leftovers deleted). Refuses (`TlogError`) a log whose tiles at
   * the committed size do not recompute the committed root, naming the first inconsistent tile, or whose published
   * checkpoint the tiles do not match.
   */
  static open(dir: string, options: TileLogOptions = {}): TileLog {
    const create = options.create ?? true
    const created = create ? fs.mkdirSync(dir, { recursive: true }) : undefined
    if (!create && !fs.existsSync(dir)) throw new TlogError("NOT_A_LOG", `${dir} does not exist`)
    const real = fs.realpathSync(dir)
    if (created !== undefined) {
      // New directories are only durable once their parents are fsynced.
      const top = path.dirname(path.resolve(created))
      for (let d = path.dirname(real); ; d = path.dirname(d)) {
        fsyncDir(d)
        if (d === top || d === path.dirname(d)) break
      }
    }
    if (openHere.has(real)) throw new TlogError("LOCKED", `${real} is already open in this process`)
    acquireLock(real)
    openHere.add(real)
    try {
      let stateBytes = readOptional(real, STATE_FILE)
      if (stateBytes === undefined) {
        const others = fs.readdirSync(real).filter((name) => !CREATION_LEFTOVERS.has(name))
        if (!create || others.length > 0) {
          throw new TlogError("NOT_A_LOG", `${real} has no ${STATE_FILE}${others.length > 0 ? " but has files" : ""}`)
        }
        const format = options.bundleFormat ?? "vigil-u32"
        const empty = new CompactRange().root()
        stateBytes = encodeState({ bundles: format, size: 0, root: empty, lastAppend: undefined })
        new DurableDir(real, options.faultHook).replace(STATE_FILE, stateBytes)
      }
      let state = decodeState(stateBytes)
      if (options.bundleFormat !== undefined && options.bundleFormat !== state.bundles) {
        if (options.migrate !== true) {
          throw new TlogError("BAD_STATE", `${real} holds ${state.bundles} bundles, not ${options.bundleFormat}`)
        }
        state = migrateBundles(real, state, options.bundleFormat, new DurableDir(real, options.faultHook))
      }
      const format = state.bundles
      const log = new TileLog(real, format, options)
      log.#load()
      log.#removeLeftovers()
      return log
    } catch (e) {
      openHere.delete(real)
      fs.rmSync(path.join(real, LOCK_FILE), { force: true })
      throw e
    }
  }

  /** Number of committed leaves. */
  get size(): number {
    return this.#size
  }

  /** Root hash of the committed tree (a copy). */
  root(): Uint8Array {
    return new Uint8Array(this.#root)
  }

  /** The last committed batch with its metadata, e.g. to resume a stream after a restart; none for a new log. */
  get lastAppend(): LastAppend | undefined {
    return structuredClone(this.#lastAppend)
  }

  /**
   * Appends a batch of entries as consecutive leaves and commits it durably, together with `meta` (any JSON value,
   * persisted verbatim as `lastAppend.meta`), before returning. All or nothing: if it throws, the log is still at the
   * previous commit (or, for `COMMIT_UNCERTAIN`, must be reopened to learn which). An empty batch commits `meta` only.
   */
  append(entries: readonly Uint8Array[], meta?: JsonValue): AppendResult {
    this.#checkOpen()
    if (!Array.isArray(entries)) throw new TlogError("BAD_ENTRY", "entries must be an array of Uint8Array")
    entries.forEach((entry, i) => {
      checkEntry(this.#layout, entry, i)
    })
    const metaCopy = meta === undefined ? undefined : cloneMeta(meta)
    const start = this.#size
    const size = start + entries.length
    if (!Number.isSafeInteger(size)) throw new MerkleError("SIZE_OUT_OF_RANGE", "log is full")

    const io = this.#io
    const layout = this.#layout
    const edgeBefore = this.#edge.map((tile) => (tile === undefined ? undefined : [tile.index, tile.width]))
    const bundleBefore = [this.#bundle.index, this.#bundle.entries.length]
    const filled: TileNodes[] = []
    const filledBundles: { index: number; entries: Uint8Array[] }[] = []
    const superseded: string[] = []
    let renamed = false
    let root: Uint8Array
    let lastAppend: LastAppend
    try {
      const visit = (level: number, index: number, hash: Uint8Array): void => {
        const tileLevel = level >>> 3
        const h = level & 7
        const perTile = TILE_WIDTH >>> h
        const tileIndex = Math.floor(index / perTile)
        let tile = this.#edge[tileLevel]
        if (tile === undefined || tile.index !== tileIndex) {
          tile = new TileNodes(tileLevel, tileIndex)
          this.#edge[tileLevel] = tile
        }
        const pos = index - tileIndex * perTile
        tile.set(h, pos, hash)
        if (h === 7 && pos === 1) {
          // The last node inside the tile: it is full. Written now, immutable from here on.
          io.write(tilePath(tileLevel, tileIndex), tile.row0())
          filled.push(tile)
          superseded.push(partialTileDir(tileLevel, tileIndex))
        }
      }
      let bundle = this.#bundle
      for (const entry of entries) {
        const copy = new Uint8Array(entry) // the caller may reuse its buffers
        bundle.entries.push(copy)
        this.#range.append(leafHash(copy), visit)
        if (bundle.entries.length === TILE_WIDTH) {
          io.write(bundlePath(layout, bundle.index), encodeBundle(layout, bundle.entries))
          filledBundles.push(bundle)
          superseded.push(partialBundleDir(layout, bundle.index))
          bundle = { index: bundle.index + 1, entries: [] }
          this.#bundle = bundle
        }
      }
      // The right edge at the new size: one partial tile per level whose width changed, and the partial bundle.
      for (let level = 0; span(level) <= size; level++) {
        const width = Math.floor(size / span(level)) % TILE_WIDTH
        if (width === 0) continue
        const index = Math.floor(size / span(level + 1))
        const before = edgeBefore[level]
        if (before !== undefined && before[0] === index && before[1] === width) continue
        io.write(tilePath(level, index, width), this.#edge[level]!.row0())
      }
      const partial = bundle.entries.length
      if (partial > 0 && !(bundleBefore[0] === bundle.index && bundleBefore[1] === partial)) {
        io.write(bundlePath(layout, bundle.index, partial), encodeBundle(layout, bundle.entries))
      }
      io.sync()
      root = this.#range.root()
      lastAppend =
        metaCopy === undefined ? { start, count: entries.length } : { start, count: entries.length, meta: metaCopy }
      const state = encodeState({ bundles: this.bundleFormat, size, root, lastAppend })
      io.replace(STATE_FILE, state, () => {
        renamed = true
      })
    } catch (e) {
      io.abandon()
      if (renamed) {
        this.#status = "broken"
        throw new TlogError(
          "COMMIT_UNCERTAIN",
          `append of ${entries.length} entries at ${start} failed after ${STATE_FILE} was replaced: reopen the log and read lastAppend`,
          { cause: e },
        )
      }
      try {
        this.#load() // back to the committed state, which nothing in this append touched
      } catch {
        this.#status = "broken"
      }
      throw e
    }
    this.#size = size
    this.#root = root
    this.#lastAppend = lastAppend
    for (const tile of filled) this.#tiles.set(tile.index * 8 + tile.level, tile)
    for (const b of filledBundles) this.#bundles.set(b.index, b.entries)
    // tlog-tiles: a log MAY delete a partial tile once the full tile is available.
    for (const dir of superseded) io.remove(dir)
    return { start, size, root: new Uint8Array(root) }
  }

  /**
   * Node `(level, index)` of the committed tree: the MTH of leaves `[index * 2^level, (index + 1) * 2^level)`, for
   * any node complete at the current size. Throws `MerkleError` `INDEX_OUT_OF_RANGE` for any other node.
   */
  get(level: number, index: number): Uint8Array {
    if (
      !Number.isInteger(level) ||
      level < 0 ||
      level > 52 ||
      !isUint(index) ||
      (index + 1) * 2 ** level > this.#size
    ) {
      throw new MerkleError(
        "INDEX_OUT_OF_RANGE",
        `node (${level}, ${index}) is not in the tree of ${this.#size} leaves`,
      )
    }
    const tileLevel = Math.floor(level / 8)
    const h = level % 8
    const perTile = TILE_WIDTH >>> h
    const tileIndex = Math.floor(index / perTile)
    return this.#tile(tileLevel, tileIndex).node(h, index - tileIndex * perTile)
  }

  /** Leaf hash of entry `index` (from the level-0 tiles). */
  leafHash(index: number): Uint8Array {
    this.#checkOpen()
    return this.get(0, index)
  }

  /** Entry `index` (a copy), checked against its leaf hash when its bundle is read from disk. */
  entry(index: number): Uint8Array {
    this.#checkOpen()
    this.#checkIndex(index)
    const bundle = Math.floor(index / TILE_WIDTH)
    return new Uint8Array(this.#bundleEntries(bundle)[index - bundle * TILE_WIDTH]!)
  }

  /** Entries `[start, end)` (copies). */
  entries(start: number, end: number): Uint8Array[] {
    this.#checkOpen()
    if (!isUint(start) || !isUint(end) || start > end || end > this.#size) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `range [${start}, ${end}) is not within [0, ${this.#size})`)
    }
    const out: Uint8Array[] = []
    for (let i = start; i < end; ) {
      const bundle = Math.floor(i / TILE_WIDTH)
      const list = this.#bundleEntries(bundle)
      const stop = Math.min(end, (bundle + 1) * TILE_WIDTH)
      for (; i < stop; i++) out.push(new Uint8Array(list[i - bundle * TILE_WIDTH]!))
    }
    return out
  }

  /** Root of the tree of the first `size` leaves, for any size up to the current one. */
  rootAt(size: number): Uint8Array {
    this.#checkOpen()
    return rootAt(this, this.#checkSize(size))
  }

  /** RFC 9162 inclusion proof of leaf `index` in the tree of the first `size` leaves (default: all). */
  inclusionProof(index: number, size: number = this.#size): Uint8Array[] {
    this.#checkOpen()
    return inclusionProof(this, index, this.#checkSize(size))
  }

  /** RFC 9162 consistency proof from the first `size1` to the first `size2` leaves (default: all). */
  consistencyProof(size1: number, size2: number = this.#size): Uint8Array[] {
    this.#checkOpen()
    return consistencyProof(this, size1, this.#checkSize(size2))
  }

  /**
   * Publishes a signed checkpoint as the `checkpoint` file (atomically), after opening it with `verifiers` and
   * checking that its size is one this log has, its root is this log's root at that size, and it is not older than
   * the checkpoint already published. Returns the parsed checkpoint.
   */
  publishCheckpoint(
    note: string,
    verifiers: ReadonlyArray<VerifierKey>,
    options: OpenCheckpointOptions = {},
  ): Checkpoint {
    this.#checkOpen()
    const { checkpoint } = openCheckpoint(note, verifiers, options)
    const size = this.#checkpointAgainstTree(checkpoint)
    if (size < this.#checkpointSize) {
      throw new TlogError(
        "CHECKPOINT_MISMATCH",
        `checkpoint size ${size} is older than the published ${this.#checkpointSize}`,
        { path: CHECKPOINT_FILE },
      )
    }
    this.#writePartials(size)
    this.#io.replace(CHECKPOINT_FILE, Buffer.from(note, "utf8"))
    this.#checkpointSize = size
    return checkpoint
  }

  /**
   * tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for which a checkpoint was produced". A
   * checkpoint may name a size inside a batch, which no append wrote partial files for: write those (tiles and the
   * bundle) from memory, unless the tile has filled up since (clients then fall back to the full tile). Never touches
   * a file an existing commit needs: these widths are new files.
   */
  #writePartials(size: number): void {
    const io = this.#io
    for (let level = 0; span(level) <= size; level++) {
      const width = Math.floor(size / span(level)) % TILE_WIDTH
      const index = Math.floor(size / span(level + 1))
      const tile = this.#edge[level]
      if (width === 0 || tile === undefined || tile.index !== index || tile.width === TILE_WIDTH) continue
      const file = tilePath(level, index, width)
      if (!fs.existsSync(path.join(this.dir, file))) io.write(file, tile.row0().subarray(0, width * 32))
    }
    const width = size % TILE_WIDTH
    const index = Math.floor(size / TILE_WIDTH)
    if (width > 0 && this.#bundle.index === index) {
      const file = bundlePath(this.#layout, index, width)
      const entries = this.#bundle.entries.slice(0, width)
      if (!fs.existsSync(path.join(this.dir, file))) io.write(file, encodeBundle(this.#layout, entries))
    }
    io.sync()
  }

  /** The published signed checkpoint note, if any. */
  checkpoint(): string | undefined {
    this.#checkOpen()
    return readOptional(this.dir, CHECKPOINT_FILE)?.toString("utf8")
  }

  /** Releases the lock and the caches. Further calls throw `CLOSED`. */
  close(): void {
    if (this.#status === "closed") return
    this.#status = "closed"
    this.#tiles.clear()
    this.#bundles.clear()
    this.#edge = []
    fs.rmSync(path.join(this.dir, LOCK_FILE), { force: true })
    openHere.delete(this.dir)
  }

  #checkOpen(): void {
    if (this.#status === "closed") throw new TlogError("CLOSED", "log is closed")
    if (this.#status === "broken") throw new TlogError("CLOSED", "an earlier failure left the log unusable: reopen it")
  }

  #checkSize(size: number): number {
    if (!isUint(size) || size > this.#size) {
      throw new MerkleError("SIZE_OUT_OF_RANGE", `size ${size} is not in [0, ${this.#size}]`)
    }
    return size
  }

  #checkIndex(index: number): void {
    if (!isUint(index) || index >= this.#size) {
      throw new MerkleError("INDEX_OUT_OF_RANGE", `index ${index} is not in [0, ${this.#size})`)
    }
  }

  /** Tile `(level, index)`: the in-memory edge tile, or a full tile from the cache or the disk. */
  #tile(level: number, index: number): TileNodes {
    const edge = this.#edge[level]
    if (edge !== undefined && edge.index === index) return edge
    const key = index * 8 + level
    let tile = this.#tiles.get(key)
    if (tile === undefined) {
      const file = tilePath(level, index)
      const bytes = readOptional(this.dir, file)
      if (bytes === undefined) throw new TlogError("MISSING_TILE", `${file} is missing`, { path: file })
      if (bytes.length !== TILE_WIDTH * 32) {
        throw new TlogError("CORRUPT", `${file} is ${bytes.length} bytes, not ${TILE_WIDTH * 32}`, { path: file })
      }
      tile = TileNodes.fromRow0(level, index, bytes, TILE_WIDTH)
      this.#tiles.set(key, tile)
    }
    return tile
  }

  /** Entries of bundle `index`: the in-memory partial one, or a full one read, checked against its tile and cached. */
  #bundleEntries(index: number): readonly Uint8Array[] {
    if (index === this.#bundle.index) return this.#bundle.entries
    const cached = this.#bundles.get(index)
    if (cached !== undefined) return cached
    const file = bundlePath(this.#layout, index)
    const bytes = readOptional(this.dir, file)
    if (bytes === undefined) throw new TlogError("MISSING_ENTRY", `${file} is missing`, { path: file })
    const parsed = parseBundle(this.#layout, bytes, TILE_WIDTH)
    if (parsed.entries.length !== TILE_WIDTH || parsed.extra !== 0) {
      throw new TlogError("CORRUPT", `${file} does not hold exactly ${TILE_WIDTH} entries`, { path: file })
    }
    const tile = this.#tile(0, index)
    parsed.entries.forEach((entry, j) => {
      if (!equalBytes(leafHash(entry), tile.node(0, j))) {
        throw new TlogError("CORRUPT", `entry ${index * TILE_WIDTH + j} in ${file} does not match its leaf hash`, {
          path: file,
        })
      }
    })
    this.#bundles.set(index, parsed.entries)
    return parsed.entries
  }

  /** Checks a checkpoint body against the tree; returns its size as a number. */
  #checkpointAgainstTree(checkpoint: Checkpoint): number {
    if (checkpoint.size > BigInt(this.#size)) {
      throw new TlogError(
        "CHECKPOINT_MISMATCH",
        `checkpoint size ${checkpoint.size} is beyond the committed size ${this.#size}`,
        { path: CHECKPOINT_FILE },
      )
    }
    const size = Number(checkpoint.size)
    if (!equalBytes(rootAt(this, size), checkpoint.rootHash)) {
      throw new TlogError("CHECKPOINT_MISMATCH", `checkpoint root at size ${size} is not this log's root`, {
        path: CHECKPOINT_FILE,
      })
    }
    return size
  }

  /**
   * (Re)builds the in-memory state from the committed one on disk: `state.json`, the partial tile of every level and
   * the partial bundle at the committed size, and the compact range from the tiles. Verifies that they recompute the
   * committed root and that the partial bundle hashes to its tile.
   */
  #load(): void {
    const stateBytes = readOptional(this.dir, STATE_FILE)
    if (stateBytes === undefined) throw new TlogError("BAD_STATE", `${STATE_FILE} is missing`, { path: STATE_FILE })
    const state = decodeState(stateBytes)
    const size = state.size
    this.#size = size
    this.#root = state.root
    this.#lastAppend = state.lastAppend
    this.#edge = []
    for (let level = 0; span(level) <= size; level++) {
      const width = Math.floor(size / span(level)) % TILE_WIDTH
      if (width === 0) continue
      const index = Math.floor(size / span(level + 1))
      const file = tilePath(level, index, width)
      const bytes = readOptional(this.dir, file)
      if (bytes === undefined) {
        throw new TlogError("MISSING_TILE", `${file} is missing, and the committed size ${size} needs it`, {
          path: file,
        })
      }
      if (bytes.length !== width * 32) {
        throw new TlogError("CORRUPT", `${file} is ${bytes.length} bytes, not ${width * 32}`, { path: file })
      }
      this.#edge[level] = TileNodes.fromRow0(level, index, bytes, width)
    }

    const bundleIndex = Math.floor(size / TILE_WIDTH)
    const partial = size % TILE_WIDTH
    this.#bundle = { index: bundleIndex, entries: [] }
    let bundleFile: string | undefined
    if (partial > 0) {
      bundleFile = bundlePath(this.#layout, bundleIndex, partial)
      const bytes = readOptional(this.dir, bundleFile)
      if (bytes === undefined) {
        throw new TlogError("MISSING_ENTRY", `${bundleFile} is missing, and the committed size ${size} needs it`, {
          path: bundleFile,
        })
      }
      const parsed = parseBundle(this.#layout, bytes, partial)
      if (parsed.entries.length !== partial || parsed.extra !== 0) {
        throw new TlogError("CORRUPT", `${bundleFile} does not hold exactly ${partial} entries`, { path: bundleFile })
      }
      this.#bundle.entries = parsed.entries.map((e) => new Uint8Array(e))
    }

    this.#range = CompactRange.fromReader(this, size)
    const recomputed = this.#range.root()
    if (!equalBytes(recomputed, state.root)) this.#locateInconsistency(recomputed, state.root)
    // The root covers the partial level-0 tile but not the partial bundle's bytes: check those against it.
    const edge0 = this.#edge[0]
    this.#bundle.entries.forEach((entry, j) => {
      if (!equalBytes(leafHash(entry), edge0!.node(0, j))) {
        throw new TlogError(
          "CORRUPT",
          `entry ${bundleIndex * TILE_WIDTH + j} in ${bundleFile} does not hash to its leaf hash in ${tilePath(0, bundleIndex, partial)}`,
          { path: bundleFile! },
        )
      }
    })

    const note = readOptional(this.dir, CHECKPOINT_FILE)
    this.#checkpointSize = 0
    if (note !== undefined) {
      const text = note.toString("utf8")
      let checkpoint: Checkpoint
      try {
        checkpoint = parseCheckpoint(text.slice(0, text.lastIndexOf("\n\n") + 1))
      } catch (e) {
        throw new TlogError("BAD_STATE", `${CHECKPOINT_FILE} does not parse`, { path: CHECKPOINT_FILE, cause: e })
      }
      this.#checkpointSize = this.#checkpointAgainstTree(checkpoint)
    }
  }

  /**
   * The tiles at the committed size do not give the committed root: find the first tile (in leaf order) that
   * disagrees with the tiles or entries below it, and throw naming it.
   */
  #locateInconsistency(recomputed: Uint8Array, committed: Uint8Array): never {
    const size = this.#size
    // The root is a function of the partial tile of each level. Each hash in the partial tile of level L is the root
    // of a full tile of level L - 1; the partial tile of level 0 holds the hashes of the partial bundle's entries.
    for (let level = this.#edge.length - 1; level >= 1; level--) {
      const parent = this.#edge[level]
      if (parent === undefined) continue
      const parentFile = tilePath(level, parent.index, parent.width)
      for (let j = 0; j < parent.width; j++) {
        const childIndex = parent.index * TILE_WIDTH + j
        const child = this.#tile(level - 1, childIndex)
        if (!equalBytes(child.root(), parent.node(0, j))) {
          // One of the two was altered: the child, unless it agrees with what lies below it.
          const childFile = tilePath(level - 1, childIndex)
          const blamed = this.#agreesWithBelow(child) ? parentFile : childFile
          throw new TlogError(
            "INCONSISTENT",
            `${blamed} is the first inconsistent tile at the committed size ${size}: ${childFile} does not hash to ` +
              `hash ${j} of ${parentFile}`,
            { path: blamed },
          )
        }
      }
    }
    const edge0 = this.#edge[0]
    if (edge0 !== undefined) {
      const tileFile = tilePath(0, edge0.index, edge0.width)
      this.#bundle.entries.forEach((entry, j) => {
        if (!equalBytes(leafHash(entry), edge0.node(0, j))) {
          throw new TlogError(
            "INCONSISTENT",
            `hash ${j} of ${tileFile} is not the hash of entry ${edge0.index * TILE_WIDTH + j} (first inconsistent ` +
              `tile at the committed size ${size})`,
            { path: tileFile },
          )
        }
      })
    }
    throw new TlogError(
      "INCONSISTENT",
      `the tiles at size ${size} agree with each other but give root ${toHex(recomputed)}, and ${STATE_FILE} commits ` +
        `${toHex(committed)}: ${STATE_FILE} or the whole tree was altered`,
      { path: STATE_FILE },
    )
  }

  /** Whether a full tile's hashes are those of the tiles (or, at level 0, the entries) below it. */
  #agreesWithBelow(tile: TileNodes): boolean {
    try {
      if (tile.level === 0) {
        const bytes = readOptional(this.dir, bundlePath(this.#layout, tile.index))
        if (bytes === undefined) return false
        const { entries } = parseBundle(this.#layout, bytes, TILE_WIDTH)
        return entries.length === TILE_WIDTH && entries.every((e, j) => equalBytes(leafHash(e), tile.node(0, j)))
      }
      for (let j = 0; j < tile.width; j++) {
        const child = this.#tile(tile.level - 1, tile.index * TILE_WIDTH + j)
        if (!equalBytes(child.root(), tile.node(0, j))) return false
      }
      return true
    } catch {
      return false
    }
  }

  /**
   * Deletes what a crash may have left beyond the commit point where the next appends would not overwrite it: a full
   * tile or bundle at the index of the current partial one, partial files wider than the committed width, temp
   * files. Best effort; everything else past the commit is overwritten before any commit covers it.
   */
  #removeLeftovers(): void {
    const io = this.#io
    const size = this.#size
    const prune = (full: string, partialDir: string, width: number): void => {
      if (fs.existsSync(path.join(this.dir, full))) io.remove(full)
      let names: string[]
      try {
        names = fs.readdirSync(path.join(this.dir, partialDir))
      } catch {
        return
      }
      for (const name of names) {
        const w = Number(name)
        if (!(Number.isInteger(w) && w >= 1 && w <= width && String(w) === name)) io.remove(`${partialDir}/${name}`)
      }
    }
    for (let level = 0; level === 0 || span(level - 1) <= size; level++) {
      const index = Math.floor(size / span(level + 1))
      const width = Math.floor(size / span(level)) % TILE_WIDTH
      prune(tilePath(level, index), partialTileDir(level, index), width)
    }
    const bundleIndex = Math.floor(size / TILE_WIDTH)
    prune(bundlePath(this.#layout, bundleIndex), partialBundleDir(this.#layout, bundleIndex), size % TILE_WIDTH)
    // A crash between a commit and the removal of the partials it superseded leaves the `.p` directory of the tile
    // that was partial before the last batch (the batch's other full tiles never had one).
    const last = this.#lastAppend?.start
    if (last !== undefined) {
      for (let level = 0; span(level + 1) <= size; level++) {
        const index = Math.floor(last / span(level + 1))
        if (index < Math.floor(size / span(level + 1))) io.remove(partialTileDir(level, index))
      }
      const index = Math.floor(last / TILE_WIDTH)
      if (index < bundleIndex) io.remove(partialBundleDir(this.#layout, index))
    }
    for (const tmp of [tempPathOf(STATE_FILE), tempPathOf(CHECKPOINT_FILE)]) {
      if (fs.existsSync(path.join(this.dir, tmp))) io.remove(tmp)
    }
  }
}
