import { appendFileSync, closeSync, fsyncSync, openSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { type Event, encodeEvent } from "@vigil/events"
import { openCheckpoint, type SignerKey, signCheckpoint, type VerifierKey } from "@vigil/note"
import { TileLog } from "@vigil/tlog"

/** What the auditor keeps per committed batch in the log's commit record: where in the stream it stopped. */
export interface BatchMeta {
  readonly streamSeq: number
}

export interface Incoming {
  readonly event: Event
  readonly streamSeq: number
}

export interface AppendOutcome {
  /** Leaves added by this call, in log order. */
  readonly appended: ReadonlyArray<{ readonly event: Event; readonly index: number; readonly streamSeq: number }>
  /** Redeliveries of stream messages already in the log (a crash before the ack): nothing to append. */
  readonly redelivered: ReadonlyArray<{ readonly event: Event; readonly index: number; readonly streamSeq: number }>
  /** The same event id stored again under a new stream sequence: refused, it is not a new leaf. */
  readonly duplicates: ReadonlyArray<{ readonly event: Event; readonly firstIndex: number; readonly streamSeq: number }>
}

export interface CoreOptions {
  readonly dir: string
  readonly origin: string
  readonly signer: SignerKey
  readonly verifier: VerifierKey
}

/** File beside the tiles holding every checkpoint the auditor ever signed, oldest first (for offline verify). */
export const CHECKPOINT_HISTORY = "checkpoints.log"
const NOTE_SEPARATOR = "\n\u001e\n"

/**
 * The auditor's log: verified events appended as leaves (leaf = the event's RFC 8785 canonical signed bytes) in
 * stream order, an index from event id to leaf, and checkpoint signing that can never produce two inconsistent
 * checkpoints: a checkpoint is signed only over the committed tree, and the tree only grows.
 */
export class AuditCore {
  readonly log: TileLog
  readonly origin: string
  readonly #signer: SignerKey
  readonly #verifier: VerifierKey
  readonly #ids = new Map<string, number>()
  /** Stream sequence of each leaf is not stored per leaf; redelivery is detected against the committed position. */
  #lastStreamSeq: number
  #lastSigned: { size: number; note: string } | undefined

  private constructor(log: TileLog, opts: CoreOptions) {
    this.log = log
    this.origin = opts.origin
    this.#signer = opts.signer
    this.#verifier = opts.verifier
    const meta = log.lastAppend?.meta as BatchMeta | undefined
    this.#lastStreamSeq = meta?.streamSeq ?? 0
    for (let start = 0; start < log.size; start += 4096) {
      const entries = log.entries(start, Math.min(log.size, start + 4096))
      for (const [i, bytes] of entries.entries()) {
        const id = (JSON.parse(Buffer.from(bytes).toString("utf8")) as { id: string }).id
        if (!this.#ids.has(id)) this.#ids.set(id, start + i)
      }
    }
    const note = log.checkpoint()
    if (note !== undefined) {
      const { checkpoint } = openCheckpoint(note, [this.#verifier], { origin: this.origin })
      this.#lastSigned = { size: Number(checkpoint.size), note }
    }
  }

  static open(opts: CoreOptions): AuditCore {
    return new AuditCore(TileLog.open(opts.dir), opts)
  }

  get size(): number {
    return this.log.size
  }

  get lastStreamSeq(): number {
    return this.#lastStreamSeq
  }

  get lastCheckpoint(): { readonly size: number; readonly note: string } | undefined {
    return this.#lastSigned
  }

  indexOf(eventId: string): number | undefined {
    return this.#ids.get(eventId)
  }

  /**
   * Append a batch in stream order and commit it durably (one fsync'd commit for the whole batch). Messages at or
   * below the committed stream position are redeliveries; an id already in the log is a duplicate.
   */
  append(batch: ReadonlyArray<Incoming>): AppendOutcome {
    const appended: Array<{ event: Event; index: number; streamSeq: number }> = []
    const redelivered: Array<{ event: Event; index: number; streamSeq: number }> = []
    const duplicates: Array<{ event: Event; firstIndex: number; streamSeq: number }> = []
    const entries: Uint8Array[] = []
    const pending = new Map<string, number>()
    let maxSeq = this.#lastStreamSeq
    for (const item of batch) {
      const known = this.#ids.get(item.event.id) ?? pending.get(item.event.id)
      if (item.streamSeq <= this.#lastStreamSeq) {
        if (known !== undefined) redelivered.push({ event: item.event, index: known, streamSeq: item.streamSeq })
        continue
      }
      maxSeq = Math.max(maxSeq, item.streamSeq)
      if (known !== undefined) {
        duplicates.push({ event: item.event, firstIndex: known, streamSeq: item.streamSeq })
        continue
      }
      const index = this.log.size + entries.length
      pending.set(item.event.id, index)
      entries.push(encodeEvent(item.event))
      appended.push({ event: item.event, index, streamSeq: item.streamSeq })
    }
    if (maxSeq > this.#lastStreamSeq) {
      // An all-duplicate batch still commits its stream position, so the duplicates are not reconsidered.
      this.log.append(entries, { streamSeq: maxSeq } satisfies BatchMeta)
      this.#lastStreamSeq = maxSeq
      for (const [id, index] of pending) this.#ids.set(id, index)
    }
    return { appended, redelivered, duplicates }
  }

  /**
   * Sign a checkpoint of the committed tree when it grew since the last one. The note is stored in the log dir
   * (and appended to the history) before it is returned, so a crash after publishing can only re-publish it.
   */
  signCheckpoint(): { readonly size: number; readonly note: string } | undefined {
    const size = this.log.size
    if (size === 0 || (this.#lastSigned !== undefined && this.#lastSigned.size >= size)) return undefined
    const note = signCheckpoint({ origin: this.origin, size, rootHash: this.log.root() }, [this.#signer])
    this.log.publishCheckpoint(note, [this.#verifier], { origin: this.origin })
    appendHistory(this.log.dir, note)
    this.#lastSigned = { size, note }
    return this.#lastSigned
  }
}

const appendHistory = (dir: string, note: string) => {
  const path = join(dir, CHECKPOINT_HISTORY)
  appendFileSync(path, `${note}${NOTE_SEPARATOR}`)
  const fd = openSync(path, "r")
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Every checkpoint note the auditor signed, oldest first. */
export const readCheckpointHistory = (dir: string): ReadonlyArray<string> => {
  let text: string
  try {
    text = readFileSync(join(dir, CHECKPOINT_HISTORY), "utf8")
  } catch {
    return []
  }
  return text.split(NOTE_SEPARATOR).filter((n) => n.length > 0)
}
