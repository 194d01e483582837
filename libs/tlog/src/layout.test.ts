import * as fs from "node:fs"
import * as path from "node:path"
import { leafHash, MemoryTree, nodeHash, rootFromLeafHashes } from "@vigil/merkle"
import { describe, expect, it } from "vitest"
import type { TlogError } from "./errors.ts"
import {
  BUNDLE_LAYOUTS,
  bundlePath,
  checkEntry,
  encodeBundle,
  encodeIndex,
  parseBundle,
  partialTileDir,
  tilePath,
} from "./layout.ts"
import { exists, listFiles, read, tempDir } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"

const U16 = BUNDLE_LAYOUTS["tlog-tiles"]
const U32 = BUNDLE_LAYOUTS["vigil-u32"]

describe("tlog-tiles paths", () => {
  it.each([
    [0, "000"],
    [5, "005"],
    [999, "999"],
    [1000, "x001/000"],
    [1234, "x001/234"],
    [67_000, "x067/000"],
    [1_234_067, "x001/x234/067"],
    [1_000_000, "x001/x000/000"],
    [2 ** 45, "x035/x184/x372/x088/832"],
  ])("index %d is %s", (index, encoded) => {
    expect(encodeIndex(index)).toBe(encoded)
  })

  it("tile paths: level, index elements, .p/<W> only for partial widths", () => {
    expect(tilePath(0, 1234)).toBe("tile/0/x001/234")
    expect(tilePath(0, 1234, 256)).toBe("tile/0/x001/234")
    expect(tilePath(1, 3, 17)).toBe("tile/1/003.p/17")
    expect(tilePath(2, 1_234_067, 1)).toBe("tile/2/x001/x234/067.p/1")
    expect(partialTileDir(0, 1234)).toBe("tile/0/x001/234.p")
    expect(() => tilePath(0, 0, 0)).toThrow(RangeError)
    expect(() => tilePath(0, 0, 257)).toThrow(RangeError)
    expect(() => tilePath(64, 0)).toThrow(RangeError)
    expect(() => encodeIndex(-1)).toThrow(RangeError)
  })

  it("entry bundle paths: tile/entries for tlog-tiles, entries-u32 for the uint32 format", () => {
    expect(bundlePath(U16, 1234)).toBe("tile/entries/x001/234")
    expect(bundlePath(U16, 7, 112)).toBe("tile/entries/007.p/112")
    expect(bundlePath(U32, 1234, 5)).toBe("entries-u32/x001/234.p/5")
  })
})

describe("entry bundles", () => {
  it("tlog-tiles framing is a big-endian uint16 length then the bytes", () => {
    const bundle = encodeBundle(U16, [Uint8Array.of(0xaa), new Uint8Array(0), new Uint8Array(0x0102).fill(7)])
    expect(bundle.subarray(0, 6)).toEqual(Buffer.from([0x00, 0x01, 0xaa, 0x00, 0x00, 0x01]))
    expect(bundle[6]).toBe(0x02)
    expect(bundle.length).toBe(3 + 2 + 2 + 0x0102)
    const parsed = parseBundle(U16, bundle, 3)
    expect(parsed.entries.map((e) => e.length)).toEqual([1, 0, 0x0102])
    expect(parsed).toMatchObject({ truncated: false, extra: 0 })
  })

  it("vigil-u32 framing is a big-endian uint32 length", () => {
    const big = new Uint8Array(256 * 1024).fill(1)
    const bundle = encodeBundle(U32, [big, Uint8Array.of(9)])
    expect([...bundle.subarray(0, 4)]).toEqual([0x00, 0x04, 0x00, 0x00])
    const parsed = parseBundle(U32, bundle, 2)
    expect(new Uint8Array(parsed.entries[0]!)).toEqual(big)
    expect(new Uint8Array(parsed.entries[1]!)).toEqual(Uint8Array.of(9))
  })

  it("reports a bundle cut inside an entry, and bytes past the expected entries", () => {
    const bundle = encodeBundle(U16, [Uint8Array.of(1, 2, 3), Uint8Array.of(4, 5)])
    expect(parseBundle(U16, bundle.subarray(0, 7), 2)).toMatchObject({ truncated: true })
    expect(parseBundle(U16, bundle.subarray(0, 6), 2).entries.length).toBe(1)
    expect(parseBundle(U16, bundle.subarray(0, 5), 2)).toMatchObject({ truncated: false, extra: 0 })
    expect(parseBundle(U16, bundle, 1)).toMatchObject({ truncated: false, extra: 4 })
  })

  it("refuses entries the format cannot frame", () => {
    const code = (f: () => unknown) => {
      try {
        f()
      } catch (e) {
        return (e as TlogError).code
      }
    }
    expect(checkEntry(U16, new Uint8Array(65_535), 0).length).toBe(65_535)
    expect(code(() => checkEntry(U16, new Uint8Array(65_536), 3))).toBe("ENTRY_TOO_LARGE")
    expect(checkEntry(U32, new Uint8Array(256 * 1024), 0).length).toBe(256 * 1024)
    expect(code(() => checkEntry(U32, new Uint8Array(16 * 1024 * 1024 + 1), 0))).toBe("ENTRY_TOO_LARGE")
    expect(code(() => checkEntry(U32, "x" as unknown as Uint8Array, 0))).toBe("BAD_ENTRY")
  })
})

