import { fromHex, toHex } from "@vigil/bytes"
import { describe, expect, it } from "vitest"
import { CompactRange } from "./compact.ts"
import { emptyRoot, HASH_SIZE, leafHash } from "./hash.ts"
import { rootFromLeafHashes } from "./mth.ts"
import { MemoryHashStore } from "./store.ts"
import { MemoryTree } from "./tree.ts"

// The reference tree of transparency-dev/merkle testonly/constants.go (LeafInputs, NodeHashes, RootHashes).
const LEAF_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
const NODE_HASHES = [
  [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
  ],
  [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
  ],
  [
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
  ],
  ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
const ROOT_HASHES = [
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
const leaves = LEAF_INPUTS.map((h) => leafHash(fromHex(h)))

describe("reference tree (transparency-dev/merkle testonly)", () => {
  it("MTH over leaf hashes gives every root", () => {
    ROOT_HASHES.forEach((root, size) => {
      expect(toHex(rootFromLeafHashes(leaves, 0, size))).toBe(root)
    })
    expect(toHex(rootFromLeafHashes(leaves, 2, 4))).toBe(NODE_HASHES[1]![1])
    expect(toHex(rootFromLeafHashes(leaves, 5, 5))).toBe(toHex(emptyRoot()))
  })

  it("a compact range gives every root as it grows, and stores exactly the complete subtrees", () => {
    const range = new CompactRange()
    const store = new MemoryHashStore()
    expect(toHex(range.root())).toBe(ROOT_HASHES[0])
    for (const [i, leaf] of leaves.entries()) {
      range.append(leaf, (level, index, hash) => store.put(level, index, hash))
      expect(range.size).toBe(i + 1)
      expect(toHex(range.root())).toBe(ROOT_HASHES[i + 1])
    }
    NODE_HASHES.forEach((level, l) => {
      expect(store.count(l)).toBe(level.length)
      level.forEach((h, i) => {
        expect(toHex(store.get(l, i))).toBe(h)
      })
    })
    expect(store.count(4)).toBe(0)
  })

  it("a memory tree gives past roots, and a compact range resumes from its store", () => {
    const tree = new MemoryTree()
    for (const leaf of leaves) tree.append(leaf)
    ROOT_HASHES.forEach((root, size) => {
      expect(toHex(tree.rootAt(size))).toBe(root)
      const resumed = CompactRange.fromReader(tree, size)
      expect(toHex(resumed.root())).toBe(root)
      // compact.Tree hashes of testonly.CompactTrees(): one per set bit of the size
      expect(resumed.hashes().length).toBe(size.toString(2).replaceAll("0", "").length)
    })
  })
})

describe("misuse throws with a code", () => {
  it("refuses bad leaves, sizes and out-of-order stores", () => {
    const tree = new MemoryTree()
    expect(() => tree.append(new Uint8Array(31))).toThrow(expect.objectContaining({ code: "BAD_HASH_SIZE" }))
    tree.append(leaves[0]!)
    expect(() => tree.rootAt(2)).toThrow(expect.objectContaining({ code: "SIZE_OUT_OF_RANGE" }))
    expect(() => tree.inclusionProof(1)).toThrow(expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }))
    expect(() => tree.inclusionProof(0, 0)).toThrow(expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }))
    expect(() => tree.consistencyProof(0, 1)).toThrow(expect.objectContaining({ code: "SIZE_ZERO" }))
    expect(() => tree.consistencyProof(1, 0)).toThrow(expect.objectContaining({ code: "SIZE_DECREASED" }))
    expect(() => tree.get(1, 0)).toThrow(expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }))
    const store = new MemoryHashStore()
    expect(() => store.put(0, 1, new Uint8Array(HASH_SIZE))).toThrow(
      expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }),
    )
    expect(() => store.put(1, 0, new Uint8Array(HASH_SIZE))).toThrow(
      expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }),
    )
    expect(() => rootFromLeafHashes(leaves, 3, 2)).toThrow(expect.objectContaining({ code: "INDEX_OUT_OF_RANGE" }))
    expect(() => rootFromLeafHashes([new Uint8Array(3)])).toThrow(expect.objectContaining({ code: "BAD_HASH_SIZE" }))
  })

  it("keeps its own copies: callers may alter what they pass in or get back", () => {
    const tree = new MemoryTree()
    const leaf = leaves[1]!.slice()
    tree.append(leaf)
    tree.append(leaves[2]!)
    const before = toHex(tree.root())
    leaf.fill(0)
    tree.get(0, 0).fill(0)
    for (const p of tree.inclusionProof(0)) p.fill(0)
    expect(toHex(tree.root())).toBe(before)
    expect(toHex(tree.rootAt(2))).toBe(before)
  })
})
