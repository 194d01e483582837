import { type PublisherShape, type StoredRecord, StreamReader } from "@vigil/bus"
import { AUDIT_CHECKPOINT_SUBJECT, type EventData, STREAM_AUDIT } from "@vigil/events"
import { type Checkpoint, NoteError, openCheckpoint, type VerifierKey } from "@vigil/note"
import { Data, Duration, Effect, Option, Schedule } from "effect"

/**
 * What the auditor already published on `vigil.audit.checkpoint`: the newest note there that parses and verifies
 * with the auditor keys of the manifest, and the newer notes that did not (junk an admin or a bug put there must
 * neither stop the auditor nor hide a genuine checkpoint behind it).
 *
 * The stream (VIGIL_AUDIT) also holds one OCSF record per event, and nats-server 2.9 direct get has no "previous
 * by subject", so the search does not walk back message by message: the last note by subject first; when it does
 * not verify, windows of stream sequences ending where the last one began, each walked forward note by note with
 * `next_by_subj` (records in between cost nothing), doubling in width until a note verifies or the stream's start.
 *
 * Only "message not found" (status 404) means "no note"; any other failure of a direct get (timeout, no
 * responders, a refused permission, a closed connection) is retried a few times and then fails: an unreadable
 * history is never taken as an empty one, which would skip the never-fork check. The reads are libs/bus
 * `StreamReader`'s direct reads (`StreamReader.jetStream` in the service; `StreamReader.direct(jsm.direct)`, or just
 * `jsm.direct`, elsewhere).
 */

/** Where the notes are read from: direct reads by subject, or a JetStream manager's direct-get API itself. */
export type CheckpointSource = ReturnType<typeof StreamReader.direct> | Parameters<typeof StreamReader.direct>[0]

export interface PublishedNote {
  /** Its sequence in the stream. */
  readonly streamSeq: number
  /** The note as stored (what the auditor compares with its own last checkpoint). */
  readonly text: string
  readonly checkpoint: Checkpoint
}

/** A note on the subject that did not open: its sequence and why (a NoteError code and message). */
export interface SkippedNote {
  readonly streamSeq: number
  readonly reason: string
}

export interface PublishedCheckpoint {
  /** The newest note that verifies; `undefined`: no note on the subject verifies (or there is none). */
  readonly newest: PublishedNote | undefined
  /** The notes newer than `newest` (every note read, when none verifies) that did not verify, oldest first. */
  readonly skipped: ReadonlyArray<SkippedNote>
  /** Direct gets made (the cost of the search). */
  readonly requests: number
}

export interface FindPublishedCheckpointOptions {
  /** The log's origin: a note for another origin does not verify. */
  readonly origin: string
  /** The auditor keys of the manifest, as note verifiers. */
  readonly verifiers: ReadonlyArray<VerifierKey>
  readonly stream?: string
  readonly subject?: string
  /** Stream sequences in the first window searched back from an unverifiable last note (doubles each time). */
  readonly window?: number
  /** Most notes read before the search gives up (fails): a bound on the work a flood of junk notes can cause. */
  readonly maxNotes?: number
  /** Tries of one direct get before it fails (default 4), waiting `retryBase`, then twice as long each time. */
  readonly attempts?: number
  readonly retryBase?: Duration.Input
}

/** A direct get failed for another reason than "message not found", on every attempt. */
export class PublishedCheckpointUnreadable extends Data.TaggedError("PublishedCheckpointUnreadable")<{
  readonly message: string
  readonly stream: string
  /** The direct get that failed, e.g. `last_by_subj vigil.audit.checkpoint`. */
  readonly request: string
  readonly attempts: number
  readonly cause: unknown
}> {}

/** More than `maxNotes` notes were read back and none verified, nor was the stream's start reached. */
export class PublishedCheckpointSearchExhausted extends Data.TaggedError("PublishedCheckpointSearchExhausted")<{
  readonly message: string
  readonly stream: string
  readonly notesRead: number
  /** The oldest stream sequence reached. */
  readonly reachedSeq: number
}> {}

const DEFAULT_WINDOW = 64
const DEFAULT_MAX_NOTES = 4_096
const DEFAULT_ATTEMPTS = 4

