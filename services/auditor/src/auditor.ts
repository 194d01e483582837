import { mkdirSync } from "node:fs"
import { headers as natsHeaders } from "@nats-io/transport-node"
import { AuditCore, logOrigin, noteSigner, noteVerifiers } from "@vigil/auditlog"
import {
  ackedPublisher,
  type ConsumeError,
  consumeBatches,
  type Delivered,
  HandlerError,
  Nats,
  Publisher,
  type StreamReadError,
  StreamReader,
} from "@vigil/bus"
import { AUDIT_CHECKPOINT_SUBJECT, AUDITOR_DURABLE, type Event, inboxPrefix, STREAM_EVENTS } from "@vigil/events"
import type { VerifierKey } from "@vigil/note"
import { ocsfSubject, RelatedIndex, toOcsf } from "@vigil/ocsf"
import { Health, type ServiceBus, ServiceIdentity, type ServiceStartError } from "@vigil/runtime"
import { TlogError, type TlogErrorCode } from "@vigil/tlog"
import { Context, Data, Effect, Layer, Option, Schedule, Semaphore } from "effect"
import { AlertEngine, type Firing } from "./alerts.ts"
import {
  findPublishedCheckpoint,
  type PublishedCheckpointSearchExhausted,
  type PublishedCheckpointUnreadable,
  reportSkippedNotes,
} from "./published-checkpoint.ts"
import { type ProofApiUnavailable, proofHttp, proverResponder } from "./queries.ts"
import { type OutgoingRecord, publishAll } from "./records.ts"
import { AuditorSettings } from "./settings.ts"

export const PRODUCT_VERSION = "0.1.0"

/** How long the stream may take to ack a commit's records before the batch fails (and is redelivered). */
const RECORD_ACK_TIMEOUT_MS = 10_000

/** Cause ids whose alerts are remembered for re-publishing (only the log's recent tail can come back). */
const RECENT_FIRINGS = 4_096

/** The store is behind (or beside) a checkpoint already published: continuing would fork the log. */
export class AuditStoreRolledBack extends Data.TaggedError("AuditStoreRolledBack")<{
  readonly message: string
  readonly firstBadIndex: number
}> {}

/**
 * The store could not be opened: damaged, locked by another auditor, or not a log at all (never "rolled back":
 * nothing about it says so). `code` is the tile log's (`TlogErrorCode`) when it said why, `path` the file at fault.
 */
export class AuditStoreUnusable extends Data.TaggedError("AuditStoreUnusable")<{
  readonly message: string
  readonly code: TlogErrorCode | "UNREADABLE"
  readonly path: string | undefined
  readonly cause: unknown
}> {}

/** A checkpoint could not be signed (the store refused to record it): none is published; the next try signs again. */
export class AuditCheckpointNotSigned extends Data.TaggedError("AuditCheckpointNotSigned")<{
  readonly message: string
  readonly cause: unknown
}> {}

/** A signed checkpoint (its `checkpoint.signed` event, or its note) did not reach the bus after the retries. */
export class AuditCheckpointNotPublished extends Data.TaggedError("AuditCheckpointNotPublished")<{
  readonly message: string
  readonly size: number
  readonly cause: unknown
}> {}

export type AuditCheckpointError = AuditCheckpointNotSigned | AuditCheckpointNotPublished

