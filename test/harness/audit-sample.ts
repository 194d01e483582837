import { createHash } from "node:crypto"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { AuditCore, logOrigin, noteSigner, noteVerifiers } from "@vigil/auditlog"
import { type Event, eventHash, type Principal, type SigningKey, signEvent } from "@vigil/events"
import { homeSigningKeys } from "@vigil/keys"
import type { VerifierKey } from "@vigil/note"
import { ensureHome, type Home, homeAt } from "@vigil/runtime"
import { Effect } from "effect"

/**
 * Realistic audit traffic for benchmarks and tests of `vigil audit`: one agent loop per session, signed by the
 * principals that emit each step (gateway → dlp → inference → policy → sandbox → dlp → inference → dlp), so a log
 * built from it holds events of six keys and ten types, with the causation chain the services would produce.
 */

const sha = (s: string) => createHash("sha256").update(s).digest("hex")
const blob = (s: string, mediaType = "text/plain") => ({ sha256: sha(s), size: s.length, mediaType })

export type SampleKeys = Readonly<Record<Principal, SigningKey>>

/** The nine events of one task in `session`, in causal order; `at` (epoch ms) dates the first, 1 ms apart. */
export const sampleSession = (keys: SampleKeys, session: string, at: number = Date.now()): Event[] => {
  let t = at
  const time = () => new Date(t++).toISOString()
  const base = { session, correlation: session }
  const task = signEvent(keys.gateway, {
    ...base,
    type: "task.submitted",
    time: time(),
    data: { channel: "cli", workspace: "/home/user/documents", promptChars: 48 },
    blobs: { prompt: blob(`summarise the Q3 spreadsheets for ${session}`) },
  })
  const screened = signEvent(keys.dlp, {
    ...base,
    type: "prompt.screened",
    time: time(),
    causation: task.id,
    data: { task: task.id, verdict: "clean", findings: [] },
    blobs: { masked: blob(`masked ${session}`) },
  })
  const intent = signEvent(keys.inference, {
    ...base,
    type: "intent.proposed",
    time: time(),
    causation: screened.id,
    data: {
      tool: "sheet.summarize",
      args: { path: "/home/user/documents/q3/revenue.xlsx", sheets: ["Summary", "EMEA", "APAC"], maxRows: 500 },
      reason: "The user asked for a summary of the Q3 spreadsheets; revenue.xlsx holds the quarterly figures.",
      step: 0,
    },
  })
  const decision = signEvent(keys.policy, {
    ...base,
    type: "decision.made",
    time: time(),
    causation: intent.id,
    data: {
      intent: intent.id,
      intentHash: eventHash(intent),
      effect: "allow",
      rules: ["workspace-read", "spreadsheet-summary"],
      explanation: "Reading spreadsheets inside the workspace is allowed; the output is screened before the model.",
      obligations: [{ kind: "max-bytes", bytes: 1_000_000 }],
      bundle: sha("policy-bundle-v1"),
      dataClass: "internal",
    },
  })
  const started = signEvent(keys.sandbox, {
    ...base,
    type: "action.started",
    time: time(),
    causation: decision.id,
    data: { decision: decision.id, intent: intent.id, tool: "sheet.summarize", tier: "os" },
  })
  const completed = signEvent(keys.sandbox, {
    ...base,
    type: "action.completed",
    time: time(),
    causation: started.id,
    data: { action: started.id, exitCode: 0, durationMs: 412 },
    blobs: { output: blob(`rows of ${session}`, "application/json") },
  })
  const result = signEvent(keys.dlp, {
    ...base,
    type: "result.screened",
    time: time(),
    causation: completed.id,
    data: {
      action: completed.id,
      verdict: "masked",
      findings: [{ detector: "iban", kind: "financial", count: 2, score: 0.97, field: "output" }],
    },
    blobs: { masked: blob(`masked rows of ${session}`, "application/json") },
  })
  const answer = signEvent(keys.inference, {
    ...base,
    type: "answer.proposed",
    time: time(),
    causation: result.id,
    data: { task: task.id, step: 1 },
    blobs: { answer: blob(`answer for ${session}`) },
  })
  const released = signEvent(keys.dlp, {
    ...base,
    type: "answer.released",
    time: time(),
    causation: answer.id,
    data: { answer: answer.id, verdict: "clean", findings: [] },
    blobs: { answer: blob(`answer for ${session}`) },
  })
  return [task, screened, intent, decision, started, completed, result, answer, released]
}

/**
 * `count` events: whole sessions `s0000`, `s0001`, … cut to length, dated 1 ms apart from `at` (which must not be
 * before the key manifest's `issuedAt`, or the keys are not yet valid at the events' time).
 */
export const sampleEvents = (keys: SampleKeys, count: number, at: number = Date.now()): Event[] => {
  const out: Event[] = []
  for (let s = 0; out.length < count; s++) {
    for (const e of sampleSession(keys, `s${String(s).padStart(4, "0")}`, at + s * 9)) {
      if (out.length < count) out.push(e)
    }
  }
  return out
}

/**
 * A Vigil home holding an auditor log of `count` sample events, written by the auditor's own `AuditCore` (leaves,
 * tiles, a signed checkpoint every `checkpointEvery` leaves and at the end, the checkpoint history), with the keys
 * and signed manifest `vigil up` would make. For benchmarks and tests of `vigil audit verify` without a bus.
 */
export const buildSampleHome = async (
  root: string,
  count: number,
  opts: { readonly checkpointEvery?: number; readonly batch?: number } = {},
): Promise<{ readonly home: Home; readonly keys: SampleKeys; readonly events: Event[]; readonly logDir: string }> => {
  const home = ensureHome(homeAt(root))
  const { chain, keys } = await Effect.runPromise(homeSigningKeys(home.keys))
  const events = sampleEvents(keys, count, Date.parse(chain.latest.issuedAt) + 1)
  const logDir = join(home.data("auditor"), "log")
  mkdirSync(logDir, { recursive: true })
  const origin = logOrigin(chain)
  const core = AuditCore.open({
    dir: logDir,
    origin,
    signer: noteSigner(origin, keys.auditor),
    verifier: noteVerifiers(origin, chain).at(-1) as VerifierKey,
  })
  try {
    const batch = opts.batch ?? 500
    const every = opts.checkpointEvery ?? 1000
    let signedAt = 0
    for (let i = 0; i < events.length; i += batch) {
      core.append(events.slice(i, i + batch).map((event, j) => ({ event, streamSeq: i + j + 1 })))
      if (core.size - signedAt >= every) {
        core.signCheckpoint()
        signedAt = core.size
      }
    }
    core.signCheckpoint()
  } finally {
    core.log.close()
  }
  return { home, keys, events, logDir }
}
