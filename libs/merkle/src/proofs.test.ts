// Proofs from the stored-subtree generator against the spec written naively (./_naive.ts): exhaustively for every
// tree of up to 300 leaves, then mutation properties.
import { equalBytes, toHex } from "@vigil/bytes"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { NaiveTree, naiveLeafHash, pathShape } from "./_naive.ts"
import { CompactRange } from "./compact.ts"
import { rootFromLeafHashes } from "./mth.ts"
import { MemoryTree } from "./tree.ts"
import { verifyConsistency, verifyInclusion } from "./verify.ts"

const MAX = 300
const hexes = (bs: readonly Uint8Array[]) => bs.map(toHex)
/** Compares proofs without formatting them: the exhaustive loops below compare about 90,000. */
const expectSameProof = (got: readonly Uint8Array[], want: readonly Uint8Array[], what: string) => {
  if (got.length !== want.length || got.some((g, i) => !equalBytes(g, want[i]!))) {
    expect(hexes(got), what).toEqual(hexes(want))
  }
}

const leaves = Array.from({ length: 2 * MAX }, (_, i) => naiveLeafHash(new TextEncoder().encode(`entry ${i}`)))
const naive = new NaiveTree(leaves)
const tree = new MemoryTree()
const grownRoots: Uint8Array[] = [] // roots the compact range gave at each size while the tree grew
const range = new CompactRange()
grownRoots.push(range.root())
for (const leaf of leaves) {
  tree.append(leaf)
  range.append(leaf)
  grownRoots.push(range.root())
}
const rootOf = (n: number) => grownRoots[n]!
const same = (a: readonly boolean[], b: readonly boolean[]) => a.length === b.length && a.every((x, i) => x === b[i])

/** A copy of `proof` with bit `bit` (0..255) of element `i` flipped. */
const flip = (proof: readonly Uint8Array[], i: number, bit: number): Uint8Array[] =>
  proof.map((p, j) => {
    if (j !== i) return p
    const q = new Uint8Array(p)
    q[bit >> 3]! ^= 1 << (bit & 7)
    return q
  })

describe(`every tree up to ${MAX} leaves`, () => {
  it("has one root, however it is computed", () => {
    for (let n = 0; n <= MAX; n++) {
      const want = toHex(naive.mth(0, n))
      expect(toHex(rootOf(n)), `compact range, n=${n}`).toBe(want)
      expect(toHex(tree.rootAt(n)), `stored subtrees, n=${n}`).toBe(want)
      expect(toHex(rootFromLeafHashes(leaves, 0, n)), `MTH, n=${n}`).toBe(want)
    }
  })

  it("MTH of any sub-range matches the naive one", () => {
    fc.assert(
      fc.property(fc.nat(MAX), fc.nat(MAX), (a, b) => {
        const [begin, end] = a <= b ? [a, b] : [b, a]
        expect(toHex(rootFromLeafHashes(leaves, begin, end))).toBe(toHex(naive.mth(begin, end)))
      }),
    )
  })

  it("inclusion proofs for every index are RFC 9162 PATH and verify", () => {
    for (let n = 1; n <= MAX; n++) {
      const root = rootOf(n)
      for (let m = 0; m < n; m++) {
        const proof = tree.inclusionProof(m, n)
        expectSameProof(proof, naive.path(m, 0, n), `PATH(${m}, D[${n}])`)
        const result = verifyInclusion(m, n, leaves[m]!, proof, root)
        if (!result.ok) expect.fail(`PATH(${m}, D[${n}]): ${result.code} ${result.message}`)
      }
    }
  })

  it("consistency proofs for every smaller size are RFC 9162 PROOF and verify", () => {
    for (let n = 1; n <= MAX; n++) {
      const root2 = rootOf(n)
      for (let m = 1; m <= n; m++) {
        const proof = tree.consistencyProof(m, n)
        expectSameProof(proof, naive.subproof(m, 0, n, true), `PROOF(${m}, D[${n}])`)
        const result = verifyConsistency(m, n, proof, rootOf(m), root2)
        if (!result.ok) expect.fail(`PROOF(${m}, D[${n}]): ${result.code} ${result.message}`)
      }
    }
  })
})

