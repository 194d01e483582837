import {
  createInbox,
  type MsgHdrs,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from "@nats-io/transport-node"
import { HEADER_MSG_ID } from "@vigil/events"

/** What the stream answered for one stored message. */
export interface StreamAck {
  readonly stream: string
  readonly seq: number
  /** The stream already held this `Nats-Msg-Id`: stored once. */
  readonly duplicate: boolean
}

/** A publish the stream did not confirm. */
export class NotStored extends Error {
  override readonly name = "NotStored"
  /** The server's permissions forbid the subject: retrying cannot help. */
  readonly refused: boolean
  constructor(message: string, refused: boolean) {
    super(message)
    this.refused = refused
  }
}

export type AckCallback = (err: NotStored | undefined, ack?: StreamAck) => void

/** How one message is stored. */
export interface PublishOptions {
  /**
   * Sent as `Nats-Msg-Id`: a re-send with the same id is stored once (NATS-NOTES trap 3: a publish whose ack was lost
   * is still stored), so the transport takes no message without one.
   */
  readonly msgId: string
  /** Further headers; the transport adds `Nats-Msg-Id` to them. */
  readonly headers?: MsgHdrs
}

/**
 * JetStream publishes with an ack, without a request per message: each message is a plain publish whose reply
 * subject is a token under one inbox this connection subscribes to once. Same guarantee as `js.publish` (the ack is
 * the stream's, refusals and timeouts are errors, `Nats-Msg-Id` de-duplicates re-sends), without what `js.publish`
 * costs per message on the event loop: a request object, a timer and two stack-capturing errors (~25 µs here).
 */
export interface AckedPublisher {
  /** Publish; `done` runs once, with the stream's ack or why the message was not stored. */
  send(subject: string, data: Uint8Array, opts: PublishOptions, done: AckCallback): void
  /** {@link send} as a promise. */
  publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<StreamAck>
  /** Stop listening; what is still waiting fails. */
  close(): void
}

interface Waiting {
  readonly subject: string
  readonly deadline: number
  readonly done: AckCallback
}

const parseAck = (data: Uint8Array): StreamAck | NotStored => {
  let ack: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { description?: string; code?: number } }
  try {
    ack = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString("utf8"))
  } catch {
    return new NotStored("the stream's ack is not JSON", false)
  }
  if (ack.error !== undefined) return new NotStored(`not stored: ${ack.error.description ?? "error"}`, false)
  if (typeof ack.stream !== "string" || typeof ack.seq !== "number") {
    return new NotStored("the stream's ack names no stream and sequence", false)
  }
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true }
}

/**
 * `inboxPrefix` must be one the connection's user may subscribe under (its own `_INBOX_<user>`); each publisher
 * takes a fresh inbox below it, so several in one process never see each other's acks.
 */
export const ackedPublisher = (nc: NatsConnection, inboxPrefix: string, timeoutMs: number): AckedPublisher => {
  const inbox = createInbox(inboxPrefix)
  let next = 0
  let closed = false
  // Insertion order is deadline order (one timeout for all), so the sweep stops at the first live entry.
  const waiting = new Map<number, Waiting>()
  const settle = (token: number, err: NotStored | undefined, ack?: StreamAck) => {
    const w = waiting.get(token)
    if (w === undefined) return
    waiting.delete(token)
    w.done(err, ack)
  }
  const sub: Subscription = nc.subscribe(`${inbox}.*`, {
    callback: (_err, msg) => {
      const token = Number(msg.subject.slice(inbox.length + 1))
      // A status reply instead of an ack: 503 means no stream listens on the subject.
      if (msg.headers?.hasError === true) {
        const { code, description } = msg.headers
        settle(token, new NotStored(code === 503 ? "no stream stores this subject" : `${code} ${description}`, false))
        return
      }
      const ack = parseAck(msg.data)
      if (ack instanceof NotStored) settle(token, ack)
      else settle(token, undefined, ack)
    },
  })
  // A publish the user may not make never reaches a stream: the server answers with a -ERR naming the subject, one
  // per refused message, which fails the oldest waiting publish to that subject (as nats.js does for requests).
  const statuses = nc.status()
  void (async () => {
    for await (const s of statuses) {
      if (closed) return
      if (s.type !== "error" || s.error.name !== "PermissionViolationError") continue
      const pe = s.error as Error & { operation?: string; subject?: string }
      if (pe.operation !== "publish") continue
      for (const [token, w] of waiting) {
        if (w.subject === pe.subject) {
          settle(token, new NotStored(pe.message, true))
          break
        }
      }
    }
  })().catch(() => undefined)
  const sweep = setInterval(
    () => {
      const now = performance.now()
      for (const [token, w] of waiting) {
        if (w.deadline > now) break
        settle(token, new NotStored(`no ack from the stream in ${timeoutMs} ms`, false))
      }
    },
    Math.max(10, Math.min(250, timeoutMs / 4)),
  )
  sweep.unref()

  const send = (subject: string, data: Uint8Array, opts: PublishOptions, done: AckCallback) => {
    if (closed) {
      done(new NotStored("publisher closed", false))
      return
    }
    const headers = opts.headers ?? natsHeaders()
    headers.set(HEADER_MSG_ID, opts.msgId)
    const token = ++next
    waiting.set(token, { subject, deadline: performance.now() + timeoutMs, done })
    try {
      nc.publish(subject, data, { headers, reply: `${inbox}.${token}` })
    } catch (e) {
      settle(token, new NotStored(`not sent: ${e instanceof Error ? e.message : String(e)}`, false))
    }
  }
  return {
    send,
    publish: (subject, data, opts) =>
      new Promise<StreamAck>((resolve, reject) =>
        send(subject, data, opts, (err, ack) => (err === undefined ? resolve(ack as StreamAck) : reject(err))),
      ),
    close: () => {
      if (closed) return
      closed = true
      clearInterval(sweep)
      sub.unsubscribe()
      // The status iterator otherwise stays registered with the connection until it closes.
      ;(statuses as { stop?: () => void }).stop?.()
      for (const token of [...waiting.keys()]) settle(token, new NotStored("publisher closed", false))
    },
  }
}
