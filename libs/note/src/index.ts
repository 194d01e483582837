export type { Checkpoint, CheckpointInput, OpenCheckpointOptions, OpenedCheckpoint } from "./checkpoint.ts"
export { formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint } from "./checkpoint.ts"
export type { NoteErrorCode, NoteSignature, UnverifiedNote } from "./errors.ts"
export { NOTE_ERROR_CODES, NoteError } from "./errors.ts"
export type { SignerKey, VerifierKey } from "./keys.ts"
export {
  encodeSignerKey,
  encodeVerifierKey,
  generateSignerKey,
  keyId,
  parseSignerKey,
  parseVerifierKey,
  SIGNATURE_TYPE_ED25519,
} from "./keys.ts"
export type { NoteOptions, OpenedNote } from "./note.ts"
export { MAX_SIGNATURES, openNote, signNote } from "./note.ts"
