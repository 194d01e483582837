import { spawnSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Kvm } from "@nats-io/kv"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { HEARTBEAT_MS, provision } from "@vigil/bus"
import { HEALTH_ALL, KEYS_MANIFEST_SUBJECT, KV_KEYS, SERVICES, type Service } from "@vigil/events"
import { ensureManifest, KeyStore, type ManifestChain } from "@vigil/keys"
import { renderServerConf } from "@vigil/natsconf"
import { type Child, ensureHome, type Home, spawnChild, stopChild, tcpReachable, waitFor } from "@vigil/runtime"
import { Data, Deferred, Effect, type Scope } from "effect"
import { connectRole, ensureNatsUsers } from "./creds.ts"
import { publishBundle, signedBundleFrom } from "./policy-bundle.ts"

export class UpError extends Data.TaggedError("UpError")<{ readonly message: string; readonly cause?: unknown }> {}

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)))
export const DEFAULT_PORT = 4290
export const DEFAULT_AUDIT_PORT = 4380

export interface UpOptions {
  readonly home: Home
  /** An existing Vigil deployment to use instead of the embedded server (its users must be this home's). */
  readonly natsUrl?: string
  /** Port of the embedded nats-server (loopback only). */
  readonly port: number
  readonly workspace: string
  /** Loopback port of the auditor's read-only HTTP (checkpoint, tiles, proofs). */
  readonly auditPort: number
  /** Policy role bundle (a folder under policies/roles/), or null for the default set alone. */
  readonly role?: string | null
  readonly json: boolean
  readonly out: (line: string) => void
}

export interface RunningStack {
  readonly natsUrl: string
  readonly embeddedNats: boolean
  readonly services: ReadonlyArray<{ readonly name: Service; readonly pid: number }>
  readonly manifestVersion: number
  readonly policyBundle: string
  readonly natsPid?: number
  /** Completes with the reason when a service dies after start-up; the stack is then taken down. */
  readonly crashed: Effect.Effect<UpError>
}

const fail = (message: string, cause?: unknown) => new UpError({ message, ...(cause === undefined ? {} : { cause }) })

const connectAs = (url: string, home: Home, role: string) =>
  Effect.tryPromise({
    try: () => connectRole(url, home, role, { name: `vigil-up-${role}`, maxReconnectAttempts: -1 }),
    catch: (cause) => fail(`cannot connect to ${url} as ${role}`, cause),
  })

/** A child process that is stopped (SIGTERM, then SIGKILL) when the scope closes. */
const scopedChild = (make: () => Child, graceMs: number) =>
  Effect.acquireRelease(Effect.sync(make), (c) => Effect.promise(() => stopChild(c, graceMs)))

const tail = (text: string, lines = 15) => text.split("\n").slice(-lines).join("\n")

const hasSetpriv = (): boolean =>
  process.platform === "linux" && spawnSync("setpriv", ["--help"], { stdio: "ignore" }).status === 0

/**
 * Embedded bus: Vigil's own nats-server with Vigil's users and permissions, on its own loopback port and data dir.
 * A server already answering there is used only if it accepts this home's admin credentials — a plain server on
 * that port is not Vigil's bus (it lacks the users and permissions the security model relies on).
 */
