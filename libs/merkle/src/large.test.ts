// One log of 10^6 leaves, built the way the auditor builds it (a leaf per append, the compact range's root taken at
// "checkpoints" as it grows), then proofs from the stored subtrees checked against those roots.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { naiveLeafHash } from "./_naive.ts"
import { CompactRange } from "./compact.ts"
import { leafHash } from "./hash.ts"
import { consistencyProof, inclusionProof } from "./prove.ts"
import { MemoryTree } from "./tree.ts"
import { verifyConsistency, verifyInclusion } from "./verify.ts"

const N = 1_000_000
const SEED = 9162
const entry = (i: number) => new TextEncoder().encode(`event ${i}`)

// Checkpoint sizes: a seeded sample plus the edges around powers of two and the ends.
const checkpoints = [
  ...new Set([
    1,
    2,
    3,
    2 ** 19 - 1,
    2 ** 19,
    2 ** 19 + 1,
    N - 1,
    N,
    ...fc.sample(fc.integer({ min: 1, max: N }), { seed: SEED, numRuns: 30 }),
  ]),
].sort((a, b) => a - b)

const tree = new MemoryTree()
const roots = new Map<number, Uint8Array>()
for (let i = 0; i < N; i++) {
  tree.append(leafHash(entry(i)))
  if (roots.size < checkpoints.length && tree.size === checkpoints[roots.size]) roots.set(tree.size, tree.root())
}
const rootOf = (n: number) => roots.get(n)!
const pick = (seed: number, max: number, count: number) => fc.sample(fc.nat(max), { seed, numRuns: count })

describe(`a log of ${N} leaves (seed ${SEED})`, () => {
  it("has a root for every checkpoint, also when read back from its store", () => {
    expect([...roots.keys()]).toEqual(checkpoints)
    for (const n of checkpoints) {
      expect(Buffer.from(tree.rootAt(n)).equals(rootOf(n)), `rootAt(${n})`).toBe(true)
      expect(Buffer.from(CompactRange.fromReader(tree, n).root()).equals(rootOf(n)), `fromReader(${n})`).toBe(true)
    }
  })

  it("proves inclusion of sampled leaves at every checkpoint", () => {
    for (const [k, n] of checkpoints.entries()) {
      for (const index of new Set([0, n - 1, ...pick(SEED + k, n - 1, 4)])) {
        const proof = inclusionProof(tree, index, n)
        const result = verifyInclusion(index, n, naiveLeafHash(entry(index)), proof, rootOf(n))
        if (!result.ok) expect.fail(`leaf ${index} at ${n}: ${result.code} ${result.message}`)
      }
    }
  })

  it("proves consistency between every pair of checkpoints", () => {
    for (const [i, m] of checkpoints.entries()) {
      for (const n of checkpoints.slice(i)) {
        const result = verifyConsistency(m, n, consistencyProof(tree, m, n), rootOf(m), rootOf(n))
        if (!result.ok) expect.fail(`${m} -> ${n}: ${result.code} ${result.message}`)
      }
    }
  })
})
