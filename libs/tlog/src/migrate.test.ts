import { describe, expect, it } from "vitest"
import { TlogError } from "./errors.ts"
import { entryOf, exists, read, tempDir } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"
import { verifyStore } from "./verify.ts"

/** A vigil-u32 log of `size` leaves (entries from `entryOf`), closed. */
const u32Log = (size: number, big?: number) => {
  const dir = tempDir()
  const log = TileLog.open(dir, { bundleFormat: "vigil-u32" })
  const entries = Array.from({ length: size }, (_, i) => (i === big ? new Uint8Array(70_000).fill(1) : entryOf(i)))
  log.append(entries)
  const root = log.root()
  log.close()
  return { dir, root, entries }
}

describe("migrating entry bundles to tlog-tiles", () => {
  it("re-frames full and partial bundles with 16-bit lengths; tiles, root and entries stay", () => {
    const { dir, root, entries } = u32Log(600)
    const log = TileLog.open(dir, { bundleFormat: "tlog-tiles", migrate: true })
    try {
      expect(log.bundleFormat).toBe("tlog-tiles")
      expect(log.root()).toEqual(root)
      for (let i = 0; i < 600; i++) expect(log.entry(i)).toEqual(entries[i])
      expect(exists(dir, "tile/entries/000")).toBe(true)
      expect(exists(dir, "tile/entries/002.p/88")).toBe(true)
      expect(exists(dir, "entries-u32")).toBe(false)
      // C2SP tlog-tiles: each entry is a big-endian uint16 length, then the entry.
      const bundle = read(dir, "tile/entries/002.p/88")
      expect(bundle.readUInt16BE(0)).toBe((entries[512] as Uint8Array).length)
      expect(bundle.subarray(2, 2 + bundle.readUInt16BE(0))).toEqual(Buffer.from(entries[512] as Uint8Array))
      log.append([entryOf(600)])
    } finally {
      log.close()
    }
    expect(verifyStore(dir).ok).toBe(true)
  })

  it("is refused without `migrate`, and refuses an entry longer than 65,535 bytes without writing anything", () => {
    const { dir } = u32Log(10, 3)
    expect(() => TileLog.open(dir, { bundleFormat: "tlog-tiles" })).toThrow(/holds vigil-u32 bundles/)
    expect(() => TileLog.open(dir, { bundleFormat: "tlog-tiles", migrate: true })).toThrow(TlogError)
    expect(() => TileLog.open(dir, { bundleFormat: "tlog-tiles", migrate: true })).toThrow(/entry 3 is 70000 bytes/)
    expect(exists(dir, "tile/entries")).toBe(false)
    const again = TileLog.open(dir)
    expect(again.bundleFormat).toBe("vigil-u32")
    again.close()
  })

  it("survives a crash at every file operation: the next open migrates again", () => {
    const { root, entries } = u32Log(300)
    for (let k = 0; ; k++) {
      const { dir } = u32Log(300)
      let ops = 0
      let crashed = false
      try {
        TileLog.open(dir, {
          bundleFormat: "tlog-tiles",
          migrate: true,
          faultHook: () => {
            if (ops++ === k) {
              crashed = true
              throw new Error("crash")
            }
          },
        }).close()
      } catch (e) {
        if (!crashed) throw e
      }
      const log = TileLog.open(dir, { bundleFormat: "tlog-tiles", migrate: true })
      expect(log.root()).toEqual(root)
      expect(log.entry(299)).toEqual(entries[299])
      log.close()
      if (!crashed) break
    }
  })
})
