/**
 * RFC 9162 section 2 Merkle tree for the audit log: hashing (`leafHash`, `nodeHash`, `emptyRoot`), the tree hash
 * (`rootFromLeafHashes`, `CompactRange` for a growing log), proofs from stored subtrees (`HashReader`,
 * `inclusionProof`, `consistencyProof`, `MemoryTree`) and the spec's verification algorithms (`verifyInclusion`,
 * `verifyConsistency`), which return a `VerifyResult` with a `code` instead of throwing.
 */
export { CompactRange } from "./compact.ts"
export { MerkleError } from "./errors.ts"
export { emptyRoot, HASH_SIZE, leafHash, nodeHash } from "./hash.ts"
export { rootFromLeafHashes } from "./mth.ts"
export { consistencyProof, inclusionProof, rootAt } from "./prove.ts"
export type { HashReader } from "./store.ts"
export { MemoryTree } from "./tree.ts"
export { verifyConsistency, verifyInclusion } from "./verify.ts"
