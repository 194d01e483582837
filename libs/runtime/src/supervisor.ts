import { readFileSync } from "node:fs"
import { type Child, stopChild } from "./processes.ts"

/**
 * How a supervised process that exits is restarted: after `initialBackoffMs`, doubling with each crash still inside
 * the window up to `maxBackoffMs`; more than `maxRestarts` crashes within `windowMs` and it is given up on.
 */
export interface RestartPolicy {
  readonly maxRestarts: number
  readonly windowMs: number
  readonly initialBackoffMs: number
  readonly maxBackoffMs: number
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  maxRestarts: 5,
  windowMs: 60_000,
  initialBackoffMs: 250,
  maxBackoffMs: 5_000,
}

/**
 * The restart policy, with `VIGIL_RESTART_MAX` (crashes tolerated within the window) and `VIGIL_RESTART_WINDOW_MS`
 * read from the environment (the one place they are read). A value that is not a whole number throws: a typo must
 * not silently turn the limit off.
 */
export const restartPolicyFromEnv = (env: NodeJS.ProcessEnv = process.env): RestartPolicy => {
  const read = (name: string, fallback: number, min: number) => {
    const raw = env[name]
    if (raw === undefined || raw === "") return fallback
    if (!/^\d{1,9}$/u.test(raw) || Number(raw) < min) {
      throw new Error(`${name} must be a whole number ≥ ${min}, got ${JSON.stringify(raw)}`)
    }
    return Number(raw)
  }
  return {
    ...DEFAULT_RESTART_POLICY,
    maxRestarts: read("VIGIL_RESTART_MAX", DEFAULT_RESTART_POLICY.maxRestarts, 0),
    windowMs: read("VIGIL_RESTART_WINDOW_MS", DEFAULT_RESTART_POLICY.windowMs, 1),
  }
}

export interface ExitInfo {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export const describeExit = (e: ExitInfo): string => (e.signal !== null ? e.signal : `code ${e.code}`)

export interface SupervisorHandlers {
  /** The process exited before {@link Supervised.arm} was called (during start-up): it is not restarted. */
  readonly onStartupExit: (exit: ExitInfo, child: Child) => void
  /** The process exited after start-up and will be started again in `delayMs`. */
  readonly onRestarting: (info: {
    readonly exit: ExitInfo
    readonly child: Child
    readonly delayMs: number
    /** Crashes within the window, this one included. */
    readonly crashes: number
  }) => void
  /** A new process was started in place of `previousPid`. */
  readonly onRestarted: (child: Child, previousPid: number) => void
  /** More than `maxRestarts` crashes within the window, or a restart could not even be spawned: not restarted. */
  readonly onGiveUp: (info: {
    readonly exit: ExitInfo
    readonly child: Child
    readonly crashes: number
    readonly reason: string
  }) => void
}

/** A process kept running by {@link supervise}. */
export interface Supervised {
  readonly name: string
  /** The process now (or last) running. */
  readonly current: () => Child
  /** Whether a process is running now (false while a restart waits out its backoff). */
  readonly running: () => boolean
  /** From now on an exit is restarted rather than reported as a start-up failure. */
  readonly arm: () => void
  /** No more restarts; SIGTERM, SIGKILL after `graceMs`; resolves when the process is gone. Idempotent. */
  readonly stop: (graceMs: number) => Promise<void>
}

/** Start `start()` and keep it running under `policy` until {@link Supervised.stop}. */
export const supervise = (
  name: string,
  start: () => Child,
  policy: RestartPolicy,
  handlers: SupervisorHandlers,
): Supervised => {
  let child = start()
  let alive = true
  let armed = false
  let stopping = false
  let timer: NodeJS.Timeout | undefined
  let crashes: Array<number> = []

  const watch = (c: Child) => {
    c.exited.then((exit) => {
      alive = false
      if (stopping) return
      if (!armed) return handlers.onStartupExit(exit, c)
      const now = Date.now()
      crashes = [...crashes.filter((t) => now - t < policy.windowMs), now]
      if (crashes.length > policy.maxRestarts) {
        stopping = true
        return handlers.onGiveUp({
          exit,
          child: c,
          crashes: crashes.length,
          reason: `${name} exited ${crashes.length} times within ${policy.windowMs} ms (at most ${policy.maxRestarts} restarts allowed)`,
        })
      }
      const delayMs = Math.min(policy.initialBackoffMs * 2 ** (crashes.length - 1), policy.maxBackoffMs)
      handlers.onRestarting({ exit, child: c, delayMs, crashes: crashes.length })
      timer = setTimeout(() => {
        timer = undefined
        if (stopping) return
        try {
          child = start()
        } catch (e) {
          stopping = true
          return handlers.onGiveUp({
            exit,
            child: c,
            crashes: crashes.length,
            reason: `${name} could not be restarted: ${e instanceof Error ? e.message : String(e)}`,
          })
        }
        alive = true
        watch(child)
        handlers.onRestarted(child, c.pid)
      }, delayMs)
    })
  }
  watch(child)

  let stopped: Promise<void> | undefined
  return {
    name,
    current: () => child,
    running: () => alive,
    arm: () => {
      armed = true
    },
    stop: (graceMs) => {
      stopping = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      stopped ??= stopChild(child, graceMs)
      return stopped
    },
  }
}

/** The last `lines` lines of a log file (each cut to `width` characters), or a note saying it cannot be read. */
export const logTail = (path: string, lines = 15, width = 400): string => {
  try {
    const text = readFileSync(path, "utf8").trimEnd()
    return text
      .split("\n")
      .slice(-lines)
      .map((l) => (l.length > width ? `${l.slice(0, width)}…` : l))
      .join("\n")
  } catch (e) {
    return `(cannot read ${path}: ${e instanceof Error ? e.message : String(e)})`
  }
}
