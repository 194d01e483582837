import { parseArgs } from "node:util"
import { auditorVerifierKeys, logOrigin } from "@vigil/auditlog"
import { homeAt } from "@vigil/runtime"
import {
  AuditCheckFailed,
  busUrl,
  connectOps,
  type ProofResult,
  proveInclusion,
  type TailItem,
  tailStream,
} from "./audit-bus.ts"
import {
  AuditInputError,
  type AuditProblem,
  type AuditProgress,
  type AuditVerifyReport,
  auditLogDir,
  NoVigilHome,
  readHomeTrust,
  verifyAuditLog,
} from "./audit-verify.ts"

export const AUDIT_USAGE = `usage: vigil audit <verify|proof|tail|key> [options]

  verify [--from N] [--to N]   check the auditor's log offline: every leaf a valid signed event the key manifest
                               authorised (leaves [from, to)), ids unique, tiles and root recomputed, every signed
                               checkpoint consistent with the leaves; exits 1 naming the first bad leaf and why
  proof <event-id>             ask the auditor for the event's inclusion proof and verify it and the checkpoint
  tail [--n N] [--ocsf] [--follow]
                               the last N (default 20) events, or OCSF records with their leaf indexes; --follow
                               keeps printing new ones until Ctrl-C. Each is verified as the services verify
                               events (OCSF records: against the auditor's leaf); one that does not verify is
                               printed as "REFUSED <reason>: …" ("verified": false in --json): not an audit entry
  key [--all]                  the checkpoints' verifier key in c2sp.org/signed-note form,
                               <origin>+<key id>+<base64 key>, for any signed-note verifier: the auditor key the
                               key manifest grants now; --all: every auditor key it ever granted, newest first
                               (older checkpoints are signed by older keys). One key a line

options:
  --home DIR    Vigil home (default $VIGIL_HOME or ./.vigil)
  --nats URL    the bus (proof, tail; default: the one \`vigil up\` recorded in <home>/run/up.json)
  --json        one JSON object per line
`

export interface AuditIo {
  readonly out: (line: string) => void
  readonly err: (text: string) => void
  /** Whether stderr is a terminal (progress bar) or not (a percentage line at most every second). */
  readonly errIsTty: boolean
  readonly errColumns?: number
}

const processIo = (): AuditIo => ({
  out: (line) => process.stdout.write(`${line}\n`),
  err: (text) => process.stderr.write(text),
  errIsTty: process.stderr.isTTY === true,
  ...(process.stderr.columns === undefined ? {} : { errColumns: process.stderr.columns }),
})

const intOption = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new AuditInputError(`--${name} must be a whole number, got ${v}`)
  return Number(v)
}