type Query = { readonly last_by_subj: string } | { readonly seq: number; readonly next_by_subj: string }

const describe = (q: Query): string =>
  "last_by_subj" in q ? `last_by_subj ${q.last_by_subj}` : `seq ${q.seq} next_by_subj ${q.next_by_subj}`

const reasonOf = (e: unknown): string =>
  e instanceof NoteError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)

type Opened = { readonly note: PublishedNote } | { readonly skip: SkippedNote }

/** See the module comment. Fails with {@link PublishedCheckpointUnreadable} or {@link PublishedCheckpointSearchExhausted}. */
export const findPublishedCheckpoint = Effect.fn("Auditor.findPublishedCheckpoint")(function* (
  source: CheckpointSource,
  options: FindPublishedCheckpointOptions,
) {
  const reads = "getMessage" in source ? StreamReader.direct(source) : source
  const stream = options.stream ?? STREAM_AUDIT
  const subject = options.subject ?? AUDIT_CHECKPOINT_SUBJECT
  const attempts = Math.max(1, options.attempts ?? DEFAULT_ATTEMPTS)
  const maxNotes = Math.max(1, options.maxNotes ?? DEFAULT_MAX_NOTES)
  let requests = 0

  const get = (query: Query) =>
    Effect.suspend(() => {
      requests++
      return "last_by_subj" in query
        ? reads.last(stream, query.last_by_subj)
        : reads.next(stream, query.next_by_subj, query.seq)
    }).pipe(
      Effect.map(Option.getOrUndefined),
      // A read error's cause is the client's (a timeout, a permission violation, a closed connection).
      Effect.mapError(
        ({ cause }) =>
          new PublishedCheckpointUnreadable({
            message:
              `cannot read the published checkpoints: direct get (${describe(query)}) on stream ${stream} failed ` +
              `${attempts} time(s): ${cause instanceof Error ? cause.message : String(cause)}. Check that nats-server ` +
              `is up and reachable, that stream ${stream} exists with allow_direct, and that this NATS user may use the ` +
              `direct get API on it (DIRECT.GET.${stream} and DIRECT.GET.${stream}.> under its JetStream API prefix). The auditor does not start without ` +
              "knowing what it already published: a rolled-back store could otherwise fork the log.",
            stream,
            request: describe(query),
            attempts,
            cause,
          }),
      ),
      Effect.retry({
        schedule: Schedule.exponential(options.retryBase ?? Duration.millis(250), 2),
        times: attempts - 1,
      }),
    )

  const open = (m: StoredRecord): Opened => {
    try {
      const { checkpoint } = openCheckpoint(m.data, options.verifiers, { origin: options.origin })
      return { note: { streamSeq: m.seq, text: new TextDecoder().decode(m.data), checkpoint } }
    } catch (e) {
      return { skip: { streamSeq: m.seq, reason: reasonOf(e) } }
    }
  }

  const done = (newest: PublishedNote | undefined, skipped: ReadonlyArray<SkippedNote>): PublishedCheckpoint => ({
    newest,
    skipped,
    requests,
  })

  const last = yield* get({ last_by_subj: subject })
  if (last === undefined) return done(undefined, [])
  const head = open(last)
  if ("note" in head) return done(head.note, [])

  // Newest first while searching; reversed at the end.
  const skipped: SkippedNote[] = [head.skip]
  let notesRead = 1
  let below = last.seq // every note at or after this sequence has been judged
  let width = Math.max(1, options.window ?? DEFAULT_WINDOW)
  while (below > 1) {
    const from = Math.max(1, below - width)
    const window: StoredRecord[] = []
    let m = yield* get({ seq: from, next_by_subj: subject })
    while (m !== undefined && m.seq < below) {
      notesRead++
      if (notesRead > maxNotes) {
        return yield* new PublishedCheckpointSearchExhausted({
          message:
            `the newest note on ${subject} (stream ${stream}, sequence ${last.seq}) does not verify, nor do ` +
            `${skipped.length - 1} more behind it, and ${maxNotes} notes were read back (down to sequence ${m.seq}) ` +
            `without finding the newest one that verifies (origin ${options.origin}, auditor keys of the manifest). ` +
            `Remove the notes that do not verify from ${stream} (as admin: delete those stream sequences) so the ` +
            "auditor can find its last genuine checkpoint.",
          stream,
          notesRead: notesRead - 1,
          reachedSeq: m.seq,
        })
      }
      window.push(m)
      m = yield* get({ seq: m.seq + 1, next_by_subj: subject })
    }
    // The window's notes, newest first: the first that verifies is the answer, the ones after it were skipped.
    for (let i = window.length - 1; i >= 0; i--) {
      const opened = open(window[i] as StoredRecord)
      if ("note" in opened) {
        return done(opened.note, skipped.reverse())
      }
      skipped.push(opened.skip)
    }
    below = from
    width *= 2
  }
  return done(undefined, skipped.reverse())
})

