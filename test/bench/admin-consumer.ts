// What the benchmarks' stand-in processes (the policy echo, the audit floor) open to answer like a service: an admin
// connection under the admin's own inbox prefix, the Publisher's acked publish transport, and a pull consumer bound
// to a durable of VIGIL_EVENTS the benchmark created.
import { jetstream } from "@nats-io/jetstream"
import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import { ackedPublisher } from "@vigil/bus"
import { inboxPrefix, STREAM_EVENTS } from "@vigil/events"

export const openAdminConsumer = async (
  url: string,
  seed: string,
  durable: string,
  opts: { readonly maxMessages: number; readonly ackTimeoutMs: number },
) => {
  const nc = await connect({
    servers: url,
    inboxPrefix: inboxPrefix("admin"),
    authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
  })
  const acked = ackedPublisher(nc, inboxPrefix("admin"), opts.ackTimeoutMs)
  const consumer = await jetstream(nc, { checkAPI: false }).consumers.get(STREAM_EVENTS, durable)
  const messages = await consumer.consume({ max_messages: opts.maxMessages })
  return { nc, acked, messages }
}
