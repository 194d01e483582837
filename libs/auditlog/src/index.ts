/**
 * The auditor's log as data: `AuditCore` (verified events appended in stream order to a tlog-tiles log, held
 * events across gaps, checkpoint signing that never forks) and the conventions verifiers share with it: the origin
 * line, the note signer and verifier keys taken from the key manifest, and the checkpoint history file. Also the
 * offline verifier of such a log (`verifyAuditLog`, behind `vigil audit verify`) and its per-leaf check (`checkChunk`).
 */
export { AuditCore, CHECKPOINT_HISTORY, HELD_FILE, readCheckpointHistory } from "./core.ts"
export { checkChunk } from "./leaves.ts"
export { auditorVerifierKeys, logOrigin, noteSigner, noteVerifiers } from "./naming.ts"
export type { AuditProblem, AuditProgress, AuditVerifyReport } from "./verify.ts"
export { AuditInputError, auditLogDir, readHomeTrust, verifyAuditLog } from "./verify.ts"
