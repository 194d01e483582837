import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Publisher, type PublisherShape, StreamReader, type StreamReaderShape } from "@vigil/bus"
import { keyIdOf, nodeEd25519 } from "@vigil/crypto"
import {
  type Draft,
  derivedEventId,
  type Event,
  type EventType,
  eventHash,
  eventIdKey,
  KV_POLICY,
  kvStream,
  kvSubject,
  POLICY_BUNDLE_KEY,
  type Principal,
  type SigningKey,
  signEvent,
} from "@vigil/events"
import { packBundle, type SignedBundle, signBundle } from "@vigil/policy"
import { Duration, Effect, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { PolicyDecider, PolicySettings } from "./policy.ts"

/**
 * The policy service's decisions without a bus: {@link PolicyDecider} over an in-memory publisher (it signs what it
 * is given, as the real one does, and keeps it) and an in-memory stored history; DLP timeouts on the TestClock.
 * The same decider runs on the real bus in test/policy-e2e.test.ts.
 */

const POLICIES = fileURLToPath(new URL("../../../policies", import.meta.url))
const GRANTED = "/home/ana/Documents"
const ROOT = new Uint8Array(32).fill(7)
const CONTENTS = { default: packBundle(POLICIES, null), business: packBundle(POLICIES, "business") }
const bundle = (version: number, which: keyof typeof CONTENTS = "default"): SignedBundle =>
  signBundle(ROOT, CONTENTS[which], version)

const keyOf = (principal: Principal, fill: number): SigningKey => {
  const seed = new Uint8Array(32).fill(fill)
  const publicKey = nodeEd25519.publicKey(seed)
  return { principal, kid: keyIdOf(publicKey), seed, publicKey }
}
const KEYS = {
  inference: keyOf("inference", 1),
  dlp: keyOf("dlp", 2),
  gateway: keyOf("gateway", 3),
  ops: keyOf("ops", 4),
  policy: keyOf("policy", 5),
}

/** What the decider published (every call), and what is "stored": the history it reads back at start and on a recovered ask. */
interface World {
  readonly published: Array<Event>
  readonly history: Array<Event>
  readonly bundles: Array<SignedBundle | undefined>
}

const world = (history: ReadonlyArray<Event> = [], bundles: ReadonlyArray<SignedBundle> = [bundle(1)]): World => ({
  published: [],
  history: [...history],
  bundles: [...bundles],
})

const memoryPublisher = (w: World): PublisherShape => {
  const idKey = eventIdKey(KEYS.policy.seed)
  const publish = <T extends EventType>(draft: Draft<T>) =>
    Effect.sync(() => {
      const event = signEvent(KEYS.policy, draft)
      const duplicate = w.published.some((e) => e.id === event.id)
      // Every call is kept, a duplicate too: JetStream would store it once, but a second call is a second decision.
      w.published.push(event)
      return { event, seq: w.published.length, duplicate }
    })
  return {
    publish,
    publishSigned: (event) => Effect.sync(() => ({ event, seq: w.published.push(event), duplicate: false })),
    derivedId: (causeId, purpose, index) => derivedEventId(idKey, causeId, purpose, index),
  }
}

const memoryReader = (w: World): StreamReaderShape => ({
  events: (type, each, options = {}) =>
    Effect.sync(() => {
      const found = w.history.filter(
        (e) => e.type === type && (options.session === undefined || e.session === options.session),
      )
      for (const e of found) each(e as never)
      return found.length
    }),
  messages: (stream, subject) =>
    Effect.sync(() =>
      stream === kvStream(KV_POLICY) && subject === kvSubject(KV_POLICY, POLICY_BUNDLE_KEY)
        ? w.bundles.map((b, i) => ({
            seq: i + 1,
            subject,
            time: new Date(0),
            data: b === undefined ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(b)),
          }))
        : [],
    ),
  last: () => Effect.succeed(Option.none()),
  // The decider reads whole histories only: these would be a new dependency, and fail the test loudly.
  next: () => Effect.die(new Error("the policy decider does not walk a subject")),
  consumerAckFloor: () => Effect.die(new Error("the policy decider has no durable of its own to ask about")),
})

const deciderIn = (w: World) =>
  PolicyDecider.layer.pipe(
    Layer.provide(
      Layer.mergeAll(
        Layer.succeed(Publisher, Publisher.of(memoryPublisher(w))),
        Layer.succeed(StreamReader, StreamReader.of(memoryReader(w))),
        Layer.succeed(
          PolicySettings,
          PolicySettings.of({
            grantedFolders: [GRANTED],
            role: "staff",
            egressAllowlist: [],
            dlpTimeout: Duration.seconds(10),
            rootPublicKey: nodeEd25519.publicKey(ROOT),
          }),
        ),
      ),
    ),
  )

