import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { Kvm } from "@nats-io/kv"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { ackedPublisher, HEARTBEAT_MS, NotStored, provision } from "@vigil/bus"
import {
  canonicalBytes,
  type EventData,
  eventSubject,
  HEALTH_ALL,
  inboxPrefix,
  KEYS_MANIFEST_SUBJECT,
  KV_KEYS,
  SERVICES,
  type Service,
  signEventEncoded,
} from "@vigil/events"
import {
  ensureDeploymentKeys,
  ensureManifest,
  KeyStore,
  type ManifestChain,
  manifestDigest,
  ROOT_PUBLIC_KEY_FILE,
  verifyManifest,
} from "@vigil/keys"
import { renderServerConf } from "@vigil/natsconf"
import {
  type Child,
  describeExit,
  type ExitInfo,
  ensureHome,
  type Home,
  isAlive,
  logTail,
  nodeProcessEnv,
  type RestartPolicy,
  restartPolicyFromEnv,
  type Supervised,
  type SupervisorHandlers,
  spawnChild,
  supervise,
  tcpReachable,
  waitFor,
} from "@vigil/runtime"
import { Data, Deferred, Effect, type Scope } from "effect"
import { connectRole, ensureNatsUsers } from "./creds.ts"

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
  /**
   * Completes with the reason when a service (or the embedded nats-server) crashed more often than the restart policy
   * allows; the stack is then taken down.
   */
  readonly crashed: Effect.Effect<UpError>
}

const fail = (message: string, cause?: unknown) => new UpError({ message, ...(cause === undefined ? {} : { cause }) })

const connectAs = (url: string, home: Home, role: string) =>
  Effect.tryPromise({
    try: () => connectRole(url, home, role, { name: `vigil-up-${role}`, maxReconnectAttempts: -1 }),
    catch: (cause) => fail(`cannot connect to ${url} as ${role}`, cause),
  })

const tail = (text: string, lines = 15) => text.split("\n").slice(-lines).join("\n")

const hasSetpriv = (): boolean =>
  process.platform === "linux" && spawnSync("setpriv", ["--help"], { stdio: "ignore" }).status === 0

/**
 * Embedded bus: Vigil's own nats-server with Vigil's users and permissions, on its own loopback port and data dir.
 * A server already answering there is used only if it accepts this home's admin credentials — a plain server on
 * that port is not Vigil's bus (it lacks the users and permissions the security model relies on).
 */
const startBus = (opts: UpOptions, policy: RestartPolicy, handlers: SupervisorHandlers) =>
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
    // Watched for the whole run: a server that dies after start-up is started again on the same config, store and
    // port (JetStream recovers from its store; the services' connections reconnect by themselves).
    const sup = yield* Effect.acquireRelease(
      Effect.sync(() =>
        supervise(
          "nats-server",
          () => {
            log = ""
            const child = spawnChild({
              name: "nats-server",
              ...launcher,
              logFile: join(home.logs, "nats.log"),
              onLine: (l) => {
                log = tail(`${log}${l}\n`, 40)
              },
            })
            writeFileSync(join(home.run, "nats.pid"), `${child.pid}\n`)
            return child
          },
          policy,
          handlers,
        ),
      ),
      (s) => Effect.promise(() => s.stop(NATS_GRACE_MS)),
    )
    const child = sup.current()
    yield* Effect.tryPromise({
      try: async (signal) => {
        // The poll ends with the race, whichever way it goes (not at its own timeout).
        const done = new AbortController()
        signal.addEventListener("abort", () => done.abort(), { once: true })
        try {
          await Promise.race([
            waitFor(
              "nats-server to accept connections",
              () => tcpReachable("127.0.0.1", opts.port),
              15_000,
              50,
              done.signal,
            ),
            child.exited.then(({ code }) => {
              throw new Error(`nats-server exited with ${code}:\n${tail(log)}`)
            }),
          ])
        } finally {
          done.abort()
        }
      },
      catch: (cause) => fail(`embedded nats-server did not start: ${cause instanceof Error ? cause.message : cause}`),
    })
    sup.arm()
    return { url, embedded: true as const, pid: child.pid, supervised: sup }
  })

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** What a KV entry under `manifest.<n>` holds: its digest (SHA-256 of its canonical JSON, else of its raw bytes). */
const storedManifest = (raw: Uint8Array): { readonly json: boolean; readonly parsed?: unknown; sha256: string } => {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw))
    return { json: true, parsed, sha256: sha256(canonicalBytes(parsed)) }
  } catch {
    return { json: false, sha256: sha256(raw) }
  }
}

