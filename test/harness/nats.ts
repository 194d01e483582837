import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node"
import { connect as natsConnect, nkeyAuthenticator } from "@nats-io/transport-node"
import { inboxPrefix } from "@vigil/events"
import type { Role, UserNkey } from "@vigil/natsconf"
import { generateUserNkeys, publicKeys, ROLES, renderServerConf } from "@vigil/natsconf"

/**
 * A real nats-server per test suite: free loopback port, fresh temp store dir, optionally the generated secured
 * config (every role with fresh nkeys). Never the system server on 4222.
 */

export const NATS_SERVER_BIN = process.env.VIGIL_NATS_SERVER ?? "/usr/sbin/nats-server"

export interface StartNatsOptions {
  /** Generated config with nkey users and catalog permissions for `roles` (default false: no authorization). */
  readonly secure?: boolean
  /** Roles given users when secure (default: all roles). */
  readonly roles?: ReadonlyArray<Role>
  /** Bytes (default 1 MiB, as in production). */
  readonly maxPayload?: number
  /** How long to wait for "Server is ready" (default 10 s). */
  readonly readyTimeoutMs?: number
  /** Extra nats-server flags, e.g. ["-DV"] for protocol tracing in the log tail. */
  readonly args?: ReadonlyArray<string>
}

export type Creds = Partial<Record<Role, UserNkey>>

export interface NatsServer {
  readonly url: string
  readonly port: number
  /** Current process id (changes on restart). */
  readonly pid: number
  readonly storeDir: string
  readonly configPath: string
  readonly secure: boolean
  readonly creds: Creds
  /**
   * A connection as `role` (default: admin when secure, anonymous otherwise) using its nkey and its own inbox
   * prefix. `extra` overrides connection options (e.g. reconnect timing).
   */
  connect(role?: Role, extra?: Partial<NodeConnectionOptions>): Promise<NatsConnection>
  /** Stop by PID and start again on the same port and store dir (broker-restart tests). */
  restart(): Promise<void>
  /** SIGTERM by PID, SIGKILL after 5 s, then remove the temp dir. Idempotent. */
  stop(): Promise<void>
  /** Last lines of the server's log output. */
  logTail(lines?: number): string
}

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<void>
}

const LOG_LINES = 400
const STOP_GRACE_MS = 5_000

/** Every server process this module started and not yet reaped, and every temp dir not yet removed. */
const live = new Set<ChildProcess>()
const tempDirs = new Set<string>()
let netInstalled = false

const installSafetyNet = (): void => {
  if (netInstalled) return
  netInstalled = true
  process.once("exit", () => {
    for (const child of live) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, "SIGKILL")
        } catch {
          // already gone
        }
      }
    }
    live.clear()
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
    tempDirs.clear()
  })
}