/** Run `f` with a decider started on `w` (its history read back, as at a service start). */
const withDecider = <A, E>(w: World, f: (d: PolicyDecider["Service"]) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    return yield* f(yield* PolicyDecider)
  }).pipe(Effect.provide(deciderIn(w)))

let n = 0
const intent = (session: string, tool: string, args: Record<string, unknown>): Event<"intent.proposed"> =>
  signEvent(KEYS.inference, {
    type: "intent.proposed",
    session,
    data: { tool, args, reason: `step ${n++}`, step: 0 } as Event<"intent.proposed">["data"],
  })
const fileIntent = (session: string, tool: "fs.read" | "fs.delete", path: string) => intent(session, tool, { path })
const consent = (i: Event<"intent.proposed">, scope: Event<"consent.granted">["data"]["scope"] = { kind: "once" }) =>
  signEvent(KEYS.gateway, {
    type: "consent.granted",
    session: i.session,
    data: { request: i.id, intent: i.id, scope },
  })

/** Hand an intent to the decider as the consumer does: with the hash of its canonical bytes. */
const decide = (d: PolicyDecider["Service"], i: Event<"intent.proposed">) => d.intent(i, eventHash(i))
const decisionsOf = (w: World, i: Event<"intent.proposed">) =>
  w.published.filter((e): e is Event<"decision.made"> => e.type === "decision.made" && e.data.intent === i.id)
const alerts = (w: World) => w.published.filter((e): e is Event<"alert.raised"> => e.type === "alert.raised")

