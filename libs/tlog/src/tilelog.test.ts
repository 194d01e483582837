import * as fs from "node:fs"
import * as path from "node:path"
import { leafHash, MemoryTree, MerkleError, verifyConsistency, verifyInclusion } from "@vigil/merkle"
import { generateSignerKey, NoteError, parseSignerKey, parseVerifierKey, signCheckpoint } from "@vigil/note"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { TlogError, type TlogErrorCode } from "./errors.ts"
import { type BundleFormat, tilePath } from "./layout.ts"
import { entryOf, exists, read, tempDir, write } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"
import { verifyStore } from "./verify.ts"

const codeOf = (f: () => unknown): TlogErrorCode | string => {
  try {
    f()
    return "none"
  } catch (e) {
    if (e instanceof TlogError || e instanceof MerkleError || e instanceof NoteError) return e.code
    throw e
  }
}

describe("round trip against MemoryTree", () => {
  // Random batches (empty ones included), closing and reopening at random points; then, for every committed size:
  // the root, proofs of inclusion and consistency verified against that size's root, every node, every entry.
  it.each<BundleFormat>(["vigil-u32", "tlog-tiles"])(
    "random batches, reopened, proofs at every size (%s)",
    (format) => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({ count: fc.oneof(fc.nat(40), fc.integer({ min: 200, max: 700 })), reopen: fc.boolean() }),
            {
              minLength: 1,
              maxLength: 12,
            },
          ),
          fc.nat(),
          (batches, seed) => {
            const dir = tempDir()
            let log = TileLog.open(dir, { bundleFormat: format, cacheTiles: 3 })
            const tree = new MemoryTree()
            const roots = new Map<number, Uint8Array>([[0, tree.root()]])
            for (const [b, { count, reopen }] of batches.entries()) {
              const start = log.size
              const entries = Array.from({ length: count }, (_, j) => entryOf(start + j + seed))
              const result = log.append(entries, { batch: b, seq: start + count })
              for (const e of entries) tree.append(leafHash(e))
              expect(result).toEqual({ start, size: tree.size, root: tree.root() })
              roots.set(tree.size, tree.root())
              if (reopen) {
                log.close()
                log = TileLog.open(dir)
                expect(log.size).toBe(tree.size)
                expect(log.root()).toEqual(tree.root())
                expect(log.lastAppend).toEqual({ start, count, meta: { batch: b, seq: start + count } })
              }
            }
            const size = tree.size
            for (const [m, root] of roots) {
              expect(log.rootAt(m)).toEqual(root)
              for (const i of m === 0 ? [] : [0, m - 1, (seed * 7 + m) % m]) {
                const proof = log.inclusionProof(i, m)
                expect(proof).toEqual(tree.inclusionProof(i, m))
                expect(verifyInclusion(i, m, leafHash(entryOf(i + seed)), proof, root)).toEqual({ ok: true })
              }
              for (const [n, root2] of roots) {
                if (m === 0 || n < m) continue
                const proof = log.consistencyProof(m, n)
                expect(verifyConsistency(m, n, proof, root, root2)).toEqual({ ok: true })
              }
            }
            for (let level = 0; 2 ** level <= size; level++) {
              for (let index = 0; (index + 1) * 2 ** level <= size; index++) {
                expect(log.get(level, index)).toEqual(tree.get(level, index))
              }
            }
            expect(log.entries(0, size)).toEqual(Array.from({ length: size }, (_, i) => entryOf(i + seed)))
            if (size > 0) expect(log.leafHash(size - 1)).toEqual(leafHash(entryOf(size - 1 + seed)))
            log.close()
            expect(verifyStore(dir)).toEqual({ ok: true, size, root: tree.root() })
          },
        ),
        { numRuns: 12, seed: 9162 },
      )
    },
  )

  it("takes entries of 256 KiB in the vigil-u32 format", () => {
    const dir = tempDir()
    const log = TileLog.open(dir)
    const big = (i: number) => new Uint8Array(256 * 1024).fill(i)
    log.append([big(1), Uint8Array.of(2), big(3)])
    log.close()
    const again = TileLog.open(dir)
    expect(again.entries(0, 3)).toEqual([big(1), Uint8Array.of(2), big(3)])
    expect(again.root()).toEqual(
      (() => {
        const t = new MemoryTree()
        for (const e of [big(1), Uint8Array.of(2), big(3)]) t.append(leafHash(e))
        return t.root()
      })(),
    )
    again.close()
  })

  it("refuses in tlog-tiles format an entry over 65,535 bytes, writing nothing", () => {
    const dir = tempDir()
    const log = TileLog.open(dir, { bundleFormat: "tlog-tiles" })
    log.append([Uint8Array.of(1)])
    expect(codeOf(() => log.append([Uint8Array.of(2), new Uint8Array(65_536)]))).toBe("ENTRY_TOO_LARGE")
    expect(log.size).toBe(1)
    log.append([new Uint8Array(65_535)])
    expect(log.size).toBe(2)
    log.close()
  })
})