/** What to do about a store the tile log refused, by its code. */
const storeAdvice = (code: TlogErrorCode | "UNREADABLE", dir: string): string => {
  switch (code) {
    case "LOCKED":
      return "another auditor holds it open: stop that one first"
    case "CORRUPT":
    case "MISSING_TILE":
    case "MISSING_ENTRY":
    case "INCONSISTENT":
    case "CHECKPOINT_MISMATCH":
      return `the store is damaged: \`vigil audit verify\` names the first bad leaf; restore ${dir} from a backup`
    case "NOT_A_LOG":
      return `${dir} holds files but no audit log: point VIGIL_HOME elsewhere or move them away`
    default:
      return "check the directory's permissions and free space"
  }
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** The refusal of `AuditCore.open`, named for what it is. */
const unusableStore = (dir: string, cause: unknown): AuditStoreUnusable => {
  const code = cause instanceof TlogError ? cause.code : "UNREADABLE"
  const path = cause instanceof TlogError ? cause.path : undefined
  return new AuditStoreUnusable({
    message: `cannot open the audit log in ${dir}${path === undefined ? "" : ` (${path})`}: ${messageOf(cause)}; ${storeAdvice(code, dir)}`,
    code,
    path,
    cause,
  })
}

/**
 * The auditor: one durable over all of `vigil.ev.>` in stream order, batches appended to the tile log and
 * committed before they are acked, OCSF records for SIEMs, threshold alerts, checkpoints on a size/time cadence.
 * Refuses to start on a store that is behind its own published checkpoints. The log itself and its folds are
 * {@link AuditCore}'s (libs/auditlog); this service feeds it and publishes what it commits.
 */
export class Auditor extends Context.Service<
  Auditor,
  {
    /** The open log (read-only to everything but this service's handlers: the proof answers read it). */
    readonly core: AuditCore
    readonly origin: string
    /**
     * Append a batch (in stream order, holding what comes after a gap: see `AuditCore.append`), publish the OCSF
     * records and alerts of what was appended, and sign a checkpoint when enough leaves are new. Succeeds once
     * everything is durable, so the batch can be acked. `[]` only releases held events and publishes owed records.
     */
    readonly ingest: (batch: ReadonlyArray<Delivered>) => Effect.Effect<void, HandlerError>
    /** Sign a checkpoint of the committed tree, if it grew, and publish it. */
    readonly checkpoint: Effect.Effect<void, AuditCheckpointError>
    /** Whether held events or owed records wait for an {@link ingest} of their own. */
    readonly owes: () => boolean
    readonly health: () => Record<string, unknown>
  }
>()("@vigil/service-auditor/Auditor") {
  static readonly layer = Layer.effect(
    Auditor,
    Effect.gen(function* () {
      const settings = yield* AuditorSettings
      const { key, chain } = yield* ServiceIdentity
      const { nc, js } = yield* Nats
      const publisher = yield* Publisher
      const reads = yield* StreamReader
      const origin = logOrigin(chain)
      const verifiers = noteVerifiers(origin, chain)
      const related = new RelatedIndex()
      const alerts = new AlertEngine(settings.rules)
      // Alerts the log's leaves called for, by cause event id: found while the folds are rebuilt at start, or raised
      // since. A leaf whose records may not be out (its batch was not acked: a crash or a failed publish) comes
      // back, and its alerts are published again unless the log already holds them (same derived id either way).
      const firings = new Map<string, ReadonlyArray<Firing>>()
      const remember = (cause: Event, fired: ReadonlyArray<Firing>) => {
        if (fired.length === 0) return
        firings.set(cause.id, fired)
        if (firings.size > RECENT_FIRINGS) firings.delete(firings.keys().next().value as string)
      }
      const replay = (event: Event) => {
        related.observe(event)
        remember(event, alerts.observe(event))
      }
      const core = yield* Effect.acquireRelease(
        Effect.try({
          try: () => {
            mkdirSync(settings.dir, { recursive: true })
            return AuditCore.open({
              dir: settings.dir,
              origin,
              signer: noteSigner(origin, key),
              verifier: verifiers.at(-1) as VerifierKey,
              replay,
            })
          },
          catch: (cause) => unusableStore(settings.dir, cause),
        }),
        (c) => Effect.sync(() => c.log.close()),
      )

      // What the bus already saw must be a prefix of this store: a rolled-back store that continued would sign a
      // second, inconsistent history. The newest note on the bus that verifies is the one to compare with: junk on
      // the subject is skipped (and alerted), never a reason to stop; an unreadable history stops the start instead
      // of passing for an empty one.
      const found = yield* findPublishedCheckpoint(reads, { origin, verifiers })
      yield* reportSkippedNotes(found.skipped, publisher)
      const published = found.newest
      if (published !== undefined) {
        const { checkpoint } = published
        const size = Number(checkpoint.size)
        const problem =
          size > core.size
            ? `the store has ${core.size} leaves but checkpoint ${size} was published: leaves ${core.size}..${size - 1} are missing`
            : !Buffer.from(core.log.rootAt(size)).equals(Buffer.from(checkpoint.rootHash))
              ? `the store's tree at size ${size} differs from the published checkpoint`
              : undefined
        if (problem !== undefined) {
          const firstBadIndex = Math.min(core.size, size)
          yield* publisher
            .publish({
              type: "alert.raised",
              session: "audit",
              data: {
                rule: "audit-store-rolled-back",
                severity: "critical",
                summary: `The audit log store is not consistent with its published checkpoints (${problem}); the auditor refuses to continue.`,
                evidence: [],
                details: { storeSize: core.size, checkpointSize: size, firstBadIndex },
              },
            })
            .pipe(
              Effect.catch((e) =>
                Effect.logError("the audit-store-rolled-back alert was not published").pipe(
                  Effect.annotateLogs({ err: String(e) }),
                ),
              ),
            )
          return yield* new AuditStoreRolledBack({ message: problem, firstBadIndex })
        }
      }

      // Its own acked publisher (not the Publisher's): records are sent a commit at a time, with no Effect per
      // record (records.ts `publishAll`: one callback per record, one promise per commit).
      const records = yield* Effect.acquireRelease(
        Effect.sync(() => ackedPublisher(nc, inboxPrefix("auditor"), RECORD_ACK_TIMEOUT_MS)),
        (r) => Effect.sync(() => r.close()),
      )
      const lookup = (event: Event) => {
        const r = related.lookup(event)
        return r === undefined ? {} : { related: r }
      }
      const ocsfOut = (event: Event, index: number, streamSeq: number): OutgoingRecord => {
        const mapped = toOcsf(event, {
          leafIndex: index,
          streamSeq,
          productVersion: PRODUCT_VERSION,
          ...lookup(event),
        })
        const h = natsHeaders()
        h.set("Vigil-Event-Id", event.id)
        h.set("Vigil-Leaf-Index", String(index))
        return {
          subject: ocsfSubject(mapped.subjectClass),
          // Bytes from Node's buffer pool: given a string, the client would TextEncode it (a fresh ArrayBuffer each).
          data: Buffer.from(JSON.stringify(mapped.record)),
          // One record per event, however often the event is re-processed.
          msgId: `ocsf:${event.id}`,
          headers: h,
        }
      }

      const alertId = (f: Firing, cause: Event) => publisher.derivedId(cause.id, `auditor/alert/${f.rule.id}`)
      const raise = (f: Firing, cause: Event) =>
        publisher.publish({
          id: alertId(f, cause),
          type: "alert.raised",
          session: f.key === "*" ? cause.session : f.key,
          causation: cause.id,
          correlation: cause.correlation,
          data: {
            rule: f.rule.id,
            severity: f.rule.severity,
            summary: f.rule.summary,
            evidence: [...f.evidence],
            details: { count: f.count },
          },
        })

      const publishCheckpoint = Effect.fn("Auditor.publishCheckpoint")(
        function* (signed: { readonly size: number; readonly note: string }) {
          const [, size, root] = signed.note.split("\n")
          // Derived from the last leaf it covers: re-publishing after a crash yields the same id.
          const lastLeaf = yield* Effect.try({
            try: () => JSON.parse(Buffer.from(core.log.entry(signed.size - 1)).toString("utf8")) as { id: string },
            catch: (cause) => cause,
          })
          // The event before the note: a restarted auditor publishes a checkpoint again when its note is not the
          // last one on the bus, so a crash between the two repeats both (same ids, de-duplicated) instead of losing
          // the event.
          yield* publisher.publish({
            id: publisher.derivedId(lastLeaf.id, `auditor/checkpoint/${signed.size}`),
            type: "checkpoint.signed",
            session: "audit",
            data: { origin, size: Number(size), root: root as string, note: signed.note },
          })
          yield* Effect.tryPromise({
            try: () =>
              js.publish(AUDIT_CHECKPOINT_SUBJECT, signed.note, { msgID: `checkpoint:${origin}:${signed.size}` }),
            catch: (cause) => cause,
          })
        },
        Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 20 }),
        (effect, signed) =>
          Effect.mapError(
            effect,
            (cause) =>
              new AuditCheckpointNotPublished({
                message: `checkpoint ${signed.size} not published: ${messageOf(cause)}`,
                size: signed.size,
                cause,
              }),
          ),
      )

      const checkpoint = Effect.fn("Auditor.checkpoint")(function* () {
        const signed = yield* Effect.try({
          try: () => core.signCheckpoint(),
          catch: (cause) =>
            new AuditCheckpointNotSigned({ message: `checkpoint not signed: ${messageOf(cause)}`, cause }),
        })
        if (signed !== undefined) yield* publishCheckpoint(signed)
      })
      const checkpointFailed = (e: AuditCheckpointError) =>
        Effect.logWarning("checkpoint not published; the next one tries again").pipe(
          Effect.annotateLogs({ err: e.message }),
        )

      // A checkpoint signed but not yet on the bus (crash in between) is published now.
      if (
        core.lastCheckpoint !== undefined &&
        (published === undefined || core.lastCheckpoint.note !== published.text)
      ) {
        yield* publishCheckpoint(core.lastCheckpoint).pipe(Effect.catch(checkpointFailed))
      }

      /**
       * The durable's ack floor (a stream sequence): everything up to it was acked, by this auditor or the DLQ. When
       * it cannot be read, nothing past a gap is appended on a guess: 0 holds those events (fail closed) until a
       * later batch or the drain finds the floor.
       */
      const ackFloor = reads
        .consumerAckFloor(STREAM_EVENTS, AUDITOR_DURABLE)
        .pipe(
          Effect.catch((e: StreamReadError) =>
            Effect.logWarning("cannot read the auditor durable's ack floor: events past a gap stay held").pipe(
              Effect.annotateLogs({ err: messageOf(e.cause) }),
              Effect.as(0),
            ),
          ),
        )
      // Ingest and the drain of held events append to the same log: one at a time.
      const lock = yield* Semaphore.make(1)
      let heldBefore = core.heldCount

      const ingest = Effect.fn("Auditor.ingest")(function* (batch: ReadonlyArray<Delivered>) {
        const items = batch.map((b) => ({
          event: b.event,
          streamSeq: b.delivery.streamSeq,
          canonical: b.delivery.canonical,
        }))
        // Only a gap (messages missing before others) needs the server's word on what was acked.
        const floor = core.hasGap(items) ? yield* ackFloor : 0
        const outcome = yield* Effect.try({
          try: () => core.append(items, floor),
          catch: (cause) => new HandlerError({ message: "audit log append failed", cause }),
        })
        if (outcome.held > 0 && heldBefore === 0) {
          yield* Effect.logInfo(
            "holding events received past a gap in the stream until the deliveries before them come back",
          ).pipe(Effect.annotateLogs({ held: outcome.held, committedSeq: core.lastStreamSeq, ackFloor: floor }))
        } else if (outcome.held === 0 && heldBefore > 0) {
          yield* Effect.logInfo("held events appended in stream order").pipe(
            Effect.annotateLogs({ released: heldBefore, committedSeq: core.lastStreamSeq }),
          )
        }
        heldBefore = outcome.held
        if (outcome.redelivered.length > 0) {
          yield* Effect.logInfo("redelivered events already in the log").pipe(
            Effect.annotateLogs({
              count: outcome.redelivered.length,
              firstSeq: outcome.redelivered[0]?.streamSeq,
              lastSeq: outcome.redelivered.at(-1)?.streamSeq,
            }),
          )
        }
        if (outcome.late.length > 0) {
          yield* Effect.logWarning(
            "events delivered after later ones were committed: appended out of stream order",
          ).pipe(
            Effect.annotateLogs({
              count: outcome.late.length,
              firstSeq: outcome.late[0],
              committedSeq: core.lastStreamSeq,
            }),
          )
        }
        const sends: Array<Effect.Effect<unknown, unknown>> = []
        const out: OutgoingRecord[] = []
        // Leaves whose records may not be out: redeliveries, and held events appended earlier whose publishing did
        // not complete (they were acked when held, so nothing would bring them back).
        const fresh = new Set(outcome.appended.map((a) => a.streamSeq))
        const owed = core.unpublished().filter((u) => !fresh.has(u.streamSeq))
        for (const a of [...outcome.redelivered, ...owed]) {
          out.push(ocsfOut(a.event, a.index, a.streamSeq))
          for (const f of firings.get(a.event.id) ?? []) {
            if (core.indexOf(alertId(f, a.event)) === undefined) sends.push(raise(f, a.event))
          }
        }
        // Map, then fold, one event at a time in log order: an action that finishes in the batch it started in is
        // found by its completion's record, exactly as when the two arrive in different batches.
        for (const a of outcome.appended) {
          out.push(ocsfOut(a.event, a.index, a.streamSeq))
          related.observe(a.event)
          const fired = alerts.observe(a.event)
          remember(a.event, fired)
          for (const f of fired) sends.push(raise(f, a.event))
        }
        for (const d of outcome.duplicates) {
          yield* Effect.logWarning("duplicate event id refused").pipe(
            Effect.annotateLogs({ eventId: d.event.id, firstIndex: d.firstIndex, streamSeq: d.streamSeq }),
          )
          sends.push(
            publisher.publish({
              id: publisher.derivedId(d.event.id, `auditor/duplicate/${d.streamSeq}`),
              type: "alert.raised",
              session: d.event.session,
              causation: d.event.id,
              data: {
                rule: "duplicate-event",
                severity: "high",
                summary: `Event ${d.event.id} was stored again (stream sequence ${d.streamSeq}); it is already leaf ${d.firstIndex} and was not appended twice.`,
                evidence: [d.event.id],
                details: { firstIndex: d.firstIndex, streamSeq: d.streamSeq },
              },
            }),
          )
        }
        sends.push(Effect.tryPromise({ try: () => publishAll(records, out), catch: (cause) => cause }))
        // Every alert and record of the commit in flight together; the batch is acked only once all are stored.
        yield* Effect.all(sends, { concurrency: "unbounded", discard: true }).pipe(
          Effect.mapError((cause) => new HandlerError({ message: "publishing audit records failed", cause })),
        )
        yield* Effect.try({
          try: () => core.settle(),
          catch: (cause) => new HandlerError({ message: "audit log settle failed", cause }),
        })
        if (
          core.lastCheckpoint === undefined ||
          core.size - core.lastCheckpoint.size >= settings.checkpointEveryLeaves
        ) {
          yield* checkpoint().pipe(Effect.catch(checkpointFailed))
        }
      }, lock.withPermits(1))

      yield* Effect.logInfo("audit log open").pipe(
        Effect.annotateLogs({ origin, size: core.size, lastStreamSeq: core.lastStreamSeq }),
      )
      return Auditor.of({
        core,
        origin,
        ingest,
        checkpoint: checkpoint(),
        owes: () => core.heldCount > 0 || core.unpublished().length > 0,
        health: () => ({
          logSize: core.size,
          checkpointSize: core.lastCheckpoint?.size ?? 0,
          held: core.heldCount,
          origin,
        }),
      })
    }),
  )
}