/** Text from a stored entry, fit for a terminal line and an alert summary: short, no control characters. */
const printable = (text: string) => text.slice(0, 200).replace(/\p{C}/gu, "?")

/**
 * Raise `alert.raised` signed with the home's `ops` key, on `vigil.ev.ops.alert.raised` with an acked JetStream
 * publish (`Nats-Msg-Id` = the fresh, random event id; a duplicate ack for it is not success: NATS-NOTES trap 10).
 * Sent as the `ops` NATS user; where the bus does not let ops publish it (a permission refusal), through the
 * provisioner's (`admin`) connection instead: the signature, not the NATS user, is what consumers trust. Resolves to
 * a sentence saying how it went; never rejects (the alert must not mask the failure it reports).
 */
const raiseOpsAlert = async (
  url: string,
  home: Home,
  admin: NatsConnection,
  chain: ManifestChain,
  data: EventData<"alert.raised">,
): Promise<string> => {
  try {
    const { keys } = await Effect.runPromise(
      ensureDeploymentKeys(["ops"] as const).pipe(Effect.provide(KeyStore.layerFile(home.keys))),
    )
    const { event, bytes } = signEventEncoded(keys.ops, { type: "alert.raised", session: "ops", data })
    const subject = eventSubject(event.session, event.type)
    const grant = chain.resolve(keys.ops.kid, Date.parse(event.time))
    const caveat =
      grant.ok && grant.key.types.has("alert.raised")
        ? ""
        : ` (manifest v${chain.latest.version} does not let the ops key sign alert.raised now: consumers will refuse it)`
    const send = async (nc: NatsConnection, role: string) => {
      const acked = ackedPublisher(nc, inboxPrefix(role), 5_000)
      try {
        const ack = await acked.publish(subject, bytes, { msgId: event.id })
        if (ack.duplicate) throw new NotStored(`the stream already held id ${event.id}: not stored`, false)
      } finally {
        acked.close()
      }
    }
    let ops: NatsConnection | undefined
    try {
      ops = await connectRole(url, home, "ops", { name: `vigil-up-ops-${process.pid}` })
      await send(ops, "ops")
      return `alert ${event.id} raised as ops${caveat}`
    } catch (e) {
      if (!(e instanceof NotStored && e.refused)) throw e
      await send(admin, "admin")
      return `alert ${event.id} raised (signed by ops; sent through the admin connection: the ops NATS user may not publish ${subject})${caveat}`
    } finally {
      await ops?.close().catch(() => undefined)
    }
  } catch (e) {
    return `the alert could not be published: ${e instanceof Error ? e.message : String(e)}`
  }
}

/**
 * Publish every manifest version to the KV bucket services follow, as its canonical bytes. A version the bucket
 * already holds is compared, never taken on trust (a squatted key must not hold back the real version forever):
 *
 * - the same canonical bytes: skipped;
 * - another manifest that the deployment root key signed for that version: a fork of the chain (two different
 *   root-signed v<n>): nothing is overwritten, a critical `alert.raised` (rule `key-manifest-conflict`) is raised
 *   as `ops`, and `vigil up` stops with an {@link UpError} naming both SHA-256s — only a person can tell which one
 *   is the deployment's;
 * - anything else (not JSON, not a manifest, not signed by this root, or a root-signed manifest of another version):
 *   the same alert, and the entry is *replaced* by the real version (a compare-and-set on its revision). Every
 *   reader verifies a manifest under the root key, so such an entry grants nothing to anyone; refusing to start
 *   would only hand whoever could write it (bus credentials, no root key) a way to keep Vigil down. Replacing it
 *   costs the attacker nothing they had, and the alert keeps the attempt (its digest) on the record.
 */
