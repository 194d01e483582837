// The auditor's throughput and latency targets, measured (and printed) on whatever machine runs the tests.
import { leafHash, verifyInclusion } from "@vigil/merkle"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { entryOf, tempDir } from "./testing.test-support.ts"
import { TileLog } from "./tilelog.ts"
import { verifyStore } from "./verify.ts"

describe("performance", () => {
  it("appends 10^5 entries of 700 bytes in batches of 100 to 1000 well within 10 s", () => {
    const N = 100_000
    const sizes = fc.sample(fc.integer({ min: 100, max: 1000 }), { seed: 42, numRuns: 1000 })
    const batches: Uint8Array[][] = []
    for (let i = 0, b = 0; i < N; b++) {
      const count = Math.min(sizes[b]!, N - i)
      batches.push(Array.from({ length: count }, (_, j) => entryOf(i + j, 700)))
      i += count
    }
    const dir = tempDir()
    const log = TileLog.open(dir)
    const start = performance.now()
    for (const batch of batches) log.append(batch, { seq: log.size + batch.length })
    const appendMs = performance.now() - start
    expect(log.size).toBe(N)
    log.close()
    const verifyStart = performance.now()
    expect(verifyStore(dir).ok).toBe(true)
    const verifyMs = performance.now() - verifyStart
    console.log(
      `append: ${N} x 700 B in ${batches.length} batches: ${appendMs.toFixed(0)} ms ` +
        `(${((N / appendMs) * 1000).toFixed(0)} entries/s, ${(appendMs / batches.length).toFixed(2)} ms/batch); ` +
        `verifyStore: ${verifyMs.toFixed(0)} ms`,
    )
    expect(appendMs).toBeLessThan(10_000)
  })

  it("serves inclusion proofs at 10^6 leaves in well under 1 ms", () => {
    const N = 1_000_000
    const dir = tempDir()
    let log = TileLog.open(dir)
    const tiny = (i: number) => entryOf(i, 8)
    for (let i = 0; i < N; i += 50_000) log.append(Array.from({ length: 50_000 }, (_, j) => tiny(i + j)))
    const root = log.root()
    log.close()

    log = TileLog.open(dir)
    const indexes = fc.sample(fc.nat(N - 1), { seed: 7, numRuns: 2000 })
    const time = (): number => {
      const t = performance.now()
      for (const i of indexes) log.inclusionProof(i)
      return (performance.now() - t) / indexes.length
    }
    const cold = time() // each proof reads up to 3 tiles from disk the first time (3906 level-0 tiles, 2048 cached)
    const warm = time()
    for (const i of indexes.slice(0, 100)) {
      expect(verifyInclusion(i, N, leafHash(tiny(i)), log.inclusionProof(i), root).ok).toBe(true)
    }
    const t = performance.now()
    for (const i of indexes.slice(0, 200)) log.consistencyProof(i + 1)
    const consistency = (performance.now() - t) / 200
    console.log(
      `inclusion proof at ${N}: ${(cold * 1000).toFixed(0)} us first (tiles from disk), ` +
        `${(warm * 1000).toFixed(0)} us again (cached); consistency proof: ${(consistency * 1000).toFixed(0)} us`,
    )
    log.close()
    expect(warm).toBeLessThan(1) // the target: tiles cached in the LRU
    expect(cold).toBeLessThan(5) // about 0.4 ms measured: three 8 KiB reads and 255 node hashes per tile
  })
})
