import * as fs from "node:fs"
import * as path from "node:path"
import { leafHash, MemoryTree } from "@vigil/merkle"
import { beforeAll, describe, expect, it } from "vitest"
import { TlogError } from "./errors.ts"
import { BUNDLE_LAYOUTS, type BundleFormat, bundlePath, encodeBundle, tilePath } from "./layout.ts"
import { copyLog, entryOf, frameOffsets, read, tempDir, write } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"
import { type StoreProblem, verifyStore } from "./verify.ts"

// A log of 1000 leaves: bundles and level-0 tiles 0..2 full, 3 partial (width 232); level-1 tile 0 partial (width 3).
const SIZE = 1000

describe.each<BundleFormat>(["tlog-tiles", "vigil-u32"])("tampering with a %s log", (format) => {
  const layout = BUNDLE_LAYOUTS[format]
  let base: string
  beforeAll(() => {
    base = tempDir()
    const log = TileLog.open(base, { bundleFormat: format })
    for (const [start, end] of [
      [0, 300],
      [300, 600],
      [600, SIZE],
    ] as const) {
      log.append(Array.from({ length: end - start }, (_, j) => entryOf(start + j)))
    }
    log.close()
  })

  const bundleOf = (i: number): { file: string; j: number } => {
    const k = Math.floor(i / 256)
    const width = Math.min(256, SIZE - k * 256)
    return { file: bundlePath(layout, k, width), j: i - k * 256 }
  }
  /** Rewrites the bundle holding entry `i`: `edit(bytes, offsets, j)` returns the new bytes. */
  const editBundle = (dir: string, i: number, edit: (b: Buffer, offsets: number[], j: number) => Uint8Array) => {
    const { file, j } = bundleOf(i)
    const bytes = read(dir, file)
    write(dir, file, edit(bytes, frameOffsets(bytes, layout.prefix), j))
  }
  /** The framed bytes (prefix and body) of entry `j` of a bundle. */
  const framed = (b: Buffer, offsets: number[], j: number) => b.subarray(offsets[j]!, offsets[j + 1]!)
  const tampered = (edit: (dir: string) => void): string => {
    const dir = copyLog(base)
    edit(dir)
    return dir
  }
  const expectProblem = (dir: string, code: StoreProblem, index: number | undefined) => {
    const result = verifyStore(dir)
    expect(result.ok ? "ok" : { code: result.code, index: result.index }).toEqual({ code, index })
    return result
  }

  it("an untouched copy verifies", () => {
    const progress: number[] = []
    const result = verifyStore(copyLog(base), { onProgress: (n) => progress.push(n) })
    expect(result.ok).toBe(true)
    expect(progress).toEqual([256, 512, 768, 1000])
  })

  it.each([0, 1, 255, 256, 300, 511, 700, 768, 999])("an edited byte in entry %d", (i) => {
    const dir = tampered((d) =>
      editBundle(d, i, (b, offsets, j) => {
        b[offsets[j]! + layout.prefix + 5]! ^= 0x01
        return b
      }),
    )
    const result = expectProblem(dir, "LEAF_HASH_MISMATCH", i)
    expect(result.ok ? "" : result.path).toBe(bundleOf(i).file)
  })

  it("an edited length prefix of entry 300", () => {
    const dir = tampered((d) =>
      editBundle(d, 300, (b, offsets, j) => {
        b[offsets[j]! + layout.prefix - 1]! ^= 0x02
        return b
      }),
    )
    const result = verifyStore(dir)
    expect(result.ok ? "ok" : [result.code, result.index]).toEqual([expect.any(String), 300])
  })

  it.each([
    [300, "LEAF_HASH_MISMATCH"],
    [0, "LEAF_HASH_MISMATCH"],
    [511, "MISSING_ENTRY"], // the last of a full bundle
    [998, "LEAF_HASH_MISMATCH"],
    [999, "MISSING_ENTRY"], // the last of the partial bundle
  ] as const)("a deleted entry %d", (i, code) => {
    const dir = tampered((d) =>
      editBundle(d, i, (b, offsets, j) => Buffer.concat([b.subarray(0, offsets[j]!), b.subarray(offsets[j + 1]!)])),
    )
    expectProblem(dir, code, i)
  })

  it.each([
    [300, 400],
    [256, 257],
    [800, 999],
  ])("entries %d and %d swapped within a bundle", (i, k) => {
    const dir = tampered((d) =>
      editBundle(d, i, (b, offsets, j) => {
        const jk = k - (i - j)
        const parts = offsets.slice(0, -1).map((_, x) => framed(b, offsets, x))
        ;[parts[j], parts[jk]] = [parts[jk]!, parts[j]!]
        return Buffer.concat(parts)
      }),
    )
    expectProblem(dir, "LEAF_HASH_MISMATCH", i)
  })

  it("entries 100 and 900 swapped across bundles", () => {
    const dir = copyLog(base)
    const a = bundleOf(100)
    const b = bundleOf(900)
    const bytesA = read(dir, a.file)
    const bytesB = read(dir, b.file)
    const offA = frameOffsets(bytesA, layout.prefix)
    const offB = frameOffsets(bytesB, layout.prefix)
    const entryA = framed(bytesA, offA, a.j)
    const entryB = framed(bytesB, offB, b.j)
    write(dir, a.file, Buffer.concat([bytesA.subarray(0, offA[a.j]!), entryB, bytesA.subarray(offA[a.j + 1]!)]))
    write(dir, b.file, Buffer.concat([bytesB.subarray(0, offB[b.j]!), entryA, bytesB.subarray(offB[b.j + 1]!)]))
    expectProblem(dir, "LEAF_HASH_MISMATCH", 100)
  })

  it.each([
    [600, 2, "LEAF_HASH_MISMATCH"], // before entry 600 (in bundle 2)
    [0, 0, "LEAF_HASH_MISMATCH"],
    [512, 1, "EXTRA_DATA"], // after the last entry of bundle 1
    [1000, 3, "EXTRA_DATA"], // after the last entry of the log
  ] as const)("an entry inserted at %d", (at, k, code) => {
    const extra = encodeBundle(layout, [Buffer.from("forged event")])
    const dir = tampered((d) =>
      editBundle(d, k * 256, (b, offsets) => {
        const cut = offsets[at - k * 256]!
        return Buffer.concat([b.subarray(0, cut), extra, b.subarray(cut)])
      }),
    )
    expectProblem(dir, code, at)
  })

  it.each([
    [300, "inside", "TRUNCATED"],
    [300, "before", "MISSING_ENTRY"],
    [0, "inside", "TRUNCATED"],
    [900, "inside", "TRUNCATED"],
    [768, "before", "MISSING_ENTRY"],
  ] as const)("a bundle truncated %2$s entry %1$d", (i, where, code) => {
    const dir = tampered((d) =>
      editBundle(d, i, (b, offsets, j) => b.subarray(0, offsets[j]! + (where === "inside" ? layout.prefix + 3 : 0))),
    )
    expectProblem(dir, code, i)
  })

  it("a deleted bundle file", () => {
    expectProblem(
      tampered((d) => fs.rmSync(path.join(d, bundlePath(layout, 1)))),
      "MISSING_ENTRY",
      256,
    )
    expectProblem(
      tampered((d) => fs.rmSync(path.join(d, bundlePath(layout, 3, 232)))),
      "MISSING_ENTRY",
      768,
    )
  })

  describe("tiles", () => {
    const flipHash = (file: string, hash: number) => (d: string) => {
      const b = read(d, file)
      b[hash * 32 + 7]! ^= 0x80
      write(d, file, b)
    }

    it("a changed leaf hash in a full level-0 tile is the tile's fault, not the entry's", () => {
      const result = expectProblem(tampered(flipHash(tilePath(0, 2), 17)), "TILE_MISMATCH", 529)
      expect(result.ok ? "" : result.path).toBe("tile/0/002")
    })

    it("a changed leaf hash in the partial level-0 tile", () => {
      const result = expectProblem(tampered(flipHash(tilePath(0, 3, 232), 5)), "TILE_MISMATCH", 773)
      expect(result.ok ? "" : result.path).toBe("tile/0/003.p/232")
    })

    it("a changed hash in the level-1 tile names the first leaf under it", () => {
      const result = expectProblem(tampered(flipHash(tilePath(1, 0, 3), 1)), "TILE_MISMATCH", 256)
      expect(result.ok ? "" : result.path).toBe("tile/1/000.p/3")
    })

    it("missing, truncated and overlong tiles", () => {
      expectProblem(
        tampered((d) => fs.rmSync(path.join(d, tilePath(0, 1)))),
        "MISSING_TILE",
        256,
      )
      expectProblem(
        tampered((d) => fs.rmSync(path.join(d, tilePath(1, 0, 3)))),
        "MISSING_TILE",
        0,
      )
      const cut = (file: string, bytes: number) => (d: string) => write(d, file, read(d, file).subarray(0, bytes))
      expectProblem(tampered(cut(tilePath(0, 1), 100 * 32 + 5)), "TRUNCATED", 356)
      expectProblem(tampered(cut(tilePath(1, 0, 3), 64)), "TRUNCATED", 512)
      const grow = (file: string) => (d: string) => write(d, file, Buffer.concat([read(d, file), Buffer.alloc(32)]))
      expectProblem(tampered(grow(tilePath(0, 1))), "EXTRA_DATA", 512)
      expectProblem(tampered(grow(tilePath(0, 3, 232))), "EXTRA_DATA", 1000)
    })
  })

  describe("the commit record", () => {
    it("a changed root in state.json", () => {
      const dir = tampered((d) => {
        const state = JSON.parse(read(d, "state.json").toString())
        state.root = Buffer.alloc(32, 1).toString("base64")
        write(d, "state.json", Buffer.from(JSON.stringify(state)))
      })
      expectProblem(dir, "ROOT_MISMATCH", undefined)
      expect(() => TileLog.open(dir)).toThrow(expect.objectContaining({ code: "INCONSISTENT", path: "state.json" }))
    })

    it("a garbled or missing state.json", () => {
      expectProblem(
        tampered((d) => write(d, "state.json", Buffer.from("{"))),
        "BAD_STATE",
        undefined,
      )
      expectProblem(
        tampered((d) => fs.rmSync(path.join(d, "state.json"))),
        "BAD_STATE",
        undefined,
      )
    })

    it("a whole tree rewritten consistently is caught by the committed root, and by a trusted checkpoint", () => {
      // The forger changes entry 10 and recomputes every tile above it.
      const forged = Array.from({ length: SIZE }, (_, i) => (i === 10 ? Buffer.from("forged") : entryOf(i)))
      const forgery = tempDir()
      const log = TileLog.open(forgery, { bundleFormat: format })
      log.append(forged)
      log.close()
      const dir = copyLog(base)
      for (const file of [bundlePath(layout, 0), tilePath(0, 0), tilePath(1, 0, 3)])
        write(dir, file, read(forgery, file))
      expectProblem(dir, "ROOT_MISMATCH", undefined)

      // ... and state.json too: only a root from elsewhere (a signed checkpoint) tells.
      write(dir, "state.json", read(forgery, "state.json"))
      const honest = new MemoryTree()
      for (let i = 0; i < SIZE; i++) honest.append(leafHash(entryOf(i)))
      expect(verifyStore(dir).ok).toBe(true)
      const checked = verifyStore(dir, { checkpoint: { size: 800, rootHash: honest.rootAt(800) } })
      expect(checked.ok ? "ok" : checked.code).toBe("ROOT_MISMATCH")
      const beyond = verifyStore(copyLog(base), { checkpoint: { size: 1001, rootHash: honest.root() } })
      expect(beyond.ok ? "ok" : [beyond.code, beyond.index]).toEqual(["TRUNCATED", 1000])
      expect(verifyStore(copyLog(base), { checkpoint: { size: 800, rootHash: honest.rootAt(800) } }).ok).toBe(true)
    })
  })

  describe("opening a tampered log", () => {
    const openError = (dir: string): { code: string; path: string | undefined } => {
      try {
        TileLog.open(dir).close()
      } catch (e) {
        if (e instanceof TlogError) return { code: e.code, path: e.path }
        throw e
      }
      return { code: "opened", path: undefined }
    }
    const flip = (file: string, at: number) => (d: string) => {
      const b = read(d, file)
      b[at]! ^= 0x01
      write(d, file, b)
    }

    it("names the first inconsistent tile", () => {
      expect(openError(tampered(flip(tilePath(1, 0, 3), 40)))).toEqual({ code: "INCONSISTENT", path: "tile/1/000.p/3" })
      const both = tampered((d) => {
        flip(tilePath(1, 0, 3), 40)(d)
        flip(tilePath(0, 1), 40)(d)
      })
      expect(openError(both)).toEqual({ code: "INCONSISTENT", path: "tile/0/001" })
      expect(openError(tampered(flip(tilePath(0, 3, 232), 40)))).toEqual({
        code: "INCONSISTENT",
        path: "tile/0/003.p/232",
      })
    })

    it("refuses a missing or cut partial tile, and an altered partial bundle", () => {
      expect(openError(tampered((d) => fs.rmSync(path.join(d, tilePath(0, 3, 232)))))).toEqual({
        code: "MISSING_TILE",
        path: "tile/0/003.p/232",
      })
      expect(
        openError(tampered((d) => write(d, tilePath(1, 0, 3), read(d, tilePath(1, 0, 3)).subarray(0, 90)))),
      ).toEqual({ code: "CORRUPT", path: "tile/1/000.p/3" })
      const partial = bundlePath(layout, 3, 232)
      expect(openError(tampered(flip(partial, 50)))).toEqual({ code: "CORRUPT", path: partial })
    })

    it("opens with an altered full tile the root does not depend on; verifyStore finds it", () => {
      // Open checks the right edge (the partial tile of each level and the full tiles it names when it disagrees):
      // O(log n) work. Full tiles already folded into a parent are verifyStore's job.
      const dir = tampered(flip(tilePath(0, 1), 40))
      expect(openError(dir)).toEqual({ code: "opened", path: undefined })
      expectProblem(dir, "TILE_MISMATCH", 257)
    })

    it("opens with an altered full bundle, but refuses to read entries from it", () => {
      const dir = tampered(flip(bundlePath(layout, 1), 60))
      const log = TileLog.open(dir)
      expect(log.entry(100)).toEqual(entryOf(100))
      expect(() => log.entry(300)).toThrow(expect.objectContaining({ code: "CORRUPT", path: bundlePath(layout, 1) }))
      log.close()
    })
  })
})
