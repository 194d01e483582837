import type { Worker } from "node:worker_threads"
import { afterEach, describe, expect, it } from "vitest"
import { randomSeed, sodiumEd25519 } from "./ed25519.ts"
import { SignaturePool } from "./signature-pool.ts"

interface Case {
  readonly signature: Uint8Array
  readonly message: Uint8Array
  readonly publicKey: Uint8Array
  readonly valid: boolean
}

/** Signed messages of varied lengths; every third one tampered (message, signature or key). */
const cases = (n: number): Case[] => {
  const seeds = [randomSeed(), randomSeed(), randomSeed()]
  return Array.from({ length: n }, (_, i) => {
    const seed = seeds[i % 3] as Uint8Array
    const message = new Uint8Array(i % 700).map((_, j) => (i * 31 + j) & 0xff)
    const signature = sodiumEd25519.sign(message, seed)
    const publicKey = sodiumEd25519.publicKey(seed)
    if (i % 3 !== 2) return { signature, message, publicKey, valid: true }
    const which = i % 9
    if (which === 2 && message.length > 0) {
      const m = Uint8Array.from(message)
      m[0] = (m[0] as number) ^ 1
      return { signature, message: m, publicKey, valid: false }
    }
    if (which === 5) return { signature, message, publicKey: sodiumEd25519.publicKey(randomSeed()), valid: false }
    const s = Uint8Array.from(signature)
    s[10] = (s[10] as number) ^ 0x80
    return { signature: s, message, publicKey, valid: false }
  })
}

const pools: SignaturePool[] = []
const open = (options?: ConstructorParameters<typeof SignaturePool>[0]) => {
  const pool = new SignaturePool(options)
  pools.push(pool)
  return pool
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()))
})

describe("SignaturePool", () => {
  it("gives every signature the verdict libsodium gives inline, across batches and workers", async () => {
    const pool = open({ workers: 2, maxBatch: 64 })
    const all = cases(1000)
    const verdicts = await Promise.all(all.map((c) => pool.verify(c.signature, c.message, c.publicKey)))
    expect(verdicts).toEqual(all.map((c) => c.valid))
    expect(verdicts.filter((v) => !v).length).toBeGreaterThan(300)
  })

  it("answers a few signatures inline and wrong lengths with false", async () => {
    const pool = open({ workers: 1 })
    const [c] = cases(1) as [Case]
    expect(await pool.verify(c.signature, c.message, c.publicKey)).toBe(true)
    expect(await pool.verify(c.signature.subarray(0, 63), c.message, c.publicKey)).toBe(false)
    expect(await pool.verify(c.signature, c.message, new Uint8Array(33))).toBe(false)
  })

  it("loses no verdict when a worker dies with batches in flight", async () => {
    const pool = open({ workers: 1, maxBatch: 50 })
    const all = cases(400)
    const pending = all.map((c) => pool.verify(c.signature, c.message, c.publicKey))
    // The first batches are posted synchronously (maxBatch reached); kill the worker that holds them.
    const slots = (pool as unknown as { slots: { worker: Worker }[] }).slots
    await (slots[0] as { worker: Worker }).worker.terminate()
    expect(await Promise.all(pending)).toEqual(all.map((c) => c.valid))
    // A fresh worker took its place and keeps answering.
    const more = cases(200)
    expect(await Promise.all(more.map((c) => pool.verify(c.signature, c.message, c.publicKey)))).toEqual(
      more.map((c) => c.valid),
    )
    expect(pool.workers).toBe(1)
  })

  it("stops starting workers that die before their first answer, and checks inline from then on", async () => {
    const pool = open({ workers: 1, maxBatch: 50 })
    const internals = pool as unknown as { slots: { worker: Worker }[] }
    // Each worker a batch starts is killed before it can answer anything, as if it could not start on this machine.
    for (let round = 0; round < 5; round++) {
      const batch = cases(50)
      const pending = batch.map((c) => pool.verify(c.signature, c.message, c.publicKey))
      await internals.slots[0]?.worker.terminate()
      expect(await Promise.all(pending)).toEqual(batch.map((c) => c.valid))
    }
    expect(pool.workers).toBe(0)
    const all = cases(200)
    expect(await Promise.all(all.map((c) => pool.verify(c.signature, c.message, c.publicKey)))).toEqual(
      all.map((c) => c.valid),
    )
    expect(pool.workers).toBe(0)
  })

  it("starts no worker until a batch needs one, and stops it once idle", async () => {
    const pool = open({ workers: 1, idleMs: 100 })
    expect(pool.workers).toBe(0)
    // A few signatures at a time are checked inline: no thread.
    const few = cases(3)
    expect(await Promise.all(few.map((c) => pool.verify(c.signature, c.message, c.publicKey)))).toEqual(
      few.map((c) => c.valid),
    )
    expect(pool.workers).toBe(0)
    const all = cases(300)
    expect(await Promise.all(all.map((c) => pool.verify(c.signature, c.message, c.publicKey)))).toEqual(
      all.map((c) => c.valid),
    )
    expect(pool.workers).toBe(1)
    await new Promise((r) => setTimeout(r, 400))
    expect(pool.workers).toBe(0)
    // The next burst starts a worker again.
    expect(await Promise.all(all.map((c) => pool.verify(c.signature, c.message, c.publicKey)))).toEqual(
      all.map((c) => c.valid),
    )
    expect(pool.workers).toBe(1)
  })

  it("starts another worker only while the running ones are busy, up to `workers`", async () => {
    const pool = open({ workers: 2, maxBatch: 50 })
    const internals = pool as unknown as { slots: unknown[] }
    let most = 0
    const all = cases(1000)
    const pending = all.map((c) => {
      const p = pool.verify(c.signature, c.message, c.publicKey)
      most = Math.max(most, internals.slots.length)
      return p
    })
    expect(await Promise.all(pending)).toEqual(all.map((c) => c.valid))
    expect(most).toBe(2)
  })

  it("answers what is queued when closed, and inline after", async () => {
    const pool = open({ workers: 1 })
    const all = cases(300)
    const pending = all.map((c) => pool.verify(c.signature, c.message, c.publicKey))
    await pool.close()
    expect(await Promise.all(pending)).toEqual(all.map((c) => c.valid))
    const [c] = all as [Case]
    expect(await pool.verify(c.signature, c.message, c.publicKey)).toBe(true)
  })
})