const publishManifests = (
  nc: NatsConnection,
  chain: ManifestChain,
  ctx: { readonly url: string; readonly home: Home; readonly warn: (message: string, details: object) => void },
) =>
  Effect.tryPromise({
    try: async () => {
      const kv = await new Kvm(nc).open(KV_KEYS)
      const rootPublicKey = new Uint8Array(
        Buffer.from(readFileSync(join(ctx.home.keys, ROOT_PUBLIC_KEY_FILE), "utf8").trim(), "base64url"),
      )
      /** A create/update that lost a race (the entry changed since it was read) is retried twice after a re-read. */
      const written = async (attempt: number, write: () => Promise<number>) => {
        try {
          await write()
          return true
        } catch (e) {
          if (attempt >= 3) throw e
          return false
        }
      }
      for (const m of chain.manifests) {
        const key = `manifest.${m.version}`
        const ours = canonicalBytes(m)
        const ourSha = manifestDigest(m)
        // The alert raised for this key (once per stored value, however often the loop reads it).
        let alert: { readonly sha256: string; readonly how: string } | undefined
        for (let attempt = 1; ; attempt++) {
          const existing = await kv.get(key)
          if (existing === null || existing.operation !== "PUT") {
            if (await written(attempt, () => kv.create(key, ours))) break
            continue
          }
          const stored = storedManifest(existing.value)
          if (stored.sha256 === ourSha) break
          const verdict = verifyManifest(rootPublicKey, stored.parsed)
          const rootSigned = verdict.ok && verdict.manifest.version === m.version
          const what = rootSigned
            ? `another manifest v${m.version} signed by this deployment's root key`
            : `something that is not a manifest v${m.version} signed by this deployment's root key (${
                !stored.json
                  ? "not JSON"
                  : verdict.ok
                    ? `a manifest v${verdict.manifest.version}`
                    : `${verdict.reason}: ${printable(verdict.detail)}`
              })`
          if (alert?.sha256 !== stored.sha256) {
            const how = await raiseOpsAlert(ctx.url, ctx.home, nc, chain, {
              rule: "key-manifest-conflict",
              severity: "critical",
              summary:
                `The key manifest bucket ${KV_KEYS} holds ${what} under ${key} (sha256 ${stored.sha256}), not this ` +
                `deployment's manifest v${m.version} (sha256 ${ourSha}); vigil up ` +
                (rootSigned ? "refused to overwrite it and did not start." : "replaced it with the real one."),
              evidence: [],
              details: {
                bucket: KV_KEYS,
                key,
                version: m.version,
                storedSha256: stored.sha256,
                manifestSha256: ourSha,
                storedRevision: existing.revision,
                stored: rootSigned
                  ? "root-signed manifest"
                  : !stored.json
                    ? "not JSON"
                    : verdict.ok
                      ? `manifest v${verdict.manifest.version}`
                      : verdict.reason,
                action: rootSigned ? "refused" : "replaced",
              },
            })
            alert = { sha256: stored.sha256, how }
          }
          if (rootSigned) {
            throw fail(
              `key manifest conflict: ${KV_KEYS} ${key} holds a different root-signed manifest v${m.version} ` +
                `(sha256 ${stored.sha256}) than this home's (sha256 ${ourSha}); not overwritten. Find out which ` +
                `one the deployment issued before starting again; ${alert.how}.`,
            )
          }
          if (await written(attempt, () => kv.update(key, ours, existing.revision))) {
            ctx.warn(
              `replaced a bad entry under ${KV_KEYS} ${key} (sha256 ${stored.sha256}) with manifest v${m.version} (sha256 ${ourSha}); ${alert.how}`,
              { key, version: m.version, storedSha256: stored.sha256, manifestSha256: ourSha, alert: alert.how },
            )
            break
          }
        }
        // A plain publish (no reply subject): running services append it to their verified chain.
        nc.publish(KEYS_MANIFEST_SUBJECT, ours)
      }
      await nc.flush()
    },
    catch: (cause) => (cause instanceof UpError ? cause : fail("cannot publish the key manifest to the bus", cause)),
  })

