import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { encodeBase64, equalBytes } from "@vigil/bytes"
import { type SignatureChecker, SignaturePool } from "@vigil/crypto"
import { type Manifest, ManifestChain, ROOT_PUBLIC_KEY_FILE } from "@vigil/keys"
import { leafHash, MemoryTree, verifyConsistency } from "@vigil/merkle"
import { NoteError, openCheckpoint } from "@vigil/note"
import { homeAt } from "@vigil/runtime"
import {
  BUNDLE_LAYOUTS,
  type BundleFormat,
  bundlePath,
  CHECKPOINT_FILE,
  parseBundle,
  STATE_FILE,
  TILE_WIDTH,
  verifyStore,
} from "@vigil/tlog"
import { Result } from "effect"
// The auditor's own definitions of the log's origin, its checkpoint verifiers and the checkpoint history file, so
// this check cannot drift from what the auditor signs.
import { readCheckpointHistory } from "./core.ts"
import { type ChunkResult, checkChunk, type LeafFailure } from "./leaves.ts"
import { logOrigin, noteVerifiers } from "./naming.ts"

/**
 * The check behind `vigil audit verify`: an offline check of the auditor's log in a Vigil home, trusting only the deployment's root
 * public key (`keys/root.pub`) and what it signed (the key manifest chain).
 *
 * Three checks, then the problem at the lowest leaf index is the verdict (the event checks stop at the first
 * failing chunk; everything else runs to the end):
 *
 * 1. leaves (`kind: "leaf"`): every leaf in `[from, to)` is a signed event that verifies against the manifest
 *    (schema, signature, key known, principal = source, key authorised for the type at the event's time; no
 *    freshness check), is the event's canonical form (`non_canonical`), and has an id no earlier leaf has
 *    (`duplicate_id`, reported at the second index). Codes: the `REJECTION_REASONS` of @vigil/events, then
 *    `non_canonical`, `duplicate_id`.
 * 2. the tree (`kind: "tree"`): `verifyStore` recomputes every leaf hash, tile and the committed root; its
 *    `StoreProblem` code and exact index (`LEAF_HASH_MISMATCH`, `TILE_MISMATCH`, `MISSING_ENTRY`, `TRUNCATED`, …).
 * 3. checkpoints (`kind: "checkpoint"`), each note of the history (and the published `checkpoint` file) in order:
 *    signed by an auditor key of the manifest (`checkpoint_bad_signature`), parses (`checkpoint_malformed`), right
 *    origin (`checkpoint_wrong_origin`), size not past the log (`checkpoint_beyond_log`, index = the first missing
 *    leaf), size not below the previous one (`checkpoint_size_decreased`), root = the root of the leaves at that size
 *    (`checkpoint_root_mismatch`), consistent with the previous good checkpoint by a consistency proof generated from
 *    the leaves and checked with `verifyConsistency` (`checkpoint_inconsistent`).
 *
 * A checkpoint problem names a range of leaves, `[index, size)`: the leaves after the last good checkpoint. When a
 * leaf or tree problem lies in that range it is the explanation (a leaf re-signed by the wrong key and the tree
 * rebuilt around it makes every later checkpoint mismatch too), so it ranks first; at one index, leaf problems rank
 * before tree problems before checkpoint problems. Checkpoints are checked against a tree built from the entries
 * themselves (in memory, 64 bytes a leaf), so they vouch for the bytes, not for the stored tiles.
 *
 * Cost: the Ed25519 checks dominate (about 55 µs of CPU each with libsodium on the 2-core development machine,
 * against some 40 µs for everything else a leaf needs). They run on a SignaturePool's worker threads (libsodium,
 * batches of signatures per message) while this thread parses, checks schemas and hashes; whole-leaf verification
 * in worker_threads was measured before and lost on two cores (each worker first spends about 0.3 s of CPU loading
 * the schema code); `test/bench/audit-verify-cli.ts` measures it.
 */

export type ProblemKind = "leaf" | "tree" | "checkpoint"

export interface AuditProblem {
  readonly kind: ProblemKind
  readonly code: string
  /** The first leaf index affected (for a checkpoint, the first leaf it covers past the last good checkpoint). */
  readonly index?: number
  readonly message: string
  readonly eventId?: string
  readonly type?: string
  /** The file at fault, relative to the log directory (tree problems). */
  readonly path?: string
  /** Position of the checkpoint in the history, 0 = oldest (checkpoint problems). */
  readonly checkpoint?: number
  /** The checkpoint's tree size (checkpoint problems). */
  readonly size?: number
  /** Later checkpoints refused for the same reason (only the first is listed). */
  readonly repeats?: number
}

