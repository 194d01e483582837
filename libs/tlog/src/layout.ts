import { TlogError } from "./errors.ts"

/** c2sp.org/tlog-tiles: a tile is a subtree of height 8, so it holds up to 256 hashes (8 KiB when full). */
export const TILE_HEIGHT = 8
export const TILE_WIDTH = 256

/**
 * How entries are framed inside an entry bundle. Fixed when a log is created and recorded in `state.json`.
 *
 * - `"tlog-tiles"`: exactly c2sp.org/tlog-tiles, bundles at `tile/entries/<N>[.p/<W>]`, each entry a big-endian
 *   uint16 length then its bytes. An entry over 65,535 bytes cannot be framed, so `append` refuses it
 *   (`ENTRY_TOO_LARGE`) rather than truncating or splitting it.
 * - `"vigil-u32"` (the library's default): the same bundles with a big-endian uint32 length prefix, capped at 16 MiB
 *   per entry, served at `entries-u32/<N>[.p/<W>]`.
 *
 * The auditor writes `"tlog-tiles"`: the bus caps events at 65,535 bytes (content lives in blobs), so every event
 * fits one entry and any tlog-tiles client reads the whole log; a log of the former uint32 framing is re-framed at
 * open (`migrateBundles`). `"vigil-u32"` stays for logs whose leaves must be larger entries themselves (RFC 9162
 * `leafHash(entry)`, no digest leaf): tlog-tiles allows serving another entry format at another URL, so those
 * bundles live outside `tile/`, and `tile/<L>/...` and `checkpoint` stay byte-for-byte tlog-tiles either way.
 */
export type BundleFormat = "tlog-tiles" | "vigil-u32"

export interface BundleLayout {
  readonly format: BundleFormat
  /** Directory of the bundles, relative to the log directory. */
  readonly dir: string
  /** Bytes of the big-endian length prefix. */
  readonly prefix: 2 | 4
  /** Longest entry the format accepts. */
  readonly maxEntry: number
}

export const BUNDLE_LAYOUTS: Readonly<Record<BundleFormat, BundleLayout>> = {
  "tlog-tiles": { format: "tlog-tiles", dir: "tile/entries", prefix: 2, maxEntry: 0xffff },
  "vigil-u32": { format: "vigil-u32", dir: "entries-u32", prefix: 4, maxEntry: 16 * 1024 * 1024 },
}

export const isBundleFormat = (x: unknown): x is BundleFormat => x === "tlog-tiles" || x === "vigil-u32"

/**
 * Tile index as tlog-tiles path elements: zero-padded groups of three digits, all but the last prefixed with `x`.
 * @example encodeIndex(1234067) // "x001/x234/067"
 * @example encodeIndex(5) // "005"
 */
export const encodeIndex = (index: number): string => {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`tile index ${index} is not a safe uint`)
  const groups: string[] = []
  let rest = index
  do {
    groups.push(String(rest % 1000).padStart(3, "0"))
    rest = Math.floor(rest / 1000)
  } while (rest > 0)
  groups.reverse()
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join("/")
}

const suffix = (width: number): string => {
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) throw new RangeError(`tile width ${width}`)
  return width === TILE_WIDTH ? "" : `.p/${width}`
}

/**
 * `tile/<L>/<N>[.p/<W>]`, relative to the log directory; `width` 256 (the default) names the full tile.
 * @example tilePath(0, 1234) // "tile/0/x001/234"
 * @example tilePath(1, 3, 17) // "tile/1/003.p/17"
 */
export const tilePath = (level: number, index: number, width: number = TILE_WIDTH): string => {
  if (!Number.isInteger(level) || level < 0 || level > 63) throw new RangeError(`tile level ${level}`)
  return `tile/${level}/${encodeIndex(index)}${suffix(width)}`
}

/** The directory holding the partial versions (`.p/<W>`) of tile `(level, index)`. */
export const partialTileDir = (level: number, index: number): string => `tile/${level}/${encodeIndex(index)}.p`

/** Entry bundle `<dir>/<N>[.p/<W>]` of the given format, e.g. `tile/entries/x001/234` for tlog-tiles. */
export const bundlePath = (layout: BundleLayout, index: number, width: number = TILE_WIDTH): string =>
  `${layout.dir}/${encodeIndex(index)}${suffix(width)}`

export const partialBundleDir = (layout: BundleLayout, index: number): string => `${layout.dir}/${encodeIndex(index)}.p`

/** One bundle: each entry as its length prefix (big-endian, `layout.prefix` bytes) and then its bytes. */
export const encodeBundle = (layout: BundleLayout, entries: readonly Uint8Array[]): Buffer => {
  let total = 0
  for (const e of entries) total += layout.prefix + e.length
  const out = Buffer.allocUnsafe(total)
  let offset = 0
  for (const e of entries) {
    if (layout.prefix === 2) out.writeUInt16BE(e.length, offset)
    else out.writeUInt32BE(e.length, offset)
    offset += layout.prefix
    out.set(e, offset)
    offset += e.length
  }
  return out
}

export interface ParsedBundle {
  /** Views into the bundle bytes, at most `expected` of them. */
  readonly entries: Uint8Array[]
  /** The bytes ran out inside the entry at index `entries.length` (its prefix or its body). */
  readonly truncated: boolean
  /** Bytes left after `expected` complete entries. */
  readonly extra: number
}

/** Splits a bundle into at most `expected` entries, reporting where it is cut short or runs long. */
export const parseBundle = (layout: BundleLayout, bytes: Uint8Array, expected: number): ParsedBundle => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const entries: Uint8Array[] = []
  let offset = 0
  while (entries.length < expected && offset < bytes.length) {
    if (offset + layout.prefix > bytes.length) return { entries, truncated: true, extra: 0 }
    const length = layout.prefix === 2 ? view.getUint16(offset) : view.getUint32(offset)
    const start = offset + layout.prefix
    if (start + length > bytes.length) return { entries, truncated: true, extra: 0 }
    entries.push(bytes.subarray(start, start + length))
    offset = start + length
  }
  return { entries, truncated: false, extra: bytes.length - offset }
}

/** Refuses entries that `layout` cannot frame; called before anything is written. */
export const checkEntry = (layout: BundleLayout, entry: unknown, index: number): Uint8Array => {
  if (!(entry instanceof Uint8Array)) throw new TlogError("BAD_ENTRY", `entry ${index} is not a Uint8Array`)
  if (entry.length > layout.maxEntry) {
    throw new TlogError(
      "ENTRY_TOO_LARGE",
      `entry ${index} is ${entry.length} bytes; the ${layout.format} bundle format takes at most ${layout.maxEntry}`,
    )
  }
  return entry
}