const num = (n: number) => n.toLocaleString("en-US")
/** `1 leaf`, `2 leaves`, `1,024 leaves`: a count and its noun, singular for exactly one. */
export const count = (n: number, one: string, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`

/**
 * `vigil audit …` with its own arguments (after `audit`); resolves to the exit code: 0 verified (done), 1 a check
 * failed, nothing to show, or no Vigil home at --home (the reason is printed, one line), 2 a usage or set-up error.
 */
export const runAudit = async (argv: ReadonlyArray<string>, io: AuditIo = processIo()): Promise<number> => {
  let values: Record<string, string | boolean | undefined>
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        home: { type: "string" },
        nats: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        n: { type: "string" },
        ocsf: { type: "boolean", default: false },
        follow: { type: "boolean", default: false },
        all: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }))
  } catch (e) {
    io.err(`vigil audit: ${(e as Error).message}\n\n${AUDIT_USAGE}`)
    return 2
  }
  const sub = positionals[0]
  const json = values.json === true
  if (values.help === true || sub === "help") {
    io.out(AUDIT_USAGE.trimEnd())
    return 0
  }
  if (sub === undefined) {
    io.err(AUDIT_USAGE)
    return 2
  }
  const home = homeAt((values.home as string | undefined) ?? process.env.VIGIL_HOME ?? ".vigil").root
  const fail = (code: number, message: string): number => {
    if (json) io.out(JSON.stringify({ ok: false, error: message }))
    io.err(`vigil audit ${sub}: ${message}\n`)
    return code
  }
  try {
    switch (sub) {
      case "verify": {
        if (positionals.length > 1) return fail(2, `unexpected argument ${positionals[1]}`)
        const from = intOption("from", values.from as string | undefined)
        const to = intOption("to", values.to as string | undefined)
        return await verifyCommand(home, from, to, json, io)
      }
      case "proof": {
        const id = positionals[1]
        if (id === undefined || positionals.length > 2) return fail(2, "give exactly one event id")
        return await proofCommand(home, id, values.nats as string | undefined, json, io)
      }
      case "tail": {
        if (positionals.length > 1) return fail(2, `unexpected argument ${positionals[1]}`)
        const n = intOption("n", values.n as string | undefined) ?? 20
        return await tailCommand(
          home,
          n,
          values.ocsf === true,
          values.follow === true,
          values.nats as string | undefined,
          json,
          io,
        )
      }
      case "key": {
        if (positionals.length > 1) return fail(2, `unexpected argument ${positionals[1]}`)
        return keyCommand(home, values.all === true, json, io)
      }
      default:
        io.err(`vigil audit: unknown subcommand "${sub}"\n\n${AUDIT_USAGE}`)
        return 2
    }
  } catch (e) {
    if (e instanceof NoVigilHome) return fail(1, e.message)
    if (e instanceof AuditInputError) return fail(2, e.message)
    if (e instanceof AuditCheckFailed) return fail(1, e.message)
    return fail(2, e instanceof Error ? e.message : String(e))
  }
}

/** Progress on stderr: a redrawn bar on a terminal, else a plain percentage line at most once a second. */
const progressReporter = (io: AuditIo) => {
  let finished = false
  let lastLine = performance.now()
  let lastPct = -1
  let drawn = false
  const started = performance.now()
  const update = (p: AuditProgress) => {
    // Nothing after done(): the result follows it, and a progress line must never land after the result.
    if (finished) return
    // A leaf's signature costs about ten times its share of the tree check.
    const work = p.eventsTotal + 0.1 * p.treeTotal
    const fraction = work === 0 ? 1 : Math.min(1, (p.events + 0.1 * p.tree) / work)
    const pct = Math.floor(fraction * 100)
    const secs = (performance.now() - started) / 1000
    const rate = secs > 0 ? Math.round(p.events / secs) : 0
    const what = `${num(p.events)}/${count(p.eventsTotal, "event")}, ${num(rate)} events/s`
    if (io.errIsTty) {
      if (pct === lastPct) return
      lastPct = pct
      const width = Math.max(10, Math.min(40, (io.errColumns ?? 80) - 50))
      const filled = Math.round(fraction * width)
      io.err(
        `\r\u001b[2Kverify [${"#".repeat(filled)}${".".repeat(width - filled)}] ${String(pct).padStart(3)}%  ${what}`,
      )
      drawn = true
    } else {
      const now = performance.now()
      if (now - lastLine < 1000) return
      lastLine = now
      io.err(`verify: ${pct}% (${what})\n`)
    }
  }
  const done = () => {
    finished = true
    if (drawn) io.err("\r\u001b[2K")
    drawn = false
  }
  return { update, done }
}

const describe = (p: AuditProblem): string => {
  const where =
    p.kind === "checkpoint"
      ? `checkpoint ${(p.checkpoint ?? 0) + 1}${p.index === undefined ? "" : ` (leaves from ${p.index})`}`
      : `leaf ${p.index ?? "?"}`
  const repeats = p.repeats === undefined ? "" : ` (and ${count(p.repeats, "later checkpoint")})`
  return `${where}: ${p.code}: ${p.message}${p.path === undefined ? "" : ` [${p.path}]`}${repeats}`
}

const verifyCommand = async (
  home: string,
  from: number | undefined,
  to: number | undefined,
  json: boolean,
  io: AuditIo,
): Promise<number> => {
  const trust = readHomeTrust(home)
  const dir = auditLogDir(home)
  const reporter = progressReporter(io)
  let report: AuditVerifyReport
  try {
    report = await verifyAuditLog({
      dir,
      rootPublicKey: trust.rootPublicKey,
      manifests: trust.manifests,
      ...(from === undefined ? {} : { from }),
      ...(to === undefined ? {} : { to }),
      onProgress: reporter.update,
    })
  } finally {
    reporter.done()
  }
  return printVerify(report, json, io)
}

/** The report as `vigil audit verify` prints it (one JSON line with --json); the exit code. */
export const printVerify = (r: AuditVerifyReport, json: boolean, io: AuditIo): number => {
  if (json) {
    io.out(JSON.stringify(r))
    return r.ok ? 0 : 1
  }
  const range = r.from === 0 && r.to === r.size ? "" : ` (events of leaves ${num(r.from)}..${num(r.to)})`
  if (r.ok) {
    io.out(
      [
        `audit log verified: ${count(r.size, "leaf", "leaves")}${range}, ${count(r.checkpoints, "signed checkpoint")} (latest size ${num(r.checkpointSize)})`,
        `  events       ${num(r.leavesChecked)} signed, authorised, canonical and unique, in ${(r.elapsedMs / 1000).toFixed(2)} s (${num(Math.round(r.rate))} events/s)`,
        "  tree         every leaf hash, tile and the committed root recomputed",
        `  checkpoints  each signed by an auditor key of the manifest, root = the leaves' root, consistent with the one before`,
        `  root         ${r.root}`,
        ...(r.unsignedLeaves > 0
          ? [
              `  note         ${count(r.unsignedLeaves, "leaf", "leaves")} after the last checkpoint ${r.unsignedLeaves === 1 ? "is" : "are"} not covered by a signature yet`,
            ]
          : []),
        `  origin       ${r.origin}`,
      ].join("\n"),
    )
    return 0
  }
  const first = r.first as AuditProblem
  const lines = [`audit log NOT verified: first problem at ${describe(first)}`]
  const others = r.problems.slice(1)
  if (others.length > 0) lines.push(...others.map((p) => `  also ${describe(p)}`))
  lines.push(`  (${count(r.size, "leaf", "leaves")}${range}, ${count(r.checkpoints, "checkpoint")}; log ${r.dir})`)
  io.out(lines.join("\n"))
  return 1
}