export interface AuditVerifyReport {
  readonly ok: boolean
  readonly dir: string
  readonly origin: string
  /** Committed leaves (`state.json`). */
  readonly size: number
  /** Root of the tree recomputed from the leaves (base64). */
  readonly root: string
  /** Leaves whose events were checked: `[from, to)`. */
  readonly from: number
  readonly to: number
  readonly leavesChecked: number
  readonly checkpoints: number
  /** Largest checkpoint size that verified (0 when none did). */
  readonly checkpointSize: number
  /** Leaves past the last good checkpoint: committed but not yet vouched for by a signature. */
  readonly unsignedLeaves: number
  readonly elapsedMs: number
  /** Leaves checked per second. */
  readonly rate: number
  /** The verdict: the problem at the lowest leaf index (see the ranking above). */
  readonly first?: AuditProblem
  readonly problems: ReadonlyArray<AuditProblem>
}

/** Where a run stands: events checked of those asked for, leaves of the tree recomputed, checkpoints checked. */
export interface AuditProgress {
  readonly phase: "leaves" | "tree" | "checkpoints"
  readonly events: number
  readonly eventsTotal: number
  readonly tree: number
  readonly treeTotal: number
}

export interface AuditVerifyOptions {
  /** The log directory (`<home>/data/auditor/log`). */
  readonly dir: string
  readonly rootPublicKey: Uint8Array
  /** The manifest versions, version 1 first; verified here under `rootPublicKey`. */
  readonly manifests: ReadonlyArray<unknown>
  readonly from?: number
  readonly to?: number
  /** Leaves per chunk (default 1024); two chunks are in flight at a time. */
  readonly chunk?: number
  readonly onProgress?: (p: AuditProgress) => void
}

/** `--from` / `--to` outside the log: a bad argument, known only once the log is read (the CLI exits 2). */
export class AuditInputError extends Error {
  override readonly name = "AuditInputError"
}

/** The home's keys, key manifest or audit log cannot be read or are refused: the CLI exits 1 with the reason. */
export class AuditUnreadable extends Error {
  override readonly name = "AuditUnreadable"
}

/** The directory given as the Vigil home has no `keys/root.pub`: the command ran and failed (the CLI exits 1). */
export class NoVigilHome extends Error {
  override readonly name = "NoVigilHome"
}

/** The auditor's log directory in a Vigil home. */
export const auditLogDir = (home: string): string => join(homeAt(home).data("auditor"), "log")

/** The trust anchor and manifest versions of a Vigil home (`keys/root.pub`, `keys/manifest/<n>.json`). */
export const readHomeTrust = (
  home: string,
): {
  readonly rootPublicKey: Uint8Array
  readonly manifests: ReadonlyArray<Manifest>
  readonly chain: ManifestChain
} => {
  const h = homeAt(home)
  let rootPublicKey: Uint8Array
  try {
    rootPublicKey = new Uint8Array(
      Buffer.from(readFileSync(join(h.keys, ROOT_PUBLIC_KEY_FILE), "utf8").trim(), "base64url"),
    )
  } catch (e) {
    const path = join(h.keys, ROOT_PUBLIC_KEY_FILE)
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new NoVigilHome(
        `not a Vigil home: ${h.root} (run \`vigil up\` first${existsSync(h.root) ? `; no keys/${ROOT_PUBLIC_KEY_FILE} there` : ""}, or pass --home DIR)`,
      )
    }
    throw new AuditUnreadable(`cannot read the root public key ${path}: ${(e as Error).message}`)
  }
  const manifests: unknown[] = []
  try {
    const names = readdirSync(h.manifests)
      .filter((f) => /^[1-9][0-9]*\.json$/.test(f))
      .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))
    for (const f of names) manifests.push(JSON.parse(readFileSync(join(h.manifests, f), "utf8")))
  } catch (e) {
    throw new AuditUnreadable(`cannot read the key manifest in ${h.manifests}: ${(e as Error).message}`)
  }
  const made = ManifestChain.make(rootPublicKey, manifests)
  if (Result.isFailure(made)) throw new AuditUnreadable(`key manifest refused: ${made.failure.message}`)
  return { rootPublicKey, manifests: made.success.manifests, chain: made.success }
}

interface LogState {
  readonly size: number
  readonly bundles: BundleFormat
}

