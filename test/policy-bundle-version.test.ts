import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { nodeEd25519 } from "@vigil/crypto"
import { type Event, healthSubject, KV_POLICY, POLICY_BUNDLE_KEY, STREAM_EVENTS } from "@vigil/events"
import { KeyStore, ROOT_KEY_NAME } from "@vigil/keys"
import {
  bundleSigningBytes,
  publishBundle,
  type SignedBundle,
  signedBundleFrom,
  storedBundleVersion,
} from "@vigil/policy"
import {
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
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const GRANTED = "/home/ana/Documents"

/**
 * Bundle versions end to end (ADR 0016): numbering from the bus, hot reloads that only go forward, a replayed
 * root-signed older bundle refused with an alert, and a restart that does not trust whatever the bucket's bundle key
 * holds. The steps share one bus and one policy service and run in order.
 */
describe("policy bundle versions", () => {
  let server: NatsServer
  let th: TestHome
  let policy: ServiceProcess | undefined
  let admin: NatsConnection
  let producer: Producers
  let v1: SignedBundle
  let v2: SignedBundle

  const start = async () => {
    policy = await startService("policy", th, { env: { VIGIL_GRANTED_FOLDERS: GRANTED } })
  }
  const restart = async () => {
    await policy?.stop()
    policy = undefined
    await start()
  }
  /** The bundle digest a fresh decision names. */
  const decidedBundle = async (session: string): Promise<string> => {
    const i = await producer.publish("inference", {
      type: "intent.proposed",
      session,
      data: { tool: "fs.read", args: { path: `${GRANTED}/notes.txt` }, reason: "the user asked", step: 0 },
    })
    const d = await eventually(
      `a decision for ${i.id}`,
      async () =>
        (await readStream(admin, STREAM_EVENTS, `vigil.ev.${session}.decision.made`))
          .map((m) => m.json<Event<"decision.made">>())
          .find((x) => x.data.intent === i.id),
      20_000,
      200,
    )
    return d.data.bundle
  }
  /** The policy-bundle alerts raised so far with `rule`, oldest first. */
  const alerts = async (rule: string) =>
    (await readStream(admin, STREAM_EVENTS, "vigil.ev.policy.alert.raised"))
      .map((m) => m.json<Event<"alert.raised">>())
      .filter((a) => a.data.rule === rule)
  const alertFor = (what: string, rule: string, match: (a: Event<"alert.raised">) => boolean) =>
    eventually(what, async () => (await alerts(rule)).find(match), 20_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\npolicy service output:\n${policy?.output().slice(-4000)}`)
    })
  const rootSeed = () =>
    Effect.runPromise(
      KeyStore.use((ks) => ks.load(ROOT_KEY_NAME)).pipe(Effect.provide(KeyStore.layerFile(th.home.keys))),
    )
  /** The next heartbeat of the running policy process. */
  const heartbeat = async (): Promise<Record<string, unknown>> => {
    const sub = admin.subscribe(healthSubject("policy"))
    const timer = setTimeout(() => sub.unsubscribe(), 10_000)
    try {
      for await (const m of sub) {
        const h = m.json<Record<string, unknown>>()
        if (h.pid === policy?.pid) return h
      }
      throw new Error("no policy heartbeat")
    } finally {
      clearTimeout(timer)
      sub.unsubscribe()
    }
  }

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    admin = await server.connect("admin")
    producer = producers(server, th)
  }, 60_000)
  afterAll(async () => {
    await policy?.stop()
    await producer?.close()
    await admin?.close()
    await server?.stop()
    th?.remove()
  })

  it("numbers bundles from the bus: a stored bundle signed before versions counts as none, with a note", async () => {
    // What an existing home's bucket holds after an upgrade: a root-signed bundle without a version.
    const { version: _v, sig: _s, ...old } = await Effect.runPromise(signedBundleFrom(th.home, null))
    const sig = Buffer.from(nodeEd25519.sign(bundleSigningBytes(old), await rootSeed())).toString("base64url")
    await (await new Kvm(admin).open(KV_POLICY)).put(POLICY_BUNDLE_KEY, JSON.stringify({ ...old, sig }))

    const notes: string[] = []
    v1 = await Effect.runPromise(signedBundleFrom(th.home, null, { bus: admin, warn: (l) => notes.push(l) }))
    expect(v1.version).toBe(1)
    expect(notes.join("\n")).toMatch(/revision 1 \(schema: bundle has no version/)
    await publishBundle(admin, v1)
    await start()
    // The unversioned revision below it is no reason to refuse the latest: v1 is in force, no alert.
    expect(await heartbeat()).toMatchObject({ bundle: v1.digest, bundleVersion: 1 })
    expect(await decidedBundle("v-start")).toBe(v1.digest)
    expect(await alerts("policy-bundle-refused")).toEqual([])
  })

  it("a hot reload takes the next version", async () => {
    v2 = await Effect.runPromise(signedBundleFrom(th.home, "business", { bus: admin, warn: () => undefined }))
    expect(v2.version).toBe(2)
    expect(v2.digest).not.toBe(v1.digest)
    await publishBundle(admin, v2)
    await eventually("v2 in force", async () => ((await decidedBundle("v-reload")) === v2.digest ? true : undefined))
    expect(await heartbeat()).toMatchObject({ bundle: v2.digest, bundleVersion: 2 })
  })

  it("refuses a replayed, genuinely root-signed v1 (stored and announced): alert, v2 keeps deciding", async () => {
    await publishBundle(admin, v1)
    const alert = await alertFor(
      "a rollback alert",
      "policy-bundle-rollback",
      (a) => a.data.details?.source === "announcement",
    )
    expect(alert.source).toBe("policy")
    expect(alert.data.severity).toBe("high")
    expect(alert.data.details).toMatchObject({
      offeredVersion: 1,
      offeredDigest: v1.digest,
      activeVersion: 2,
      activeDigest: v2.digest,
    })
    expect(await decidedBundle("v-replay")).toBe(v2.digest)
    expect(await heartbeat()).toMatchObject({ bundle: v2.digest, bundleVersion: 2 })
  })

  it("at start, does not trust the replayed v1 the bucket now holds: keeps v2 and alerts", async () => {
    await restart()
    const alert = await alertFor(
      "a rollback alert at start",
      "policy-bundle-rollback",
      (a) => a.data.details?.source === "stored",
    )
    expect(alert.data.details).toMatchObject({ offeredVersion: 1, activeVersion: 2, activeDigest: v2.digest })
    expect(await heartbeat()).toMatchObject({ bundle: v2.digest, bundleVersion: 2 })
    expect(await decidedBundle("v-restart")).toBe(v2.digest)
  })

  it("at start, junk under the bundle key: comes up with the last good bundle (v2) from the bucket's history and alerts", async () => {
    const kv = await new Kvm(admin).open(KV_POLICY)
    const junk = await kv.put(POLICY_BUNDLE_KEY, "{ not a bundle")
    await restart()
    const alert = await alertFor(
      "a refused-bundle alert at start",
      "policy-bundle-refused",
      (a) => a.data.details?.source === "stored",
    )
    expect(alert.data.severity).toBe("high")
    expect(alert.data.details).toMatchObject({ reason: "schema", active: v2.digest, activeVersion: 2, revision: junk })
    expect(policy?.output()).toMatch(/kept the last good policy bundle: version 2/)
    expect(await heartbeat()).toMatchObject({ bundle: v2.digest, bundleVersion: 2 })
    expect(await decidedBundle("v-junk")).toBe(v2.digest)
    // The next bundle published is numbered past every stored one that verifies, junk or not on top.
    const rootPub = nodeEd25519.publicKey(await rootSeed())
    expect(await storedBundleVersion(admin, rootPub, () => undefined)).toBe(2)
  })
})