/**
 * `vigil audit key`: the auditor's checkpoint verifier key(s) for the log's origin, from the home's key manifest
 * (verified under `keys/root.pub`). Text: one verifier key a line, newest first, nothing else, so it can be saved as
 * is (`vigil audit key > vigil.vkey`). JSON: one object, `{ ok, origin, keys: [{ vkey, keyId, kid, notBefore,
 * notAfter, manifestVersion, current }] }`.
 */
const keyCommand = (home: string, all: boolean, json: boolean, io: AuditIo): number => {
  const { chain } = readHomeTrust(home)
  const origin = logOrigin(chain)
  const every = auditorVerifierKeys(origin, chain)
  const keys = all ? every : every.filter((k) => k.current)
  if (keys.length === 0) {
    throw new AuditCheckFailed(
      every.length === 0
        ? `the key manifest (v${chain.latest.version}) grants no auditor key`
        : `no auditor key of the key manifest (v${chain.latest.version}) is valid now; --all lists the ${count(every.length, "key")} it ever granted`,
    )
  }
  if (json) io.out(JSON.stringify({ ok: true, origin, keys }))
  else for (const k of keys) io.out(k.vkey)
  return 0
}

const proofCommand = async (
  home: string,
  id: string,
  nats: string | undefined,
  json: boolean,
  io: AuditIo,
): Promise<number> => {
  const { chain } = readHomeTrust(home)
  const url = busUrl(home, nats)
  const nc = await connectOps(home, url)
  let r: ProofResult
  try {
    r = await proveInclusion(nc, chain, id)
  } finally {
    await nc.close()
  }
  if (json) {
    io.out(JSON.stringify({ ok: true, verified: true, ...r }))
    return 0
  }
  io.out(
    [
      `event     ${r.id} (${r.type}, session ${r.session}, from ${r.source})`,
      `leaf      ${num(r.index)} of ${num(r.size)}`,
      `root      ${r.root} (checkpoint signed by ${r.signedBy.join(", ")})`,
      `proof     ${r.proof.length} hashes, leaf to root`,
      ...r.proof.map((h, i) => `  ${String(i).padStart(2)}  ${h}`),
      `verified: event ${r.id} is leaf ${num(r.index)} of the tree of size ${num(r.size)} the auditor signed`,
    ].join("\n"),
  )
  return 0
}

