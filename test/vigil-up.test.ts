import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Kvm } from "@nats-io/kv"
import { connect, nkeyAuthenticator } from "@nats-io/transport-node"
import {
  canonicalBytes,
  eventSubject,
  HEALTH_ALL,
  inboxPrefix,
  KV_KEYS,
  SERVICES,
  STREAM_EVENTS,
  verifyEvent,
} from "@vigil/events"
import {
  ensureDeploymentKeys,
  homeSigningKeys,
  KeyStore,
  type Manifest,
  manifestDigest,
  rotateSigningKey,
  signManifest,
} from "@vigil/keys"
import { isAlive } from "@vigil/runtime"
import { freePort, prepareHome, readStream, startNats } from "@vigil/test"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"

const REPO = resolve(import.meta.dirname, "..")
const CLI = join(REPO, "cli", "src", "main.ts")

interface Ready {
  event: "ready"
  nats: string
  natsPid: number | null
  services: Array<{ name: string; pid: number }>
  manifestVersion: number
}

const homes: string[] = []
const procs: ChildProcess[] = []
afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL")
  for (const h of homes) rmSync(h, { recursive: true, force: true })
})

/** `vigil up --json` as a user runs it; resolves with the ready line, or rejects with the output on early exit. */
const vigilUp = (home: string, port: number, auditPort = port + 1, extra: ReadonlyArray<string> = []) => {
  const args = ["up", "--json", "--home", home, "--port", String(port), "--audit-port", String(auditPort), ...extra]
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  })
  procs.push(child)
  let out = ""
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  const ready = new Promise<Ready>((resolveReady, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      for (const line of out.split("\n")) {
        if (line.startsWith("{") && line.includes('"event":"ready"')) resolveReady(JSON.parse(line) as Ready)
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    exited.then((code) => reject(new Error(`vigil up exited with ${code} before ready:\n${out}`)))
  })
  return { child, ready, exited, output: () => out }
}

/** One fresh heartbeat from each service, read as the ops user. */
const healthAll = async (url: string, home: string) => {
  const nc = await connect({
    servers: url,
    inboxPrefix: inboxPrefix("ops"),
    authenticator: nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(join(home, "nats", "ops.nk"), "utf8").trim()),
    ),
  })
  try {
    const seen = new Map<string, Record<string, unknown>>()
    const sub = nc.subscribe(HEALTH_ALL)
    const deadline = setTimeout(() => sub.unsubscribe(), 10_000)
    for await (const m of sub) {
      const h = m.json<Record<string, unknown>>()
      seen.set(h.service as string, h)
      if (seen.size === SERVICES.length) break
    }
    clearTimeout(deadline)
    return SERVICES.map((s) => seen.get(s))
  } finally {
    await nc.close()
  }
}

