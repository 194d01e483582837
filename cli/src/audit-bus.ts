import { existsSync } from "node:fs"
import { join } from "node:path"
import { jetstreamManager } from "@nats-io/jetstream"
import { type NatsConnection, RequestError, TimeoutError } from "@nats-io/transport-node"
import { logOrigin, noteVerifiers } from "@vigil/auditlog"
import { inlineChecker, PROOF_SUBJECTS, STREAM_AUDIT, STREAM_EVENTS } from "@vigil/events"
import type { ManifestChain } from "@vigil/keys"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { openCheckpoint } from "@vigil/note"
import { homeAt } from "@vigil/runtime"
import { checkChunk } from "./audit-leaves.ts"
import { AuditInputError } from "./audit-verify.ts"
import { connectRole, recordedBusUrl, seedPath } from "./creds.ts"

/**
 * The bus side of `vigil audit`: inclusion proofs from the auditor (`vigil audit proof`) and the last events or OCSF
 * records of the streams (`vigil audit tail`), as the `ops` NATS user, which may only send `vigil.proof.*` requests,
 * read both streams by direct get and ask for their info. Nothing the auditor answers is taken on trust: the
 * checkpoint must be signed by an auditor key of the manifest, and the proof must lead from the leaf to its root.
 */

/** A check that failed: the CLI exits 1 with this message. */
export class AuditCheckFailed extends Error {
  override readonly name = "AuditCheckFailed"
}

/** The bus URL: `--nats`, else the one `vigil up` recorded in `<home>/run/up.json`. */
export const busUrl = (home: string, explicit: string | undefined): string => {
  if (explicit !== undefined) return explicit
  const recorded = recordedBusUrl(homeAt(home))
  if (recorded !== undefined) return recorded
  throw new AuditInputError(
    `no bus URL: pass --nats URL, or start Vigil with \`vigil up\` (it records ${join(homeAt(home).run, "up.json")})`,
  )
}

/** A connection as the `ops` user of `home` (seed `<home>/nats/ops.nk`, inboxes under `_INBOX_ops`). */
export const connectOps = async (home: string, url: string): Promise<NatsConnection> => {
  const seedFile = seedPath(homeAt(home), "ops")
  if (!existsSync(seedFile)) throw new AuditInputError(`no ops NATS credentials at ${seedFile}`)
  try {
    return await connectRole(url, homeAt(home), "ops", { name: `vigil-audit-${process.pid}` })
  } catch (e) {
    throw new AuditCheckFailed(`cannot connect to ${url} as ops: ${(e as Error).message}`)
  }
}

const request = async (nc: NatsConnection, subject: string, body: object): Promise<Record<string, unknown>> => {
  try {
    return (await nc.request(subject, JSON.stringify(body), { timeout: 5_000 })).json<Record<string, unknown>>()
  } catch (e) {
    if (e instanceof RequestError && e.isNoResponders()) {
      throw new AuditCheckFailed(`no auditor answers on ${subject} (is the auditor running, with its prover user?)`)
    }
    if (e instanceof TimeoutError || (e instanceof RequestError && e.cause instanceof TimeoutError)) {
      throw new AuditCheckFailed(`the auditor did not answer on ${subject} within 5 s`)
    }
    throw new AuditCheckFailed(`request on ${subject} failed: ${(e as Error).message}`)
  }
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64")
const fromB64 = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== "string") throw new AuditCheckFailed(`the auditor's answer has no ${what}`)
  return new Uint8Array(Buffer.from(s, "base64"))
}

export interface ProofResult {
  readonly id: string
  readonly type: string
  readonly session: string
  readonly source: string
  readonly index: number
  readonly size: number
  /** Root of the signed checkpoint the proof leads to (base64). */
  readonly root: string
  /** Audit path, leaf to root (base64). */
  readonly proof: ReadonlyArray<string>
  /** The checkpoint note, and the names of the auditor keys whose signatures on it verified. */
  readonly checkpoint: string
  readonly signedBy: ReadonlyArray<string>
}