describe("commit metadata", () => {
  it("persists each batch's metadata, also for an empty batch, and refuses what JSON cannot carry", () => {
    const dir = tempDir()
    let log = TileLog.open(dir)
    expect(log.lastAppend).toBeUndefined()
    log.append([entryOf(0), entryOf(1)], { stream: "EVENTS", seq: 41, ids: ["a", "b"] })
    log.append([], { stream: "EVENTS", seq: 42 })
    expect(log.lastAppend).toEqual({ start: 2, count: 0, meta: { stream: "EVENTS", seq: 42 } })
    log.append([entryOf(2)])
    expect(log.lastAppend).toEqual({ start: 2, count: 1 })
    expect(codeOf(() => log.append([entryOf(3)], { seq: 10n } as never))).toBe("BAD_META")
    expect(codeOf(() => log.append([entryOf(3)], { seq: Number.NaN }))).toBe("BAD_META")
    expect(log.size).toBe(3)
    log.append([entryOf(3)], { seq: 43 })
    log.close()
    log = TileLog.open(dir)
    expect(log.lastAppend).toEqual({ start: 3, count: 1, meta: { seq: 43 } })
    const state = JSON.parse(read(dir, "state.json").toString())
    expect(state).toMatchObject({ version: "vigil-tlog/1", bundles: "vigil-u32", size: 4 })
    expect(state.root).toBe(Buffer.from(log.root()).toString("base64"))
    log.close()
  })
})

describe("opening", () => {
  it("creates a log, refuses a second writer, a foreign directory and another bundle format", () => {
    const dir = path.join(tempDir(), "nested", "log")
    const log = TileLog.open(dir)
    expect(log.size).toBe(0)
    expect(log.root()).toEqual(new MemoryTree().root())
    expect(codeOf(() => TileLog.open(dir))).toBe("LOCKED")
    log.close()
    expect(codeOf(() => TileLog.open(dir, { bundleFormat: "tlog-tiles" }))).toBe("BAD_STATE")
    TileLog.open(dir, { bundleFormat: "vigil-u32" }).close()

    const foreign = tempDir()
    write(foreign, "notes.txt", Buffer.from("hello"))
    expect(codeOf(() => TileLog.open(foreign))).toBe("NOT_A_LOG")
    expect(codeOf(() => TileLog.open(path.join(foreign, "missing"), { create: false }))).toBe("NOT_A_LOG")
  })

  it("takes over the lock of a process that is gone, not of a live one", () => {
    const dir = tempDir()
    TileLog.open(dir).close()
    write(dir, "lock", Buffer.from("999999999\n"))
    TileLog.open(dir).close()
    write(dir, "lock", Buffer.from(`${process.ppid}\n`))
    expect(codeOf(() => TileLog.open(dir))).toBe("LOCKED")
    fs.rmSync(path.join(dir, "lock"))
  })

  it("refuses calls after close, and reads outside the tree", () => {
    const dir = tempDir()
    const log = TileLog.open(dir)
    log.append([entryOf(0), entryOf(1), entryOf(2)])
    expect(codeOf(() => log.get(0, 3))).toBe("INDEX_OUT_OF_RANGE")
    expect(codeOf(() => log.get(2, 0))).toBe("INDEX_OUT_OF_RANGE")
    expect(log.get(1, 0)).toEqual(log.inclusionProof(2, 3)[0])
    expect(codeOf(() => log.entry(3))).toBe("INDEX_OUT_OF_RANGE")
    expect(codeOf(() => log.entries(2, 4))).toBe("INDEX_OUT_OF_RANGE")
    expect(codeOf(() => log.rootAt(4))).toBe("SIZE_OUT_OF_RANGE")
    expect(codeOf(() => log.inclusionProof(0, 4))).toBe("SIZE_OUT_OF_RANGE")
    log.close()
    expect(codeOf(() => log.append([entryOf(3)]))).toBe("CLOSED")
    expect(codeOf(() => log.entry(0))).toBe("CLOSED")
  })

  it("hands out copies: altering a returned hash or entry changes nothing", () => {
    const dir = tempDir()
    const log = TileLog.open(dir)
    const entry = entryOf(0)
    log.append([entry, entryOf(1)])
    entry.fill(0)
    log.get(0, 0).fill(0)
    log.entry(1).fill(0)
    log.root().fill(0)
    expect(log.entry(0)).toEqual(entryOf(0))
    expect(log.entry(1)).toEqual(entryOf(1))
    expect(log.leafHash(0)).toEqual(leafHash(entryOf(0)))
    expect(log.rootAt(2)).toEqual(log.root())
    expect(log.root()).not.toEqual(new Uint8Array(32))
    log.close()
  })
})

