// The policy benchmark's floor: a process that answers each `intent.proposed` on the same bus path the policy
// service uses (durable pull consumer, explicit ack, acked JetStream publish of the answer through libs/bus
// `ackedPublisher`, the Publisher's transport), doing nothing else — no verification, no decision, no signature.
// `node test/bench/echo-consumer.ts <url> <admin seed> <durable>`; prints "ready" once consuming. Run by
// test/bench/policy.ts only.
import { openAdminConsumer } from "./admin-consumer.ts"

const [url, seed, durable] = process.argv.slice(2)
if (url === undefined || seed === undefined || durable === undefined) {
  console.error("usage: echo-consumer.ts <url> <admin seed> <durable>")
  process.exit(2)
}
const { nc, acked, messages } = await openAdminConsumer(url, seed, durable, { maxMessages: 256, ackTimeoutMs: 5_000 })
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
