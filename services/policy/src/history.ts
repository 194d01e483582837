import { jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { jetStreamOptions } from "@vigil/bus"
import {
  type Event,
  type EventType,
  eventSubject,
  eventTypeFilter,
  type KeyResolver,
  type Rejection,
  STREAM_EVENTS,
  verifyEvent,
} from "@vigil/events"

export interface HistoryOptions {
  readonly keys: KeyResolver
  readonly maxEventBytes: number
  /** The freshness bound consumers enforce (stored time vs event time), so history is judged as it was live. */
  readonly maxSkewMs: number
}

/**
 * Every stored event of one type, oldest first, each verified exactly as a consumer would have verified it when it
 * arrived (schema, signature, key authorised for the type at the event's time, stored within the freshness window
 * of its own time). What does not verify is passed to `refused` and skipped: live, it went to the dead-letter
 * subject and never counted either.
 *
 * Reads by direct get, one message per request (`next_by_subj` from the sequence after the last one), so the
 * service needs no consumer of its own on the stream (it may not create one). Rejects when the stream cannot be
 * read: a service that cannot know its grants, revocations and containments must not start deciding.
 */
export const readHistory = async <T extends EventType>(
  nc: NatsConnection,
  type: T,
  opts: HistoryOptions,
  each: (event: Event<T>) => void,
  refused: (seq: number, why: Rejection) => void = () => undefined,
  /** Only this session's events of the type (its own subject), instead of every session's. */
  session?: string,
): Promise<number> => {
  const jsm = await jetstreamManager(nc, jetStreamOptions("policy"))
  const filter = session === undefined ? eventTypeFilter(type) : eventSubject(session, type)
  let seq = 1
  let n = 0
  for (;;) {
    const m = await jsm.direct.getMessage(STREAM_EVENTS, { seq, next_by_subj: filter })
    if (m === null) return n
    const v = verifyEvent(m.data, {
      keys: opts.keys,
      maxBytes: opts.maxEventBytes,
      subject: m.subject,
      receivedAt: m.time.getTime(),
      maxSkewMs: opts.maxSkewMs,
    })
    if (v.ok && v.event.type === type) {
      each(v.event as Event<T>)
      n++
    } else if (!v.ok) refused(m.seq, v)
    seq = m.seq + 1
  }
}
