import { fromHex, toHex } from "@vigil/bytes"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { naiveLeafHash, naiveNodeHash } from "./_naive.ts"
import { MerkleError } from "./errors.ts"
import { emptyRoot, HASH_SIZE, leafHash, nodeHash } from "./hash.ts"

describe("RFC 9162 2.1.1 hashes", () => {
  // transparency-dev/merkle testonly/constants.go: EmptyRootHash, LeafInputs()[0] and NodeHashes()[0][0].
  it("hashes the empty tree and the empty leaf", () => {
    expect(toHex(emptyRoot())).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    expect(toHex(leafHash(new Uint8Array()))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    expect(toHex(nodeHash(leafHash(fromHex("")), leafHash(fromHex("00"))))).toBe(
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    )
  })

  it("matches an independent SHA-256 for entries of any length, across the scratch-buffer limit", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (entry) => {
        expect(toHex(leafHash(entry))).toBe(toHex(naiveLeafHash(entry)))
      }),
    )
    for (const n of [1023, 1024, 1025]) {
      const entry = new Uint8Array(n).fill(7)
      expect(toHex(leafHash(entry))).toBe(toHex(naiveLeafHash(entry)))
    }
  })

  it("hashes nodes like an independent SHA-256, and returns fresh buffers", () => {
    const hash32 = fc.uint8Array({ minLength: HASH_SIZE, maxLength: HASH_SIZE })
    fc.assert(
      fc.property(hash32, hash32, (l, r) => {
        const a = nodeHash(l, r)
        expect(toHex(a)).toBe(toHex(naiveNodeHash(l, r)))
        nodeHash(r, l) // must not overwrite `a`
        expect(toHex(a)).toBe(toHex(naiveNodeHash(l, r)))
      }),
    )
  })

  it("refuses node children that are not 32 bytes", () => {
    const ok = new Uint8Array(HASH_SIZE)
    for (const bad of [new Uint8Array(0), new Uint8Array(31), new Uint8Array(33)]) {
      expect(() => nodeHash(bad, ok)).toThrow(MerkleError)
      expect(() => nodeHash(ok, bad)).toThrow(expect.objectContaining({ code: "BAD_HASH_SIZE" }))
    }
  })
})
