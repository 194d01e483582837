import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type AuditVerifyReport, logOrigin, noteSigner, readCheckpointHistory } from "@vigil/auditlog"
import { homeSigningKeys, KeyStore, rotateSigningKey } from "@vigil/keys"
import { openCheckpoint, openNote, parseVerifierKey, signCheckpoint } from "@vigil/note"
import { buildSampleHome } from "@vigil/test"
import { CHECKPOINT_FILE } from "@vigil/tlog"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { type AuditIo, printVerify, runAudit } from "../cli/src/audit.ts"

/**
 * `vigil audit key` on a home whose log the auditor's own `AuditCore` wrote and signed (no bus needed): what it prints
 * is taken as an outside verifier would take it, as text, and must verify the checkpoint note; and the wording of
 * `vigil audit verify` (one leaf, one checkpoint), with its progress never after its result.
 */

const scratch = mkdtempSync(join(tmpdir(), "vigil-audit-key-"))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

interface Captured {
  readonly io: AuditIo
  /** Every write, in order: `out` lines and `err` text. */
  readonly writes: Array<{ readonly to: "out" | "err"; readonly text: string }>
  readonly out: () => string
  readonly err: () => string
}

const capture = (errIsTty = false): Captured => {
  const writes: Array<{ to: "out" | "err"; text: string }> = []
  return {
    io: {
      out: (line) => writes.push({ to: "out", text: `${line}\n` }),
      err: (text) => writes.push({ to: "err", text }),
      errIsTty,
      errColumns: 100,
    },
    writes,
    out: () =>
      writes
        .filter((w) => w.to === "out")
        .map((w) => w.text)
        .join(""),
    err: () =>
      writes
        .filter((w) => w.to === "err")
        .map((w) => w.text)
        .join(""),
  }
}

const audit = async (args: ReadonlyArray<string>, errIsTty = false) => {
  const c = capture(errIsTty)
  const code = await runAudit(args, c.io)
  return { code, stdout: c.out(), stderr: c.err(), writes: c.writes }
}

