import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { NatsConnection } from "@nats-io/transport-node"
import { provision } from "@vigil/bus"
import { HEALTH_ALL, KEYS_MANIFEST_SUBJECT, type Principal, type Service, type SigningKey } from "@vigil/events"
import { homeSigningKeys, type ManifestChain } from "@vigil/keys"
import { ensureHome, type Home, homeAt } from "@vigil/runtime"
import { Effect } from "effect"
import type { NatsServer } from "./nats.ts"

const REPO = resolve(import.meta.dirname, "..", "..")

/**
 * A Vigil home for service processes under test, on a secured test server: keys and a signed manifest made the way
 * `vigil up` makes them (libs/keys `ensureManifest` on a file keystore), and each NATS user's nkey seed from the
 * server's generated credentials. The returned keys let a test sign events as any principal.
 */
export interface TestHome {
  readonly home: Home
  readonly chain: ManifestChain
  readonly keys: Readonly<Record<Principal, SigningKey>>
  readonly server: NatsServer
  /** Environment for a service process on this home and server. */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv
  remove(): void
}

export const prepareHome = async (
  server: NatsServer,
  opts: { readonly provision?: boolean } = {},
): Promise<TestHome> => {
  const home = ensureHome(homeAt(mkdtempSync(join(tmpdir(), "vigil-home-"))))
  const { chain, keys } = await Effect.runPromise(homeSigningKeys(home.keys))
  for (const [role, cred] of Object.entries(server.creds)) {
    if (cred !== undefined) writeFileSync(join(home.nats, `${role}.nk`), `${cred.seed}\n`, { mode: 0o600 })
  }
  if (opts.provision !== false) {
    const admin = await server.connect("admin")
    try {
      await Effect.runPromise(provision(admin))
      for (const m of chain.manifests) admin.publish(KEYS_MANIFEST_SUBJECT, JSON.stringify(m))
      await admin.flush()
    } finally {
      await admin.close()
    }
  }
  return {
    home,
    chain,
    keys,
    server,
    env: (extra = {}) => ({
      ...process.env,
      VIGIL_HOME: home.root,
      VIGIL_NATS_URL: server.url,
      VIGIL_LOG_LEVEL: "warn",
      ...extra,
    }),
    remove: () => rmSync(home.root, { recursive: true, force: true }),
  }
}

export interface ServiceProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything the process printed so far. */
  output(): string
  readonly exited: Promise<number | null>
  /** SIGTERM and wait (SIGKILL after 10 s). */
  stop(): Promise<number | null>
  /** SIGKILL: a crash. */
  kill(): Promise<number | null>
}

/** Start `services/<name>/src/main.ts` as its own process on a test home; resolves once its heartbeat is seen. */
/** A service process on `th`, its stdout and stderr collected together. */
const spawnService = (name: Service, th: TestHome, env?: NodeJS.ProcessEnv) => {
  const child = spawn(process.execPath, [join(REPO, "services", name, "src", "main.ts")], {
    env: th.env(env),
    stdio: ["ignore", "pipe", "pipe"],
  })
  let out = ""
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString()
  })
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString()
  })
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
  return { child, exited, output: () => out }
}

/**
 * Run a service that is expected to stop by itself (a refused start): its exit code (null when killed after
 * `timeoutMs`) and everything it printed.
 */
export const runServiceToExit = async (
  name: Service,
  th: TestHome,
  opts: { readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number } = {},
): Promise<{ readonly code: number | null; readonly output: string }> => {
  const { child, exited, output } = spawnService(name, th, opts.env)
  const killer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000)
  const code = await exited
  clearTimeout(killer)
  return { code, output: output() }
}

export const startService = async (
  name: Service,
  th: TestHome,
  opts: { readonly env?: NodeJS.ProcessEnv; readonly watch?: NatsConnection; readonly readyTimeoutMs?: number } = {},
): Promise<ServiceProcess> => {
  const { child, exited, output } = spawnService(name, th, opts.env)
  const proc: ServiceProcess = {
    child,
    pid: child.pid as number,
    output,
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill("SIGTERM")
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000)
      const code = await exited
      clearTimeout(t)
      return code
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return exited
    },
  }
  const nc = opts.watch ?? (await th.server.connect("admin"))
  try {
    const sub = nc.subscribe(HEALTH_ALL)
    const ready = (async () => {
      for await (const m of sub) {
        const h = m.json<{ service: string; pid: number; ok: boolean }>()
        if (h.service === name && h.pid === proc.pid && h.ok) return true
      }
      return false
    })()
    const timeout = new Promise<false>((r) => setTimeout(() => r(false), opts.readyTimeoutMs ?? 30_000))
    const died = exited.then(() => false as const)
    const ok = await Promise.race([ready, timeout, died])
    sub.unsubscribe()
    if (!ok) {
      await proc.kill()
      throw new Error(`${name} did not become healthy:\n${output().slice(-4000)}`)
    }
  } finally {
    if (opts.watch === undefined) await nc.close()
  }
  return proc
}
