import { spawnSync } from "node:child_process"
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { jetstream } from "@nats-io/jetstream"
import {
  type AuditVerifyReport,
  auditLogDir,
  CHECKPOINT_HISTORY,
  logOrigin,
  noteSigner,
  noteVerifiers,
  readHomeTrust,
  verifyAuditLog,
} from "@vigil/auditlog"
import { canonicalJson, encodeEvent, eventSubject, PROOF_SUBJECTS, type Principal, signEvent } from "@vigil/events"
import { signCheckpoint } from "@vigil/note"
import { eventually, prepareHome, sampleEvents, startNats, startService, type TestHome } from "@vigil/test"
import { BUNDLE_LAYOUTS, bundlePath, encodeBundle, parseBundle, TileLog } from "@vigil/tlog"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * `vigil audit verify` against a log written by a real auditor process: a few hundred events from five principals
 * go through a secured nats-server into the auditor, which signs checkpoints every 200 ms; the auditor is stopped
 * and each case tampers with its own copy of the home. Every tampering must be refused, naming the exact first bad
 * leaf and a fitting reason, by the in-process verifier and by the CLI (`node cli/src/main.ts audit verify --json`).
 */

const MAIN = resolve(import.meta.dirname, "..", "cli", "src", "main.ts")
const LAYOUT = BUNDLE_LAYOUTS["tlog-tiles"]
const EVENTS = 297 // 33 sessions of 9 events: more than one full bundle (256 leaves)

let th: TestHome
let base: string
let size: number
const scratch = mkdtempSync(join(tmpdir(), "vigil-audit-tamper-"))
const cleanup: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  const server = await startNats({ secure: true })
  cleanup.push(() => server.stop())
  th = await prepareHome(server)
  cleanup.push(() => th.remove())
  const auditor = await startService("auditor", th, { env: { VIGIL_CHECKPOINT_MS: "200" } })
  cleanup.push(() => auditor.stop())
  const principals: Principal[] = ["gateway", "dlp", "inference", "policy", "sandbox"]
  const conns = Object.fromEntries(
    await Promise.all(principals.map(async (p) => [p, await server.connect(p as "gateway")] as const)),
  )
  const events = sampleEvents(th.keys, EVENTS)
  const ops = await server.connect("ops")
  const checkpointCovering = (n: number) =>
    eventually(
      `a checkpoint covering ${n} events`,
      async () => {
        const r = (await ops.request(PROOF_SUBJECTS.checkpoint, "{}", { timeout: 2_000 })).json<{
          ok: boolean
          size: number
        }>()
        return r.ok && r.size >= n ? r : undefined
      },
      30_000,
    )
  // In two halves, each waited for: the log under test holds several checkpoints, whatever the auditor's batching.
  const half = Math.floor(EVENTS / 2)
  for (const [i, ev] of events.entries()) {
    const js = jetstream(conns[ev.source]!, { checkAPI: false })
    await js.publish(eventSubject(ev.session, ev.type), encodeEvent(ev), { msgID: ev.id })
    if (i === half - 1) await checkpointCovering(half)
  }
  await checkpointCovering(EVENTS)
  for (const nc of [ops, ...Object.values(conns)]) await nc.close()
  // Let the checkpoint's own event land, then stop the auditor: what it left is the log under test.
  await new Promise((r) => setTimeout(r, 400))
  expect(await auditor.stop()).toBe(0)
  await server.stop()
  base = join(scratch, "base")
  copyHome(th.home.root, base)
  size = (JSON.parse(readFileSync(join(auditLogDir(base), "state.json"), "utf8")) as { size: number }).size
  expect(size).toBeGreaterThanOrEqual(EVENTS)
}, 60_000)

afterAll(async () => {
  for (const c of cleanup.reverse()) await c()
  rmSync(scratch, { recursive: true, force: true })
})

/** The parts of a home `vigil audit verify` reads: keys (root.pub, manifest) and the auditor's data. */
const copyHome = (from: string, to: string) => {
  for (const part of ["keys", "data"]) cpSync(join(from, part), join(to, part), { recursive: true })
}

let cases = 0
/** A fresh copy of the untampered home, and its log dir. */
const fresh = (): { home: string; dir: string } => {
  const home = join(scratch, `case-${++cases}`)
  copyHome(base, home)
  return { home, dir: auditLogDir(home) }
}

const bundle0 = (dir: string) => join(dir, bundlePath(LAYOUT, 0))
const readBundle0 = (dir: string): Uint8Array[] =>
  parseBundle(LAYOUT, readFileSync(bundle0(dir)), 256).entries.map((e) => new Uint8Array(e))
