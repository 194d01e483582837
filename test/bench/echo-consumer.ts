// The policy benchmark's floor: a process that answers each `intent.proposed` on the same bus path the policy
// service uses (durable pull consumer, explicit ack, acked JetStream publish of the answer through libs/bus
// `ackedPublisher`, the Publisher's transport), doing nothing else — no verification, no decision, no signature.
// `node test/bench/echo-consumer.ts <url> <admin seed> <durable>`; prints "ready" once consuming. Run by
// test/bench/policy.ts only.
import { jetstream } from "@nats-io/jetstream"
import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import { ackedPublisher } from "@vigil/bus"
import { inboxPrefix, STREAM_EVENTS } from "@vigil/events"

const [url, seed, durable] = process.argv.slice(2)
if (url === undefined || seed === undefined || durable === undefined) {
  console.error("usage: echo-consumer.ts <url> <admin seed> <durable>")
  process.exit(2)
}
const nc = await connect({
  servers: url,
  inboxPrefix: inboxPrefix("admin"),
  authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
})
const js = jetstream(nc, { checkAPI: false })
const acked = ackedPublisher(nc, inboxPrefix("admin"), 5_000)
const consumer = await js.consumers.get(STREAM_EVENTS, durable)
const messages = await consumer.consume({ max_messages: 256 })
process.once("SIGTERM", () => {
  void messages.close().then(() => nc.close().then(() => process.exit(0)))
})
console.log("ready")
for await (const m of messages) {
  // The intent's id is its Nats-Msg-Id: the answer names it without parsing the event.
  const id = m.headers?.get("Nats-Msg-Id") ?? ""
  const session = m.subject.split(".")[2] ?? "echo"
  const answer = Buffer.from(JSON.stringify({ data: { intent: id } }))
  acked.send(`vigil.ev.${session}.decision.made`, answer, { msgId: `echo:${id}` }, (err) =>
    err === undefined ? m.ack() : m.nak(),
  )
}
