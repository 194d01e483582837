// Child process of crash.test.ts: appends batches of the deterministic stream to the log in argv[2] forever, printing
// each committed size, until the parent SIGKILLs it.
import { entryOf } from "./stream.test-support.ts"
import { TileLog } from "./tilelog.ts"

const [dir, seedArg] = process.argv.slice(2)
let state = Number(seedArg) >>> 0 || 1
const next = (): number => {
  state ^= state << 13
  state ^= state >>> 17
  state ^= state << 5
  return state >>> 0
}
const log = TileLog.open(dir!)
process.stdout.write(`open ${log.size}\n`)
for (;;) {
  const count = 1 + (next() % 700)
  const start = log.size
  const entries = Array.from({ length: count }, (_, j) => entryOf(start + j))
  log.append(entries, { seq: start + count })
  process.stdout.write(`${log.size}\n`)
}
