import { createHash, createPublicKey, verify } from "node:crypto"
import { jetstream } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { logOrigin } from "@vigil/auditlog"
import { encodeEvent, eventSubject, signEvent } from "@vigil/events"
import {
  freePort,
  type NatsServer,
  prepareHome,
  type ServiceProcess,
  startNats,
  startService,
  type TestHome,
} from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * A tlog-tiles client written here from the specifications alone, sharing no code with libs/tlog, libs/merkle or
 * libs/note: it reads the auditor's served checkpoint, tiles and entry bundles the way any C2SP client would, and
 * checks every claim the log makes.
 *
 * - c2sp.org/signed-note: a note is text lines, a blank line, then signature lines `— <name> <base64(key hash ‖
 *   signature)>`; for Ed25519 the key hash is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key) and the
 *   signature covers the text up to and including the newline before the blank line.
 * - c2sp.org/tlog-checkpoint: origin, tree size, base64 root hash.
 * - c2sp.org/tlog-tiles: `tile/<L>/<N>` holds 256 hashes of level L·8, `<N>` in 3-digit groups with an `x` on all
 *   but the last (1234 → x001/234), a partial tile `…/<N>.p/<W>` holds W; `tile/entries/<N>[.p/<W>]` holds the
 *   entries, each a big-endian uint16 length then the entry.
 * - RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ entry), node hash SHA-256(0x01 ‖ left ‖ right), MTH splitting at the
 *   largest power of two below n; §2.1.3.2: verifying an inclusion proof.
 */

const sha256 = (...parts: ReadonlyArray<Uint8Array>): Buffer => {
  const h = createHash("sha256")
  for (const p of parts) h.update(p)
  return h.digest()
}
const leafHashOf = (entry: Uint8Array) => sha256(Uint8Array.of(0), entry)
const nodeHashOf = (l: Uint8Array, r: Uint8Array) => sha256(Uint8Array.of(1), l, r)

/** RFC 9162 MTH over leaf hashes. */
const mth = (leaves: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (leaves.length === 1) return leaves[0] as Uint8Array
  let k = 1
  while (k * 2 < leaves.length) k *= 2
  return nodeHashOf(mth(leaves.slice(0, k)), mth(leaves.slice(k)))
}

/** RFC 9162 §2.1.3.2. */
const verifyInclusionProof = (
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: ReadonlyArray<Uint8Array>,
  root: Uint8Array,
): boolean => {
  if (index >= size) return false
  let fn = index
  let sn = size - 1
  let r: Uint8Array = leaf
  for (const p of proof) {
    if (sn === 0) return false
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHashOf(p, r)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn >>= 1
          sn >>= 1
        }
      }
    } else {
      r = nodeHashOf(r, p)
    }
    fn >>= 1
    sn >>= 1
  }
  return sn === 0 && Buffer.from(r).equals(Buffer.from(root))
}

/** tlog-tiles index path element. */
const tileIndex = (n: number): string => {
  const groups: Array<string> = []
  let rest = n
  do {
    groups.unshift(String(rest % 1000).padStart(3, "0"))
    rest = Math.floor(rest / 1000)
  } while (rest > 0)
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join("/")
}
const tilePathOf = (level: number | "entries", n: number, width: number) =>
  `tile/${level}/${tileIndex(n)}${width === 256 ? "" : `.p/${width}`}`

const ed25519Key = (raw: Uint8Array) =>
  createPublicKey({
    key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]),
    format: "der",
    type: "spki",
  })

