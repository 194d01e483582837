import { flushCompileCache } from "node:module"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import v8 from "node:v8"
import vm from "node:vm"
import { Duration, Effect } from "effect"

/*
 * What a long-lived Vigil process (the supervisor, each service) holds at rest, kept to what it uses.
 *
 * - Node strips TypeScript with a WebAssembly build of SWC, loaded into the first isolate that strips a file and kept
 *   for its life (some 17 MB). Node's compile cache keeps the stripped source (and V8's code cache) on disk: a process
 *   whose modules are all cached never loads the stripper. `vigil` sets NODE_COMPILE_CACHE for the supervisor and the
 *   supervisor for the services ({@link nodeProcessEnv}), to {@link COMPILE_CACHE_DIR}; each process writes what it
 *   compiled once it is ready.
 * - Start-up (loading some 500 modules, checking keys, connecting) grows V8's young generation to its largest (32 MB
 *   here) and leaves garbage; V8 does not shrink it again on its own while the process idles. {@link releaseMemory}
 *   runs the collection V8 runs under memory pressure, which does, once a process has come to rest after start-up
 *   and again after each burst of work ({@link memoryAtRest}). Under load the young generation grows back as V8 sees
 *   fit, so throughput is what it was; no heap flag is needed.
 * - What V8 and Node free goes back to glibc's allocator, which keeps it: compiling 500 modules (and Cedar's
 *   WebAssembly in the policy service) leaves its arenas full of free pages between live chunks. Only `malloc_trim`
 *   hands those back, and Node has no binding for it but its (experimental) `node:ffi`: {@link releaseMemory} calls it
 *   there when it can (glibc, Node ≥ 26), and does without elsewhere.
 */

/**
 * Node's compile cache for Vigil's processes, next to the code it caches (node_modules/.cache, where build tools
 * keep theirs): whoever can write it can already change that code. Node checks every entry against the source's
 * hash, so an edited file is stripped afresh (and that process carries the stripper until it restarts).
 */
export const COMPILE_CACHE_DIR = join(import.meta.dirname, "..", "..", "..", "node_modules", ".cache", "vigil-node")

/**
 * What Vigil adds to the environment of the Node processes it starts (the services, the bundle signer), each unless
 * `env` already sets it — as `./vigil` does for the supervisor:
 *
 * - NODE_COMPILE_CACHE={@link COMPILE_CACHE_DIR}: see above.
 * - MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (V8's compiler and GC threads, a signature worker) an
 *   arena of its own, up to eight per core, and what is freed in one stays there; two arenas keep less of it.
 */
export const nodeProcessEnv = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => ({
  ...(env.NODE_COMPILE_CACHE === undefined ? { NODE_COMPILE_CACHE: COMPILE_CACHE_DIR } : {}),
  ...(env.MALLOC_ARENA_MAX === undefined ? { MALLOC_ARENA_MAX: "2" } : {}),
})

/** glibc's `malloc_trim`, or undefined where it cannot be had (another libc, a Node without `node:ffi`). */
const loadMallocTrim = (): ((pad: bigint) => unknown) | undefined => {
  if (process.platform !== "linux") return undefined
  // Loading node:ffi prints an ExperimentalWarning into the service's log; this one use is known and wanted.
  const emitWarning = process.emitWarning
  try {
    process.emitWarning = () => undefined
    const ffi = process.getBuiltinModule("node:ffi") as
      | {
          dlopen: (
            path: string,
            symbols: Record<string, { arguments: ReadonlyArray<string>; return: string }>,
          ) => { functions: Record<string, (...args: ReadonlyArray<unknown>) => unknown> }
        }
      | undefined
    return ffi?.dlopen("libc.so.6", { malloc_trim: { arguments: ["uint64"], return: "int32" } }).functions.malloc_trim
  } catch {
    return undefined
  } finally {
    process.emitWarning = emitWarning
  }
}
let mallocTrim: ReturnType<typeof loadMallocTrim> | null = null

/**
 * A full collection of the kind V8 runs when the system is short of memory (every unreachable object, the young
 * generation shrunk back to its smallest), then the allocator's free pages handed back to the system. Synchronous,
 * some 100 ms for a service's heap: only at rest.
 */
export const releaseMemory = (): void => {
  // `gc` with options, without exposing it to the process's own code: the flag is on only while a throwaway context
  // is made to hand the function over.
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as (options: object) => void
  v8.setFlagsFromString("--no-expose-gc")
  gc({ type: "major", execution: "sync", flavor: "last-resort" })
  try {
    if (mallocTrim === null) mallocTrim = loadMallocTrim()
    mallocTrim?.(0n)
  } catch {
    // Nothing released: the process only stays as large as it was.
  }
}

/** Writes what this process compiled to the compile cache (if it has one) and frees its in-memory copy. */
const persistCompileCache = (): void => {
  try {
    flushCompileCache()
  } catch {
    // A cache that cannot be written only costs the next start its speed.
  }
}

/** How often {@link memoryAtRest} looks. */
const CHECK_EVERY = Duration.seconds(10)
/** Event-loop utilization over a check above which the process was working. */
const WORKING = 0.05
/** …and below which it is at rest. */
const AT_REST = 0.01
/** Heap V8 holds beyond what is in use, above which a release is worth its pause. */
const SLACK_BYTES = 8 * 1024 * 1024

const heapSlack = (): number => {
  const h = v8.getHeapStatistics()
  return h.total_heap_size - h.used_heap_size
}

/**
 * For the life of a long-lived process, forked once it is ready: writes the compile cache, then checks every 10 s
 * and releases memory when the process has come to rest after work — start-up, or its event loop busy over a check —
 * (idle over the last check) and V8 holds more than 8 MB beyond the heap in use. A process with work waiting at start
 * or under steady load is never paused by it; one at rest pays one release per burst of work.
 */
export const memoryAtRest: Effect.Effect<void> = Effect.gen(function* () {
  yield* Effect.sync(persistCompileCache)
  let last = performance.eventLoopUtilization()
  // Start-up was work: what it left goes at the first check that finds the process at rest.
  let worked = true
  const check = Effect.sync(() => {
    const now = performance.eventLoopUtilization()
    const utilization = performance.eventLoopUtilization(now, last).utilization
    last = now
    if (utilization >= WORKING) worked = true
    else if (worked && utilization < AT_REST && heapSlack() > SLACK_BYTES) {
      worked = false
      releaseMemory()
    }
  })
  yield* Effect.forever(Effect.andThen(Effect.sleep(CHECK_EVERY), check))
})
