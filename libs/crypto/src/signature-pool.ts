import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"
import { fastEd25519 } from "./ed25519.ts"

/** Checks Ed25519 signatures, possibly off the calling thread. Resolves false, never rejects, for a bad signature. */
export interface SignatureChecker {
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): Promise<boolean>
}

/** The fast implementation on the calling thread: lowest latency, one core. */
export const inlineChecker: SignatureChecker = {
  verify: (signature, message, publicKey) => Promise.resolve(fastEd25519.verify(signature, message, publicKey)),
}

export interface SignaturePoolOptions {
  /**
   * Most worker threads; default: one fewer than the CPUs (at least one), so the event loop keeps a core. They start
   * when a batch first needs one, not with the pool.
   */
  readonly workers?: number
  /** Most signatures sent to a worker in one message. */
  readonly maxBatch?: number
  /**
   * Batches of at most this many signatures are checked inline (default 4, about 0.2 ms here): a few events at a
   * time is a latency-bound consumer, for which a thread hop only adds delay and a thread competing for the CPUs.
   */
  readonly inlineMax?: number
  /**
   * A worker that has had no batch for this long is stopped (default 10 s); the next batch that needs one starts a
   * worker again. A thread costs its own V8 heap and module graph (some 20 MB here), which a service at rest should
   * not hold; starting one takes tens of milliseconds, once per burst of events.
   */
  readonly idleMs?: number
}

interface Pending {
  readonly signature: Uint8Array
  readonly message: Uint8Array
  readonly publicKey: Uint8Array
  readonly resolve: (ok: boolean) => void
}

interface Slot {
  readonly worker: Worker
  /** Batches sent and not yet answered, by id. */
  readonly inFlight: Map<number, ReadonlyArray<Pending>>
  /** Whether it ever answered: a worker that dies before its first answer may be unable to start at all. */
  answered: boolean
  /** Stops the worker `idleMs` after it started or last answered with nothing left in flight. */
  readonly idle: NodeJS.Timeout
  /** Stopped by the pool (idle or closed), or found dead: either way no longer in `slots`. */
  gone: boolean
}

/** Workers that die before answering anything, in a row, after which the pool stops replacing them. */
const MAX_FAILED_STARTS = 3

/**
 * Ed25519 verification (libsodium) on worker threads, in batches. A consumer hands over every signature of a pull
 * batch within one turn of the event loop; they travel to a worker as one transferred buffer and come back as one
 * verdict array, so the per-signature cost of crossing threads is a copy of the signed bytes. On a 2-CPU machine
 * this puts signature checks on the second core while the event loop parses, acks and handles (ADR 0012).
 *
 * A flush of a few signatures (`inlineMax`) is checked inline: a consumer that sees events one or two at a time is
 * bound by latency, and a thread hop would only add to it.
 *
 * Workers start on demand: the first flush too large for inline starts one (its batch waits for the thread to come
 * up), another starts only while every running one is busy, up to `workers`; each stops after `idleMs` without a
 * batch. A pool that only ever sees a few events at a time, as most services at rest, runs no thread at all.
 */
export class SignaturePool implements SignatureChecker {
  private readonly slots: Slot[] = []
  /** Most workers; 0 once workers kept failing to start (everything is checked inline from then on). */
  private maxWorkers: number
  private readonly maxBatch: number
  private readonly inlineMax: number
  private readonly idleMs: number
  private queue: Pending[] = []
  private scheduled = false
  private nextId = 0
  private closed = false
  private failedStarts = 0

  constructor(options: SignaturePoolOptions = {}) {
    this.maxWorkers = options.workers ?? Math.max(1, availableParallelism() - 1)
    this.maxBatch = options.maxBatch ?? 512
    this.inlineMax = options.inlineMax ?? 4
    this.idleMs = options.idleMs ?? 10_000
  }