/** A port the kernel just handed out on 127.0.0.1 (bind to 0, read, release). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      if (addr === null || typeof addr === "string") {
        srv.close()
        reject(new Error("could not get a free port"))
        return
      }
      srv.close(() => resolve(addr.port))
    })
  })

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const tail = (log: ReadonlyArray<string>, n: number): string => log.slice(-n).join("\n")

class AddressInUse extends Error {}

/** Spawns nats-server and resolves once it logs "Server is ready". */
const spawnServer = (
  configPath: string,
  log: Array<string>,
  args: ReadonlyArray<string>,
  timeoutMs: number,
): Promise<Running> =>
  new Promise((resolve, reject) => {
    const child = spawn(NATS_SERVER_BIN, ["-c", configPath, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    live.add(child)
    let ready = false
    let settled = false
    const exited = new Promise<void>((r) => {
      child.once("exit", () => {
        live.delete(child)
        r()
      })
    })
    const fail = (err: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      reject(err)
    }
    const timer = setTimeout(
      () => fail(new Error(`nats-server (${configPath}) not ready after ${timeoutMs} ms; log tail:\n${tail(log, 40)}`)),
      timeoutMs,
    )
    let partial = ""
    const onData = (chunk: Buffer): void => {
      const lines = (partial + chunk.toString("utf8")).split("\n")
      partial = lines.pop() ?? ""
      for (const line of lines) {
        log.push(line)
        if (log.length > LOG_LINES) log.shift()
        if (!ready && line.includes("Server is ready")) {
          ready = true
          settled = true
          clearTimeout(timer)
          resolve({ child, exited })
        }
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.once("error", (err) => fail(new Error(`cannot start ${NATS_SERVER_BIN}: ${err.message}`)))
    child.once("exit", (code, signal) => {
      if (ready) return
      if (partial !== "") log.push(partial)
      const text = tail(log, 40)
      const Ctor = /address already in use/i.test(text) ? AddressInUse : Error
      fail(new Ctor(`nats-server exited (code ${code}, signal ${signal}) before it was ready; log tail:\n${text}`))
    })
  })

const stopProcess = async (running: Running): Promise<void> => {
  const { child } = running
  if (child.exitCode !== null || child.signalCode !== null) return
  if (child.pid !== undefined) process.kill(child.pid, "SIGTERM")
  const timedOut = await Promise.race([running.exited.then(() => false), delay(STOP_GRACE_MS).then(() => true)])
  if (timedOut && child.pid !== undefined) {
    try {
      process.kill(child.pid, "SIGKILL")
    } catch {
      // exited meanwhile
    }
    await running.exited
  }
}

/**
 * Resolves on the connection's next "reconnect" status. Call it before `restart()`: a JetStream publish issued while
 * the client is still disconnected can be dropped by the client (it then times out), so restart tests wait for this
 * and the bus retries with the same Nats-Msg-Id.
 */
export const reconnected = (nc: NatsConnection, timeoutMs = 10_000): Promise<void> => {
  const status = nc.status()
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reconnect within ${timeoutMs} ms`)), timeoutMs)
    void (async () => {
      let seen = false
      for await (const s of status) {
        if (s.type === "reconnect") {
          seen = true
          break
        }
      }
      clearTimeout(timer)
      if (seen) resolve()
      else reject(new Error("connection closed before it reconnected"))
    })()
  })
}

/** Starts a nats-server with JetStream on a free 127.0.0.1 port and a fresh temp store dir. */
export const startNats = async (opts: StartNatsOptions = {}): Promise<NatsServer> => {
  installSafetyNet()
  const secure = opts.secure === true
  const dir = mkdtempSync(join(tmpdir(), "vigil-nats-"))
  tempDirs.add(dir)
  const storeDir = join(dir, "jetstream")
  mkdirSync(storeDir)
  const configPath = join(dir, "nats.conf")
  const creds: Creds = secure ? generateUserNkeys(opts.roles ?? ROLES) : {}
  const log: Array<string> = []
  const timeoutMs = opts.readyTimeoutMs ?? 10_000
  const args = opts.args ?? []

  const writeConfig = (port: number): void => {
    const conf = renderServerConf({
      port,
      storeDir,
      serverName: `vigil-test-${port}`,
      users: publicKeys(creds as Record<Role, UserNkey>),
      insecure: !secure,
      ...(opts.maxPayload === undefined ? {} : { maxPayload: opts.maxPayload }),
    })
    writeFileSync(configPath, conf)
  }

  let port = 0
  let running: Running | undefined
  try {
    for (let attempt = 0; running === undefined; attempt++) {
      port = await freePort()
      writeConfig(port)
      try {
        running = await spawnServer(configPath, log, args, timeoutMs)
      } catch (err) {
        // Another process took the port between our probe and the server's bind: try another one.
        if (!(err instanceof AddressInUse) || attempt >= 4) throw err
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    tempDirs.delete(dir)
    throw err
  }

  let current: Running = running
  let stopped = false
  const url = `nats://127.0.0.1:${port}`

  const server: NatsServer = {
    url,
    port,
    get pid() {
      return current.child.pid ?? -1
    },
    storeDir,
    configPath,
    secure,
    creds,
    connect: (role, extra = {}) => {
      const who: Role | undefined = role ?? (secure ? "admin" : undefined)
      const base: NodeConnectionOptions = { servers: url, name: `vigil-test-${who ?? "anonymous"}` }
      if (who !== undefined) base.inboxPrefix = inboxPrefix(who)
      if (secure) {
        const c = who === undefined ? undefined : creds[who]
        if (c === undefined) return Promise.reject(new Error(`no credentials for role ${who} on this server`))
        base.authenticator = nkeyAuthenticator(new TextEncoder().encode(c.seed))
      }
      return natsConnect({ ...base, ...extra })
    },
    restart: async () => {
      if (stopped) throw new Error("server was stopped")
      await stopProcess(current)
      log.push("---- restart ----")
      // The port is ours to take again; retry briefly in case the kernel has not released it yet.
      for (let attempt = 0; ; attempt++) {
        try {
          current = await spawnServer(configPath, log, args, timeoutMs)
          return
        } catch (err) {
          if (!(err instanceof AddressInUse) || attempt >= 20) throw err
          await delay(100)
        }
      }
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      await stopProcess(current)
      rmSync(dir, { recursive: true, force: true })
      tempDirs.delete(dir)
    },
    logTail: (lines = 40) => tail(log, lines),
  }
  return server
}