/** Latest heartbeat of each service, from `vigil.health.*`. */
const watchHealth = (nc: NatsConnection) => {
  const latest = new Map<string, { ok: boolean; at: string; pid?: number }>()
  const sub = nc.subscribe(HEALTH_ALL, {
    callback: (_err, m) => {
      try {
        const h = m.json<{ service: string; ok: boolean; at: string; pid?: number }>()
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
  /** A healthy heartbeat sent at or after `since` (ms), from process `pid` when one is given. */
  const healthySince = (s: Service, since: number, pid?: number) => {
    const h = latest.get(s)
    return h?.ok === true && Date.parse(h.at) >= since && (pid === undefined || h.pid === pid)
  }
  return { sub, healthy, healthySince }
}

/** Grace a service gets to drain and stop before SIGKILL: short when the embedded bus is down (nothing to drain). */
const SERVICE_GRACE_MS = 3_000
const SERVICE_GRACE_BUS_DOWN_MS = 1_500
const NATS_GRACE_MS = 5_000
/** How long the admin connection may take to drain on the way out before it is closed outright. */
const ADMIN_DRAIN_MS = 1_000
/** How long a restarted process has to report healthy before the console says it has not. */
const RECOVERY_WAIT_MS = 30_000

const exitDetails = (e: ExitInfo) => ({ code: e.code, signal: e.signal })

/**
 * Bring up the bus and the six services in the given scope, and keep them running: a service or embedded
 * nats-server that exits after start-up is restarted with exponential backoff (each restart on the console and as
 * an `alert.raised` signed by ops, rule `service-restarted`); more than the restart policy allows within its window
 * (`VIGIL_RESTART_MAX`, `VIGIL_RESTART_WINDOW_MS`) and `crashed` completes with the reason and the last log lines,
 * failing closed. A service that exits during start-up fails `up` at once with its last log lines.
 *
 * Closing the scope stops the services (all at once, SIGTERM, SIGKILL after a bounded grace) while the admin
 * connection drains (bounded too), then the embedded nats-server: whatever state the bus is in, it ends in bounded
 * time.
 */
/**
 * One `vigil up` per home: `<home>/run/up.lock` holds the supervisor's pid, created exclusively and removed (with
 * `up.json`) when the scope closes. A lock whose pid is gone is stale (a SIGKILLed supervisor) and taken over.
 */
const homeLock = (home: Home) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const file = join(home.run, "up.lock")
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o644 })
          return Effect.succeed(file)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
            return Effect.fail(fail(`cannot write ${file}: ${(e as Error).message}`, e))
          }
          const pid = Number.parseInt(readFileSync(file, "utf8"), 10)
          if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
            return Effect.fail(
              fail(
                `Vigil is already running on ${home.root} (pid ${pid}): stop it first (Ctrl-C there, or kill ${pid})`,
              ),
            )
          }
          rmSync(file, { force: true })
        }
      }
      return Effect.fail(fail(`cannot take ${file}: another vigil up is starting on this home`))
    }),
    (file) =>
      Effect.sync(() => {
        rmSync(join(home.run, "up.json"), { force: true })
        rmSync(file, { force: true })
      }),
  )

/** Ports this stack must bind itself, checked before anything starts (the bus port is probed by `startBus`). */
const checkPorts = (opts: UpOptions) =>
  Effect.gen(function* () {
    if (yield* Effect.promise(() => tcpReachable("127.0.0.1", opts.auditPort))) {
      return yield* fail(
        `port ${opts.auditPort} (the auditor's HTTP on 127.0.0.1) is taken by another program: choose another --audit-port`,
      )
    }
  })

