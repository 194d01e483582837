import { equalBytes } from "@vigil/bytes"
import type { SignatureChecker } from "@vigil/crypto"
import {
  canonicalBytes,
  type KeyResolver,
  type Rejection,
  type RejectionReason,
  type Verified,
  verifyEventAsync,
} from "@vigil/events"

/**
 * The per-leaf verdict of `vigil audit verify`: a leaf must be a signed event that `verifyEvent` accepts (schema,
 * signature, key known, key's principal is the source, key authorised by the manifest for this type at the event's
 * time; no freshness check: the data is historical), and its bytes must be the event's RFC 8785 canonical form, which
 * is all the auditor ever appends. Unique ids are checked across the whole log by the caller.
 */

/** Entries may be as large as the log's bundle format allows (tlog-tiles: 65,535 bytes); size is not the question here. */
export const LEAF_MAX_BYTES = 16 * 1024 * 1024

export type LeafReason = RejectionReason | "non_canonical"

export interface LeafFailure {
  readonly index: number
  readonly reason: LeafReason
  readonly detail: string
  readonly eventId?: string
  readonly type?: string
}

export interface ChunkResult {
  readonly start: number
  /** Leaves judged, up to and including the first failure. */
  readonly checked: number
  /** Event id of each judged leaf that parsed far enough to have one ("" otherwise), in order. */
  readonly ids: ReadonlyArray<string>
  /** The chunk's first failing leaf, if any. */
  readonly failure?: LeafFailure
}

interface LeafVerdict {
  readonly id: string
  readonly failure?: LeafFailure
}

const decoder = new TextDecoder("utf-8", { fatal: true })

/** The leaf's id and, unless it is a valid canonical signed event, why not; `v` is `verifyEvent`'s verdict on it. */
const judge = (index: number, bytes: Uint8Array, v: Verified | Rejection): LeafVerdict => {
  if (!v.ok) {
    const failure: LeafFailure = {
      index,
      reason: v.reason,
      detail: v.detail,
      ...(v.eventId === undefined ? {} : { eventId: v.eventId }),
      ...(v.type === undefined ? {} : { type: v.type }),
    }
    return { id: v.eventId ?? "", failure }
  }
  const id = v.event.id
  // verifyEvent accepted the bytes as JSON; the leaf must be exactly the canonical form of what it holds. (The
  // signature covers the canonical form, so a re-serialised leaf still verifies: only this check sees it.)
  if (!equalBytes(canonicalBytes(JSON.parse(decoder.decode(bytes))), bytes)) {
    return {
      id,
      failure: {
        index,
        reason: "non_canonical",
        detail: `leaf bytes are not the RFC 8785 canonical form of event ${id} (the auditor appends only canonical bytes)`,
        eventId: id,
        type: v.event.type,
      },
    }
  }
  return { id }
}

/**
 * Judges `entries` (leaves `start`, `start + 1`, …) and answers with the first failure among them. The Ed25519
 * checks, most of the cost, go to `signatures` (a SignaturePool's worker threads): every leaf's parse and schema
 * checks run here at once, each queueing its signature check, so this thread prepares the next chunk while the
 * workers verify.
 */
export const checkChunk = async (
  start: number,
  entries: ReadonlyArray<Uint8Array>,
  keys: KeyResolver,
  signatures: SignatureChecker,
): Promise<ChunkResult> => {
  const opts = { keys, maxBytes: LEAF_MAX_BYTES, signatures }
  const verdicts = await Promise.all(
    entries.map(async (bytes, j) => judge(start + j, bytes, await verifyEventAsync(bytes, opts))),
  )
  const ids: string[] = []
  for (const r of verdicts) {
    ids.push(r.id)
    if (r.failure !== undefined) return { start, checked: ids.length, ids, failure: r.failure }
  }
  return { start, checked: entries.length, ids }
}