/** Skipped notes alerted one by one at a start (the newest); older ones share one more alert. */
const MAX_NOTE_ALERTS = 32
/** The alerts are best effort: a bus that does not take them within this does not hold up the start. */
const NOTE_ALERTS_TIMEOUT = "10 seconds"
const MAX_REASON_CHARS = 500

/**
 * One `alert.raised` (rule `checkpoint-note-invalid`, severity high, a fresh event id) per skipped note, through
 * the auditor's publisher. Never fails: an alert that cannot be published is logged, and the start goes on.
 */
export const reportSkippedNotes = Effect.fn("Auditor.reportSkippedNotes")(function* (
  skipped: ReadonlyArray<SkippedNote>,
  publisher: PublisherShape,
  subject: string = AUDIT_CHECKPOINT_SUBJECT,
) {
  if (skipped.length === 0) return
  yield* Effect.logWarning(`skipped notes on ${subject} that are not checkpoints signed by this log's auditor`).pipe(
    Effect.annotateLogs({
      count: skipped.length,
      streamSeqs: skipped.slice(-MAX_NOTE_ALERTS).map((s) => s.streamSeq),
    }),
  )
  const send = (what: string, data: EventData<"alert.raised">) =>
    publisher.publish({ type: "alert.raised", session: "audit", data }).pipe(
      Effect.asVoid,
      Effect.catch((e) =>
        Effect.logWarning("could not publish the checkpoint-note-invalid alert").pipe(
          Effect.annotateLogs({ err: String(e), note: what }),
        ),
      ),
    )
  const alerts: Array<Effect.Effect<void>> = []
  const listed = skipped.slice(-MAX_NOTE_ALERTS)
  const older = skipped.slice(0, skipped.length - listed.length)
  if (older.length > 0) {
    const first = (older[0] as SkippedNote).streamSeq
    const lastOlder = (older.at(-1) as SkippedNote).streamSeq
    alerts.push(
      send(`${first}..${lastOlder}`, {
        rule: "checkpoint-note-invalid",
        severity: "high",
        summary: `${older.length} more notes on ${subject} (stream sequences ${first} to ${lastOlder}) are not checkpoints signed by this log's auditor; the auditor skipped them.`,
        evidence: [],
        details: { count: older.length, fromStreamSeq: first, toStreamSeq: lastOlder },
      }),
    )
  }
  for (const s of listed) {
    const reason = s.reason.length > MAX_REASON_CHARS ? `${s.reason.slice(0, MAX_REASON_CHARS)}…` : s.reason
    alerts.push(
      send(String(s.streamSeq), {
        rule: "checkpoint-note-invalid",
        severity: "high",
        summary: `The note at stream sequence ${s.streamSeq} of ${subject} is not a checkpoint signed by this log's auditor (${reason}); the auditor skipped it and checks its store against the newest note that verifies.`,
        evidence: [],
        details: { streamSeq: s.streamSeq, reason },
      }),
    )
  }
  yield* Effect.all(alerts, { concurrency: 8, discard: true }).pipe(
    Effect.timeout(NOTE_ALERTS_TIMEOUT),
    Effect.catch((e) =>
      Effect.logWarning("checkpoint-note-invalid alerts not all published; starting anyway").pipe(
        Effect.annotateLogs({ err: String(e) }),
      ),
    ),
  )
})
