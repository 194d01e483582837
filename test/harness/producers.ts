import { jetstream, type PubAck } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import {
  type Draft,
  type Event,
  type EventType,
  encodeEvent,
  eventSubject,
  type Principal,
  signEvent,
} from "@vigil/events"
import type { TestHome } from "./home.ts"
import type { NatsServer } from "./nats.ts"

/**
 * Publishes events into a test deployment as the services would: each principal over its own NATS user (so the
 * server's permissions apply) with JetStream acks and `Nats-Msg-Id` de-duplication. Connections are opened on first
 * use and closed by `close`.
 */
export interface Producers {
  /** Sign `draft` with the principal's key from the test home and publish it; resolves once stored. */
  publish<T extends EventType>(as: Principal, draft: Draft<T>): Promise<Event<T>>
  /** Publish an already-signed event as `as`; `msgID` other than the event id stores it a second time. */
  publishSigned(as: Principal, event: Event, msgID?: string): Promise<PubAck>
  close(): Promise<void>
}

export const producers = (server: NatsServer, th: TestHome): Producers => {
  const conns = new Map<Principal, Promise<NatsConnection>>()
  const connection = (as: Principal) => {
    let nc = conns.get(as)
    if (nc === undefined) {
      nc = server.connect(as)
      conns.set(as, nc)
    }
    return nc
  }
  const publishSigned = async (as: Principal, event: Event, msgID = event.id) =>
    jetstream(await connection(as), { checkAPI: false }).publish(
      eventSubject(event.session, event.type),
      encodeEvent(event),
      { msgID },
    )
  return {
    publish: async <T extends EventType>(as: Principal, draft: Draft<T>) => {
      const event = signEvent(th.keys[as], draft)
      await publishSigned(as, event as Event)
      return event
    },
    publishSigned,
    close: async () => {
      for (const nc of conns.values()) await (await nc).close()
      conns.clear()
    },
  }
}
