// The audit benchmark's floor: the least any auditor has to do per event, and nothing more. Per message of a
// durable over VIGIL_EVENTS (the auditor durable's settings, the auditor's pull size): JSON parse, the RFC 8785
// bytes the signature covers, the Ed25519 check on libs/events' SignaturePool (the auditor's worker thread), a
// SHA-256 leaf hash, the event's bytes appended to one file fsync'd per batch, one small OCSF-shaped record
// published through libs/bus `ackedPublisher` with a Nats-Msg-Id and acked by the stream, then the message acked.
// No schema, manifest or subject checks, no tiles, no checkpoints, no alerts, no Effect.
// `node test/bench/audit-floor.ts <url> <admin seed> <durable> <keys.json> <dir> <n>`; exits when n messages are
// acked. Run by test/bench/audit.ts only.
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import type { JsMsg } from "@nats-io/jetstream"
import { SignaturePool } from "@vigil/crypto"
import { signingBytes } from "@vigil/events"
import { leafHash } from "@vigil/merkle"
import { openAdminConsumer } from "./admin-consumer.ts"

const args = process.argv.slice(2)
if (args.length !== 6) {
  console.error("usage: audit-floor.ts <url> <admin seed> <durable> <keys.json> <dir> <n>")
  process.exit(2)
}
const [url, seed, durable, keysFile, dir, total] = args as [string, string, string, string, string, string]
const n = Number(total)
const MAX_BATCH = 2_000
const MAX_WAIT_MS = 100
const keys = new Map(
  Object.entries(JSON.parse(readFileSync(keysFile, "utf8")) as Record<string, string>).map(([kid, b64]) => [
    kid,
    Buffer.from(b64, "base64"),
  ]),
)
const pool = new SignaturePool()
const fd = openSync(join(dir, "leaves"), "a")
const { nc, acked, messages } = await openAdminConsumer(url, seed, durable, {
  maxMessages: 1_000,
  ackTimeoutMs: 10_000,
})

interface Item {
  readonly m: JsMsg
  readonly id: string
  readonly type: string
  readonly time: string
  readonly sig: string
  readonly valid: Promise<boolean>
}

let leaves = 0
let ackedCount = 0
let batch: Item[] = []
let timer: NodeJS.Timeout | undefined
let committing: Promise<void> = Promise.resolve()

const commit = async (items: ReadonlyArray<Item>) => {
  const verdicts = await Promise.all(items.map((i) => i.valid))
  if (verdicts.includes(false)) throw new Error("a signature did not verify")
  // The auditor's own leaf hash (RFC 9162: SHA-256 over 0x00 ‖ entry).
  const hashes = items.map(({ m }) => Buffer.from(leafHash(m.data)))
  const bytes = Buffer.concat(items.map((i) => i.m.data))
  let off = 0
  while (off < bytes.length) off += writeSync(fd, bytes, off)
  fsyncSync(fd)
  await new Promise<void>((resolve, reject) => {
    let remaining = items.length
    items.forEach((item, k) => {
      const record = {
        activity_id: 1,
        category_uid: 6,
        class_uid: 6003,
        type_uid: 600301,
        severity_id: 1,
        time: Date.parse(item.time),
        metadata: {
          version: "1.3.0",
          product: { name: "Vigil", vendor_name: "Vigil", version: "floor" },
          uid: item.id,
        },
        unmapped: { leaf_index: leaves + k, leaf_hash: hashes[k]?.toString("hex"), type: item.type, sig: item.sig },
      }
      acked.send("vigil.audit.ocsf.floor", Buffer.from(JSON.stringify(record)), { msgId: `floor:${item.id}` }, (e) =>
        e === undefined ? --remaining === 0 && resolve() : reject(e),
      )
    })
  })
  leaves += items.length
  for (const { m } of items) m.ack()
  ackedCount += items.length
  if (ackedCount >= n) {
    await nc.flush()
    closeSync(fd)
    await pool.close()
    await nc.close()
    process.exit(0)
  }
}

const cut = () => {
  if (timer !== undefined) clearTimeout(timer)
  timer = undefined
  const items = batch
  batch = []
  // One commit at a time, in order; the next batch is received and verified meanwhile.
  committing = committing.then(() => commit(items))
  committing.catch((e) => {
    console.error(e)
    process.exit(1)
  })
}

for await (const m of messages) {
  const obj = JSON.parse(m.string()) as Record<string, unknown> & {
    id: string
    type: string
    time: string
    kid: string
    sig: string
  }
  const { sig, ...unsigned } = obj
  const publicKey = keys.get(obj.kid)
  const valid =
    publicKey === undefined
      ? Promise.resolve(false)
      : pool.verify(Buffer.from(sig, "base64url"), signingBytes(unsigned), publicKey)
  batch.push({ m, id: obj.id, type: obj.type, time: obj.time, sig, valid })
  if (batch.length >= MAX_BATCH) cut()
  else if (timer === undefined) timer = setTimeout(cut, MAX_WAIT_MS)
}
