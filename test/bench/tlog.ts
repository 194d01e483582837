// Benchmark of the on-disk log, run by hand: `node test/bench/tlog.ts`. Appends 10^5 entries of 700 bytes in
// batches of 100, of 1000 and of random sizes in between; then proof latencies in a log of 10^6 (small) entries.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { TileLog, verifyStore } from "@vigil/tlog"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "tlog-bench-"))
const entry = (i: number, length: number): Uint8Array => {
  const b = Buffer.alloc(length, i & 0xff)
  b.writeUInt32BE(i >>> 0, 0)
  return b
}
let seed = 1
const random = (): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed / 2 ** 31
}

try {
  const N = 100_000
  for (const [name, size] of [
    ["100", () => 100],
    ["1000", () => 1000],
    ["100..1000", () => 100 + Math.floor(random() * 901)],
  ] as const) {
    const dir = path.join(root, `append-${name}`)
    const batches: Uint8Array[][] = []
    for (let i = 0; i < N; ) {
      const count = Math.min(size(), N - i)
      batches.push(Array.from({ length: count }, (_, j) => entry(i + j, 700)))
      i += count
    }
    const log = TileLog.open(dir)
    const t = performance.now()
    for (const batch of batches) log.append(batch, { seq: log.size + batch.length })
    const ms = performance.now() - t
    log.close()
    const v = performance.now()
    const ok = verifyStore(dir).ok
    console.log(
      `append ${N} x 700 B, batches of ${name}: ${ms.toFixed(0)} ms, ${((N / ms) * 1000).toFixed(0)} entries/s, ` +
        `${(ms / batches.length).toFixed(2)} ms per batch; verifyStore ${(performance.now() - v).toFixed(0)} ms (${ok})`,
    )
    fs.rmSync(dir, { recursive: true })
  }

  const M = 1_000_000
  const dir = path.join(root, "proofs")
  let log = TileLog.open(dir)
  let t = performance.now()
  for (let i = 0; i < M; i += 50_000) log.append(Array.from({ length: 50_000 }, (_, j) => entry(i + j, 16)))
  console.log(`build ${M} x 16 B in batches of 50000: ${(performance.now() - t).toFixed(0)} ms`)
  log.close()
  t = performance.now()
  log = TileLog.open(dir)
  console.log(`open at ${M}: ${(performance.now() - t).toFixed(1)} ms`)
  const indexes = Array.from({ length: 2000 }, () => Math.floor(random() * M)) // 2048 tiles cached by default
  for (const pass of ["first (tiles read from disk)", "again (tiles cached)"]) {
    t = performance.now()
    for (const i of indexes) log.inclusionProof(i)
    console.log(
      `inclusion proof at ${M}, ${pass}: ${(((performance.now() - t) / indexes.length) * 1000).toFixed(1)} us`,
    )
  }
  t = performance.now()
  for (const i of indexes.slice(0, 1000)) log.consistencyProof(i + 1)
  console.log(`consistency proof to ${M}: ${(((performance.now() - t) / 1000) * 1000).toFixed(1)} us`)
  t = performance.now()
  for (const i of indexes.slice(0, 1000)) log.entry(i)
  console.log(`entry read (bundle checked on first read): ${(((performance.now() - t) / 1000) * 1000).toFixed(1)} us`)
  log.close()
  t = performance.now()
  const result = verifyStore(dir)
  console.log(`verifyStore at ${M}: ${(performance.now() - t).toFixed(0)} ms (${result.ok})`)
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
