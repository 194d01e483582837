import { join } from "node:path"
import { jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { provision } from "@vigil/bus"
import {
  AUDITOR_DURABLE,
  type Event,
  eventHash,
  eventSubject,
  STREAM_EVENTS,
  signEvent,
  verifyEvent,
} from "@vigil/events"
import {
  consumerInfo,
  countStored,
  eventually,
  type NatsServer,
  type Producers,
  prepareHome,
  producers,
  readStream,
  type ServiceProcess,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { TileLog } from "@vigil/tlog"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * Threshold alerts end to end on a real bus with a real auditor process: a burst of denied egress in one session
 * raises exactly one signed `alert.raised`, a restart with every event redelivered raises nothing again, an alert
 * window that spans a restart still fires, and an event stored twice under different stream sequences is one leaf
 * plus a `duplicate-event` alert.
 */

describe("auditor threshold alerts", () => {
  let server: NatsServer
  let th: TestHome
  let admin: NatsConnection
  let auditor: ServiceProcess
  let producer: Producers
  const cleanup: Array<() => Promise<unknown> | unknown> = []
  const env = { VIGIL_CHECKPOINT_MS: "200" }

  beforeAll(async () => {
    server = await startNats({ secure: true })
    cleanup.push(() => server.stop())
    th = await prepareHome(server)
    cleanup.push(() => th.remove())
    admin = await server.connect("admin")
    cleanup.push(() => admin.close())
    producer = producers(server, th)
    cleanup.push(() => producer.close())
    auditor = await startService("auditor", th, { env })
    cleanup.push(() => auditor.stop())
  })
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  const publishAs = (user: "gateway" | "inference" | "policy", event: Event, msgID = event.id) =>
    producer.publishSigned(user, event, msgID)

  /** One net.fetch intent (inference) and the policy's deny of it; returns the decision. */
  const deniedFetch = async (session: string, i: number) => {
    const intent = signEvent(th.keys.inference, {
      type: "intent.proposed",
      session,
      correlation: `task_${session}`,
      data: {
        tool: "net.fetch",
        args: { url: `https://paste.example/upload/${i}`, method: "POST" },
        reason: "send the summary to the paste site the user mentioned",
        step: i,
      },
    })
    await publishAs("inference", intent)
    const decision = signEvent(th.keys.policy, {
      type: "decision.made",
      session,
      correlation: `task_${session}`,
      causation: intent.id,
      data: {
        intent: intent.id,
        intentHash: eventHash(intent),
        effect: "deny",
        rules: ["egress-allowlist"],
        explanation: "paste.example is not on the egress allowlist",
        obligations: [],
        bundle: "c".repeat(64),
        dataClass: "internal",
      },
    })
    await publishAs("policy", decision)
    return decision
  }

  /** Every alert.raised of a session on the bus, verified against the key manifest. */
  const alertsOf = async (session: string) => {
    const msgs = await readStream(admin, STREAM_EVENTS, eventSubject(session, "alert.raised"))
    return msgs.map((m) => {
      const v = verifyEvent(m.data, { keys: th.chain, maxBytes: 1 << 20 })
      if (!v.ok) throw new Error(`alert does not verify: ${v.reason} ${v.detail}`)
      expect(v.key.principal).toBe("auditor")
      return v.event as Event<"alert.raised">
    })
  }

  /** The auditor has handled everything stored so far. */
  const drained = () =>
    eventually(
      "the auditor durable to drain",
      async () => {
        const stored = await countStored(admin, STREAM_EVENTS)
        const ci = await consumerInfo(admin, STREAM_EVENTS, AUDITOR_DURABLE)
        return ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq >= stored ? ci : undefined
      },
      20_000,
      100,
    )

  it("raises one signed denied-egress-burst alert for > 3 denied net.fetch decisions in a minute", async () => {
    const decisions = []
    for (let i = 0; i < 4; i++) decisions.push(await deniedFetch("sess_burst", i))
    // Three denials in another session are below the threshold.
    for (let i = 0; i < 3; i++) await deniedFetch("sess_calm", i)
    const alerts = await eventually("the burst alert", async () => {
      const a = await alertsOf("sess_burst")
      return a.length > 0 ? a : undefined
    })
    await drained()
    expect(await alertsOf("sess_burst")).toHaveLength(1)
    expect(await alertsOf("sess_calm")).toHaveLength(0)
    const alert = alerts[0] as Event<"alert.raised">
    expect(alert.source).toBe("auditor")
    expect(alert.data.rule).toBe("denied-egress-burst")
    expect(alert.data.severity).toBe("high")
    expect(alert.data.evidence).toEqual(decisions.map((d) => d.id))
    expect(alert.causation).toBe(decisions[3]?.id)
  })

  it("raises nothing again when every event is redelivered after a restart, and keeps windows across it", async () => {
    // Half a burst before the restart.
    const before = [await deniedFetch("sess_span", 0), await deniedFetch("sess_span", 1)]
    await drained()
    expect(await auditor.stop()).toBe(0)
    // The durable is recreated from the start of the stream: the restarted auditor gets every event again.
    const jsm = await jetstreamManager(admin)
    await jsm.consumers.delete(STREAM_EVENTS, AUDITOR_DURABLE)
    await Effect.runPromise(provision(admin))
    // Every event stored so far comes again (how many depends on how many checkpoints the machine's pace allowed).
    const pending = (await consumerInfo(admin, STREAM_EVENTS, AUDITOR_DURABLE)).num_pending
    expect(pending).toBeGreaterThan(5)
    auditor = await startService("auditor", th, { env: { ...env, VIGIL_LOG_LEVEL: "info" } })
    await drained()
    // The log lines reach this process through a pipe after the acks reach the server: wait for them, then count.
    const redeliveredCount = () =>
      auditor
        .output()
        .split("\n")
        .filter((l) => l.includes("redelivered events already in the log"))
        .reduce((n, l) => n + Number((JSON.parse(l) as { count: number }).count), 0)
    const redelivered = await eventually(
      "every redelivery logged",
      async () => (redeliveredCount() >= pending ? redeliveredCount() : undefined),
      5_000,
      50,
    ).catch(() => redeliveredCount())
    expect(redelivered).toBe(pending)
    expect(await alertsOf("sess_burst")).toHaveLength(1)
    expect(await alertsOf("sess_span")).toHaveLength(0)

    // The other half after the restart: the window was rebuilt from the log, so the burst is seen whole.
    const after = [await deniedFetch("sess_span", 2), await deniedFetch("sess_span", 3)]
    const span = await eventually("the alert of the burst spanning the restart", async () => {
      const a = await alertsOf("sess_span")
      return a.length > 0 ? a : undefined
    })
    await drained()
    expect(await alertsOf("sess_span")).toHaveLength(1)
    expect(span[0]?.data.evidence).toEqual([...before, ...after].map((d) => d.id))
    expect(await alertsOf("sess_burst")).toHaveLength(1)
  })

  it("does not append an event stored again under a new stream sequence, and raises duplicate-event", async () => {
    const event = signEvent(th.keys.gateway, {
      type: "task.submitted",
      session: "sess_dup",
      data: { channel: "cli", workspace: "/home/ana", promptChars: 12 },
      blobs: { prompt: { sha256: "d".repeat(64), size: 12, mediaType: "text/plain" } },
    })
    const first = await publishAs("gateway", event)
    // The same signed bytes under another Nats-Msg-Id: JetStream's de-duplication does not catch it.
    const second = await publishAs("gateway", event, `again-${event.id}`)
    expect(second.duplicate).toBe(false)
    expect(second.seq).toBeGreaterThan(first.seq)
    const alerts = await eventually("the duplicate-event alert", async () => {
      const a = await alertsOf("sess_dup")
      return a.length > 0 ? a : undefined
    })
    await drained()
    expect(await alertsOf("sess_dup")).toHaveLength(1)
    const alert = alerts[0] as Event<"alert.raised">
    expect(alert.data.rule).toBe("duplicate-event")
    expect(alert.data.evidence).toEqual([event.id])
    expect(alert.causation).toBe(event.id)
    expect(alert.data.details).toMatchObject({ streamSeq: second.seq })

    // One leaf for the event, read back from the log on disk.
    expect(await auditor.stop()).toBe(0)
    const log = TileLog.open(join(th.home.data("auditor"), "log"))
    try {
      const ids = log.entries(0, log.size).map((b) => (JSON.parse(Buffer.from(b).toString("utf8")) as Event).id)
      expect(ids.filter((id) => id === event.id)).toHaveLength(1)
      expect(ids.indexOf(event.id)).toBe((alert.data.details as { firstIndex: number }).firstIndex)
      expect(new Set(ids).size).toBe(ids.length)
    } finally {
      log.close()
    }
  })
})
