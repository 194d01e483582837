import { readFileSync } from "node:fs"
import { join } from "node:path"
import { appendFile, replaceFile } from "@vigil/durable"
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
  /** `encodeEvent(event)` when the caller has it already (verification computes it); the leaf bytes. */
  readonly canonical?: Uint8Array
}

export interface AppendOutcome {
  /** Leaves added by this call, in log order. */
  readonly appended: ReadonlyArray<{ readonly event: Event; readonly index: number; readonly streamSeq: number }>
  /** Redeliveries of stream messages already in the log (a crash before the ack): nothing to append. */
  readonly redelivered: ReadonlyArray<{ readonly event: Event; readonly index: number; readonly streamSeq: number }>
  /** The same event id stored again under a new stream sequence: refused, it is not a new leaf. */
  readonly duplicates: ReadonlyArray<{ readonly event: Event; readonly firstIndex: number; readonly streamSeq: number }>
  /** Stream sequences below the committed position that were not in the log yet: appended out of stream order. */
  readonly late: ReadonlyArray<number>
  /** Events now held (this batch's and earlier ones) until the deliveries before them come back. */
  readonly held: number
}

export interface CoreOptions {
  readonly dir: string
  readonly origin: string
  readonly signer: SignerKey
  readonly verifier: VerifierKey
  /**
   * Called with every leaf already in the log, in log order, when it is opened: the auditor's folds (related
   * actions for OCSF, alert windows) are rebuilt from the log instead of starting empty after a restart.
   */
  readonly replay?: (event: Event, index: number) => void
}

/** File beside the tiles holding every checkpoint the auditor ever signed, oldest first (for offline verify). */
export const CHECKPOINT_HISTORY = "checkpoints.log"
const NOTE_SEPARATOR = "\n\u001e\n"
/**
 * File beside the tiles holding the events received past a gap in the stream (one JSON line each: stream sequence
 * and event), acked but not yet leaves; see `AuditCore.append`.
 */
