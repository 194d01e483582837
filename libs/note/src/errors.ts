/**
 * Every refusal in this package, named after golang.org/x/mod/sumdb/note (and transparency-dev for checkpoints):
 *
 * - `MALFORMED`: not a signed note (Go `errMalformedNote`): bad UTF-8, control characters, no blank line before
 *   the signature block, a line that is not `— <name> <base64>`, more than 100 signature lines, over `maxNoteBytes`.
 * - `UNVERIFIED`: well formed, but no signature from a known key (Go `UnverifiedNoteError`); `note` carries it.
 * - `INVALID_SIGNATURE`: a signature whose name and key id match a known key does not verify
 *   (Go `InvalidSignatureError`).
 * - `AMBIGUOUS_KEY`: two known keys share the name and key id a signature names (Go `ambiguousVerifierError`).
 * - `INVALID_SIGNER`: a signer whose name is not a valid key name, or no signer at all (Go `errInvalidSigner`).
 * - `MALFORMED_KEY`: a key string or key material that does not parse (Go `errVerifierID` / `errSignerID`).
 * - `KEY_ID_MISMATCH`: the key id in a key string is not the one its name and key compute to (Go `errVerifierHash`).
 * - `UNKNOWN_ALGORITHM`: a key whose signature type byte is not 0x01 Ed25519 (Go `errVerifierAlg`).
 * - `MALFORMED_CHECKPOINT`: a note text that is not a c2sp.org/tlog-checkpoint body.
 * - `ORIGIN_MISMATCH`: a checkpoint from another origin than the one asked for.
 */
export type NoteErrorCode =
  | "MALFORMED"
  | "UNVERIFIED"
  | "INVALID_SIGNATURE"
  | "AMBIGUOUS_KEY"
  | "INVALID_SIGNER"
  | "MALFORMED_KEY"
  | "KEY_ID_MISMATCH"
  | "UNKNOWN_ALGORITHM"
  | "MALFORMED_CHECKPOINT"
  | "ORIGIN_MISMATCH"

/** One signature line of a note: key name, key id (uint32) and the base64 of key id || signature as written. */
export interface NoteSignature {
  readonly name: string
  readonly keyId: number
  readonly base64: string
}

/** A note that parsed; for `UNVERIFIED` the error carries it (Go `UnverifiedNoteError.Note`). */
export interface UnverifiedNote {
  readonly text: string
  readonly unverified: ReadonlyArray<NoteSignature>
}

export class NoteError extends Error {
  override readonly name = "NoteError"
  readonly code: NoteErrorCode
  /** Only for `UNVERIFIED`: the parsed text and its signatures, none of them by a known key. */
  readonly note: UnverifiedNote | undefined

  constructor(code: NoteErrorCode, message: string, note?: UnverifiedNote) {
    super(message)
    this.code = code
    this.note = note
  }
}
