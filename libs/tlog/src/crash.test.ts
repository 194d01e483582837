import { spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { leafHash, MemoryTree, verifyConsistency, verifyInclusion } from "@vigil/merkle"
import { describe, expect, it } from "vitest"
import type { TlogError } from "./errors.ts"
import type { IoOp } from "./io.ts"
import { BUNDLE_LAYOUTS, bundlePath, tilePath } from "./layout.ts"
import { copyLog, entryOf, exists, read, tempDir, write } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"
import { verifyStore } from "./verify.ts"

const U32 = BUNDLE_LAYOUTS["vigil-u32"]
const treeOf = (entries: readonly Uint8Array[]): MemoryTree => {
  const tree = new MemoryTree()
  for (const e of entries) tree.append(leafHash(e))
  return tree
}
const range = (start: number, end: number, offset = 0) =>
  Array.from({ length: end - start }, (_, j) => entryOf(start + j + offset))

/** A closed log of 200 leaves, committed as 150 + 50, so partial tiles of two widths exist. */
const baseLog = (): string => {
  const dir = tempDir()
  const log = TileLog.open(dir)
  log.append(range(0, 150), { seq: 150 })
  log.append(range(150, 200), { seq: 200 })
  log.close()
  return dir
}

describe("a crash at every file operation of an append", () => {
  // The batch fills tiles 0..2 (full tiles and bundles at level 0, a partial tile at level 1) and leaves a partial
  // tile of width 132: every kind of write an append does.
  const batch = range(200, 900)
  const other = range(200, 900, 1_000_000) // what gets appended instead after the crash

  it("recovers exactly the last commit, and carries on correctly from it", () => {
    const base = baseLog()
    const ops: { op: IoOp; file: string }[] = []
    const dry = TileLog.open(copyLog(base), { faultHook: (op, file) => ops.push({ op, file }) })
    dry.append(batch, { seq: 900 })
    dry.close()
    const rename = ops.findIndex((o) => o.op === "rename")
    expect(ops[rename]!.file).toBe("state.json")
    expect(ops.slice(0, rename).some((o) => o.op === "fsyncDir")).toBe(true)
    expect(ops.length).toBeGreaterThan(20)

    const before = treeOf(range(0, 200))
    const after = treeOf(range(0, 900))
    for (let k = 0; k < ops.length; k++) {
      const dir = copyLog(base)
      let seen = 0
      const log = TileLog.open(dir, {
        faultHook: () => {
          if (seen++ === k) throw new Error(`crash at ${ops[k]!.op} ${ops[k]!.file}`)
        },
      })
      let error: unknown
      try {
        log.append(batch, { seq: 900 })
      } catch (e) {
        error = e
      }
      const committed = k > rename
      if (k <= rename) {
        // Before the rename: the append fails and the log stays usable at the previous commit.
        expect(error, `op ${k}`).toBeInstanceOf(Error)
        expect(log.size).toBe(200)
        expect(log.root()).toEqual(before.root())
      } else if (ops[k]!.op === "fsyncDir") {
        expect((error as TlogError).code, `op ${k}`).toBe("COMMIT_UNCERTAIN")
      } else {
        expect(error, `op ${k} (${ops[k]!.op}, after the commit)`).toBeUndefined()
      }
      log.close()

      // What a restart sees.
      const reopened = TileLog.open(dir)
      expect(reopened.size, `op ${k}`).toBe(committed ? 900 : 200)
      expect(reopened.root()).toEqual((committed ? after : before).root())
      expect(reopened.lastAppend?.meta).toEqual({ seq: committed ? 900 : 200 })
      expect(verifyStore(dir).ok, `op ${k}`).toBe(true)
      // Partials superseded by the commit are gone, even when the crash came before their removal.
      expect(exists(dir, "tile/0/000.p") || exists(dir, "entries-u32/000.p"), `op ${k}`).toBe(!committed)
      if (!committed) {
        // Appending something else over whatever the crash left behind.
        reopened.append(other, { seq: 900 })
        expect(reopened.root()).toEqual(treeOf([...range(0, 200), ...other]).root())
        expect(reopened.entry(899)).toEqual(other[699])
      }
      reopened.close()
      expect(verifyStore(dir).ok, `op ${k}`).toBe(true)
    }
  })

  it("keeps a failed append's log usable in the same process", () => {
    const dir = baseLog()
    let armed = true
    const log = TileLog.open(dir, {
      faultHook: (op) => {
        if (armed && op === "fsyncDir") {
          armed = false
          throw new Error("EIO")
        }
      },
    })
    expect(() => log.append(batch)).toThrow("EIO")
    expect(log.size).toBe(200)
    expect(log.inclusionProof(199)).toEqual(treeOf(range(0, 200)).inclusionProof(199))
    log.append(other)
    const tree = treeOf([...range(0, 200), ...other])
    expect(log.root()).toEqual(tree.root())
    expect(log.inclusionProof(5, 900)).toEqual(tree.inclusionProof(5, 900))
    expect(log.entries(198, 202)).toEqual([entryOf(198), entryOf(199), other[0], other[1]])
    log.close()
    expect(verifyStore(dir).ok).toBe(true)
  })
})

describe("garbage beyond the commit point", () => {
  it("is ignored, cleared where it would linger, and overwritten by later appends", () => {
    const dir = tempDir()
    let log = TileLog.open(dir)
    log.append(range(0, 500))
    log.append(range(500, 600), { seq: 600 })
    log.close()
    const committed = treeOf(range(0, 600))
    // At 600: tile/0/002.p/88, entries-u32/002.p/88, tile/1/000.p/2. A crash can leave anything past those.
    const junk = (n: number) => new Uint8Array(n).fill(0xee)
    write(dir, tilePath(0, 2), junk(8192))
    write(dir, tilePath(0, 2, 100), junk(3200))
    write(dir, tilePath(0, 2, 200), junk(17)) // torn
    write(dir, bundlePath(U32, 2, 150), junk(999))
    write(dir, bundlePath(U32, 2), junk(10))
    write(dir, tilePath(0, 3), junk(8192))
    write(dir, bundlePath(U32, 3, 7), junk(7))
    write(dir, tilePath(1, 0, 3), junk(96))
    write(dir, "state.json.tmp", junk(5))

    log = TileLog.open(dir)
    expect(log.size).toBe(600)
    expect(log.root()).toEqual(committed.root())
    expect(log.lastAppend).toEqual({ start: 500, count: 100, meta: { seq: 600 } })
    for (const f of [
      tilePath(0, 2),
      tilePath(0, 2, 100),
      tilePath(0, 2, 200),
      bundlePath(U32, 2, 150),
      "state.json.tmp",
    ]) {
      expect(exists(dir, f), f).toBe(false)
    }
    expect(exists(dir, tilePath(0, 2, 88))).toBe(true)
    expect(exists(dir, tilePath(1, 0, 2))).toBe(true)
    expect(verifyStore(dir).ok).toBe(true)

    log.append(range(600, 1000))
    expect(log.root()).toEqual(treeOf(range(0, 1000)).root())
    expect(read(dir, tilePath(0, 3))).toEqual(Buffer.from(junk(8192))) // past the commit: not read, not yet replaced
    log.close()
    log = TileLog.open(dir)
    expect(exists(dir, tilePath(0, 3))).toBe(false) // at the index of the partial tile: cleared on open
    log.append(range(1000, 1100))
    const tree = treeOf(range(0, 1100))
    expect(log.root()).toEqual(tree.root())
    expect(read(dir, tilePath(0, 3))).toEqual(Buffer.concat(range(768, 1024).map(leafHash)))
    expect(read(dir, bundlePath(U32, 3)).length).toBeGreaterThan(256 * 100)
    log.close()
    expect(verifyStore(dir)).toEqual({ ok: true, size: 1100, root: tree.root() })
  })
})

describe("SIGKILL while appending in a loop", () => {
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), "crash-child.test-support.ts")

  /** Runs the child until it has committed at least once, then kills it after `delayMs`; returns its last report. */
  const runAndKill = (dir: string, seed: number, delayMs: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, [child, dir, String(seed)], { stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      let armed = false
      proc.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        if (!armed && /^\d+$/m.test(out)) {
          armed = true
          setTimeout(() => proc.kill("SIGKILL"), delayMs)
        }
      })
      proc.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString()
      })
      proc.on("error", reject)
      proc.on("exit", (code, signal) => {
        if (signal !== "SIGKILL") return reject(new Error(`child exited ${code}: ${err}`))
        const sizes = out.split("\n").filter((l) => /^\d+$/.test(l))
        resolve(Number(sizes.at(-1) ?? 0))
      })
    })

  it("reopens at the last committed size every time, with everything verifying", async () => {
    const dir = tempDir()
    const tree = new MemoryTree()
    const roots = new Map<number, Uint8Array>()
    const delays = [0, 7, 23, 61, 97, 150, 211]
    for (const [round, delay] of delays.entries()) {
      const reported = await runAndKill(dir, round + 1, delay)
      const log = TileLog.open(dir)
      // The child may have committed once more after its last report, never less.
      expect(log.size).toBeGreaterThanOrEqual(reported)
      expect(log.size).toBeLessThanOrEqual(reported + 700)
      expect(log.lastAppend?.meta).toEqual({ seq: log.size })
      while (tree.size < log.size) tree.append(leafHash(entryOf(tree.size)))
      expect(log.root()).toEqual(tree.root())
      roots.set(log.size, tree.root())
      log.close()
      expect(verifyStore(dir)).toEqual({ ok: true, size: tree.size, root: tree.root() })
    }
    const log = TileLog.open(dir)
    const sizes = [...roots.keys()].filter((s) => s > 0)
    for (const m of sizes) {
      for (const n of sizes.filter((s) => s >= m)) {
        expect(verifyConsistency(m, n, log.consistencyProof(m, n), roots.get(m)!, roots.get(n)!).ok).toBe(true)
      }
      const i = m - 1
      expect(verifyInclusion(i, m, leafHash(entryOf(i)), log.inclusionProof(i, m), roots.get(m)!).ok).toBe(true)
    }
    log.close()
  }, 60_000)
})
