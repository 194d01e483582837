import {
  type DirectStreamAPI,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  type StoredMsg,
} from "@nats-io/jetstream"
import {
  type Event,
  type EventType,
  eventSubject,
  eventTypeFilter,
  type Rejection,
  STREAM_EVENTS,
  verifyEvent,
} from "@vigil/events"
import { Context, Effect, Layer, Option } from "effect"
import { BusConfig } from "./config.ts"
import { jetStreamOptions, Nats } from "./connection.ts"
import { StreamReadError } from "./errors.ts"
import { Trust } from "./trust.ts"

/** A stored message as read back: where it sits and its bytes. */
export interface StoredRecord {
  readonly seq: number
  readonly subject: string
  readonly time: Date
  readonly data: Uint8Array
}

export interface ReadEventsOptions {
  /** Only this session's events of the type (its own subject), instead of every session's. */
  readonly session?: string
  /**
   * Called for each stored message that does not verify (also logged as a warning); it is skipped, as a consumer
   * would have dead-lettered it.
   */
  readonly refused?: (seq: number, why: Rejection) => void
}

export interface StreamReaderShape extends DirectReads {
  /**
   * Every stored event of one type, oldest first, each verified exactly as a consumer verified it when it arrived
   * (schema, signature, key authorised for the type at the event's time, stored within the freshness window of its
   * own time). Resolves to how many were passed to `each`.
   */
  readonly events: <T extends EventType>(
    type: T,
    each: (event: Event<T>) => void,
    options?: ReadEventsOptions,
  ) => Effect.Effect<number, StreamReadError>
  /** Every stored message on `subject` of `stream`, oldest first, at most `max` (a KV key's revisions, say). */
  readonly messages: (
    stream: string,
    subject: string,
    max: number,
  ) => Effect.Effect<ReadonlyArray<StoredRecord>, StreamReadError>
  /** The stream sequence up to which every message was acked on this service's own `durable`. */
  readonly consumerAckFloor: (stream: string, durable: string) => Effect.Effect<number, StreamReadError>
}

const record = (m: StoredMsg): StoredRecord => ({ seq: m.seq, subject: m.subject, time: m.time, data: m.data })

/** What of a JetStream manager's direct-get API (`jsm.direct`) a reader uses. */
export type DirectGetApi = Pick<DirectStreamAPI, "getMessage">

/**
 * Stored messages by subject, one direct get each: the newest, or the first at or after a stream sequence (a walk
 * forward over one subject, whatever else the stream holds in between). Only "no such message" is none; any other
 * failure (timeout, no responders, a refused permission, a closed connection) is a {@link StreamReadError}.
 */
export interface DirectReads {
  /** The newest stored message on `subject`, if any. */
  readonly last: (stream: string, subject: string) => Effect.Effect<Option.Option<StoredRecord>, StreamReadError>
  /** The first stored message on `subject` at or after stream sequence `seq`, if any. */
  readonly next: (
    stream: string,
    subject: string,
    seq: number,
  ) => Effect.Effect<Option.Option<StoredRecord>, StreamReadError>
}

/** "No such message": the 3.x client resolves a direct get's 404 to null; the API-error form is accepted too. */
const isMessageNotFound = (e: unknown): boolean =>
  (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.NoMessageFound) ||
  (e instanceof Error &&
    (e as Error & { code?: unknown }).code === 404 &&
    e.message.toLowerCase() === "message not found")

type DirectQuery = { readonly last_by_subj: string } | { readonly seq: number; readonly next_by_subj: string }

const directGet = (api: DirectGetApi, stream: string, subject: string, query: DirectQuery) =>
  Effect.tryPromise({
    try: () =>
      api.getMessage(stream, query).then(
        (m) => m,
        (e: unknown) => {
          if (isMessageNotFound(e)) return null
          throw e
        },
      ),
    catch: (cause) => new StreamReadError({ stream, subject, cause }),
  })

const found = (m: StoredMsg | null): Option.Option<StoredRecord> =>
  m === null ? Option.none() : Option.some(record(m))

const directReads = (api: DirectGetApi): DirectReads => ({
  last: (stream, subject) => directGet(api, stream, subject, { last_by_subj: subject }).pipe(Effect.map(found)),
  next: (stream, subject, seq) =>
    directGet(api, stream, subject, { seq, next_by_subj: subject }).pipe(Effect.map(found)),
})

/** A JetStream manager for the connection's user (its API prefix when it signs in with an nkey). */
const manager = Effect.gen(function* () {
  const { nc, user } = yield* Nats
  const cfg = yield* BusConfig
  return yield* Effect.tryPromise({
    try: () => jetstreamManager(nc, Option.isSome(cfg.nkeySeed) ? jetStreamOptions(user) : { checkAPI: false }),
    catch: (cause) => new StreamReadError({ stream: "", subject: "", cause }),
  })
})

/**
 * Reads stored messages by direct get, one request per message (`next_by_subj` from the sequence after the last),
 * so a service needs no consumer of its own and no JetStream management right: its user may read, not create or
 * change. Fails when the stream cannot be read: a service that cannot know its history must not act on a guess.
 */
export class StreamReader extends Context.Service<StreamReader, StreamReaderShape>()("@vigil/bus/StreamReader") {
  /** {@link DirectReads} over any direct-get API (`jsm.direct` of a connection of one's own, in tests say). */
  static readonly direct: (api: DirectGetApi) => DirectReads = directReads

  static readonly layer = Layer.effect(
    StreamReader,
    Effect.gen(function* () {
      const cfg = yield* BusConfig
      const trust = yield* Trust
      const jsm: JetStreamManager = yield* manager
      const reads = directReads(jsm.direct)

      const messages = (stream: string, subject: string, max: number) =>
        Effect.gen(function* () {
          const out: StoredRecord[] = []
          let seq = 1
          while (out.length < max) {
            const m = yield* reads.next(stream, subject, seq)
            if (Option.isNone(m)) break
            out.push(m.value)
            seq = m.value.seq + 1
          }
          return out
        })

      const events = <T extends EventType>(
        type: T,
        each: (event: Event<T>) => void,
        options: ReadEventsOptions = {},
      ): Effect.Effect<number, StreamReadError> => {
        const filter = options.session === undefined ? eventTypeFilter(type) : eventSubject(options.session, type)
        return Effect.gen(function* () {
          let seq = 1
          let n = 0
          for (;;) {
            const next = yield* reads.next(STREAM_EVENTS, filter, seq)
            if (Option.isNone(next)) return n
            const m = next.value
            const v = verifyEvent(m.data, {
              keys: trust.resolver,
              maxBytes: cfg.maxEventBytes,
              subject: m.subject,
              receivedAt: m.time.getTime(),
              maxSkewMs: cfg.duplicateWindowMs,
            })
            if (v.ok && v.event.type === type) {
              each(v.event as Event<T>)
              n++
            } else if (!v.ok) {
              yield* Effect.logWarning(`ignored a stored event that does not verify: ${v.detail}`).pipe(
                Effect.annotateLogs({ seq: m.seq, reason: v.reason }),
              )
              options.refused?.(m.seq, v)
            }
            seq = m.seq + 1
          }
        })
      }

      const consumerAckFloor = (stream: string, durable: string) =>
        Effect.tryPromise({
          try: () => jsm.consumers.info(stream, durable),
          catch: (cause) => new StreamReadError({ stream, subject: `CONSUMER.INFO.${stream}.${durable}`, cause }),
        }).pipe(Effect.map((info) => info.ack_floor.stream_seq))
      return StreamReader.of({ events, messages, ...reads, consumerAckFloor })
    }),
  )
}
