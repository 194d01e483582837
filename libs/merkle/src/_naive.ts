// Test-only reference: RFC 9162 2.1 written as directly as possible over an array of leaf hashes, with an independent
// SHA-256 (@noble/hashes), so the tests compare the library against the spec and not against itself.
import { sha256 } from "@noble/hashes/sha2.js"

const H = (...parts: Uint8Array[]): Uint8Array => {
  const h = sha256.create()
  for (const p of parts) h.update(p)
  return h.digest()
}

export const naiveLeafHash = (entry: Uint8Array): Uint8Array => H(Uint8Array.of(0), entry)
export const naiveNodeHash = (l: Uint8Array, r: Uint8Array): Uint8Array => H(Uint8Array.of(1), l, r)

/** k: the largest power of two smaller than n (n > 1). */
const k = (n: number): number => {
  let p = 1
  while (p * 2 < n) p *= 2
  return p
}

/**
 * Naive MTH(D[begin:end]) over leaf hashes. Memoised on the range: the leaves are one fixed list per instance, and the
 * exhaustive tests ask for the same subtrees many thousands of times.
 */
export class NaiveTree {
  readonly leaves: readonly Uint8Array[]
  readonly #memo = new Map<string, Uint8Array>()

  constructor(leaves: readonly Uint8Array[]) {
    this.leaves = leaves
  }

  mth(begin: number, end: number): Uint8Array {
    const n = end - begin
    if (n === 0) return H()
    if (n === 1) return this.leaves[begin]!
    const key = `${begin}:${end}`
    let hash = this.#memo.get(key)
    if (hash === undefined) {
      hash = naiveNodeHash(this.mth(begin, begin + k(n)), this.mth(begin + k(n), end))
      this.#memo.set(key, hash)
    }
    return hash
  }

  /** PATH(m, D[begin:end]). */
  path(m: number, begin: number, end: number): Uint8Array[] {
    const n = end - begin
    if (n === 1) return []
    const s = k(n)
    if (m < s) return [...this.path(m, begin, begin + s), this.mth(begin + s, end)]
    return [...this.path(m - s, begin + s, end), this.mth(begin, begin + s)]
  }

  /** SUBPROOF(m, D[begin:end], b). */
  subproof(m: number, begin: number, end: number, b: boolean): Uint8Array[] {
    const n = end - begin
    if (m === n) return b ? [] : [this.mth(begin, end)]
    const s = k(n)
    if (m <= s) return [...this.subproof(m, begin, begin + s, b), this.mth(begin + s, end)]
    return [...this.subproof(m - s, begin + s, end, false), this.mth(begin, begin + s)]
  }
}

/**
 * The shape of PATH(m, D[n]) from the leaf up: for each proof element, whether it is a left sibling. Two sizes with
 * the same shape for m accept the same inclusion proof.
 */
export const pathShape = (m: number, n: number): boolean[] => {
  if (n === 1) return []
  const s = k(n)
  return m < s ? [...pathShape(m, s), false] : [...pathShape(m - s, n - s), true]
}