describe("checkpoints", () => {
  const { signerKey, verifierKey } = generateSignerKey("vigil.example/audit")
  const signer = parseSignerKey(signerKey)
  const verifier = parseVerifierKey(verifierKey)
  const origin = "vigil.example/audit"

  it("publishes a signed checkpoint that matches the tree, and refuses one that does not", () => {
    const dir = tempDir()
    const log = TileLog.open(dir)
    log.append(Array.from({ length: 300 }, (_, i) => entryOf(i)))
    const at200 = signCheckpoint({ origin, size: 200, rootHash: log.rootAt(200) }, [signer])
    expect(log.publishCheckpoint(at200, [verifier], { origin }).size).toBe(200n)
    expect(read(dir, "checkpoint").toString()).toBe(at200)
    expect(log.checkpoint()).toBe(at200)

    const wrongRoot = signCheckpoint({ origin, size: 250, rootHash: log.rootAt(200) }, [signer])
    expect(codeOf(() => log.publishCheckpoint(wrongRoot, [verifier]))).toBe("CHECKPOINT_MISMATCH")
    const beyond = signCheckpoint({ origin, size: 301, rootHash: log.root() }, [signer])
    expect(codeOf(() => log.publishCheckpoint(beyond, [verifier]))).toBe("CHECKPOINT_MISMATCH")
    const older = signCheckpoint({ origin, size: 100, rootHash: log.rootAt(100) }, [signer])
    expect(codeOf(() => log.publishCheckpoint(older, [verifier]))).toBe("CHECKPOINT_MISMATCH")
    const stranger = parseSignerKey(generateSignerKey(origin).signerKey)
    const unsigned = signCheckpoint({ origin, size: 300, rootHash: log.root() }, [stranger])
    expect(codeOf(() => log.publishCheckpoint(unsigned, [verifier]))).toBe("UNVERIFIED")
    expect(log.checkpoint()).toBe(at200)

    // tlog-tiles: partial tiles must exist for every size with a checkpoint, also one inside a batch.
    expect(exists(dir, tilePath(0, 1, 44))).toBe(true)
    expect(exists(dir, tilePath(0, 1, 24))).toBe(false)
    const root280 = log.rootAt(280)
    const at280 = signCheckpoint({ origin, size: 280, rootHash: root280 }, [signer])
    log.publishCheckpoint(at280, [verifier])
    expect(read(dir, tilePath(0, 1, 24))).toEqual(read(dir, tilePath(0, 1, 44)).subarray(0, 24 * 32))
    expect(exists(dir, "entries-u32/001.p/24")).toBe(true)
    expect(exists(dir, tilePath(0, 0, 200))).toBe(false) // tile 0 is full: clients fall back to it
    log.close()
    const reopened = TileLog.open(dir)
    expect(reopened.checkpoint()).toBe(at280)
    expect(exists(dir, tilePath(0, 1, 24))).toBe(true)
    reopened.close()
    expect(verifyStore(dir, { checkpoint: { size: 280n, rootHash: root280 } }).ok).toBe(true)

    // A checkpoint the tiles do not match refuses the open.
    write(dir, "checkpoint", Buffer.from(signCheckpoint({ origin, size: 250, rootHash: new Uint8Array(32) }, [signer])))
    expect(codeOf(() => TileLog.open(dir))).toBe("CHECKPOINT_MISMATCH")
  })
})