const startBus = (opts: UpOptions) =>
  Effect.gen(function* () {
    const { home } = opts
    if (opts.natsUrl !== undefined) return { url: opts.natsUrl, embedded: false as const }
    const url = `nats://127.0.0.1:${opts.port}`
    if (yield* Effect.promise(() => tcpReachable("127.0.0.1", opts.port))) {
      // Ours only if it refuses anonymous clients (Vigil's users and permissions are in force) and accepts this
      // home's admin: a plain server accepts anyone, including our admin credentials.
      const anonymous = yield* Effect.tryPromise(() =>
        connect({ servers: url, reconnect: false, timeout: 2_000 }),
      ).pipe(Effect.option)
      if (anonymous._tag === "Some") yield* Effect.promise(() => anonymous.value.close())
      const probe = yield* connectAs(url, home, "admin").pipe(Effect.option)
      if (anonymous._tag === "Some" || probe._tag === "None") {
        if (probe._tag === "Some") yield* Effect.promise(() => probe.value.close())
        return yield* fail(
          `127.0.0.1:${opts.port} is taken by a server that is not this Vigil's bus (${anonymous._tag === "Some" ? "it accepts anonymous clients" : "it refuses this home's credentials"}). ` +
            "Stop it, choose another --port, or point --nats at a Vigil deployment.",
        )
      }
      yield* Effect.promise(() => probe.value.close())
      return { url, embedded: false as const }
    }
    const users = ensureNatsUsers(home)
    const confPath = join(home.nats, "server.conf")
    const conf = renderServerConf({
      port: opts.port,
      storeDir: home.jetstream,
      serverName: "vigil-local",
      users: Object.fromEntries(Object.entries(users).map(([r, u]) => [r, u.publicKey])),
    })
    writeFileSync(confPath, conf, { mode: 0o600 })
    let log = ""
    const server = process.env.VIGIL_NATS_SERVER ?? "nats-server"
    // nats-server cannot watch its parent the way Vigil's services do. util-linux's setpriv sets the kernel's
    // parent-death signal and then execs the server (same PID), so a SIGKILLed `vigil up` takes its bus with it
    // instead of leaving it holding the port and the store. Without setpriv (not Linux) it is started plainly.
    const launcher = hasSetpriv()
      ? { command: "setpriv", args: ["--pdeathsig", "TERM", "--", server, "-c", confPath] }
      : { command: server, args: ["-c", confPath] }
    const child = yield* scopedChild(
      () =>
        spawnChild({
          name: "nats-server",
          ...launcher,
          logFile: join(home.logs, "nats.log"),
          onLine: (l) => {
            log += `${l}\n`
          },
        }),
      10_000,
    )
    writeFileSync(join(home.run, "nats.pid"), `${child.pid}\n`)
    yield* Effect.tryPromise({
      try: () =>
        Promise.race([
          waitFor("nats-server to accept connections", () => tcpReachable("127.0.0.1", opts.port), 15_000),
          child.exited.then(({ code }) => {
            throw new Error(`nats-server exited with ${code}:\n${tail(log)}`)
          }),
        ]),
      catch: (cause) => fail(`embedded nats-server did not start: ${cause instanceof Error ? cause.message : cause}`),
    })
    return { url, embedded: true as const, pid: child.pid }
  })

/** Publish every manifest version to the KV bucket services follow (idempotent: an existing version is skipped). */
const publishManifests = (nc: NatsConnection, chain: ManifestChain) =>
  Effect.tryPromise({
    try: async () => {
      const kv = await new Kvm(nc).open(KV_KEYS)
      for (const m of chain.manifests) {
        const key = `manifest.${m.version}`
        const existing = await kv.get(key)
        if (existing === null || existing.operation !== "PUT") await kv.put(key, JSON.stringify(m))
        // A plain publish (no reply subject): running services append it to their verified chain.
        nc.publish(KEYS_MANIFEST_SUBJECT, JSON.stringify(m))
      }
      await nc.flush()
    },
    catch: (cause) => fail("cannot publish the key manifest to the bus", cause),
  })

/** Latest heartbeat of each service, from `vigil.health.*`. */
const watchHealth = (nc: NatsConnection) => {
  const latest = new Map<string, { ok: boolean; at: string }>()
  const sub = nc.subscribe(HEALTH_ALL, {
    callback: (_err, m) => {
      try {
        const h = m.json<{ service: string; ok: boolean; at: string }>()
        latest.set(h.service, h)
      } catch {
        // not a heartbeat; ignore
      }
    },
  })
  const healthy = (s: Service) => {
    const h = latest.get(s)
    return h?.ok && Date.now() - Date.parse(h.at) < 5 * HEARTBEAT_MS
  }
  return { sub, healthy }
}