describe("vigil up", () => {
  it("brings up the embedded nats-server and six healthy services, and SIGTERM leaves no process behind", async () => {
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    const port = await freePort()
    const auditPort = await freePort()
    const run = vigilUp(home, port, auditPort)
    const ready = await run.ready
    expect(ready.nats).toBe(`nats://127.0.0.1:${port}`)
    expect(ready.natsPid).toBeGreaterThan(0)
    expect(ready.services.map((s) => s.name).sort()).toEqual([...SERVICES].sort())
    const pids = [ready.natsPid as number, ...ready.services.map((s) => s.pid)]
    for (const pid of pids) expect(isAlive(pid)).toBe(true)

    // A heartbeat from each service over the secured bus, readable by the ops user.
    const health = await healthAll(ready.nats, home)
    for (const [i, h] of health.entries()) {
      expect(h).toMatchObject({ service: SERVICES[i], ok: true, manifestVersion: 1 })
    }

    // The auditor's read-only HTTP answers on loopback (no events yet, so no checkpoint).
    const cp = await fetch(`http://127.0.0.1:${auditPort}/checkpoint`)
    expect(cp.status).toBe(404)
    expect(await cp.text()).toMatch(/no checkpoint/)

    run.child.kill("SIGTERM")
    expect(await run.exited).toBe(0)
    for (const pid of pids) expect(isAlive(pid), `pid ${pid} still alive after SIGTERM`).toBe(false)

    // A second start on the same home keeps the keys: the manifest stays at version 1, and it stops cleanly again.
    const again = vigilUp(home, port, auditPort)
    const ready2 = await again.ready
    expect(ready2.manifestVersion).toBe(1)
    again.child.kill("SIGINT")
    expect(await again.exited).toBe(0)
    for (const pid of [ready2.natsPid as number, ...ready2.services.map((s) => s.pid)]) expect(isAlive(pid)).toBe(false)
  }, 120_000)

  it("services and the embedded nats-server stop by themselves when the supervisor is killed with SIGKILL", async () => {
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    const run = vigilUp(home, await freePort(), await freePort())
    const ready = await run.ready
    run.child.kill("SIGKILL")
    await run.exited
    const pids = ready.services.map((s) => s.pid)
    expect(ready.natsPid).not.toBeNull()
    const all = [...pids, ready.natsPid as number]
    const deadline = Date.now() + 15_000
    while (all.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    for (const pid of pids) expect(isAlive(pid), `service pid ${pid} outlived its supervisor`).toBe(false)
    const natsLeft = isAlive(ready.natsPid as number)
    if (natsLeft) process.kill(ready.natsPid as number, "SIGTERM")
    expect(natsLeft, "the embedded nats-server outlived its supervisor").toBe(false)
  }, 60_000)

  it("replaces junk squatting a key manifest version and refuses a different root-signed one, alerting as ops", async () => {
    // An existing Vigil bus (`--nats`) with its users, streams and buckets, and a home whose manifest is at v2 (the
    // dlp key rotated) of which the bus holds v1 already, as a previous `vigil up` left it.
    const server = await startNats({ secure: true })
    const th = await prepareHome(server)
    homes.push(th.home.root)
    await Effect.runPromise(rotateSigningKey("dlp").pipe(Effect.provide(KeyStore.layerFile(th.home.keys))))
    const { chain } = await Effect.runPromise(homeSigningKeys(th.home.keys))
    const [v1, v2] = chain.manifests as [Manifest, Manifest]
    const admin = await server.connect("admin")
    try {
      const kv = await new Kvm(admin).open(KV_KEYS)
      await kv.put("manifest.1", canonicalBytes(v1))
      const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex")
      const alerts = async () =>
        (await readStream(admin, STREAM_EVENTS, eventSubject("ops", "alert.raised"))).map((m) => {
          const v = verifyEvent(m.data, { keys: chain, maxBytes: 1 << 20, subject: m.subject })
          if (!v.ok || v.event.type !== "alert.raised") throw new Error(`alert does not verify: ${JSON.stringify(v)}`)
          return v.event
        })
      const start = async () => vigilUp(th.home.root, await freePort(), await freePort(), ["--nats", server.url])

      // 1. Another v2 signed by the same root key (a fork of the chain): not overwritten, up refuses naming both
      //    digests, one ops alert (v1, identical, raises none).
      const { root } = await Effect.runPromise(
        ensureDeploymentKeys([]).pipe(Effect.provide(KeyStore.layerFile(th.home.keys))),
      )
      const { rootKid: _k, sig: _s, ...unsigned } = v2
      const fork = signManifest(root.seed, {
        ...unsigned,
        issuedAt: new Date(Date.parse(v2.issuedAt) + 1).toISOString(),
      })
      await kv.put("manifest.2", JSON.stringify(fork))
      const refused = await start()
      await expect(refused.ready).rejects.toThrow(/key manifest conflict: vigil_keys manifest\.2/)
      expect(await refused.exited).toBe(1)
      expect(refused.output()).toContain(`sha256 ${manifestDigest(fork)}`)
      expect(refused.output()).toContain(`sha256 ${manifestDigest(v2)}`)
      expect((await kv.get("manifest.2"))!.json()).toEqual(fork)
      expect(await alerts()).toEqual([
        expect.objectContaining({
          source: "ops",
          session: "ops",
          data: expect.objectContaining({
            rule: "key-manifest-conflict",
            severity: "critical",
            details: expect.objectContaining({
              key: "manifest.2",
              action: "refused",
              storedSha256: manifestDigest(fork),
              manifestSha256: manifestDigest(v2),
            }),
          }),
        }),
      ])

      // 2. Junk that is no root-signed manifest squats v2: replaced by the real v2 (with an alert), and Vigil comes up.
      await kv.put("manifest.2", "junk")
      const run = await start()
      const ready = await run.ready
      expect(ready.manifestVersion).toBe(2)
      const warnings = run
        .output()
        .split("\n")
        .filter((l) => l.includes('"event":"warning"'))
      expect(warnings).toEqual([expect.stringMatching(/replaced a bad entry under vigil_keys manifest\.2/)])
      expect((await kv.get("manifest.1"))!.value).toEqual(canonicalBytes(v1))
      expect((await kv.get("manifest.2"))!.value).toEqual(canonicalBytes(v2))
      const all = await alerts()
      expect(all).toHaveLength(2)
      expect(all[1]).toMatchObject({
        source: "ops",
        data: {
          rule: "key-manifest-conflict",
          severity: "critical",
          details: { key: "manifest.2", action: "replaced", stored: "not JSON", storedSha256: sha("junk") },
        },
      })
      run.child.kill("SIGTERM")
      expect(await run.exited).toBe(0)
    } finally {
      await admin.close()
      await server.stop()
    }
  }, 120_000)

  it("refuses a port held by a server that is not Vigil's bus", async () => {
    const foreign = await startNats()
    const home = mkdtempSync(join(tmpdir(), "vigil-up-"))
    homes.push(home)
    try {
      const run = vigilUp(home, foreign.port)
      await expect(run.ready).rejects.toThrow(/not this Vigil's bus/)
      expect(await run.exited).not.toBe(0)
    } finally {
      await foreign.stop()
    }
  }, 60_000)
})
