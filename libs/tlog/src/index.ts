/**
 * A crash-safe, append-only Merkle log on disk in the c2sp.org/tlog-tiles layout (`TileLog`), with a full offline
 * check of a log directory (`verifyStore`) and the tlog-tiles path encoding (`tilePath`, `bundlePath`).
 */
export type { TlogErrorCode } from "./errors.ts"
export { TlogError } from "./errors.ts"
export type { FaultHook, IoOp } from "./io.ts"
export type { BundleFormat, BundleLayout } from "./layout.ts"
export {
  BUNDLE_LAYOUTS,
  bundlePath,
  encodeBundle,
  encodeIndex,
  parseBundle,
  TILE_HEIGHT,
  TILE_WIDTH,
  tilePath,
} from "./layout.ts"
export type { JsonValue, LastAppend } from "./state.ts"
export { STATE_FILE } from "./state.ts"
export type { AppendResult, TileLogOptions } from "./tilelog.ts"
export { CHECKPOINT_FILE, TileLog } from "./tilelog.ts"
export type { StoreProblem, VerifyStoreOptions, VerifyStoreResult } from "./verify.ts"
export { verifyStore } from "./verify.ts"
