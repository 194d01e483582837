/**
 * A crash-safe, append-only Merkle log on disk in the c2sp.org/tlog-tiles layout (`TileLog`), with a full offline
 * check of a log directory (`verifyStore`) and the entry bundles' encoding and paths (`encodeBundle`, `parseBundle`,
 * `bundlePath`).
 */
export type { TlogErrorCode } from "./errors.ts"
export { TlogError } from "./errors.ts"
export type { BundleFormat } from "./layout.ts"
export { BUNDLE_LAYOUTS, bundlePath, encodeBundle, parseBundle, TILE_WIDTH } from "./layout.ts"
export { STATE_FILE } from "./state.ts"
export { CHECKPOINT_FILE, TileLog } from "./tilelog.ts"
export { verifyStore } from "./verify.ts"
