import { type ConsumerInfo, jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node"

/** One stored message as read back by an admin ordered consumer. */
export interface StoredMsg {
  readonly subject: string
  readonly seq: number
  readonly data: Uint8Array
  readonly headers: MsgHdrs | undefined
  json<T = unknown>(): T
}

/**
 * Every message of `stream` (optionally under one filter subject), in stream order, through an ordered consumer
 * (needs the admin user: it creates an ephemeral consumer).
 */
export const readStream = async (
  nc: NatsConnection,
  stream: string,
  filter?: string,
  timeoutMs = 20_000,
): Promise<ReadonlyArray<StoredMsg>> => {
  const jsm = await jetstreamManager(nc)
  const info = await jsm.streams.info(stream, filter === undefined ? {} : { subjects_filter: filter })
  const expected =
    filter === undefined
      ? info.state.messages
      : Object.values(info.state.subjects ?? {}).reduce((a: number, b: number) => a + b, 0)
  const out: Array<StoredMsg> = []
  if (expected === 0) return out
  const consumer = await jetstream(nc).consumers.get(stream, filter === undefined ? {} : { filter_subjects: filter })
  const messages = await consumer.consume({ max_messages: 1024 })
  const timer = setTimeout(() => void messages.close(), timeoutMs)
  try {
    for await (const m of messages) {
      const data = m.data
      out.push({
        subject: m.subject,
        seq: m.seq,
        data,
        headers: m.headers,
        json: <T>() => JSON.parse(new TextDecoder().decode(data)) as T,
      })
      if (m.info.pending === 0 && out.length >= expected) break
    }
  } finally {
    clearTimeout(timer)
    await messages.close()
    await consumer.delete().catch(() => undefined)
  }
  if (out.length < expected) throw new Error(`read ${out.length} of ${expected} messages of ${stream} in time`)
  return out
}

/** How many messages a stream holds, optionally under one subject filter. */
export const countStored = async (nc: NatsConnection, stream: string, filter?: string): Promise<number> => {
  const jsm = await jetstreamManager(nc)
  const info = await jsm.streams.info(stream, filter === undefined ? {} : { subjects_filter: filter })
  if (filter === undefined) return info.state.messages
  return Object.values(info.state.subjects ?? {}).reduce((a: number, b: number) => a + b, 0)
}

export const consumerInfo = async (nc: NatsConnection, stream: string, durable: string): Promise<ConsumerInfo> =>
  (await jetstreamManager(nc)).consumers.info(stream, durable)

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Poll `probe` until it returns a value other than undefined, or fail with `what` after `timeoutMs`. */
export const eventually = async <T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}