export const up = (opts: UpOptions): Effect.Effect<RunningStack, UpError, Scope.Scope> =>
  Effect.gen(function* () {
    const home = ensureHome(opts.home)
    yield* homeLock(home)
    yield* checkPorts(opts)
    const chain = yield* ensureManifest(home.keys).pipe(
      Effect.provide(KeyStore.layerFile(home.keys)),
      Effect.mapError((e) => fail(`key set-up failed: ${(e as { message?: string }).message ?? String(e)}`, e)),
    )
    ensureNatsUsers(home)
    const policy = yield* Effect.try({
      try: () => restartPolicyFromEnv(),
      catch: (e) => fail(e instanceof Error ? e.message : String(e), e),
    })
    const say = (human: string, obj: Record<string, unknown>) => opts.out(opts.json ? JSON.stringify(obj) : human)
    const failed = yield* Deferred.make<UpError>()
    const giveUp = (message: string) => Effect.runFork(Deferred.succeed(failed, fail(message)))
    let stopping = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopping = true
      }),
    )
    /** Set once the admin connection, the key chain and the heartbeat watch exist (before any process is armed). */
    let live:
      | {
          readonly admin: NatsConnection
          readonly chain: ManifestChain
          readonly url: string
          readonly health: ReturnType<typeof watchHealth>
        }
      | undefined
    const alert = (data: EventData<"alert.raised">) => {
      const l = live
      if (l === undefined || stopping) return
      void raiseOpsAlert(l.url, home, l.admin, l.chain, data).then((how) => {
        if (how.startsWith("the alert could not be published"))
          say(`vigil: warning: ${how}`, { event: "warning", message: how, rule: data.rule })
      })
    }
    /** Resolves true when `check` holds, false when `vigil up` is stopping or `RECOVERY_WAIT_MS` ran out. */
    const until = async (check: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + RECOVERY_WAIT_MS
      while (!stopping && Date.now() < deadline) {
        if (await check()) return !stopping
        await sleep(100)
      }
      return false
    }
    const restartHandlers = (name: string, logFile: string, onRestarted: (child: Child, previousPid: number) => void) =>
      ({
        onStartupExit: (exit, child) => {
          void child.flushed.then(() =>
            giveUp(
              `${name} exited during start-up (${describeExit(exit)}); vigil up stopped everything. ` +
                `Last lines of ${logFile}:\n${logTail(logFile)}`,
            ),
          )
        },
        onRestarting: ({ exit, child, delayMs, crashes }) =>
          say(
            `vigil: ${name} (pid ${child.pid}) exited (${describeExit(exit)}); restarting it in ${delayMs} ms ` +
              `(restart ${crashes} of at most ${policy.maxRestarts} within ${policy.windowMs / 1000} s)`,
            {
              event: "restarting",
              service: name,
              pid: child.pid,
              exit: exitDetails(exit),
              delayMs,
              crashes,
              maxRestarts: policy.maxRestarts,
              windowMs: policy.windowMs,
            },
          ),
        onRestarted,
        onGiveUp: ({ exit, child, reason }) => {
          void child.flushed.then(() =>
            giveUp(
              `${reason}; last exit ${describeExit(exit)}. vigil up stops everything (fail closed). ` +
                `Last lines of ${logFile}:\n${logTail(logFile)}`,
            ),
          )
        },
      }) satisfies SupervisorHandlers

    const natsLog = join(home.logs, "nats.log")
    const bus = yield* startBus(
      opts,
      policy,
      restartHandlers("nats-server", natsLog, (child, previousPid) => {
        say(`vigil: nats-server restarted (pid ${child.pid}) on the same store and port`, {
          event: "restarted",
          service: "nats-server",
          pid: child.pid,
          previousPid,
        })
        const since = Date.now()
        void until(() => tcpReachable("127.0.0.1", opts.port)).then((up) => {
          if (stopping) return
          if (!up) {
            say(`vigil: warning: the restarted nats-server does not accept connections on port ${opts.port}`, {
              event: "warning",
              message: "restarted nats-server does not accept connections",
              service: "nats-server",
              pid: child.pid,
            })
            return
          }
          alert({
            rule: "service-restarted",
            severity: "medium",
            summary: `The embedded nats-server (pid ${previousPid}) died and vigil up restarted it (pid ${child.pid}) on the same store and port.`,
            evidence: [],
            details: { service: "nats-server", pid: child.pid, previousPid },
          })
          void until(() => live !== undefined && SERVICES.every((s) => live?.health.healthySince(s, since))).then(
            (ok) => {
              if (ok)
                say("vigil: the bus is back and all services are healthy again", {
                  event: "recovered",
                  service: "nats-server",
                  pid: child.pid,
                })
              else if (!stopping)
                say(
                  `vigil: warning: not every service reported healthy within ${RECOVERY_WAIT_MS / 1000} s of the bus's restart`,
                  {
                    event: "warning",
                    message: "services not healthy after the bus restarted",
                    service: "nats-server",
                  },
                )
            },
          )
        })
      }),
    )
    const admin = yield* Effect.acquireRelease(connectAs(bus.url, home, "admin"), (nc) =>
      Effect.promise(() => closeBounded(nc)),
    )
    yield* provision(admin).pipe(Effect.mapError((e) => fail("provisioning JetStream failed", e)))
    yield* publishManifests(admin, chain, {
      url: bus.url,
      home,
      warn: (message, details) =>
        opts.out(opts.json ? JSON.stringify({ event: "warning", message, ...details }) : `vigil: warning: ${message}`),
    })
    // The policy bundle is signed (root key) before any service starts, and verified by the policy service before it
    // decides anything.
    const bundleDigest = yield* publishPolicyBundle(bus.url, home, opts.role ?? null)
    const health = watchHealth(admin)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        // The connection may be closed already (the services' release drains it): then so is the subscription.
        if (!admin.isClosed()) health.sub.unsubscribe()
      }),
    )
    live = { admin, chain, url: bus.url, health }

    // Stopped together, and together with the admin connection's drain: the slowest bounds the whole.
    const services = yield* Effect.acquireRelease(
      Effect.sync(() => [] as Array<{ name: Service; sup: Supervised }>),
      (list) =>
        Effect.promise(() => {
          stopping = true
          const busDown = bus.embedded && !bus.supervised.running()
          const grace = busDown ? SERVICE_GRACE_BUS_DOWN_MS : SERVICE_GRACE_MS
          return Promise.all([...list.map((s) => s.sup.stop(grace)), closeBounded(admin)]).then(() => undefined)
        }),
    )
    for (const name of SERVICES) {
      const logFile = join(home.logs, `${name}.log`)
      const start = () =>
        spawnChild({
          name,
          command: process.execPath,
          args: [join(REPO, "services", name, "src", "main.ts")],
          env: {
            ...process.env,
            // The compile cache and fewer malloc arenas: less memory for every service (libs/runtime memory.ts).
            ...nodeProcessEnv(),
            VIGIL_HOME: home.root,
            VIGIL_NATS_URL: bus.url,
            VIGIL_WORKSPACE: opts.workspace,
            VIGIL_SUPERVISOR_PID: String(process.pid),
            ...(name === "auditor" ? { VIGIL_AUDIT_HTTP_PORT: String(opts.auditPort) } : {}),
            ...(name === "policy"
              ? { VIGIL_GRANTED_FOLDERS: opts.workspace, VIGIL_POLICY_ROLE: opts.role ?? "staff" }
              : {}),
          },
          logFile,
        })
      const sup = supervise(
        name,
        start,
        policy,
        restartHandlers(name, logFile, (child, previousPid) => {
          say(`vigil: ${name} restarted (pid ${child.pid})`, {
            event: "restarted",
            service: name,
            pid: child.pid,
            previousPid,
          })
          alert({
            rule: "service-restarted",
            severity: "medium",
            summary: `${name} (pid ${previousPid}) exited and vigil up restarted it (pid ${child.pid}).`,
            evidence: [],
            details: { service: name, pid: child.pid, previousPid },
          })
          const since = Date.now()
          void until(() => health.healthySince(name, since, child.pid)).then((ok) => {
            if (ok)
              say(`vigil: ${name} is healthy again (pid ${child.pid})`, {
                event: "recovered",
                service: name,
                pid: child.pid,
              })
            else if (!stopping && child.proc.exitCode === null && child.proc.signalCode === null)
              say(
                `vigil: warning: ${name} (pid ${child.pid}) has not reported healthy within ${RECOVERY_WAIT_MS / 1000} s of its restart`,
                {
                  event: "warning",
                  message: "restarted service not healthy",
                  service: name,
                  pid: child.pid,
                },
              )
          })
        }),
      )
      services.push({ name, sup })
    }
    const healthy = Effect.tryPromise({
      try: (signal) =>
        waitFor("a heartbeat from all six services", async () => SERVICES.every(health.healthy), 60_000, 100, signal),
      catch: (cause) => fail(cause instanceof Error ? cause.message : String(cause)),
    })
    yield* Effect.raceFirst(healthy, Deferred.await(failed).pipe(Effect.flatMap((e) => Effect.fail(e))))
    for (const s of services) s.sup.arm()
    writeFileSync(join(home.run, "up.json"), `${JSON.stringify({ pid: process.pid, nats: bus.url })}\n`)
    return {
      natsUrl: bus.url,
      embeddedNats: bus.embedded,
      ...(bus.embedded ? { natsPid: bus.pid } : {}),
      services: services.map((s) => ({ name: s.name, pid: s.sup.current().pid })),
      manifestVersion: chain.latest.version,
      policyBundle: bundleDigest,
      crashed: Deferred.await(failed),
    }
  })