const writeBundle0 = (dir: string, entries: ReadonlyArray<Uint8Array>) =>
  writeFileSync(bundle0(dir), encodeBundle(LAYOUT, entries))

/** Every leaf of the log (read through TileLog, which checks them against the tiles). */
const allLeaves = (dir: string): Uint8Array[] => {
  const log = TileLog.open(dir, { create: false })
  try {
    return log.entries(0, log.size).map((e) => new Uint8Array(e))
  } finally {
    log.close()
  }
}

/**
 * Replaces the log in `dir` with a self-consistent one of `leaves` (tiles, root and state rebuilt by TileLog), keeping
 * the auditor's signed checkpoints: the tree is sound, only what it holds is in question.
 */
const rebuild = (dir: string, leaves: ReadonlyArray<Uint8Array>) => {
  const history = readFileSync(join(dir, CHECKPOINT_HISTORY))
  const published = readFileSync(join(dir, "checkpoint"))
  rmSync(dir, { recursive: true, force: true })
  const log = TileLog.open(dir, { bundleFormat: "tlog-tiles" })
  try {
    for (let i = 0; i < leaves.length; i += 100) log.append(leaves.slice(i, i + 100))
  } finally {
    log.close()
  }
  writeFileSync(join(dir, CHECKPOINT_HISTORY), history)
  writeFileSync(join(dir, "checkpoint"), published)
}

/** Verifies in-process and with the CLI; both must agree. */
const verify = async (
  home: string,
): Promise<{ report: AuditVerifyReport; code: number | null; cli: AuditVerifyReport }> => {
  const trust = readHomeTrust(home)
  const report = await verifyAuditLog({
    dir: auditLogDir(home),
    rootPublicKey: trust.rootPublicKey,
    manifests: trust.manifests,
  })
  const run = spawnSync(process.execPath, [MAIN, "audit", "verify", "--home", home, "--json"], {
    encoding: "utf8",
    timeout: 30_000,
  })
  const line = run.stdout.trim().split("\n").at(-1) ?? ""
  let cli: AuditVerifyReport
  try {
    cli = JSON.parse(line) as AuditVerifyReport
  } catch {
    throw new Error(`the CLI printed no report (exit ${run.status}):\n${run.stdout}\n${run.stderr}`)
  }
  expect(cli.ok).toBe(report.ok)
  expect(cli.first).toEqual(report.first)
  return { report, code: run.status, cli }
}

/** The verdict must be `code` at leaf `index`, from both the function and the CLI (exit 1). */
const expectRefused = async (home: string, index: number, codes: ReadonlyArray<string>) => {
  const { report, code } = await verify(home)
  expect(report.ok).toBe(false)
  expect(code).toBe(1)
  expect(report.first?.index, JSON.stringify(report.first)).toBe(index)
  expect(codes, JSON.stringify(report.first)).toContain(report.first?.code)
  return report
}

/** Flips one character in the middle of the leaf's signature: same length, still schema-valid base64url. */
const flipSignatureChar = (leaf: Uint8Array): Uint8Array => {
  const text = Buffer.from(leaf).toString("utf8")
  const at = text.indexOf('"sig":"') + 7 + 10
  const edited = `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`
  const out = new Uint8Array(Buffer.from(edited, "utf8"))
  expect(out.length).toBe(leaf.length)
  return out
}