/** The durable, bound to {@link Auditor.ingest}, and the timers: checkpoints on the clock, the drain of held events. */
const ingestion = Layer.effectDiscard(
  Effect.gen(function* () {
    const settings = yield* AuditorSettings
    const auditor = yield* Auditor
    const health = yield* Health
    const handle = yield* consumeBatches(
      {
        durable: AUDITOR_DURABLE,
        maxBatch: settings.maxBatch,
        maxWaitMs: settings.maxWaitMs,
        batch: settings.pullBatch,
      },
      auditor.ingest,
    )
    yield* health.consumers([handle])
    yield* health.add(auditor.health)
    yield* auditor.checkpoint.pipe(
      Effect.catch((e) =>
        Effect.logWarning("checkpoint not published; the next one tries again").pipe(
          Effect.annotateLogs({ err: e.message }),
        ),
      ),
      Effect.repeat(Schedule.spaced(`${settings.checkpointEveryMs} millis`)),
      Effect.forkScoped,
    )
    // Held events whose missing predecessors were dead-lettered (acked, never delivered here) are released by the
    // ack floor, and records still owed are published, even when no further event arrives.
    yield* Effect.suspend(() => (auditor.owes() ? auditor.ingest([]) : Effect.void)).pipe(
      Effect.catch((e) =>
        Effect.logWarning("held events or owed records not done yet; tried again shortly").pipe(
          Effect.annotateLogs({ err: e.message, ...(e.cause === undefined ? {} : { cause: messageOf(e.cause) }) }),
        ),
      ),
      Effect.repeat(Schedule.spaced("250 millis")),
      Effect.forkScoped,
    )
  }),
)

