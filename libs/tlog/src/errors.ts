/**
 * Every refusal of the on-disk log. Callers switch on `code`; `path` (relative to the log directory) names the file
 * at fault where there is one.
 *
 * - `ENTRY_TOO_LARGE`: an entry longer than the bundle format's length prefix (or its cap) can frame.
 * - `BAD_ENTRY`: an entry that is not a Uint8Array.
 * - `BAD_META`: batch metadata that does not survive a JSON round trip.
 * - `NOT_A_LOG`: a non-empty directory without `state.json`.
 * - `BAD_STATE`: `state.json` (or `checkpoint`) that does not parse, or one that names another bundle format.
 * - `LOCKED`: another live process (or another `TileLog` in this one) holds the log open.
 * - `MISSING_TILE` / `MISSING_ENTRY`: a file the committed size needs is absent.
 * - `CORRUPT`: a file the committed size needs has the wrong length, or bytes that do not hash to what the tiles say.
 * - `INCONSISTENT`: the root recomputed from the tiles at the committed size is not the committed root.
 * - `CHECKPOINT_MISMATCH`: a checkpoint for a size this log does not have, with another root, or older than the one
 *   already published.
 * - `COMMIT_UNCERTAIN`: an append failed after `state.json` was renamed into place: reopen and read `lastAppend`.
 * - `CLOSED`: the log was closed, or an earlier failure left it unusable.
 */
export type TlogErrorCode =
  | "ENTRY_TOO_LARGE"
  | "BAD_ENTRY"
  | "BAD_META"
  | "NOT_A_LOG"
  | "BAD_STATE"
  | "LOCKED"
  | "MISSING_TILE"
  | "MISSING_ENTRY"
  | "CORRUPT"
  | "INCONSISTENT"
  | "CHECKPOINT_MISMATCH"
  | "COMMIT_UNCERTAIN"
  | "CLOSED"

export class TlogError extends Error {
  override readonly name = "TlogError"
  readonly code: TlogErrorCode
  /** The file at fault, relative to the log directory, when there is one. */
  readonly path: string | undefined

  constructor(code: TlogErrorCode, message: string, options?: ErrorOptions & { path?: string }) {
    super(message, options)
    this.code = code
    this.path = options?.path
  }
}