describe("the auditor's log read by an independent tlog-tiles client", () => {
  let server: NatsServer
  let th: TestHome
  let auditor: ServiceProcess
  let gw: NatsConnection
  let base: string

  beforeAll(async () => {
    server = await startNats({ secure: true })
    th = await prepareHome(server)
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    auditor = await startService("auditor", th, {
      env: { VIGIL_AUDIT_HTTP_PORT: String(port), VIGIL_CHECKPOINT_MS: "100", VIGIL_CHECKPOINT_LEAVES: "100" },
    })
    gw = await server.connect("gateway")
    const js = jetstream(gw, { checkAPI: false })
    for (let i = 0; i < 300; i++) {
      const e = signEvent(th.keys.gateway, {
        type: "task.submitted",
        session: `interop${i % 7}`,
        data: { channel: "cli", workspace: "/home/ana", promptChars: i + 1 },
        blobs: {
          prompt: {
            sha256: createHash("sha256").update(String(i)).digest("hex"),
            size: i + 1,
            mediaType: "text/plain",
          },
        },
      })
      await js.publish(eventSubject(e.session, e.type), encodeEvent(e), { msgID: e.id })
    }
  }, 60_000)
  afterAll(async () => {
    await auditor?.stop()
    await gw?.close()
    await server?.stop()
    th?.remove()
  })

  const fetchBytes = async (path: string): Promise<Buffer> => {
    const r = await fetch(`${base}/${path}`)
    expect(r.status, path).toBe(200)
    return Buffer.from(await r.arrayBuffer())
  }

  it("verifies the checkpoint's signature, every entry against the tiles, the root, and inclusion proofs", async () => {
    // A checkpoint covering the 300 events (the auditor's own checkpoint events may add leaves).
    let note = ""
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${base}/checkpoint`)
      note = r.status === 200 ? await r.text() : ""
      if (note !== "" && Number(note.split("\n")[1]) >= 300) break
      await new Promise((res) => setTimeout(res, 100))
    }
    const [body, sigs] = note.split("\n\n") as [string, string]
    const [origin, sizeText, rootB64] = body.split("\n")
    const size = Number(sizeText)
    const root = Buffer.from(rootB64 as string, "base64")
    expect(origin).toBe(logOrigin(th.chain))
    expect(size).toBeGreaterThanOrEqual(300)

    // signed-note: the auditor's Ed25519 key, by its key hash.
    const pub = th.keys.auditor.publicKey
    const keyHash = sha256(Buffer.from(`${origin}\n`), Uint8Array.of(1), pub).subarray(0, 4)
    const mine = sigs
      .split("\n")
      .filter((l) => l.startsWith(`— ${origin} `))
      .map((l) => Buffer.from(l.slice(`— ${origin} `.length), "base64"))
      .find((b) => b.subarray(0, 4).equals(keyHash))
    expect(mine, "a signature by the auditor's key").toBeDefined()
    expect(verify(null, Buffer.from(`${body}\n`), ed25519Key(pub), (mine as Buffer).subarray(4))).toBe(true)

    // Every entry bundle, parsed with 16-bit lengths; level-0 tiles must hold exactly their leaf hashes.
    const leaves: Array<Buffer> = []
    for (let n = 0; n * 256 < size; n++) {
      const width = Math.min(256, size - n * 256)
      const bundle = await fetchBytes(tilePathOf("entries", n, width))
      let at = 0
      for (let i = 0; i < width; i++) {
        const len = bundle.readUInt16BE(at)
        const entry = bundle.subarray(at + 2, at + 2 + len)
        at += 2 + len
        // Each entry is a signed event's canonical JSON.
        expect(JSON.parse(entry.toString("utf8")).sig).toMatch(/^[A-Za-z0-9_-]{86}$/)
        leaves.push(leafHashOf(entry))
      }
      expect(at, "no bytes after the last entry").toBe(bundle.length)
      const tile = await fetchBytes(tilePathOf(0, n, width))
      expect(tile.equals(Buffer.concat(leaves.slice(n * 256, n * 256 + width))), `tile 0/${n}`).toBe(true)
    }
    expect(leaves).toHaveLength(size)
    expect(Buffer.from(mth(leaves)).equals(root), "root recomputed from the entries").toBe(true)
    // Level 1 holds the hash of each full level-0 tile.
    const full = Math.floor(size / 256)
    if (full > 0) {
      const l1 = await fetchBytes(tilePathOf(1, 0, full))
      for (let n = 0; n < full; n++) {
        expect(l1.subarray(n * 32, n * 32 + 32).equals(Buffer.from(mth(leaves.slice(n * 256, n * 256 + 256))))).toBe(
          true,
        )
      }
    }

    // Inclusion proofs from the proof endpoint, checked by RFC 9162's algorithm against the signed root.
    for (const index of [0, 1, 255, 256, 299, size - 1]) {
      const a = (await (await fetch(`${base}/proof/inclusion?index=${index}&size=${size}`)).json()) as {
        ok: boolean
        proof: Array<string>
      }
      expect(a.ok).toBe(true)
      const proof = a.proof.map((p) => Buffer.from(p, "base64"))
      expect(verifyInclusionProof(index, size, leaves[index] as Buffer, proof, root), `leaf ${index}`).toBe(true)
      expect(verifyInclusionProof(index ^ 1, size, leaves[index] as Buffer, proof, root)).toBe(false)
    }
  })
})
