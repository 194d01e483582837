import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect, headers as natsHeaders, nkeyAuthenticator } from "@nats-io/transport-node"
import { AuditCore, logOrigin, noteSigner, noteVerifiers } from "@vigil/auditlog"
import {
  ackedPublisher,
  type ConsumerHandle,
  consumeBatches,
  type Delivered,
  HandlerError,
  jetStreamOptions,
  Nats,
  Publisher,
  respond,
} from "@vigil/bus"
import {
  AUDIT_CHECKPOINT_SUBJECT,
  AUDITOR_DURABLE,
  type Event,
  inboxPrefix,
  PROOF_ASKERS,
  PROOF_SUBJECTS,
  proofRequestSubject,
  type SigningKey,
  STREAM_EVENTS,
} from "@vigil/events"
import type { ManifestChain } from "@vigil/keys"
import type { VerifierKey } from "@vigil/note"
import { ocsfSubject, RelatedIndex, toOcsf } from "@vigil/ocsf"
import type { Log } from "@vigil/runtime"
import { TlogError, type TlogErrorCode } from "@vigil/tlog"
import { Data, Effect, Schedule, Semaphore } from "effect"
import { AlertEngine, type AlertRule, type Firing } from "./alerts.ts"
import { answer, startProofHttp } from "./proofs.ts"
import { findPublishedCheckpoint, reportSkippedNotes } from "./published-checkpoint.ts"
import { type OutgoingRecord, publishAll } from "./records.ts"

export const PRODUCT_VERSION = "0.1.0"

export interface AuditorSettings {
  readonly dir: string
  readonly checkpointEveryLeaves: number
  readonly checkpointEveryMs: number
  readonly httpPort: number | undefined
  readonly rules: ReadonlyArray<AlertRule>
  /** Most events appended (and fsync'd) in one commit. */
  readonly maxBatch: number
  /** Longest a partial batch waits for more events. */
  readonly maxWaitMs: number
  /** Messages requested per pull, and verified ahead of the handler. */
  readonly pullBatch: number
  /** The query connection (NATS user `prover`, the only one with allow_responses); absent: no NATS proof API. */
  readonly prover?: { readonly url: string; readonly seed: string }
}

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

/** The refusal of `AuditCore.open`, named for what it is. */
const unusableStore = (dir: string, cause: unknown): AuditStoreUnusable => {
  const code = cause instanceof TlogError ? cause.code : "UNREADABLE"
  const path = cause instanceof TlogError ? cause.path : undefined
  const what = cause instanceof Error ? cause.message : String(cause)
  return new AuditStoreUnusable({
    message: `cannot open the audit log in ${dir}${path === undefined ? "" : ` (${path})`}: ${what}; ${storeAdvice(code, dir)}`,
    code,
    path,
    cause,
  })
}

/**
 * The auditor: one durable over all of `vigil.ev.>` in stream order, batches appended to the tile log and
 * committed before they are acked, OCSF records for SIEMs, threshold alerts, checkpoints on a size/time cadence,
 * and read-only proof answers. Refuses to run on a store that is behind its own published checkpoints.
 */