  private spawn(): Slot {
    const worker = new Worker(new URL("./signature-pool-worker.ts", import.meta.url))
    // Idle workers must not keep a finished process alive; callers still close() the pool.
    worker.unref()
    const idle = setTimeout(() => this.retire(slot), this.idleMs)
    idle.unref()
    const slot: Slot = { worker, inFlight: new Map(), answered: false, idle, gone: false }
    worker.on("message", (m: { readonly id: number; readonly verdicts: Uint8Array }) => {
      slot.answered = true
      this.failedStarts = 0
      const batch = slot.inFlight.get(m.id)
      if (batch === undefined) return
      slot.inFlight.delete(m.id)
      for (let i = 0; i < batch.length; i++) (batch[i] as Pending).resolve(m.verdicts[i] === 1)
      if (slot.inFlight.size === 0 && !slot.gone) slot.idle.refresh()
    })
    // A worker that dies takes no verdict with it: its batches are checked inline, and the next batch that needs a
    // worker starts a fresh one — unless workers keep dying before their first answer (they cannot start here): then
    // the pool checks everything inline rather than starting threads forever.
    const lost = () => {
      if (slot.gone) return
      this.drop(slot)
      if (!slot.answered && ++this.failedStarts >= MAX_FAILED_STARTS) this.maxWorkers = 0
    }
    worker.on("error", lost)
    worker.on("exit", lost)
    this.slots.push(slot)
    return slot
  }

  /** Out of `slots`, its idle timer cleared and its batches in flight checked inline. */
  private drop(slot: Slot): void {
    slot.gone = true
    clearTimeout(slot.idle)
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
    const orphaned = [...slot.inFlight.values()]
    slot.inFlight.clear()
    for (const batch of orphaned) checkInline(batch)
  }

  /** Stop an idle worker; one with batches in flight is left alone (its last answer restarts the timer). */
  private retire(slot: Slot): void {
    if (slot.gone || slot.inFlight.size > 0) return
    this.drop(slot)
    void slot.worker.terminate()
  }

  /** Worker threads running now. */
  get workers(): number {
    return this.slots.length
  }

  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
    if (signature.length !== 64 || publicKey.length !== 32) return Promise.resolve(false)
    if (this.closed) return Promise.resolve(fastEd25519.verify(signature, message, publicKey))
    return new Promise((resolve) => {
      this.queue.push({ signature, message, publicKey, resolve })
      if (this.queue.length >= this.maxBatch) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.scheduled = false
    const batch = this.queue
    if (batch.length === 0) return
    this.queue = []
    if (batch.length <= this.inlineMax || this.maxWorkers === 0) {
      checkInline(batch)
      return
    }
    // The least busy running worker; a new one while every running one has work and there is room for another.
    let slot = this.slots.reduce<Slot | undefined>(
      (a, b) => (a === undefined || b.inFlight.size < a.inFlight.size ? b : a),
      undefined,
    )
    if (slot === undefined || (slot.inFlight.size > 0 && this.slots.length < this.maxWorkers)) slot = this.spawn()
    const id = this.nextId++
    const buf = pack(batch)
    slot.inFlight.set(id, batch)
    slot.worker.postMessage({ id, buf }, [buf])
  }

  /** Stop the workers; signatures still queued or in flight are checked inline first. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const queued = this.queue
    this.queue = []
    checkInline(queued)
    const slots = [...this.slots]
    for (const slot of slots) this.drop(slot)
    await Promise.all(slots.map((s) => s.worker.terminate()))
  }
}

const checkInline = (batch: ReadonlyArray<Pending>): void => {
  for (const p of batch) p.resolve(fastEd25519.verify(p.signature, p.message, p.publicKey))
}

const pack = (batch: ReadonlyArray<Pending>): ArrayBuffer => {
  let size = 4 + 4 * batch.length
  for (const p of batch) size += 96 + p.message.length
  const buf = new ArrayBuffer(size)
  const bytes = new Uint8Array(buf)
  const view = new DataView(buf)
  view.setUint32(0, batch.length, true)
  let off = 4 + 4 * batch.length
  batch.forEach((p, i) => {
    view.setUint32(4 + 4 * i, p.message.length, true)
    bytes.set(p.signature, off)
    bytes.set(p.publicKey, off + 64)
    bytes.set(p.message, off + 96)
    off += 96 + p.message.length
  })
  return buf
}