export const HELD_FILE = "held.jsonl"
/** The auditor's own event announcing a checkpoint: a leaf like any other, but no reason for a new checkpoint. */
const CHECKPOINT_EVENT = "checkpoint.signed"

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
  /**
   * Index of the last leaf that is not one of the auditor's own `checkpoint.signed` events (-1: none). A checkpoint
   * is signed only when such a leaf is not yet covered: otherwise each checkpoint's own event would grow the tree
   * and call for the next checkpoint, one leaf per checkpoint interval forever on an idle log.
   */
  #lastSubstantive = -1
  /** Stream sequence → event received past a gap (see `append`); in {@link HELD_FILE}. */
  #held = new Map<number, Event>()
  /**
   * Stream sequence → event that left the held set (now a leaf, or refused as a duplicate) while its OCSF record may
   * not be out yet: it was acked when it was held, so no redelivery would bring it back. Still in {@link HELD_FILE}
   * until {@link settle}.
   */
  #unpublished = new Map<number, Event>()

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
        const event = JSON.parse(Buffer.from(bytes).toString("utf8")) as Event
        if (!this.#ids.has(event.id)) this.#ids.set(event.id, start + i)
        if (event.type !== CHECKPOINT_EVENT) this.#lastSubstantive = start + i
        opts.replay?.(event, start + i)
      }
    }
    const { entries: heldEntries, torn } = readHeld(log.dir)
    for (const { seq, event } of heldEntries) {
      // Held events at or below the committed position were appended (or refused) before their records were out.
      if (seq > this.#lastStreamSeq) this.#held.set(seq, event)
      else this.#unpublished.set(seq, event)
    }
    // A line torn by a crash while appending belonged to a batch that was not acked (it comes back); rewrite the
    // file so the next append does not run on from the torn line.
    if (torn) {
      replaceFile(
        join(log.dir, HELD_FILE),
        [...this.#unpublished, ...this.#held].map(([seq, event]) => heldLine(seq, event)).join(""),
      )
    }
    const note = log.checkpoint()
    if (note !== undefined) {
      const { checkpoint } = openCheckpoint(note, [this.#verifier], { origin: this.origin })
      this.#lastSigned = { size: Number(checkpoint.size), note }
    }
  }

  static open(opts: CoreOptions): AuditCore {
    // C2SP tlog-tiles entry bundles (16-bit lengths: events are capped at 65,535 bytes at the bus), so a stock
    // tlog-tiles client reads the log; a log written in the former uint32 framing is re-framed once, here.
    return new AuditCore(TileLog.open(opts.dir, { bundleFormat: "tlog-tiles", migrate: true }), opts)
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

  /** Events received past a gap in the stream, waiting (durably) for the deliveries before them. */
  get heldCount(): number {
    return this.#held.size
  }

  /**
   * Events that left the held set (oldest stream sequence first) whose OCSF records are not known to be published,
   * with the index of their leaf (for a refused duplicate: of the first copy).
   */
  unpublished(): ReadonlyArray<{ readonly event: Event; readonly index: number; readonly streamSeq: number }> {
    return [...this.#unpublished]
      .sort(([a], [b]) => a - b)
      .flatMap(([streamSeq, event]) => {
        const index = this.#ids.get(event.id)
        return index === undefined ? [] : [{ event, index, streamSeq }]
      })
  }

  /** The records of every {@link unpublished} event are out: drop them from {@link HELD_FILE}. */
  settle(): void {
    if (this.#unpublished.size === 0) return
    replaceFile(join(this.log.dir, HELD_FILE), [...this.#held].map(([seq, event]) => heldLine(seq, event)).join(""))
    this.#unpublished.clear()
  }

  /**
   * Whether appending `batch` needs the durable's ack floor: some event (of the batch or held) comes after a stream
   * sequence that is neither committed nor at hand.
   */
  hasGap(batch: ReadonlyArray<Incoming>): boolean {
    const seqs = new Set<number>(this.#held.keys())
    for (const item of batch) if (item.streamSeq > this.#lastStreamSeq) seqs.add(item.streamSeq)
    let position = this.#lastStreamSeq
    for (const seq of [...seqs].sort((a, b) => a - b)) {
      if (seq !== position + 1) return true
      position = seq
    }
    return false
  }

  /**
   * Append a batch in stream order and commit it durably (one fsync'd commit for the whole batch). Messages at or
   * below the committed stream position whose id is in the log are redeliveries; any other id already in the log is
   * a duplicate.
   *
   * Leaves follow stream order even when deliveries do not: JetStream hands a killed consumer's unacked messages out
   * again only after ack_wait, and newer ones meanwhile. An event after a gap is appended only when `ackFloor` (the
   * durable's ack floor, a stream sequence) shows that everything before it was acked, i.e. the missing messages
   * were dead-lettered and will not come; otherwise it is held: written to {@link HELD_FILE} (fsync'd, so the batch
   * can be acked) and appended, in order, once the deliveries before it have come back.
   */
  append(batch: ReadonlyArray<Incoming>, ackFloor = 0): AppendOutcome {
    const appended: Array<{ event: Event; index: number; streamSeq: number }> = []
    const redelivered: Array<{ event: Event; index: number; streamSeq: number }> = []
    const duplicates: Array<{ event: Event; firstIndex: number; streamSeq: number }> = []
    const late: number[] = []
    const entries: Uint8Array[] = []
    const pending = new Map<string, number>()
    let substantive = this.#lastSubstantive
    const add = (event: Event, streamSeq: number, canonical: Uint8Array | undefined) => {
      const known = this.#ids.get(event.id) ?? pending.get(event.id)
      if (known !== undefined) {
        duplicates.push({ event, firstIndex: known, streamSeq })
        return
      }
      const index = this.log.size + entries.length
      pending.set(event.id, index)
      if (event.type !== CHECKPOINT_EVENT) substantive = index
      entries.push(canonical ?? encodeEvent(event))
      appended.push({ event, index, streamSeq })
    }
    const ahead = new Map<number, Event>(this.#held)
    const canonicalOf = new Map<number, Uint8Array>()
    for (const item of batch) {
      if (item.streamSeq > this.#lastStreamSeq) {
        ahead.set(item.streamSeq, item.event)
        if (item.canonical !== undefined) canonicalOf.set(item.streamSeq, item.canonical)
        continue
      }
      const known = this.#ids.get(item.event.id) ?? pending.get(item.event.id)
      if (known !== undefined) {
        redelivered.push({ event: item.event, index: known, streamSeq: item.streamSeq })
        continue
      }
      // Below the committed position and not in the log: only possible if an ack floor was wrong. Appended late,
      // out of stream order, rather than dropped.
      late.push(item.streamSeq)
      add(item.event, item.streamSeq, item.canonical)
    }
    let position = this.#lastStreamSeq
    const held = new Map<number, Event>()
    const released: Array<[number, Event]> = []
    for (const seq of [...ahead.keys()].sort((a, b) => a - b)) {
      const event = ahead.get(seq) as Event
      if (held.size > 0 || (seq !== position + 1 && ackFloor < seq - 1)) {
        held.set(seq, event)
        continue
      }
      position = seq
      add(event, seq, canonicalOf.get(seq))
      if (this.#held.has(seq)) released.push([seq, event])
    }
    if (position > this.#lastStreamSeq || entries.length > 0) {
      // An all-duplicate batch still commits its stream position, so the duplicates are not reconsidered.
      this.log.append(entries, { streamSeq: position } satisfies BatchMeta)
      this.#lastStreamSeq = position
      for (const [id, index] of pending) this.#ids.set(id, index)
      this.#lastSubstantive = substantive
    }
    // Newly held events are made durable before the batch that brought them is acked. Released ones stay in the
    // file (as unpublished) until their records are out: see `settle`.
    const added = [...held].filter(([seq]) => !this.#held.has(seq))
    if (added.length > 0) {
      appendFile(join(this.log.dir, HELD_FILE), added.map(([seq, event]) => heldLine(seq, event)).join(""))
    }
    for (const [seq, event] of released) this.#unpublished.set(seq, event)
    this.#held = held
    return { appended, redelivered, duplicates, late, held: held.size }
  }

  /**
   * Sign a checkpoint of the committed tree when it grew since the last one by more than the auditor's own
   * checkpoint events. The note is stored in the log dir (and appended to the history) before it is returned, so a
   * crash after publishing can only re-publish it.
   */
  signCheckpoint(): { readonly size: number; readonly note: string } | undefined {
    const size = this.log.size
    if (size === 0 || this.#lastSubstantive < (this.#lastSigned?.size ?? 0)) return undefined
    const note = signCheckpoint({ origin: this.origin, size, rootHash: this.log.root() }, [this.#signer])
    this.log.publishCheckpoint(note, [this.#verifier], { origin: this.origin })
    appendHistory(this.log.dir, note)
    this.#lastSigned = { size, note }
    return this.#lastSigned
  }
}

const appendHistory = (dir: string, note: string) =>
  appendFile(join(dir, CHECKPOINT_HISTORY), `${note}${NOTE_SEPARATOR}`)

const heldLine = (seq: number, event: Event) => `${JSON.stringify({ seq, event })}\n`

/** The held events of a log dir, in file order; a torn last line (a crash while appending) is left out. */
const readHeld = (
  dir: string,
): { readonly entries: ReadonlyArray<{ readonly seq: number; readonly event: Event }>; readonly torn: boolean } => {
  let text: string
  try {
    text = readFileSync(join(dir, HELD_FILE), "utf8")
  } catch {
    return { entries: [], torn: false }
  }
  const lines = text.split("\n")
  const last = lines.pop() ?? ""
  const entries = lines.flatMap((l) => {
    try {
      return l === "" ? [] : [JSON.parse(l) as { seq: number; event: Event }]
    } catch {
      return []
    }
  })
  return { entries, torn: last !== "" }
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
