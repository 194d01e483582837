/**
 * Why a proof was refused, or why a tree operation was called wrongly. Callers switch on `code`; `message` is for
 * logs. The codes name the input that failed, so an auditor can tell a shrinking log (`SIZE_DECREASED`) from a
 * malformed proof (`WRONG_PROOF_SIZE`, `BAD_HASH_SIZE`) from a forked one (`ROOT_MISMATCH`).
 */
export const MERKLE_ERROR_CODES = [
  /** A tree size that is not a non-negative safe integer (JSON uint64 values past 2^53 land here). */
  "SIZE_OUT_OF_RANGE",
  /** A leaf index that is not in `[0, size)`. */
  "INDEX_OUT_OF_RANGE",
  /** A consistency proof from the empty tree: RFC 9162 defines none, so it proves nothing. */
  "SIZE_ZERO",
  /** A consistency proof whose second size is smaller than the first. */
  "SIZE_DECREASED",
  /** A leaf hash, root or proof element that is not exactly `HASH_SIZE` bytes. */
  "BAD_HASH_SIZE",
  /** A proof with more or fewer elements than the path for these sizes needs. */
  "WRONG_PROOF_SIZE",
  /** A well-formed proof that leads to a different root. */
  "ROOT_MISMATCH",
] as const
export type MerkleErrorCode = (typeof MERKLE_ERROR_CODES)[number]

export interface VerifyFailure {
  readonly ok: false
  readonly code: MerkleErrorCode
  readonly message: string
}
export type VerifyResult = { readonly ok: true } | VerifyFailure

/** Shared success value: verification allocates nothing when a proof is good. */
export const VERIFIED: VerifyResult = Object.freeze({ ok: true })

/** A plain object, not an Error: refused proofs can be attacker-driven and frequent, and need no stack trace. */
export const refuse = (code: MerkleErrorCode, message: string): VerifyFailure => ({ ok: false, code, message })

/**
 * Thrown only for misuse (building or proving with impossible arguments), never by the verifiers, which return a
 * `VerifyResult` instead.
 */
export class MerkleError extends Error {
  override readonly name = "MerkleError"
  readonly code: MerkleErrorCode

  constructor(code: MerkleErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}