/**
 * Sign the policy bundle with the root key as the next version and publish it, as `vigil policy bundle` does — in
 * that command, run as a short-lived child. A bundle is signed only once it compiles under Cedar, and Cedar's
 * WebAssembly (its code, its memory and what compiling it left in the allocator, 20–40 MB) would otherwise stay in the
 * supervisor for its whole life. Resolves with the bundle's digest.
 */
const publishPolicyBundle = (url: string, home: Home, role: string | null) =>
  Effect.tryPromise({
    try: (signal) =>
      new Promise<string>((resolvePromise, reject) => {
        const args = ["policy", "bundle", "--home", home.root, "--nats", url, "--json"]
        const child = spawn(
          process.execPath,
          [join(REPO, "cli", "src", "main.ts"), ...args, ...(role === null ? [] : ["--role", role])],
          {
            env: { ...process.env, ...nodeProcessEnv() },
            stdio: ["ignore", "pipe", "pipe"],
            signal,
          },
        )
        let out = ""
        let err = ""
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString("utf8")
        })
        child.stderr.on("data", (b: Buffer) => {
          err += b.toString("utf8")
        })
        child.once("error", reject)
        child.once("close", (code) => {
          let report: { ok?: unknown; published?: unknown; error?: unknown } = {}
          try {
            report = JSON.parse(out.trim().split("\n").at(-1) ?? "") as typeof report
          } catch {
            // no report: the exit code and stderr say what happened
          }
          if (code === 0 && report.ok === true && typeof report.published === "string") {
            // Notes about stored revisions that do not verify, as signing in-process printed them.
            if (err !== "") process.stderr.write(err)
            return resolvePromise(report.published)
          }
          reject(
            new Error(
              typeof report.error === "string"
                ? report.error
                : `vigil policy bundle exited with code ${code}: ${tail(err.trim(), 5)}`,
            ),
          )
        })
      }),
    catch: (cause) => fail(cause instanceof Error ? cause.message : String(cause), cause),
  })

/** Drain a connection, but close it outright if that takes longer than {@link ADMIN_DRAIN_MS} (e.g. the bus is down). */
const closeBounded = async (nc: NatsConnection): Promise<void> => {
  if (nc.isClosed()) return
  const drained = await Promise.race([
    nc.drain().then(
      () => true,
      () => false,
    ),
    sleep(ADMIN_DRAIN_MS).then(() => false),
  ])
  if (!drained && !nc.isClosed()) await Promise.race([nc.close().catch(() => undefined), sleep(ADMIN_DRAIN_MS)])
}
