import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, type WriteStream } from "node:fs"
import { connect as tcpConnect } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"

/** A child process the supervisor owns: its output goes to a log file, and it is stopped by PID. */
export interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly pid: number
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /**
   * Resolves once the process has exited and its output is in the log file (its pipes closed, or at most a second
   * after the exit when something else still holds them).
   */
  readonly flushed: Promise<void>
}

export interface SpawnOptions {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
  /** Append stdout and stderr here. */
  readonly logFile?: string
  /** Also called with each output line (e.g. to watch for a ready message). */
  readonly onLine?: (line: string) => void
}

export const spawnChild = (opts: SpawnOptions): Child => {
  const proc = spawn(opts.command, [...opts.args], {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group would survive our death; a child that outlives the supervisor is a leak, so no detach.
    detached: false,
  })
  if (proc.pid === undefined) throw new Error(`could not start ${opts.name}: ${opts.command}`)
  let log: WriteStream | undefined
  if (opts.logFile !== undefined) log = createWriteStream(opts.logFile, { flags: "a" })
  const pipe = (stream: NodeJS.ReadableStream | null) => {
    let buf = ""
    stream?.on("data", (chunk: Buffer) => {
      if (log?.writableEnded === false) log.write(chunk)
      if (opts.onLine === undefined) return
      buf += chunk.toString("utf8")
      let nl = buf.indexOf("\n")
      while (nl >= 0) {
        opts.onLine(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
        nl = buf.indexOf("\n")
      }
    })
  }
  pipe(proc.stdout)
  pipe(proc.stderr)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once("exit", (code, signal) => resolve({ code, signal }))
  })
  // Output can still arrive after the exit: the log is closed when the pipes are (or a second after the exit).
  const closed = new Promise<void>((resolve) => proc.once("close", () => resolve()))
  const flushed = exited
    .then(() => Promise.race([closed, sleep(1_000)]))
    .then(
      () =>
        new Promise<void>((resolve) => {
          if (log === undefined || log.writableEnded) return resolve()
          log.end(() => resolve())
        }),
    )
  return { name: opts.name, proc, pid: proc.pid, exited, flushed }
}

export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export const stopChild = async (child: Child, graceMs = 10_000): Promise<void> => {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
  child.proc.kill("SIGTERM")
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), graceMs)
  await child.exited
  clearTimeout(timer)
}

/** Whether something accepts TCP connections at host:port. */
export const tcpReachable = (host: string, port: number, timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const sock = tcpConnect({ host, port })
    const done = (ok: boolean) => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(timeoutMs, () => done(false))
    sock.once("connect", () => done(true))
    sock.once("error", () => done(false))
  })

/**
 * Poll `check` every `everyMs` until it holds; rejects after `timeoutMs`, or as soon as `signal` aborts (so that a
 * wait nobody awaits any more does not keep polling, and the process alive, until its timeout).
 */
export const waitFor = async (
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
  signal?: AbortSignal,
) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new Error(`stopped waiting for ${what}`)
    if (await check()) return
    await sleep(everyMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}