export const runAuditor = (settings: AuditorSettings, key: SigningKey, chain: ManifestChain, log: Log) =>
  Effect.gen(function* () {
    const { nc, js } = yield* Nats
    const publisher = yield* Publisher
    const origin = logOrigin(chain)
    const verifiers = noteVerifiers(origin, chain)
    mkdirSync(settings.dir, { recursive: true })
    const related = new RelatedIndex()
    const alerts = new AlertEngine(settings.rules)
    // Alerts the log's leaves called for, by cause event id: found while the folds are rebuilt at start, or raised
    // since. A leaf whose records may not be out (its batch was not acked: a crash or a failed publish) comes back,
    // and its alerts are published again unless the log already holds them (same derived id either way).
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
        try: () =>
          AuditCore.open({
            dir: settings.dir,
            origin,
            signer: noteSigner(origin, key),
            verifier: verifiers.at(-1) as VerifierKey,
            replay,
          }),
        catch: (cause) => unusableStore(settings.dir, cause),
      }),
      (c) => Effect.sync(() => c.log.close()),
    )

    // What the bus already saw must be a prefix of this store: a rolled-back store that continued would sign a
    // second, inconsistent history. The newest note on the bus that verifies is the one to compare with: junk on the
    // subject is skipped (and alerted), never a reason to stop; an unreadable history stops the start instead of
    // passing for an empty one.
    const jsm = yield* Effect.promise(() => jetstreamManager(nc, jetStreamOptions("auditor")))
    const found = yield* findPublishedCheckpoint(jsm.direct, { origin, verifiers })
    yield* reportSkippedNotes(found.skipped, publisher, log)
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
          .pipe(Effect.ignore)
        return yield* new AuditStoreRolledBack({ message: problem, firstBadIndex })
      }
    }

    // Its own acked publisher (not the Publisher's): records are sent a commit at a time, with no Effect per record.
    const records = yield* Effect.acquireRelease(
      Effect.sync(() => ackedPublisher(nc, inboxPrefix("auditor"), RECORD_ACK_TIMEOUT_MS)),
      (r) => Effect.sync(() => r.close()),
    )
    const ocsfOut = (event: Event, index: number, streamSeq: number): OutgoingRecord => {
      const mapped = toOcsf(event, { leafIndex: index, streamSeq, productVersion: PRODUCT_VERSION, ...lookup(event) })
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
    const lookup = (event: Event) => {
      const r = related.lookup(event)
      return r === undefined ? {} : { related: r }
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

    const checkpoint = Effect.gen(function* () {
      const signed = core.signCheckpoint()
      if (signed === undefined) return
      yield* publishCheckpoint(signed)
    })
    const publishCheckpoint = (signed: { size: number; note: string }) =>
      Effect.gen(function* () {
        const [, size, root] = signed.note.split("\n")
        // Derived from the last leaf it covers: re-publishing after a crash yields the same id.
        const lastLeaf = JSON.parse(Buffer.from(core.log.entry(signed.size - 1)).toString("utf8")) as { id: string }
        // The event before the note: a restarted auditor publishes a checkpoint again when its note is not the last
        // one on the bus, so a crash between the two repeats both (same ids, de-duplicated) instead of losing the
        // event.
        yield* publisher.publish({
          id: publisher.derivedId(lastLeaf.id, `auditor/checkpoint/${signed.size}`),
          type: "checkpoint.signed",
          session: "audit",
          data: { origin, size: Number(size), root: root as string, note: signed.note },
        })
        yield* Effect.tryPromise(() =>
          js.publish(AUDIT_CHECKPOINT_SUBJECT, signed.note, { msgID: `checkpoint:${origin}:${signed.size}` }),
        )
      }).pipe(Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 20 }))
    // A checkpoint signed but not yet on the bus (crash in between) is published now.
    if (core.lastCheckpoint !== undefined && (published === undefined || core.lastCheckpoint.note !== published.text)) {
      yield* publishCheckpoint(core.lastCheckpoint).pipe(Effect.ignore)
    }

    /** The durable's ack floor (a stream sequence): everything up to it was acked, by this auditor or the DLQ. */
    const ackFloor = Effect.promise(() =>
      jsm.consumers.info(STREAM_EVENTS, AUDITOR_DURABLE).then(
        (i) => i.ack_floor.stream_seq,
        () => 0,
      ),
    )
    // Ingest and the drain of held events append to the same log: one at a time.
    const lock = yield* Semaphore.make(1)
    let heldBefore = core.heldCount

    /**
     * Append `batch` (in stream order, holding what comes after a gap: see `AuditCore.append`), publish the OCSF
     * records and alerts of what was appended, and sign a checkpoint when enough leaves are new. Succeeds once
     * everything is durable, so the batch can be acked.
     */
    const ingest = (batch: ReadonlyArray<Delivered>) =>
      Effect.gen(function* () {
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
          log.info(
            { held: outcome.held, committedSeq: core.lastStreamSeq, ackFloor: floor },
            "holding events received past a gap in the stream until the deliveries before them come back",
          )
        } else if (outcome.held === 0 && heldBefore > 0) {
          log.info({ released: heldBefore, committedSeq: core.lastStreamSeq }, "held events appended in stream order")
        }
        heldBefore = outcome.held
        if (outcome.redelivered.length > 0) {
          log.info(
            {
              count: outcome.redelivered.length,
              firstSeq: outcome.redelivered[0]?.streamSeq,
              lastSeq: outcome.redelivered.at(-1)?.streamSeq,
            },
            "redelivered events already in the log",
          )
        }
        if (outcome.late.length > 0) {
          log.warn(
            { count: outcome.late.length, firstSeq: outcome.late[0], committedSeq: core.lastStreamSeq },
            "events delivered after later ones were committed: appended out of stream order",
          )
        }
        const acks: Promise<unknown>[] = []
        const out: OutgoingRecord[] = []
        // Leaves whose records may not be out: redeliveries, and held events appended earlier whose publishing did
        // not complete (they were acked when held, so nothing would bring them back).
        const fresh = new Set(outcome.appended.map((a) => a.streamSeq))
        const owed = core.unpublished().filter((u) => !fresh.has(u.streamSeq))
        for (const a of [...outcome.redelivered, ...owed]) {
          out.push(ocsfOut(a.event, a.index, a.streamSeq))
          for (const f of firings.get(a.event.id) ?? []) {
            if (core.indexOf(alertId(f, a.event)) === undefined) acks.push(Effect.runPromise(raise(f, a.event)))
          }
        }
        // Map, then fold, one event at a time in log order: an action that finishes in the batch it started in is
        // found by its completion's record, exactly as when the two arrive in different batches.
        for (const a of outcome.appended) {
          out.push(ocsfOut(a.event, a.index, a.streamSeq))
          related.observe(a.event)
          const fired = alerts.observe(a.event)
          remember(a.event, fired)
          for (const f of fired) acks.push(Effect.runPromise(raise(f, a.event)))
        }
        for (const d of outcome.duplicates) {
          log.warn(
            { eventId: d.event.id, firstIndex: d.firstIndex, streamSeq: d.streamSeq },
            "duplicate event id refused",
          )
          acks.push(
            Effect.runPromise(
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
            ),
          )
        }
        acks.push(publishAll(records, out))
        yield* Effect.tryPromise({
          try: () => Promise.all(acks),
          catch: (cause) => new HandlerError({ message: "publishing audit records failed", cause }),
        })
        core.settle()
        if (
          core.lastCheckpoint === undefined ||
          core.size - core.lastCheckpoint.size >= settings.checkpointEveryLeaves
        ) {
          yield* checkpoint.pipe(Effect.ignore)
        }
      }).pipe(lock.withPermits(1))

    const handle: ConsumerHandle = yield* consumeBatches(
      {
        durable: AUDITOR_DURABLE,
        maxBatch: settings.maxBatch,
        maxWaitMs: settings.maxWaitMs,
        batch: settings.pullBatch,
      },
      ingest,
    )
    yield* checkpoint.pipe(
      Effect.ignore,
      Effect.repeat(Schedule.spaced(`${settings.checkpointEveryMs} millis`)),
      Effect.forkScoped,
    )
    // Held events whose missing predecessors were dead-lettered (acked, never delivered here) are released by the
    // ack floor, and records still owed are published, even when no further event arrives.
    yield* Effect.suspend(() => (core.heldCount > 0 || core.unpublished().length > 0 ? ingest([]) : Effect.void)).pipe(
      Effect.ignore,
      Effect.repeat(Schedule.spaced("250 millis")),
      Effect.forkScoped,
    )

    // Read-only queries: NATS request/reply for ops and SIEMs (own user: see natsconf roles), HTTP on loopback.
    let proofStats = () => ({ answered: 0, dropped: 0 })
    if (settings.prover !== undefined) {
      const prover = settings.prover
      const qc = yield* Effect.acquireRelease(
        Effect.promise(() =>
          connect({
            servers: prover.url,
            name: `vigil-prover-${process.pid}`,
            inboxPrefix: inboxPrefix("prover"),
            authenticator: nkeyAuthenticator(new TextEncoder().encode(prover.seed)),
            maxReconnectAttempts: -1,
          }),
        ),
        (c) => Effect.promise(() => c.drain().catch(() => undefined)),
      )
      const proofs = yield* Effect.acquireRelease(
        Effect.sync(() =>
          respond(qc, {
            subject: proofRequestSubject("*", "*"),
            askerOf: (subject) => {
              // vigil.proof.<asker>.<kind>: the import from each asker's account names it.
              const [, , asker, kind] = subject.split(".")
              return (PROOF_ASKERS as ReadonlyArray<string>).includes(asker as string) &&
                kind !== undefined &&
                Object.hasOwn(PROOF_SUBJECTS, kind)
                ? asker
                : undefined
            },
            answer: (msg) => {
              const kind = msg.subject.split(".")[3] as keyof typeof PROOF_SUBJECTS
              let req: Record<string, unknown> = {}
              try {
                req = msg.data.length === 0 ? {} : (msg.json() as Record<string, unknown>)
              } catch {
                return JSON.stringify({ ok: false, error: "request is not JSON" })
              }
              try {
                return JSON.stringify(answer(core, kind, req))
              } catch (e) {
                return JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) })
              }
            },
            onDropped: (why, subject, reply) =>
              log.warn({ why, subject, reply }, "proof request dropped: answers go only back through an import"),
          }),
        ),
        (r) => Effect.sync(() => r.stop()),
      )
      proofStats = proofs.stats
    }
    if (settings.httpPort !== undefined) {
      const server = yield* Effect.promise(() => startProofHttp(core, settings.httpPort as number))
      yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
      const address = server.address()
      log.info(
        { port: typeof address === "object" && address !== null ? address.port : settings.httpPort },
        "proof HTTP listening on 127.0.0.1",
      )
    }
    log.info({ origin, size: core.size, lastStreamSeq: core.lastStreamSeq }, "audit log open")
    return {
      handles: [handle],
      health: () => ({
        logSize: core.size,
        checkpointSize: core.lastCheckpoint?.size ?? 0,
        held: core.heldCount,
        origin,
        proofRequests: proofStats(),
      }),
    }
  })

