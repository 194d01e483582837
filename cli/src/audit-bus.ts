import { existsSync } from "node:fs"
import { jetstreamManager, type StoredMsg } from "@nats-io/jetstream"
import { type NatsConnection, RequestError, TimeoutError } from "@nats-io/transport-node"
import { checkChunk, logOrigin, noteVerifiers } from "@vigil/auditlog"
import { DEFAULTS, jetStreamOptions } from "@vigil/bus"
import { inlineChecker } from "@vigil/crypto"
import { PROOF_SUBJECTS, STREAM_AUDIT, STREAM_EVENTS, verifyEvent } from "@vigil/events"
import type { ManifestChain } from "@vigil/keys"
import { leafHash, verifyInclusion } from "@vigil/merkle"
import { openCheckpoint } from "@vigil/note"
import { homeAt } from "@vigil/runtime"
import { connectRole, seedPath } from "./creds.ts"

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

/** A connection as the `ops` user of `home` (seed `<home>/nats/ops.nk`, inboxes under `_INBOX_ops`). */
export const connectOps = async (home: string, url: string): Promise<NatsConnection> => {
  const seedFile = seedPath(homeAt(home), "ops")
  if (!existsSync(seedFile)) throw new AuditCheckFailed(`no ops NATS credentials at ${seedFile}`)
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

/**
 * What `vigil audit tail` could establish about one message. `verified`: an event that verifies as the services'
 * consumers verify it (schema, signature, key known and authorised by the manifest chain for its type at its time,
 * source, subject, freshness against the time the stream stored it), or an OCSF record that describes exactly the
 * valid signed event the auditor's log holds at its leaf index. `refused`: it does not (the reason code is
 * `verifyEvent`'s, or one of the record checks'); a forgery or a rejected message, never an audit entry.
 * `unverified`: it could not be checked (the auditor did not answer for an OCSF record).
 */
export type TailVerdict =
  | { readonly status: "verified" }
  | { readonly status: "refused" | "unverified"; readonly reason: string; readonly detail: string }

const VERIFIED: TailVerdict = { status: "verified" }
const refused = (reason: string, detail: string): TailVerdict => ({ status: "refused", reason, detail })

/** One line of `vigil audit tail`. Unless `verdict` is `verified`, every field but `seq` and `subject` is a claim. */
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
  /** The parsed message, or null when it is not JSON. */
  readonly body: unknown
  readonly verdict: TailVerdict
}

const OCSF_PREFIX = "vigil.audit.ocsf."
/** The header names the auditor gives each OCSF record (services/auditor). */
const HEADER_EVENT_ID = "Vigil-Event-Id"
const HEADER_LEAF_INDEX = "Vigil-Leaf-Index"

type Obj = Record<string, unknown>
const objectOf = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {})

/** An event as the services' consumers judge it (libs/bus consumer: same limits, subject and freshness checks). */
const eventVerdict = (m: StoredMsg, chain: ManifestChain): TailVerdict => {
  const v = verifyEvent(m.data, {
    keys: chain,
    maxBytes: DEFAULTS.maxEventBytes,
    subject: m.subject,
    receivedAt: m.time.getTime(),
    maxSkewMs: DEFAULTS.duplicateWindowMs,
  })
  return v.ok ? VERIFIED : refused(v.reason, v.detail)
}

/**
 * An OCSF record is the auditor's unsigned rendering of a leaf, so it is checked against the log: its headers and
 * body must name the same event id and leaf index, the auditor's log must hold a valid signed event at that index
 * (checked here under the manifest chain), and the record's event id, type, source, session, kid and sig must be that
 * event's. The leaf is the auditor's answer; `vigil audit proof <id>` proves it against a signed checkpoint.
 */
const recordVerdict = async (nc: NatsConnection, chain: ManifestChain, m: StoredMsg, body: Obj) => {
  const vigil = objectOf(objectOf(body.unmapped).vigil)
  const headerId = m.header?.get(HEADER_EVENT_ID) ?? ""
  const headerIndex = m.header?.get(HEADER_LEAF_INDEX) ?? ""
  if (headerId === "" || !/^\d{1,15}$/.test(headerIndex)) {
    return refused("record_unbound", `no ${HEADER_EVENT_ID} or ${HEADER_LEAF_INDEX} header`)
  }
  const index = Number(headerIndex)
  const uid = objectOf(body.metadata).uid
  if (vigil.event_id !== headerId || vigil.leaf_index !== index || (uid !== undefined && uid !== headerId)) {
    return refused(
      "record_mismatch",
      `headers name event ${headerId} at leaf ${index}, the record event ${String(vigil.event_id)} at leaf ${String(vigil.leaf_index)}`,
    )
  }
  let answer: Obj
  try {
    answer = objectOf((await nc.request(PROOF_SUBJECTS.entry, JSON.stringify({ index }), { timeout: 5_000 })).json())
  } catch (e) {
    return {
      status: "unverified",
      reason: "log_unavailable",
      detail: `no answer from the auditor on ${PROOF_SUBJECTS.entry}: ${(e as Error).message}`,
    } satisfies TailVerdict
  }
  if (answer.ok !== true || typeof answer.leaf !== "string") {
    return refused("not_in_log", `the auditor's log has no leaf ${index}: ${String(answer.error ?? "no leaf")}`)
  }
  const leaf = new Uint8Array(Buffer.from(answer.leaf, "base64"))
  const judged = await checkChunk(index, [leaf], chain, inlineChecker)
  if (judged.failure !== undefined) {
    return refused(`leaf_${judged.failure.reason}`, `leaf ${index}: ${judged.failure.detail}`)
  }
  const event = JSON.parse(Buffer.from(leaf).toString("utf8")) as Obj
  const fields: ReadonlyArray<[string, unknown]> = [
    ["event_id", event.id],
    ["event_type", event.type],
    ["source", event.source],
    ["session", event.session],
    ["kid", event.kid],
    ["sig", event.sig],
  ]
  for (const [field, value] of fields) {
    if (vigil[field] !== value) {
      return refused(
        "record_mismatch",
        `the record's ${field} is not that of leaf ${index} (event ${String(event.id)})`,
      )
    }
  }
  return VERIFIED
}