// Exhaustive mutation checks stop at this size (the work grows with its cube); fast-check covers up to MAX.
const SMALL = 32

describe("mutations", () => {
  const inclusionCase = fc
    .integer({ min: 2, max: MAX })
    .chain((n) => fc.record({ n: fc.constant(n), m: fc.nat(n - 1), at: fc.nat(), bit: fc.nat(255) }))
  const consistencyCase = fc
    .integer({ min: 2, max: MAX })
    .chain((n) =>
      fc.record({ n: fc.constant(n), m: fc.integer({ min: 1, max: n - 1 }), at: fc.nat(), bit: fc.nat(255) }),
    )

  it("flipping any bit of any inclusion proof hash fails with ROOT_MISMATCH", () => {
    fc.assert(
      fc.property(inclusionCase, ({ n, m, at, bit }) => {
        const proof = tree.inclusionProof(m, n)
        const bad = flip(proof, at % proof.length, bit)
        expect(verifyInclusion(m, n, leaves[m]!, bad, rootOf(n))).toMatchObject({ ok: false, code: "ROOT_MISMATCH" })
      }),
      { numRuns: 2000 },
    )
  })

  it("flipping any bit of any consistency proof hash fails with ROOT_MISMATCH", () => {
    fc.assert(
      fc.property(consistencyCase, ({ n, m, at, bit }) => {
        const proof = tree.consistencyProof(m, n)
        const bad = flip(proof, at % proof.length, bit)
        expect(verifyConsistency(m, n, bad, rootOf(m), rootOf(n))).toMatchObject({ ok: false, code: "ROOT_MISMATCH" })
      }),
      { numRuns: 2000 },
    )
  })

  it("flipping a bit of the leaf or a root fails", () => {
    fc.assert(
      fc.property(consistencyCase, ({ n, m, bit }) => {
        const [leaf] = flip([leaves[m]!], 0, bit)
        const [root1] = flip([rootOf(m)], 0, bit)
        const [root2] = flip([rootOf(n)], 0, bit)
        const incl = tree.inclusionProof(m, n)
        const cons = tree.consistencyProof(m, n)
        expect(verifyInclusion(m, n, leaf!, incl, rootOf(n)).ok).toBe(false)
        expect(verifyInclusion(m, n, leaves[m]!, incl, root2!).ok).toBe(false)
        expect(verifyConsistency(m, n, cons, root1!, rootOf(n)).ok).toBe(false)
        expect(verifyConsistency(m, n, cons, rootOf(m), root2!).ok).toBe(false)
      }),
      { numRuns: 1000 },
    )
  })

  it("removing, repeating or adding a proof element fails", () => {
    fc.assert(
      fc.property(consistencyCase, ({ n, m, at }) => {
        const incl = tree.inclusionProof(m, n)
        const cons = tree.consistencyProof(m, n)
        for (const [proof, check] of [
          [incl, (p: Uint8Array[]) => verifyInclusion(m, n, leaves[m]!, p, rootOf(n))],
          [cons, (p: Uint8Array[]) => verifyConsistency(m, n, p, rootOf(m), rootOf(n))],
        ] as const) {
          const i = at % (proof.length + 1)
          const removed = proof.filter((_, j) => j !== i)
          if (i < proof.length) expect(check(removed).ok).toBe(false)
          expect(check([...proof.slice(0, i), proof[i % proof.length]!, ...proof.slice(i)]).ok).toBe(false)
          expect(check([...proof.slice(0, i), rootOf(n), ...proof.slice(i)]).ok).toBe(false)
        }
      }),
      { numRuns: 1000 },
    )
  })

  it("an inclusion proof verifies for no other index", () => {
    for (let n = 1; n <= SMALL; n++) {
      for (let m = 0; m < n; m++) {
        const proof = tree.inclusionProof(m, n)
        for (let other = 0; other <= n; other++) {
          if (other !== m)
            expect(verifyInclusion(other, n, leaves[m]!, proof, rootOf(n)).ok, `${m}->${other}`).toBe(false)
        }
      }
    }
  })

  it("a consistency proof verifies for no other first size", () => {
    for (let n = 2; n <= SMALL; n++) {
      for (let m = 1; m < n; m++) {
        const proof = tree.consistencyProof(m, n)
        for (let other = 0; other <= 2 * n; other++) {
          if (other !== m)
            expect(verifyConsistency(other, n, proof, rootOf(m), rootOf(n)).ok, `${m}->${other}`).toBe(false)
        }
      }
    }
  })

  // RFC 9162 verification binds the tree size only through the shape of the path it walks: the proof for leaf m of
  // an n-leaf tree also passes, with the same root, for any size whose path from m has the same shape (index 0 at
  // sizes 3 and 4, for one). A consistency proof walks the path of leaf m - 1, so it aliases the same way. Sizes are
  // authenticated by the signed checkpoint that carries the root, never by the proof.
  it("a proof verifies for another tree size exactly when the path has the same shape", () => {
    // The smallest case: leaf 0 has path shape [right, right] in trees of 3 and of 4 leaves.
    expect(verifyInclusion(0, 4, leaves[0]!, tree.inclusionProof(0, 3), rootOf(3))).toEqual({ ok: true })
    for (let n = 1; n <= SMALL; n++) {
      for (let m = 0; m < n; m++) {
        const incl = tree.inclusionProof(m, n)
        const cons = m > 0 ? tree.consistencyProof(m, n) : []
        for (let other = 1; other <= 2 * n; other++) {
          if (other === n) continue
          const inclAliases = m < other && same(pathShape(m, other), pathShape(m, n))
          expect(verifyInclusion(m, other, leaves[m]!, incl, rootOf(n)).ok, `incl ${m}@${n}->${other}`).toBe(
            inclAliases,
          )
          if (m === 0 || other < m) continue
          const consAliases = other > m && same(pathShape(m - 1, other), pathShape(m - 1, n))
          const result = verifyConsistency(m, other, cons, rootOf(m), rootOf(n))
          expect(result.ok, `cons ${m}->${n} as ${m}->${other}`).toBe(consAliases)
        }
      }
    }
  })

  it("the same holds for random changes of index and sizes in trees up to MAX", () => {
    fc.assert(
      fc.property(consistencyCase, fc.integer({ min: 1, max: 2 * MAX }), ({ n, m }, other) => {
        const incl = tree.inclusionProof(m, n)
        const cons = tree.consistencyProof(m, n)
        if (other !== m && other < n) expect(verifyInclusion(other, n, leaves[m]!, incl, rootOf(n)).ok).toBe(false)
        if (other !== m) expect(verifyConsistency(other, n, cons, rootOf(m), rootOf(n)).ok).toBe(false)
        if (other !== n) {
          const inclAliases = m < other && same(pathShape(m, other), pathShape(m, n))
          expect(verifyInclusion(m, other, leaves[m]!, incl, rootOf(n)).ok).toBe(inclAliases)
          const consAliases = other > m && same(pathShape(m - 1, other), pathShape(m - 1, n))
          expect(verifyConsistency(m, other, cons, rootOf(m), rootOf(n)).ok).toBe(consAliases)
        }
      }),
      { numRuns: 2000 },
    )
  })

  it("equal sizes need an empty proof and equal roots", () => {
    for (let n = 1; n <= SMALL; n++) {
      expect(tree.consistencyProof(n, n)).toEqual([])
      expect(verifyConsistency(n, n, [], rootOf(n), rootOf(n))).toEqual({ ok: true })
      expect(verifyConsistency(n, n, [rootOf(n)], rootOf(n), rootOf(n))).toMatchObject({ code: "WRONG_PROOF_SIZE" })
      expect(verifyConsistency(n, n, [], rootOf(n), rootOf(n + 1))).toMatchObject({ code: "ROOT_MISMATCH" })
    }
  })
})