const readOptional = (path: string): Buffer | undefined => {
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}

/** `state.json` as far as reading the entries needs it; `verifyStore` judges it in full. */
const readState = (dir: string): LogState | undefined => {
  try {
    const j = JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")) as { size?: unknown; bundles?: unknown }
    if (typeof j.size !== "number" || !Number.isSafeInteger(j.size) || j.size < 0) return undefined
    if (typeof j.bundles !== "string" || !Object.hasOwn(BUNDLE_LAYOUTS, j.bundles)) return undefined
    return { size: j.size, bundles: j.bundles as BundleFormat }
  } catch {
    return undefined
  }
}

/** The committed entries, bundle by bundle, as far as the files hold them (a missing or short bundle ends it). */
function* readBundles(dir: string, state: LogState): Generator<{ start: number; entries: Uint8Array[] }> {
  const layout = BUNDLE_LAYOUTS[state.bundles]
  for (let b = 0; b * TILE_WIDTH < state.size; b++) {
    const width = Math.min(TILE_WIDTH, state.size - b * TILE_WIDTH)
    let bytes = readOptional(join(dir, bundlePath(layout, b, width)))
    if (bytes === undefined && width < TILE_WIDTH) bytes = readOptional(join(dir, bundlePath(layout, b)))
    if (bytes === undefined) return
    const { entries } = parseBundle(layout, bytes, width)
    yield { start: b * TILE_WIDTH, entries }
    if (entries.length < width) return
  }
}

const RANK: Readonly<Record<ProblemKind, number>> = { leaf: 0, tree: 1, checkpoint: 2 }

/** Orders problems: lowest leaf index first, a checkpoint range after the leaf or tree problem it contains. */
const rankProblems = (problems: ReadonlyArray<AuditProblem>): AuditProblem[] => {
  const definite = problems
    .filter((p) => p.kind !== "checkpoint" && p.index !== undefined)
    .map((p) => p.index as number)
  // A checkpoint's range of leaves, [index, size) (for a shrinking size, [size, previous size)), explained by a
  // leaf or tree problem inside it; a checkpoint that does not open (signature, origin) has no range.
  const at = (p: AuditProblem): number => {
    if (p.index === undefined) return Number.POSITIVE_INFINITY
    if (p.kind !== "checkpoint" || p.size === undefined) return p.index
    const [lo, hi] = [Math.min(p.index, p.size), Math.max(p.index, p.size)]
    const inside = definite.filter((i) => i >= lo && i < hi)
    return inside.length > 0 ? Math.min(...inside) : p.index
  }
  return problems
    .map((p, order) => ({ p, at: at(p), order }))
    .sort((a, b) => a.at - b.at || RANK[a.p.kind] - RANK[b.p.kind] || a.order - b.order)
    .map((x) => x.p)
}

const checkpointCode = (e: unknown): string => {
  if (!(e instanceof NoteError)) return "checkpoint_malformed"
  if (e.code === "ORIGIN_MISMATCH") return "checkpoint_wrong_origin"
  if (e.code === "MALFORMED" || e.code === "MALFORMED_CHECKPOINT") return "checkpoint_malformed"
  return "checkpoint_bad_signature"
}

/** `1 leaf`, `2 leaves`. */
const leaves = (n: number) => `${n} ${n === 1 ? "leaf" : "leaves"}`

/** Runs the three checks (see the module comment) and returns the report; throws {@link AuditInputError} or {@link AuditUnreadable}. */
export const verifyAuditLog = async (opts: AuditVerifyOptions): Promise<AuditVerifyReport> => {
  const pool = new SignaturePool()
  try {
    return await verifyWith(opts, pool)
  } finally {
    await pool.close()
  }
}