/** Read-only queries: NATS request/reply for ops and SIEMs (own user: see natsconf roles), HTTP on loopback. */
const queries = Layer.effectDiscard(
  Effect.gen(function* () {
    const settings = yield* AuditorSettings
    const { core } = yield* Auditor
    const health = yield* Health
    const stats = Option.isSome(settings.prover)
      ? yield* proverResponder(core, settings.prover.value)
      : () => ({ answered: 0, dropped: 0 })
    yield* health.add(() => ({ proofRequests: stats() }))
    if (Option.isSome(settings.httpPort)) yield* proofHttp(core, settings.httpPort.value)
  }),
)

/** Why the auditor does not start (each said once, as fatal, by the template's `launch`; exit code 1). */
export type AuditorStartError =
  | ServiceStartError
  | StreamReadError
  | ConsumeError
  | AuditStoreUnusable
  | AuditStoreRolledBack
  | PublishedCheckpointUnreadable
  | PublishedCheckpointSearchExhausted
  | ProofApiUnavailable

/** The auditor service on the bus: `launch("auditor", AuditorLive)`. */
export const AuditorLive: Layer.Layer<never, AuditorStartError, ServiceBus> = Layer.mergeAll(ingestion, queries).pipe(
  Layer.provide(Auditor.layer),
  Layer.provide(AuditorSettings.layer),
)