const tailCommand = async (
  home: string,
  n: number,
  ocsf: boolean,
  follow: boolean,
  nats: string | undefined,
  json: boolean,
  io: AuditIo,
): Promise<number> => {
  const { chain } = readHomeTrust(home)
  const url = busUrl(home, nats)
  const nc = await connectOps(home, url)
  const stop = new AbortController()
  const onSignal = () => stop.abort()
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  let shown = 0
  let notVerified = 0
  const print = (item: TailItem) => {
    shown++
    if (item.verdict.status !== "verified") {
      notVerified++
      printUnverified(item, item.verdict, ocsf, json, io)
      return
    }
    if (json) {
      io.out(
        JSON.stringify(
          ocsf
            ? {
                seq: item.seq,
                subject: item.subject,
                time: item.time,
                class: item.kind,
                session: item.session,
                id: item.id,
                leafIndex: item.leafIndex ?? null,
                verified: true,
                record: item.body,
              }
            : {
                seq: item.seq,
                subject: item.subject,
                time: item.time,
                type: item.kind,
                session: item.session,
                id: item.id,
                verified: true,
                event: item.body,
              },
        ),
      )
      return
    }
    const leaf = ocsf ? `  leaf ${item.leafIndex ?? "?"}` : ""
    io.out(
      `${item.time.padEnd(24)}  ${item.kind.padEnd(ocsf ? 36 : 18)}  ${item.session.padEnd(12)}  ${item.id}${leaf}`,
    )
  }
  try {
    await tailStream(nc, {
      ocsf,
      n,
      follow,
      onItem: print,
      chain,
      reloadChain: () => readHomeTrust(home).chain,
      signal: stop.signal,
    })
    // An empty stream says so (on stderr: stdout stays the items alone, one per line, for scripts).
    if (shown === 0 && !stop.signal.aborted) {
      io.err(`vigil audit tail: ${ocsf ? "no OCSF records in VIGIL_AUDIT" : "no events in VIGIL_EVENTS"} yet\n`)
    }
  } catch (e) {
    if (stop.signal.aborted) return 0
    throw new AuditCheckFailed(`cannot read ${ocsf ? "VIGIL_AUDIT" : "VIGIL_EVENTS"}: ${(e as Error).message}`)
  } finally {
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
    await nc.close().catch(() => undefined)
    if (notVerified > 0) {
      io.err(
        `vigil audit tail: ${notVerified} of ${shown} ${ocsf ? "records" : "messages"} shown did not verify (the lines marked REFUSED or UNVERIFIED): do not take them for audit entries\n`,
      )
    }
  }
  return 0
}

/** Text from a message that did not verify, fit for one terminal line: no control characters, bounded. */
const claim = (text: string, max = 64): string => {
  const cleaned = text.replace(/\p{C}/gu, "?")
  return cleaned.length > max ? `${cleaned.slice(0, max)}…` : cleaned
}

/**
 * A message that did not verify. Text: a line that starts with REFUSED (or UNVERIFIED when it could not be checked)
 * and its reason, never with a timestamp as entries do, whatever it claims to be (claims are quoted, cleaned and
 * cut). JSON: `verified: false` with the reason; what it claims is under `claimed` and its body under `raw`, so a
 * reader that looks for `event`, `record` or `id` at the top level never takes it for an entry.
 */
const printUnverified = (
  item: TailItem,
  verdict: Exclude<TailItem["verdict"], { status: "verified" }>,
  ocsf: boolean,
  json: boolean,
  io: AuditIo,
) => {
  const mark = verdict.status === "refused" ? "REFUSED" : "UNVERIFIED"
  if (json) {
    io.out(
      JSON.stringify({
        seq: item.seq,
        subject: item.subject,
        verified: false,
        status: verdict.status,
        reason: verdict.reason,
        detail: verdict.detail,
        claimed: {
          time: item.time,
          [ocsf ? "class" : "type"]: item.kind,
          session: item.session,
          id: item.id,
          ...(ocsf ? { leafIndex: item.leafIndex ?? null } : {}),
        },
        raw: item.body,
      }),
    )
    return
  }
  const claims = [
    `${ocsf ? "record of" : "claims"} ${JSON.stringify(claim(item.kind))}`,
    `id ${JSON.stringify(claim(item.id))}`,
    `session ${JSON.stringify(claim(item.session))}`,
    ...(ocsf && item.leafIndex !== undefined ? [`leaf ${item.leafIndex}`] : []),
  ].join(" ")
  io.out(
    `${mark} ${verdict.reason}: seq ${item.seq} ${claim(item.subject, 256)} ${claims}: ${claim(verdict.detail, 300)}`,
  )
}