const verifyWith = async (opts: AuditVerifyOptions, pool: SignatureChecker): Promise<AuditVerifyReport> => {
  const started = performance.now()
  const { dir } = opts
  const made = ManifestChain.make(opts.rootPublicKey, opts.manifests)
  if (Result.isFailure(made)) throw new AuditUnreadable(`key manifest refused: ${made.failure.message}`)
  const chain = made.success
  const origin = logOrigin(chain)
  // The checkpoints before the tree: the auditor commits leaves before it signs them, so on a live log every note read
  // now is within the size read next.
  const notes = [...readCheckpointHistory(dir)]
  const published = readOptional(join(dir, CHECKPOINT_FILE))?.toString("utf8")
  if (published !== undefined && !notes.includes(published)) notes.push(published)
  const state = readState(dir)
  if (state === undefined && readOptional(join(dir, STATE_FILE)) === undefined) {
    throw new AuditUnreadable(`no audit log in ${dir} (no ${STATE_FILE})`)
  }
  const size = state?.size ?? 0
  const from = opts.from ?? 0
  const to = opts.to ?? size
  for (const [name, v] of [
    ["from", from],
    ["to", to],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > size) {
      throw new AuditInputError(`--${name} ${v} is not a leaf position in [0, ${size}] (the log has ${leaves(size)})`)
    }
  }
  if (from > to) throw new AuditInputError(`--from ${from} is past --to ${to}`)
  const chunkSize = Math.max(1, opts.chunk ?? 1024)
  const at = { events: 0, tree: 0 }
  const progress = (phase: AuditProgress["phase"]) =>
    opts.onProgress?.({ phase, events: at.events, eventsTotal: to - from, tree: at.tree, treeTotal: size })
  progress("leaves")
  const problems: AuditProblem[] = []

  const tree = new MemoryTree()
  let leavesChecked = 0
  // (1) Every leaf: hashed into the tree here, its event checked in chunks (signatures on the pool's workers).
  const results: ChunkResult[] = []
  const jobs: Promise<void>[] = []
  const inflight = new Set<Promise<void>>()
  let firstFailure = Number.POSITIVE_INFINITY
  const earlyIds: string[] = []
  let batch: Uint8Array[] = []
  let batchStart = from
  const submit = async (): Promise<void> => {
    if (batch.length === 0) return
    const entries = batch
    const start = batchStart
    batch = []
    batchStart = start + entries.length
    if (start > firstFailure) return // past a failure already found: its verdict cannot come first
    const done = (r: ChunkResult) => {
      results.push(r)
      leavesChecked += r.checked
      if (r.failure !== undefined) firstFailure = Math.min(firstFailure, r.failure.index)
      at.events = leavesChecked
      progress("leaves")
    }
    const job: Promise<void> = checkChunk(start, entries, chain, pool).then(done)
    jobs.push(job)
    inflight.add(job)
    job.then(
      () => inflight.delete(job),
      () => inflight.delete(job),
    )
    while (inflight.size >= 2) await Promise.race(inflight).catch(() => undefined)
  }
  if (state !== undefined) {
    for (const { start, entries } of readBundles(dir, state)) {
      for (let j = 0; j < entries.length; j++) {
        const i = start + j
        const e = entries[j]!
        tree.append(leafHash(e))
        if (i < from) earlyIds.push(idOf(e))
        else if (i < to) {
          batch.push(e)
          if (batch.length === chunkSize) await submit()
        }
      }
    }
  }
  await submit()
  // (2) The stored tree, on this thread while the last chunks are verified.
  const store = verifyStore(dir, {
    onProgress: (done) => {
      at.tree = done
      progress("tree")
    },
  })
  if (!store.ok) {
    problems.push({
      kind: "tree",
      code: store.code,
      ...(store.index === undefined ? {} : { index: store.index }),
      ...(store.path === undefined ? {} : { path: store.path }),
      message: store.message,
    })
  }

  await Promise.all(jobs)

  results.sort((a, b) => a.start - b.start)
  const failures = results.flatMap((r) => (r.failure === undefined ? [] : [r.failure]))
  const failure = failures.reduce<LeafFailure | undefined>(
    (m, f) => (m === undefined || f.index < m.index ? f : m),
    undefined,
  )
  if (failure !== undefined) {
    problems.push({
      kind: "leaf",
      code: failure.reason,
      index: failure.index,
      message: failure.detail,
      ...(failure.eventId === undefined ? {} : { eventId: failure.eventId }),
      ...(failure.type === undefined ? {} : { type: failure.type }),
    })
  }
  const dup = firstDuplicate(earlyIds, from, results)
  if (dup !== undefined) problems.push(dup)

  // (3) Every checkpoint the auditor signed (read first, above), against the leaves.
  const verifiers = noteVerifiers(origin, chain)
  let good: { size: number; root: Uint8Array } | undefined
  notes.forEach((note, k) => {
    const lo = good?.size ?? 0
    const bad = (code: string, message: string, index: number, cpSize?: number) => {
      const earlier = problems.findIndex((p) => p.kind === "checkpoint" && p.code === code)
      if (earlier >= 0) {
        const p = problems[earlier] as AuditProblem
        problems[earlier] = { ...p, repeats: (p.repeats ?? 0) + 1 }
        return
      }
      problems.push({
        kind: "checkpoint",
        code,
        index,
        message: `checkpoint ${k + 1} of ${notes.length}${cpSize === undefined ? "" : ` (size ${cpSize})`}: ${message}`,
        checkpoint: k,
        ...(cpSize === undefined ? {} : { size: cpSize }),
      })
    }
    let cp: { size: bigint; rootHash: Uint8Array }
    try {
      cp = openCheckpoint(note, verifiers, { origin }).checkpoint
    } catch (e) {
      bad(checkpointCode(e), `${(e as Error).message} (origin ${origin}, auditor keys of the manifest)`, lo)
      return
    }
    const cpSize = Number(cp.size)
    if (good !== undefined && cpSize < good.size) {
      bad(
        "checkpoint_size_decreased",
        `size ${cpSize} is below the previous checkpoint's ${good.size}`,
        cpSize,
        good.size,
      )
      return
    }
    if (cpSize > tree.size) {
      bad(
        "checkpoint_beyond_log",
        `signs ${leaves(cpSize)}, the log holds ${tree.size}: ${cpSize - tree.size === 1 ? `leaf ${tree.size} is` : `leaves ${tree.size}..${cpSize - 1} are`} missing`,
        tree.size,
        cpSize,
      )
      return
    }
    if (!equalBytes(tree.rootAt(cpSize), cp.rootHash)) {
      bad(
        "checkpoint_root_mismatch",
        `its root is not the root of the log's first ${leaves(cpSize)}: a leaf in [${lo}, ${cpSize}) differs from what was signed`,
        lo,
        cpSize,
      )
      return
    }
    if (good !== undefined && good.size > 0) {
      const proof = tree.consistencyProof(good.size, cpSize)
      const r = verifyConsistency(good.size, cpSize, proof, good.root, cp.rootHash)
      if (!r.ok) {
        bad(
          "checkpoint_inconsistent",
          `not consistent with checkpoint of size ${good.size}: ${r.code} ${r.message}`,
          lo,
          cpSize,
        )
        return
      }
    }
    good = { size: cpSize, root: cp.rootHash }
  })
  progress("checkpoints")

  const ranked = rankProblems(problems)
  const elapsedMs = performance.now() - started
  const first = ranked[0]
  return {
    ok: ranked.length === 0,
    dir,
    origin,
    size,
    root: encodeBase64(tree.root()),
    from,
    to,
    leavesChecked,
    checkpoints: notes.length,
    checkpointSize: good?.size ?? 0,
    unsignedLeaves: Math.max(0, tree.size - (good?.size ?? 0)),
    elapsedMs,
    rate: elapsedMs > 0 ? (leavesChecked * 1000) / elapsedMs : 0,
    ...(first === undefined ? {} : { first }),
    problems: ranked,
  }
}