export const auditorSettingsFromEnv = (
  dataDir: string,
  rules: ReadonlyArray<AlertRule>,
  prover?: { readonly url: string; readonly seed: string },
): AuditorSettings => ({
  ...(prover === undefined ? {} : { prover }),
  dir: join(dataDir, "log"),
  checkpointEveryLeaves: Number(process.env.VIGIL_CHECKPOINT_LEAVES ?? 1000),
  checkpointEveryMs: Number(process.env.VIGIL_CHECKPOINT_MS ?? 1000),
  httpPort: process.env.VIGIL_AUDIT_HTTP_PORT === undefined ? undefined : Number(process.env.VIGIL_AUDIT_HTTP_PORT),
  rules,
  // Each commit costs a handful of fsyncs on the event loop, so larger batches are cheaper per event (the audit
  // benchmark in test/bench/audit.ts compares these with the former 1,000 / 20 ms / 256). A quiet bus waits at most
  // 100 ms for its leaf.
  maxBatch: Number(process.env.VIGIL_AUDIT_MAX_BATCH ?? 2_000),
  maxWaitMs: Number(process.env.VIGIL_AUDIT_MAX_WAIT_MS ?? 100),
  pullBatch: Number(process.env.VIGIL_AUDIT_PULL_BATCH ?? 1_000),
})
