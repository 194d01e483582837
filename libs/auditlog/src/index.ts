/**
 * The auditor's log as data: `AuditCore` (verified events appended in stream order to a tlog-tiles log, held
 * events across gaps, checkpoint signing that never forks) and the conventions verifiers share with it: the origin
 * line, the note signer and verifier keys taken from the key manifest, and the checkpoint history file.
 */
export type { AppendOutcome, BatchMeta, CoreOptions, Incoming } from "./core.ts"
export { AuditCore, CHECKPOINT_HISTORY, HELD_FILE, readCheckpointHistory } from "./core.ts"
export type { AuditorVerifierKey } from "./naming.ts"
export { auditorVerifierKeys, logOrigin, noteSigner, noteVerifiers } from "./naming.ts"
