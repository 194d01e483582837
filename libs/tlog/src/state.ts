import { decodeBase64, encodeBase64 } from "@vigil/bytes"
import { HASH_SIZE } from "@vigil/merkle"
import { TlogError } from "./errors.ts"
import { type BundleFormat, isBundleFormat } from "./layout.ts"

/** Any JSON value: what `append` accepts as batch metadata and persists verbatim in `state.json`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** The last committed batch, as persisted in `state.json`. */
export interface LastAppend {
  /** Index of the batch's first leaf. */
  readonly start: number
  /** Number of leaves in the batch (0 for a metadata-only batch). */
  readonly count: number
  /** The batch's opaque metadata (e.g. the stream sequence of its last event), if one was given. */
  readonly meta?: JsonValue
}

/** The commit record. The log is exactly `size` leaves with root `root`; nothing on disk beyond that counts. */
export interface LogState {
  readonly bundles: BundleFormat
  readonly size: number
  readonly root: Uint8Array
  readonly lastAppend: LastAppend | undefined
}

export const STATE_FILE = "state.json"
const STATE_VERSION = "vigil-tlog/1"

export const encodeState = (state: LogState): Buffer => {
  const json = {
    version: STATE_VERSION,
    bundles: state.bundles,
    size: state.size,
    root: encodeBase64(state.root),
    lastAppend: state.lastAppend ?? null,
  }
  return Buffer.from(`${JSON.stringify(json)}\n`)
}

const bad = (why: string): TlogError => new TlogError("BAD_STATE", `${STATE_FILE}: ${why}`, { path: STATE_FILE })
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)
const isUint = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0

export const decodeState = (bytes: Uint8Array): LogState => {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8"))
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`)
  }
  if (!isObject(json) || json.version !== STATE_VERSION) throw bad(`not a ${STATE_VERSION} state`)
  const { bundles, size, root, lastAppend } = json
  if (!isBundleFormat(bundles)) throw bad(`unknown bundle format ${JSON.stringify(bundles)}`)
  if (!isUint(size)) throw bad("size is not a non-negative safe integer")
  const rootBytes = typeof root === "string" ? decodeBase64(root) : undefined
  if (rootBytes === undefined || rootBytes.length !== HASH_SIZE) {
    throw bad("root is not base64 of 32 bytes")
  }
  let last: LastAppend | undefined
  if (lastAppend !== null) {
    if (!isObject(lastAppend) || !isUint(lastAppend.start) || !isUint(lastAppend.count)) throw bad("bad lastAppend")
    if (lastAppend.start + lastAppend.count !== size) throw bad("lastAppend does not end at size")
    last =
      lastAppend.meta === undefined
        ? { start: lastAppend.start, count: lastAppend.count }
        : { start: lastAppend.start, count: lastAppend.count, meta: lastAppend.meta as JsonValue }
  }
  return { bundles, size, root: rootBytes, lastAppend: last }
}

/** A deep copy of `meta` through JSON, refusing what JSON cannot carry faithfully. */
export const cloneMeta = (meta: unknown): JsonValue => {
  let text: string | undefined
  try {
    text = JSON.stringify(meta, (_key, value: unknown) => {
      if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`non-finite number ${value}`)
      if (typeof value === "bigint" || typeof value === "function" || typeof value === "symbol") {
        throw new Error(`a ${typeof value} is not JSON`)
      }
      return value
    })
  } catch (e) {
    throw new TlogError("BAD_META", `batch metadata is not JSON: ${(e as Error).message}`)
  }
  if (text === undefined) throw new TlogError("BAD_META", "batch metadata is not JSON")
  return JSON.parse(text) as JsonValue
}