const decoder = new TextDecoder()
/** A leaf's event id, or "" when it has none (its verdict is then the leaf check's business). */
const idOf = (bytes: Uint8Array): string => {
  try {
    const id = (JSON.parse(decoder.decode(bytes)) as { id?: unknown }).id
    return typeof id === "string" ? id : ""
  } catch {
    return ""
  }
}

/** The first leaf (in index order, over the leaves whose ids are known) whose event id an earlier leaf has. */
const firstDuplicate = (
  earlyIds: ReadonlyArray<string>,
  from: number,
  results: ReadonlyArray<ChunkResult>,
): AuditProblem | undefined => {
  const seen = new Map<string, number>()
  const check = (id: string, index: number): AuditProblem | undefined => {
    if (id === "") return undefined
    const prior = seen.get(id)
    if (prior === undefined) {
      seen.set(id, index)
      return undefined
    }
    return {
      kind: "leaf",
      code: "duplicate_id",
      index,
      eventId: id,
      message: `event ${id} is already leaf ${prior}: the same event appended twice (a re-published old event)`,
    }
  }
  // Leaves before the range only name the ids taken; a duplicate among them is outside the range asked for.
  for (const [i, id] of earlyIds.entries()) if (id !== "" && !seen.has(id)) seen.set(id, i)
  let next = from
  for (const r of results) {
    if (r.start !== next) break // a chunk not checked (past a failure): ids beyond are unknown
    for (const [j, id] of r.ids.entries()) {
      const d = check(id, r.start + j)
      if (d !== undefined) return d
    }
    if (r.failure !== undefined) break
    next = r.start + r.checked
  }
  return undefined
}