describe("on-disk layout", () => {
  // The worked example of c2sp.org/tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0 tiles,
  // one partial level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
  // partial level 2 tile of width 1."
  it("a tree of 70,000 leaves has exactly the tiles of the spec's example, and the bytes tlog-tiles defines", () => {
    const dir = tempDir()
    const log = TileLog.open(dir, { bundleFormat: "tlog-tiles" })
    const entry = (i: number) => Buffer.from(`entry ${i}`)
    for (let i = 0; i < 70_000; i += 7_000) log.append(Array.from({ length: 7_000 }, (_, j) => entry(i + j)))
    log.close()

    const files = listFiles(dir)
    const tiles = files.filter((f) => f.startsWith("tile/") && !f.startsWith("tile/entries"))
    const expected = [
      ...Array.from({ length: 273 }, (_, n) => tilePath(0, n)),
      "tile/0/273.p/112",
      "tile/1/000",
      "tile/1/001.p/17",
      "tile/2/000.p/1",
    ]
    expect(tiles.sort()).toEqual(expected.sort())
    const bundles = files.filter((f) => f.startsWith("tile/entries/"))
    expect(bundles.sort()).toEqual(
      [...Array.from({ length: 273 }, (_, n) => bundlePath(U16, n)), "tile/entries/273.p/112"].sort(),
    )
    expect(files.filter((f) => !f.startsWith("tile/"))).toEqual(["state.json"])

    // Level 0 tiles are the leaf hashes; a bundle is the tlog-tiles framing of the same entries.
    const leaves = Array.from({ length: 256 }, (_, i) => leafHash(entry(256 * 5 + i)))
    expect(read(dir, "tile/0/005")).toEqual(Buffer.concat(leaves))
    expect(read(dir, "tile/entries/005")).toEqual(
      encodeBundle(
        U16,
        Array.from({ length: 256 }, (_, i) => entry(1280 + i)),
      ),
    )
    // Level 1 hashes are the MTHs of full level 0 tiles; level 2 of full level 1 tiles.
    expect(read(dir, "tile/1/000").subarray(5 * 32, 6 * 32)).toEqual(Buffer.from(rootFromLeafHashes(leaves)))
    const level1 = read(dir, "tile/1/000")
    const halves = (b: Buffer, n: number): Uint8Array => {
      let row: Uint8Array[] = Array.from({ length: n }, (_, i) => new Uint8Array(b.subarray(i * 32, i * 32 + 32)))
      while (row.length > 1)
        row = Array.from({ length: row.length / 2 }, (_, i) => nodeHash(row[2 * i]!, row[2 * i + 1]!))
      return row[0]!
    }
    expect(read(dir, "tile/2/000.p/1")).toEqual(Buffer.from(halves(level1, 256)))
  })

  it("indexes of 1000 and more are written as x-prefixed path elements", () => {
    const dir = tempDir()
    const log = TileLog.open(dir)
    const size = 1002 * 256 + 3
    const entry = Uint8Array.of(1)
    for (let i = 0; i < size; i += 32_768) log.append(new Array(Math.min(32_768, size - i)).fill(entry))
    expect(log.size).toBe(size)
    expect(exists(dir, "tile/0/999")).toBe(true)
    expect(exists(dir, "tile/0/x001/000")).toBe(true)
    expect(exists(dir, "tile/0/x001/001")).toBe(true)
    expect(exists(dir, "tile/0/x001/002.p/3")).toBe(true)
    expect(exists(dir, "entries-u32/x001/001")).toBe(true)
    expect(exists(dir, "entries-u32/x001/002.p/3")).toBe(true)
    expect(exists(dir, "tile/1/003.p/234")).toBe(true)
    expect(fs.readdirSync(path.join(dir, "tile/0/x001")).sort()).toEqual(["000", "001", "002.p"])
    expect(log.entry(1001 * 256 + 7)).toEqual(entry)
    const tree = new MemoryTree()
    for (let i = 0; i < size; i++) tree.append(leafHash(entry))
    expect(log.root()).toEqual(tree.root())
    for (const [i, m] of [
      [256_000, size],
      [size - 1, size],
      [65_535, 196_608],
    ] as const) {
      expect(log.inclusionProof(i, m)).toEqual(tree.inclusionProof(i, m))
      expect(log.consistencyProof(i + 1, m)).toEqual(tree.consistencyProof(i + 1, m))
    }
    log.close()
  })
})