/**
 * Bring up the bus and the six services in the given scope. Closing the scope stops the services first (SIGTERM,
 * each drains its connection), then the embedded nats-server: the order is the acquisition order, reversed.
 */
export const up = (opts: UpOptions): Effect.Effect<RunningStack, UpError, Scope.Scope> =>
  Effect.gen(function* () {
    const home = ensureHome(opts.home)
    const chain = yield* ensureManifest(home.keys).pipe(
      Effect.provide(KeyStore.layerFile(home.keys)),
      Effect.mapError((e) => fail(`key set-up failed: ${(e as { message?: string }).message ?? String(e)}`, e)),
    )
    ensureNatsUsers(home)
    const bus = yield* startBus(opts)
    const admin = yield* Effect.acquireRelease(connectAs(bus.url, home, "admin"), (nc) =>
      Effect.promise(() => nc.drain().catch(() => undefined)),
    )
    yield* provision(admin).pipe(Effect.mapError((e) => fail("provisioning JetStream failed", e)))
    yield* publishManifests(admin, chain)
    // The policy bundle is signed here (root key) and verified by the policy service before it decides anything.
    const bundle = yield* signedBundleFrom(home, opts.role ?? null).pipe(Effect.mapError((e) => fail(e.message, e)))
    yield* Effect.tryPromise({
      try: () => publishBundle(admin, bundle),
      catch: (cause) => fail("cannot publish the policy bundle", cause),
    })

    const failed = yield* Deferred.make<UpError>()
    const children: Array<{ name: Service; child: Child }> = []
    for (const name of SERVICES) {
      const child = yield* scopedChild(
        () =>
          spawnChild({
            name,
            command: process.execPath,
            args: [join(REPO, "services", name, "src", "main.ts")],
            env: {
              ...process.env,
              VIGIL_HOME: home.root,
              VIGIL_NATS_URL: bus.url,
              VIGIL_WORKSPACE: opts.workspace,
              VIGIL_SUPERVISOR_PID: String(process.pid),
              ...(name === "auditor" ? { VIGIL_AUDIT_HTTP_PORT: String(opts.auditPort) } : {}),
              ...(name === "policy"
                ? { VIGIL_GRANTED_FOLDERS: opts.workspace, VIGIL_POLICY_ROLE: opts.role ?? "staff" }
                : {}),
            },
            logFile: join(home.logs, `${name}.log`),
          }),
        15_000,
      )
      children.push({ name, child })
      child.exited.then(({ code, signal }) =>
        Effect.runFork(
          Deferred.succeed(
            failed,
            fail(`${name} exited (${signal ?? `code ${code}`}); see ${join(home.logs, `${name}.log`)}`),
          ),
        ),
      )
    }
    const health = watchHealth(admin)
    yield* Effect.addFinalizer(() => Effect.sync(() => health.sub.unsubscribe()))
    const healthy = Effect.tryPromise({
      try: () => waitFor("a heartbeat from all six services", async () => SERVICES.every(health.healthy), 60_000, 100),
      catch: (cause) => fail(cause instanceof Error ? cause.message : String(cause)),
    })
    yield* Effect.raceFirst(healthy, Deferred.await(failed).pipe(Effect.flatMap((e) => Effect.fail(e))))
    writeFileSync(join(home.run, "up.json"), `${JSON.stringify({ pid: process.pid, nats: bus.url })}\n`)
    return {
      natsUrl: bus.url,
      embeddedNats: bus.embedded,
      ...(bus.embedded ? { natsPid: bus.pid } : {}),
      services: children.map((c) => ({ name: c.name, pid: c.child.pid })),
      manifestVersion: chain.latest.version,
      policyBundle: bundle.digest,
      crashed: Deferred.await(failed),
    }
  })