const VKEY = /^vigil\/[^+\s]+\/[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/

describe("vigil audit key", () => {
  it("prints the verifier key that verifies the auditor's checkpoint, as any signed-note verifier reads it", async () => {
    const root = join(scratch, "one")
    const { logDir } = await buildSampleHome(root, 20, { checkpointEvery: 10, batch: 5 })
    const r = await audit(["key", "--home", root])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe("")
    const lines = r.stdout.trimEnd().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(VKEY)

    // From the printed text only: the key's name is the note's origin, and every checkpoint the auditor signed
    // (the published one and the whole history) opens with it.
    const vkey = parseVerifierKey(lines[0]!)
    const published = readFileSync(join(logDir, CHECKPOINT_FILE), "utf8")
    const history = readCheckpointHistory(logDir)
    expect(history.length).toBeGreaterThanOrEqual(2)
    for (const note of [published, ...history]) {
      const opened = openCheckpoint(note, [vkey], { origin: vkey.name })
      expect(opened.checkpoint.origin).toBe(vkey.name)
      expect(openNote(note, [vkey]).verified.map((s) => s.keyId)).toContain(vkey.keyId)
    }
    expect(published.split("\n")[0]).toBe(vkey.name)
    expect(published).toMatch(new RegExp(`^\u2014 ${vkey.name.replaceAll("/", "\\/")} `, "m"))

    const j = await audit(["key", "--home", root, "--json"])
    expect(j.code).toBe(0)
    const out = j.stdout.trimEnd().split("\n")
    expect(out).toHaveLength(1)
    const parsed = JSON.parse(out[0]!) as { ok: boolean; origin: string; keys: Array<Record<string, unknown>> }
    expect(parsed).toMatchObject({ ok: true, origin: vkey.name })
    expect(parsed.keys).toEqual([
      expect.objectContaining({
        vkey: lines[0],
        keyId: vkey.keyId.toString(16).padStart(8, "0"),
        current: true,
        notAfter: null,
        manifestVersion: 1,
      }),
    ])
  })

  it("after a rotation prints the new key; --all every auditor key, newest first", async () => {
    const root = join(scratch, "rotated")
    const { home, logDir } = await buildSampleHome(root, 9)
    const oldNote = readFileSync(join(logDir, CHECKPOINT_FILE), "utf8")
    await new Promise((r) => setTimeout(r, 5))
    await Effect.runPromise(rotateSigningKey("auditor").pipe(Effect.provide(KeyStore.layerFile(home.keys))))
    const { chain, keys } = await Effect.runPromise(homeSigningKeys(home.keys))
    expect(chain.latest.version).toBe(2)
    const origin = logOrigin(chain)
    const newNote = signCheckpoint({ origin, size: 1, rootHash: new Uint8Array(32) }, [
      noteSigner(origin, keys.auditor),
    ])

    const now = await audit(["key", "--home", root])
    expect(now.code, now.stderr).toBe(0)
    const [current, ...rest] = now.stdout.trimEnd().split("\n")
    expect(rest).toEqual([])
    expect(() => openCheckpoint(newNote, [parseVerifierKey(current!)], { origin })).not.toThrow()
    expect(() => openCheckpoint(oldNote, [parseVerifierKey(current!)], { origin })).toThrow()

    const all = await audit(["key", "--all", "--home", root])
    expect(all.code, all.stderr).toBe(0)
    const every = all.stdout.trimEnd().split("\n")
    expect(every).toHaveLength(2)
    expect(every[0]).toBe(current)
    for (const line of every) expect(line).toMatch(VKEY)
    expect(() => openCheckpoint(oldNote, [parseVerifierKey(every[1]!)], { origin })).not.toThrow()
    const j = JSON.parse((await audit(["key", "--all", "--json", "--home", root])).stdout) as {
      keys: Array<{ current: boolean; notAfter: string | null }>
    }
    expect(j.keys.map((k) => k.current)).toEqual([true, false])
    expect(j.keys[0]!.notAfter).toBeNull()
    expect(j.keys[1]!.notAfter).not.toBeNull()
  })

  it("a directory that is not a Vigil home: exit 1 and one line", async () => {
    const nowhere = join(scratch, "no-such-home")
    const r = await audit(["key", "--home", nowhere])
    expect(r.code).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toBe(
      `vigil audit key: not a Vigil home: ${nowhere} (run \`vigil up\` first, or pass --home DIR)\n`,
    )
    const j = await audit(["key", "--home", nowhere, "--json"])
    expect(j.code).toBe(1)
    expect(JSON.parse(j.stdout)).toEqual({ ok: false, error: expect.stringMatching(/^not a Vigil home: /) })
    const empty = await audit(["key", "--home", scratch])
    expect(empty.code).toBe(1)
    expect(empty.stderr).toMatch(/^vigil audit key: not a Vigil home: .*; no keys\/root\.pub there, .*\n$/)
  })

  it("usage errors exit 2; --help shows the subcommand", async () => {
    expect((await audit(["key", "extra", "--home", scratch])).code).toBe(2)
    expect((await audit(["key", "--bogus"])).code).toBe(2)
    const help = await audit(["key", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^ {2}key \[--all\] /m)
  })
})

describe("vigil audit verify wording", () => {
  it("says 1 leaf and 1 signed checkpoint, and its progress ends before the result", async () => {
    const root = join(scratch, "single")
    await buildSampleHome(root, 1)
    for (const tty of [true, false]) {
      const r = await audit(["verify", "--home", root], tty)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^audit log verified: 1 leaf, 1 signed checkpoint \(latest size 1\)$/m)
      expect(r.stdout).not.toMatch(/\b1 (leaves|checkpoints|events)\b/)
      const firstOut = r.writes.findIndex((w) => w.to === "out")
      expect(r.writes.slice(firstOut).filter((w) => w.to === "err")).toEqual([])
      // On a terminal the bar, if drawn, is cleared before the result.
      const errs = r.writes.filter((w) => w.to === "err")
      if (tty && errs.length > 0) expect(errs.at(-1)!.text).toBe("\r\u001b[2K")
    }
  })

  const report = (over: Partial<AuditVerifyReport>): AuditVerifyReport => ({
    ok: true,
    dir: "/h/data/auditor/log",
    origin: "vigil/local/kid",
    size: 1,
    root: `${"A".repeat(43)}=`,
    from: 0,
    leavesChecked: 1,
    checkpoints: 1,
    checkpointSize: 0,
    unsignedLeaves: 0,
    elapsedMs: 10,
    rate: 100,
    problems: [],
    ...over,
    to: over.size ?? 1,
  })

  it.each([
    [
      { size: 1, unsignedLeaves: 1 },
      ["1 leaf, 1 signed checkpoint", "1 leaf after the last checkpoint is not covered"],
    ],
    [{ size: 2, checkpoints: 2, unsignedLeaves: 2 }, ["2 leaves, 2 signed checkpoints", "2 leaves after the last"]],
    [{ size: 1000, checkpoints: 0 }, ["1,000 leaves, 0 signed checkpoints"]],
  ] as const)("verified %j", (over, phrases) => {
    const c = capture()
    expect(printVerify(report(over), false, c.io)).toBe(0)
    for (const p of phrases) expect(c.out()).toContain(p)
  })

  it.each([
    [{ size: 1, checkpoints: 1, repeats: 1 }, ["(1 leaf, 1 checkpoint;", "(and 1 later checkpoint)"]],
    [{ size: 3, checkpoints: 4, repeats: 2 }, ["(3 leaves, 4 checkpoints;", "(and 2 later checkpoints)"]],
  ] as const)("not verified %j", ({ size, checkpoints, repeats }, phrases) => {
    const problem = {
      kind: "checkpoint" as const,
      code: "checkpoint_bad_signature",
      index: 0,
      message: "bad",
      checkpoint: 0,
      repeats,
    }
    const c = capture()
    expect(
      printVerify(report({ ok: false, size, checkpoints, first: problem, problems: [problem] }), false, c.io),
    ).toBe(1)
    for (const p of phrases) expect(c.out()).toContain(p)
  })
})