describe("PolicyDecider", () => {
  it.effect("decides each intent once, bound to its hash: a deny outside the granted folders, an allow inside", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const outside = fileIntent("s1", "fs.read", "/home/ana/Finance/salaries-2026.xlsx")
        const inside = fileIntent("s1", "fs.read", `${GRANTED}/notes.txt`)
        yield* decide(d, outside)
        yield* decide(d, inside)
        // A redelivery of a decided intent publishes nothing more.
        yield* decide(d, outside)
        const [deny] = decisionsOf(w, outside)
        assert.strictEqual(decisionsOf(w, outside).length, 1)
        assert.strictEqual(deny?.data.effect, "deny")
        assert.strictEqual(deny?.data.intentHash, eventHash(outside))
        assert.strictEqual(deny?.causation, outside.id)
        assert.strictEqual(deny?.id, derivedEventId(eventIdKey(KEYS.policy.seed), outside.id, "policy"))
        assert.strictEqual(decisionsOf(w, inside)[0]?.data.effect, "allow")
      }),
    )
  })

  it.effect("asks before a delete; the user's consent gives the one final decision, naming it", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const del = fileIntent("s2", "fs.delete", `${GRANTED}/old-draft.txt`)
        yield* decide(d, del)
        assert.strictEqual(decisionsOf(w, del)[0]?.data.effect, "ask")
        const yes = consent(del)
        yield* d.granted(yes)
        const [, allow] = decisionsOf(w, del)
        assert.strictEqual(allow?.data.effect, "allow")
        assert.include(allow?.data.rules ?? [], `consent:${yes.id}`)
        assert.strictEqual(allow?.causation, yes.id)
        assert.strictEqual(allow?.data.intentHash, eventHash(del))
        // The ask is closed: a second consent for it finds no open ask (and no stored one), so nothing more.
        yield* d.granted(consent(del))
        assert.strictEqual(decisionsOf(w, del).length, 2)
      }),
    )
  })

  it.effect("a refused ask stays refused: a later consent decides nothing", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const del = fileIntent("s3", "fs.delete", `${GRANTED}/x.txt`)
        yield* decide(d, del)
        yield* d.denied(
          signEvent(KEYS.gateway, { type: "consent.denied", session: "s3", data: { request: del.id, intent: del.id } }),
        )
        yield* d.granted(consent(del))
        assert.deepStrictEqual(
          decisionsOf(w, del).map((x) => x.data.effect),
          ["ask"],
        )
      }),
    )
  })

  it.effect("a durable grant answers later asks in its scope until it is revoked", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const first = fileIntent("s4", "fs.delete", `${GRANTED}/tmp/a.txt`)
        yield* decide(d, first)
        const grant = consent(first, { kind: "durable", tool: "fs.delete", pathPrefix: `${GRANTED}/tmp` })
        yield* d.granted(grant)
        const second = fileIntent("s4", "fs.delete", `${GRANTED}/tmp/b.txt`)
        yield* decide(d, second)
        assert.strictEqual(decisionsOf(w, second)[0]?.data.effect, "allow")
        assert.include(decisionsOf(w, second)[0]?.data.rules ?? [], `grant:${grant.id}`)
        // Another session, or outside the folder: still asked.
        const elsewhere = fileIntent("s4", "fs.delete", `${GRANTED}/keep/c.txt`)
        const otherSession = fileIntent("s5", "fs.delete", `${GRANTED}/tmp/c.txt`)
        yield* decide(d, elsewhere)
        yield* decide(d, otherSession)
        assert.strictEqual(decisionsOf(w, elsewhere)[0]?.data.effect, "ask")
        assert.strictEqual(decisionsOf(w, otherSession)[0]?.data.effect, "ask")
        yield* d.revoked(signEvent(KEYS.gateway, { type: "consent.revoked", session: "s4", data: { grant: grant.id } }))
        const third = fileIntent("s4", "fs.delete", `${GRANTED}/tmp/d.txt`)
        yield* decide(d, third)
        assert.strictEqual(decisionsOf(w, third)[0]?.data.effect, "ask")
      }),
    )
  })

  it.effect("a grant expires at its `until` on the clock", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        yield* TestClock.setTime(Date.parse("2026-12-07T10:00:00Z"))
        const first = fileIntent("s6", "fs.delete", `${GRANTED}/a.txt`)
        yield* decide(d, first)
        yield* d.granted(consent(first, { kind: "durable", tool: "fs.delete", until: "2026-12-07T11:00:00.000Z" }))
        const before = fileIntent("s6", "fs.delete", `${GRANTED}/b.txt`)
        yield* decide(d, before)
        assert.strictEqual(decisionsOf(w, before)[0]?.data.effect, "allow")
        yield* TestClock.adjust(Duration.hours(1))
        const after = fileIntent("s6", "fs.delete", `${GRANTED}/c.txt`)
        yield* decide(d, after)
        assert.strictEqual(decisionsOf(w, after)[0]?.data.effect, "ask")
      }),
    )
  })

  it.effect("a contained session gets nothing but denies", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        yield* d.contained(
          signEvent(KEYS.ops, { type: "containment.ordered", session: "ops", data: { target: "s7", reason: "leak" } }),
        )
        const read = fileIntent("s7", "fs.read", `${GRANTED}/notes.txt`)
        yield* decide(d, read)
        const [deny] = decisionsOf(w, read)
        assert.strictEqual(deny?.data.effect, "deny")
        assert.deepStrictEqual(deny?.data.rules, ["containment"])
      }),
    )
  })

  it.effect("an egress intent waits for DLP's findings, and is denied when they do not come in time", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const fetch = intent("s8", "net.fetch", { url: "https://example.org/x" })
        yield* decide(d, fetch)
        assert.strictEqual(decisionsOf(w, fetch).length, 0)
        yield* TestClock.adjust(Duration.seconds(9))
        assert.strictEqual(decisionsOf(w, fetch).length, 0)
        yield* TestClock.adjust(Duration.seconds(1))
        const [deny] = decisionsOf(w, fetch)
        assert.strictEqual(deny?.data.effect, "deny")
        assert.deepStrictEqual(deny?.data.rules, ["dlp-timeout"])
        // Findings after the timeout change nothing.
        yield* d.screened(
          signEvent(KEYS.dlp, {
            type: "intent.screened",
            session: "s8",
            data: { intent: fetch.id, verdict: "clean", findings: [] },
          }),
        )
        assert.strictEqual(decisionsOf(w, fetch).length, 1)
      }),
    )
  })

  it.effect("findings in time decide the egress intent and cancel its timer", () => {
    const w = world()
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const fetch = intent("s9", "net.fetch", { url: "https://example.org/x" })
        yield* decide(d, fetch)
        yield* TestClock.adjust(Duration.seconds(2))
        yield* d.screened(
          signEvent(KEYS.dlp, {
            type: "intent.screened",
            session: "s9",
            data: { intent: fetch.id, verdict: "clean", findings: [] },
          }),
        )
        assert.strictEqual(decisionsOf(w, fetch).length, 1)
        assert.notInclude(decisionsOf(w, fetch)[0]?.data.rules ?? [], "dlp-timeout")
        yield* TestClock.adjust(Duration.seconds(60))
        assert.strictEqual(decisionsOf(w, fetch).length, 1)
      }),
    )
  })

  it.effect(
    "a bundle swap takes a higher version, refuses a rollback and a forgery with alerts, keeps deciding",
    () => {
      const w = world()
      return withDecider(w, (d) =>
        Effect.gen(function* () {
          const v1 = bundle(1)
          const v2 = bundle(2, "business")
          assert.strictEqual(d.health().bundleVersion, 1)
          yield* d.offerBundle(v2)
          assert.strictEqual(d.health().bundleVersion, 2)
          const read = fileIntent("s10", "fs.read", `${GRANTED}/notes.txt`)
          yield* decide(d, read)
          const digestV2 = decisionsOf(w, read)[0]?.data.bundle
          assert.strictEqual(digestV2, d.health().bundle)
          yield* d.offerBundle(v1)
          yield* d.offerBundle({
            ...v2,
            policies: { ...v2.policies, "x.cedar": "permit(principal, action, resource);" },
          })
          assert.deepStrictEqual(
            alerts(w).map((a) => a.data.rule),
            ["policy-bundle-rollback", "policy-bundle-refused"],
          )
          assert.strictEqual(d.health().bundleVersion, 2)
          const again = fileIntent("s10", "fs.read", `${GRANTED}/notes2.txt`)
          yield* decide(d, again)
          assert.strictEqual(decisionsOf(w, again)[0]?.data.bundle, digestV2)
        }),
      )
    },
  )

  it.effect("with no good bundle stored, every intent is denied (fail closed), and the refusal is alerted", () => {
    const w = world([], [])
    w.bundles.push({ ...bundle(1), sig: "AAAA" })
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const read = fileIntent("s11", "fs.read", `${GRANTED}/notes.txt`)
        yield* decide(d, read)
        assert.deepStrictEqual(decisionsOf(w, read)[0]?.data.rules, ["no-bundle"])
        assert.deepStrictEqual(
          alerts(w).map((a) => a.data.rule),
          ["policy-bundle-refused"],
        )
      }),
    )
  })

  it.effect("a restart replays grants, revocations and containments from the stored history", () => {
    const first = fileIntent("r1", "fs.delete", `${GRANTED}/tmp/a.txt`)
    const kept = consent(first, { kind: "durable", tool: "fs.delete", pathPrefix: `${GRANTED}/tmp` })
    const gone = consent(fileIntent("r2", "fs.delete", `${GRANTED}/a.txt`), { kind: "durable", tool: "fs.delete" })
    const history: Event[] = [
      kept,
      gone,
      signEvent(KEYS.gateway, { type: "consent.revoked", session: "r2", data: { grant: gone.id } }),
      signEvent(KEYS.ops, { type: "containment.ordered", session: "ops", data: { target: "r3", reason: "leak" } }),
    ]
    const w = world(history)
    return withDecider(w, (d) =>
      Effect.gen(function* () {
        const a = fileIntent("r1", "fs.delete", `${GRANTED}/tmp/b.txt`)
        const b = fileIntent("r2", "fs.delete", `${GRANTED}/b.txt`)
        const c = fileIntent("r3", "fs.read", `${GRANTED}/notes.txt`)
        for (const i of [a, b, c]) yield* decide(d, i)
        assert.include(decisionsOf(w, a)[0]?.data.rules ?? [], `grant:${kept.id}`)
        assert.strictEqual(decisionsOf(w, b)[0]?.data.effect, "ask")
        assert.deepStrictEqual(decisionsOf(w, c)[0]?.data.rules, ["containment"])
        // The grant redelivered after its revocation (another durable) does not come back.
        yield* d.granted(gone)
        const b2 = fileIntent("r2", "fs.delete", `${GRANTED}/c.txt`)
        yield* decide(d, b2)
        assert.strictEqual(decisionsOf(w, b2)[0]?.data.effect, "ask")
      }),
    )
  })

  it.effect("after a restart, a consent answers an ask an earlier run decided, once; never a final decision", () => {
    // The earlier run's ask, as stored.
    const del = fileIntent("r4", "fs.delete", `${GRANTED}/old.txt`)
    const earlier = world()
    return Effect.gen(function* () {
      yield* withDecider(earlier, (d) => decide(d, del))
      const [ask] = decisionsOf(earlier, del)
      assert.strictEqual(ask?.data.effect, "ask")
      const restarted = world([del, ...earlier.published])
      yield* withDecider(restarted, (d) =>
        Effect.gen(function* () {
          const yes = consent(del)
          yield* d.granted(yes)
          const [allow] = decisionsOf(restarted, del)
          assert.strictEqual(allow?.data.effect, "allow")
          assert.include(allow?.data.rules ?? [], `consent:${yes.id}`)
          assert.strictEqual(allow?.data.intentHash, eventHash(del))
        }),
      )
      // An intent whose stored decision is already final: a consent decides nothing.
      const read = fileIntent("r5", "fs.read", `${GRANTED}/n.txt`)
      const ran = world()
      yield* withDecider(ran, (d) => decide(d, read))
      const after = world([read, ...ran.published])
      yield* withDecider(after, (d) => d.granted(consent(read)))
      assert.strictEqual(decisionsOf(after, read).length, 0)
    })
  })
})
