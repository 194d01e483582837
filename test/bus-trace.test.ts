import { Publisher } from "@vigil/bus"
import { type Event, HEADER_TRACEPARENT, STREAM_EVENTS } from "@vigil/events"
import {
  consumeTasks,
  eventually,
  readStream,
  screenHandler,
  startVigilBus,
  taskDraft,
  type VigilBus,
} from "@vigil/test"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const traceIdOf = (traceparent: string) => traceparent.split("-")[1]

describe("trace context", () => {
  let vb: VigilBus
  beforeAll(async () => {
    vb = await startVigilBus()
  })
  afterAll(() => vb?.stop())

  it("travels in the signed envelope and the traceparent header, from a traced publish to the handler's follow-up", async () => {
    const gateway = await vb.bus("gateway")
    const dlp = await vb.bus("dlp")
    await consumeTasks(dlp, screenHandler())
    // The gateway publishes inside a span and sets no trace itself: the publisher takes it from the span.
    const published = await gateway.run(
      Effect.gen(function* () {
        const p = yield* Publisher
        return yield* p.publish(taskDraft("traced"))
      }).pipe(Effect.withSpan("gateway.submit")),
    )
    const input = published.event as Event<"task.submitted">
    expect(input.trace).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    const stored = await eventually("the follow-up", async () => {
      const msgs = await readStream(vb.admin, STREAM_EVENTS, "vigil.ev.traced.>")
      return msgs.length === 2 ? msgs : undefined
    })
    const [first, second] = stored
    expect(first?.headers?.get(HEADER_TRACEPARENT)).toBe(input.trace)
    const followUp = JSON.parse(new TextDecoder().decode(second?.data)) as Event
    expect(followUp.type).toBe("prompt.screened")
    expect(followUp.causation).toBe(input.id)
    expect(traceIdOf(followUp.trace)).toBe(traceIdOf(input.trace))
    expect(traceIdOf(second?.headers?.get(HEADER_TRACEPARENT) ?? "")).toBe(traceIdOf(input.trace))
  })

  it("an untraced publish carries no trace context", async () => {
    const gateway = await vb.bus("gateway")
    const published = await gateway.run(Effect.flatMap(Publisher, (p) => p.publish(taskDraft("untraced"))))
    expect(published.event.trace).toBe("")
  })
})
