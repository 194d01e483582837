import type { MsgHdrs, NatsConnection, Subscription } from "@nats-io/transport-node"

/**
 * JetStream publishes of the auditor's records (one OCSF record per leaf) without a request per record: each message
 * is a plain publish whose reply subject is one of this connection's inbox subjects, and one subscription collects
 * the stream's acks. Same guarantee as `js.publish` (a batch resolves only when the stream acked every record; the
 * `Nats-Msg-Id` header de-duplicates re-sends), at a fraction of the client CPU: `js.publish` builds a request,
 * a timer and two stack-capturing errors per message, ~35 µs of event-loop CPU against ~10 µs here (measured with
 * 20,000 1.5 KB records; see docs/benchmarks.md, audit).
 */
export interface RecordPublisher {
  /** Publish every record; resolves when the stream acked all of them, rejects on the first refusal or timeout. */
  publishAll(records: ReadonlyArray<OutgoingRecord>): Promise<void>
  close(): void
}

export interface OutgoingRecord {
  readonly subject: string
  readonly data: string | Uint8Array
  /** Must carry `Nats-Msg-Id` for de-duplication of re-sends. */
  readonly headers: MsgHdrs
}

interface Pending {
  remaining: number
  readonly done: (err?: Error) => void
}

export const recordPublisher = (nc: NatsConnection, inbox: string, timeoutMs = 10_000): RecordPublisher => {
  let next = 0
  /** Reply token → the batch it belongs to. */
  const waiting = new Map<number, Pending>()
  const sub: Subscription = nc.subscribe(`${inbox}.*`, {
    callback: (_err, msg) => {
      const token = Number(msg.subject.slice(inbox.length + 1))
      const batch = waiting.get(token)
      if (batch === undefined) return
      waiting.delete(token)
      // A status reply (e.g. 503: no stream listens on the subject) or a JetStream error object is a refusal.
      if (msg.headers?.hasError === true) {
        batch.done(new Error(`record not stored: ${msg.headers.code} ${msg.headers.description}`))
        return
      }
      let ack: { error?: { description?: string } }
      try {
        ack = msg.json()
      } catch {
        batch.done(new Error("record not stored: the stream's ack is not JSON"))
        return
      }
      if (ack.error !== undefined) batch.done(new Error(`record not stored: ${ack.error.description ?? "error"}`))
      else if (--batch.remaining === 0) batch.done()
    },
  })
  return {
    publishAll: (records) => {
      if (records.length === 0) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const tokens: number[] = []
        let settled = false
        const finish = (err?: Error) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          for (const t of tokens) waiting.delete(t)
          if (err === undefined) resolve()
          else reject(err)
        }
        const timer = setTimeout(
          () => finish(new Error(`${batch.remaining} of ${records.length} records not acked in ${timeoutMs} ms`)),
          timeoutMs,
        )
        const batch: Pending = { remaining: records.length, done: finish }
        try {
          for (const r of records) {
            const token = ++next
            tokens.push(token)
            waiting.set(token, batch)
            nc.publish(r.subject, r.data, { headers: r.headers, reply: `${inbox}.${token}` })
          }
        } catch (e) {
          finish(e instanceof Error ? e : new Error(String(e)))
        }
      })
    },
    close: () => sub.unsubscribe(),
  }
}