/**
 * Asks the auditor for the inclusion proof of event `id` in its latest signed checkpoint and verifies everything
 * locally: the checkpoint's signature (an auditor key of the manifest, the log's origin), that the leaf is the
 * event asked for and a valid signed event in canonical form, and the RFC 9162 inclusion proof to the signed root.
 * Throws {@link AuditCheckFailed} with the reason when anything does not verify.
 */
export const proveInclusion = async (nc: NatsConnection, chain: ManifestChain, id: string): Promise<ProofResult> => {
  const origin = logOrigin(chain)
  let answer = await request(nc, PROOF_SUBJECTS.inclusion, { id })
  let note = typeof answer.checkpoint === "string" ? answer.checkpoint : undefined
  if (answer.ok === true && note === undefined) {
    // A proof for another size than the signed one's: fetch the checkpoint and ask for a proof at its size.
    const cp = await request(nc, PROOF_SUBJECTS.checkpoint, {})
    if (cp.ok !== true || typeof cp.note !== "string") throw new AuditCheckFailed(`no signed checkpoint: ${cp.error}`)
    note = cp.note
    answer = await request(nc, PROOF_SUBJECTS.inclusion, { id, size: cp.size })
  }
  if (answer.ok !== true) {
    const error = String(answer.error ?? "no reason given")
    if (/^no event /.test(error)) throw new AuditCheckFailed(`the auditor's log has no event ${id} (${error})`)
    if (/is not in the tree of size/.test(error)) {
      throw new AuditCheckFailed(
        `event ${id} is not covered by a signed checkpoint yet (${error}); try again after the next checkpoint`,
      )
    }
    throw new AuditCheckFailed(`the auditor refused: ${error}`)
  }
  if (note === undefined) throw new AuditCheckFailed("the auditor sent no checkpoint with the proof")
  let opened: ReturnType<typeof openCheckpoint>
  try {
    opened = openCheckpoint(note, noteVerifiers(origin, chain), { origin })
  } catch (e) {
    throw new AuditCheckFailed(
      `the checkpoint does not verify against the manifest's auditor keys: ${(e as Error).message}`,
    )
  }
  const { checkpoint } = opened
  const size = Number(checkpoint.size)
  const index = answer.index
  if (typeof index !== "number" || !Number.isSafeInteger(index))
    throw new AuditCheckFailed("the answer has no leaf index")
  if (answer.size !== size) {
    throw new AuditCheckFailed(`the proof is for size ${String(answer.size)}, the signed checkpoint for ${size}`)
  }
  const leaf = fromB64(answer.leaf, "leaf")
  const judged = await checkChunk(index, [leaf], chain, inlineChecker)
  if (judged.failure !== undefined) {
    throw new AuditCheckFailed(
      `leaf ${index} is not a valid signed event: ${judged.failure.reason}: ${judged.failure.detail}`,
    )
  }
  const event = JSON.parse(Buffer.from(leaf).toString("utf8")) as {
    id: string
    type: string
    session: string
    source: string
  }
  if (event.id !== id) throw new AuditCheckFailed(`leaf ${index} holds event ${event.id}, not ${id}`)
  if (!Array.isArray(answer.proof)) throw new AuditCheckFailed("the answer has no proof")
  const proof = answer.proof.map((p, i) => fromB64(p, `proof hash ${i}`))
  const verdict = verifyInclusion(index, size, leafHash(leaf), proof, checkpoint.rootHash)
  if (!verdict.ok) {
    throw new AuditCheckFailed(
      `the inclusion proof does not lead to the signed root: ${verdict.code}: ${verdict.message}`,
    )
  }
  return {
    id,
    type: event.type,
    session: event.session,
    source: event.source,
    index,
    size,
    root: b64(checkpoint.rootHash),
    proof: proof.map(b64),
    checkpoint: note,
    signedBy: [...new Set(opened.verified.map((s) => s.name))],
  }
}