describe("vigil audit verify on a real auditor's log", () => {
  it("verifies the untampered log (exit 0, every leaf, every checkpoint)", async () => {
    const { home } = fresh()
    const { report, code } = await verify(home)
    expect(report.problems).toEqual([])
    expect(code).toBe(0)
    expect(report.leavesChecked).toBe(size)
    expect(report.checkpoints).toBeGreaterThan(1)
    expect(report.checkpointSize).toBeGreaterThanOrEqual(EVENTS)
  })

  it("names an edited leaf (bytes changed inside an entry bundle, length kept)", async () => {
    const { home, dir } = fresh()
    const entries = readBundle0(dir)
    entries[100] = flipSignatureChar(entries[100]!)
    writeBundle0(dir, entries)
    const report = await expectRefused(home, 100, ["bad_signature", "LEAF_HASH_MISMATCH"])
    // Both the event check and the tree see it, at the same index.
    expect(report.problems.filter((p) => p.index === 100).map((p) => p.code)).toEqual([
      "bad_signature",
      "LEAF_HASH_MISMATCH",
    ])
  })

  it("names a deleted leaf", async () => {
    const { home, dir } = fresh()
    const entries = readBundle0(dir)
    entries.splice(50, 1)
    writeBundle0(dir, entries)
    await expectRefused(home, 50, ["LEAF_HASH_MISMATCH"])
  })

  it("names two swapped leaves at the first of them", async () => {
    const { home, dir } = fresh()
    const entries = readBundle0(dir)
    ;[entries[60], entries[70]] = [entries[70]!, entries[60]!]
    writeBundle0(dir, entries)
    await expectRefused(home, 60, ["LEAF_HASH_MISMATCH"])
  })

  it("names an inserted leaf, even a validly signed one", async () => {
    const { home, dir } = fresh()
    const entries = readBundle0(dir)
    const extra = signEvent(th.keys.gateway, {
      type: "task.submitted",
      session: "inserted",
      data: { channel: "cli", workspace: "/w", promptChars: 1 },
      blobs: { prompt: { sha256: "b".repeat(64), size: 1, mediaType: "text/plain" } },
    })
    entries.splice(80, 0, encodeEvent(extra))
    writeBundle0(dir, entries)
    await expectRefused(home, 80, ["LEAF_HASH_MISMATCH"])
  })

  it("names the cut when an entry bundle is truncated", async () => {
    const { home, dir } = fresh()
    const entries = readBundle0(dir)
    // Keep 200 whole entries and half of the next.
    const keep = encodeBundle(LAYOUT, entries.slice(0, 200)).length + 4 + Math.floor(entries[200]!.length / 2)
    truncateSync(bundle0(dir), keep)
    await expectRefused(home, 200, ["TRUNCATED"])
  })

  it("names the first missing leaf when the log was rolled back behind its signed checkpoints", async () => {
    const { home, dir } = fresh()
    const keep = size - 40
    rebuild(dir, allLeaves(dir).slice(0, keep))
    const report = await expectRefused(home, keep, ["checkpoint_beyond_log"])
    expect(report.problems.every((p) => p.kind === "checkpoint")).toBe(true)
  })

  it("names a leaf re-signed by a manifest key not authorised for its type, before the checkpoints it breaks", async () => {
    const { home, dir } = fresh()
    const leaves = allLeaves(dir)
    // The policy key is in the manifest, but only for policy's event types.
    const forged = signEvent(th.keys.policy, {
      type: "task.submitted",
      session: "forged",
      data: { channel: "cli", workspace: "/home/user", promptChars: 3 },
      blobs: { prompt: { sha256: "c".repeat(64), size: 3, mediaType: "text/plain" } },
    })
    leaves[120] = encodeEvent(forged)
    rebuild(dir, leaves)
    const report = await expectRefused(home, 120, ["key_not_authorized"])
    expect(report.first?.eventId).toBe(forged.id)
    // The tree is self-consistent; the signed checkpoints after leaf 120 no longer match it.
    expect(report.problems.some((p) => p.kind === "tree")).toBe(false)
    expect(report.problems.map((p) => p.code)).toContain("checkpoint_root_mismatch")
  })

  it("names a leaf that is not the canonical form of its (validly signed) event", async () => {
    const { home, dir } = fresh()
    const leaves = allLeaves(dir)
    const event = JSON.parse(Buffer.from(leaves[130]!).toString("utf8")) as Record<string, unknown>
    const pretty = JSON.stringify(event, null, 1)
    expect(pretty).not.toBe(canonicalJson(event))
    leaves[130] = new Uint8Array(Buffer.from(pretty, "utf8"))
    rebuild(dir, leaves)
    await expectRefused(home, 130, ["non_canonical"])
  })

  it("names a re-published old event appended a second time, at its second index", async () => {
    const { home, dir } = fresh()
    // Built with TileLog directly (the auditor refuses duplicates), and signed as the auditor would sign it, so the
    // tree and every checkpoint are sound: only the duplicate id is wrong.
    const log = TileLog.open(dir, { create: false })
    const origin = logOrigin(th.chain)
    try {
      const again = log.entry(10)
      log.append([again])
      const note = signCheckpoint({ origin, size: log.size, rootHash: log.root() }, [
        noteSigner(origin, th.keys.auditor),
      ])
      log.publishCheckpoint(note, noteVerifiers(origin, th.chain), { origin })
      appendFileSync(join(dir, CHECKPOINT_HISTORY), `${note}\n\u001e\n`)
    } finally {
      log.close()
    }
    const report = await expectRefused(home, size, ["duplicate_id"])
    expect(report.first?.message).toContain("leaf 10")
    expect(report.problems).toHaveLength(1)
  })
})