const toItem = async (nc: NatsConnection, ocsf: boolean, m: StoredMsg, chain: ManifestChain): Promise<TailItem> => {
  let body: Obj
  try {
    const parsed: unknown = JSON.parse(Buffer.from(m.data).toString("utf8"))
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object")
    body = parsed as Obj
  } catch (e) {
    const detail = `not a JSON object: ${(e as Error).message}`
    return {
      seq: m.seq,
      subject: m.subject,
      time: "",
      kind: "",
      session: "",
      id: "",
      body: null,
      verdict: refused("invalid_json", detail),
    }
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
      verdict: eventVerdict(m, chain),
    }
  }
  const vigil = objectOf(objectOf(body.unmapped).vigil)
  const time = typeof body.time === "number" ? new Date(body.time).toISOString() : ""
  return {
    seq: m.seq,
    subject: m.subject,
    time,
    kind: `${String(body.class_name ?? "?")}/${String(body.activity_name ?? "?")}`,
    session: String(vigil.session ?? ""),
    id: String(vigil.event_id ?? objectOf(body.metadata).uid ?? ""),
    ...(typeof vigil.leaf_index === "number" ? { leafIndex: vigil.leaf_index } : {}),
    body,
    verdict: await recordVerdict(nc, chain, m, body),
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
    /** What events (and the leaves behind OCSF records) are verified against. */
    readonly chain: ManifestChain
    /** Re-reads the manifest chain; tried (at most once a second) when a key is unknown or not yet valid. */
    readonly reloadChain?: () => ManifestChain
    readonly pollMs?: number
    readonly signal?: AbortSignal
  },
): Promise<void> => {
  const jsm = await jetstreamManager(nc, jetStreamOptions("ops"))
  const stream = opts.ocsf ? STREAM_AUDIT : STREAM_EVENTS
  const get = async (seq: number) => {
    const m = await jsm.direct.getMessage(stream, { seq }).catch(() => null)
    return m === null || (opts.ocsf && !m.subject.startsWith(OCSF_PREFIX)) ? undefined : m
  }
  let chain = opts.chain
  let reloadedAt = Number.NEGATIVE_INFINITY
  /** The message's line; a key the chain does not know (yet) may be a rotation since start: re-read it and retry. */
  const judge = async (m: StoredMsg): Promise<TailItem> => {
    const item = await toItem(nc, opts.ocsf, m, chain)
    const reason = item.verdict.status === "refused" ? item.verdict.reason.replace(/^leaf_/, "") : ""
    if (opts.reloadChain === undefined || (reason !== "unknown_key" && reason !== "key_not_yet_valid")) return item
    if (performance.now() - reloadedAt < 1_000) return item
    reloadedAt = performance.now()
    let next: ManifestChain
    try {
      next = opts.reloadChain()
    } catch {
      return item
    }
    if (next.latest.version <= chain.latest.version) return item
    chain = next
    return toItem(nc, opts.ocsf, m, chain)
  }
  const info = await jsm.streams.info(stream)
  let cursor = info.state.last_seq
  const first = Math.max(1, info.state.first_seq)
  const found: StoredMsg[] = []
  for (let hi = cursor; hi >= first && found.length < opts.n; hi -= 32) {
    const seqs: number[] = []
    for (let s = hi; s > hi - 32 && s >= first; s--) seqs.push(s)
    for (const m of await Promise.all(seqs.map(get))) {
      if (m !== undefined && found.length < opts.n) found.push(m)
    }
  }
  // Judged in order: a reload of the chain then holds for every later message.
  for (const m of found.reverse()) opts.onItem(await judge(m))
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
      const m = await get(seq)
      if (m !== undefined) opts.onItem(await judge(m))
    }
    cursor = Math.max(cursor, last)
  }
}