/** One line of `vigil audit tail`. */
export interface TailItem {
  readonly seq: number
  readonly subject: string
  readonly time: string
  /** Event type, or OCSF class/activity. */
  readonly kind: string
  readonly session: string
  readonly id: string
  /** OCSF records: the Merkle leaf index of the event. */
  readonly leafIndex?: number
  readonly body: unknown
}

const OCSF_PREFIX = "vigil.audit.ocsf."

const toItem = (ocsf: boolean, m: { seq: number; subject: string; data: Uint8Array }): TailItem | undefined => {
  if (ocsf && !m.subject.startsWith(OCSF_PREFIX)) return undefined
  let body: Record<string, unknown>
  try {
    body = JSON.parse(Buffer.from(m.data).toString("utf8")) as Record<string, unknown>
  } catch {
    return { seq: m.seq, subject: m.subject, time: "", kind: "(not JSON)", session: "", id: "", body: null }
  }
  if (!ocsf) {
    return {
      seq: m.seq,
      subject: m.subject,
      time: String(body.time ?? ""),
      kind: String(body.type ?? ""),
      session: String(body.session ?? ""),
      id: String(body.id ?? ""),
      body,
    }
  }
  const vigil = ((body.unmapped as Record<string, unknown> | undefined)?.vigil ?? {}) as Record<string, unknown>
  const time = typeof body.time === "number" ? new Date(body.time).toISOString() : ""
  return {
    seq: m.seq,
    subject: m.subject,
    time,
    kind: `${String(body.class_name ?? "?")}/${String(body.activity_name ?? "?")}`,
    session: String(vigil.session ?? ""),
    id: String(vigil.event_id ?? (body.metadata as Record<string, unknown> | undefined)?.uid ?? ""),
    ...(typeof vigil.leaf_index === "number" ? { leafIndex: vigil.leaf_index } : {}),
    body,
  }
}

/**
 * The last `n` events of VIGIL_EVENTS (or OCSF records of VIGIL_AUDIT), oldest first, read by direct get backwards
 * from the stream's last sequence; `onItem` then sees each new one while `follow()` polls, until `stop()`.
 */
export const tailStream = async (
  nc: NatsConnection,
  opts: {
    readonly ocsf: boolean
    readonly n: number
    readonly follow: boolean
    readonly onItem: (item: TailItem) => void
    readonly pollMs?: number
    readonly signal?: AbortSignal
  },
): Promise<void> => {
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  const stream = opts.ocsf ? STREAM_AUDIT : STREAM_EVENTS
  const get = async (seq: number) => {
    const m = await jsm.direct.getMessage(stream, { seq }).catch(() => null)
    return m === null ? undefined : toItem(opts.ocsf, m)
  }
  const info = await jsm.streams.info(stream)
  let cursor = info.state.last_seq
  const first = Math.max(1, info.state.first_seq)
  const found: TailItem[] = []
  for (let hi = cursor; hi >= first && found.length < opts.n; hi -= 32) {
    const seqs: number[] = []
    for (let s = hi; s > hi - 32 && s >= first; s--) seqs.push(s)
    for (const item of await Promise.all(seqs.map(get))) {
      if (item !== undefined && found.length < opts.n) found.push(item)
    }
  }
  for (const item of found.reverse()) opts.onItem(item)
  const stopped = () => opts.signal?.aborted === true
  while (opts.follow && !stopped()) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.pollMs ?? 500)
      opts.signal?.addEventListener("abort", () => {
        clearTimeout(t)
        resolve()
      })
    })
    if (stopped()) break
    const last = (await jsm.streams.info(stream)).state.last_seq
    for (let seq = cursor + 1; seq <= last && !stopped(); seq++) {
      const item = await get(seq)
      if (item !== undefined) opts.onItem(item)
    }
    cursor = Math.max(cursor, last)
  }
}
