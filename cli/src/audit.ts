import {
  AuditInputError,
  type AuditProblem,
  type AuditProgress,
  type AuditVerifyReport,
  auditLogDir,
  auditorVerifierKeys,
  logOrigin,
  readHomeTrust,
  verifyAuditLog,
} from "@vigil/auditlog"
import {
  debugWanted,
  type Reporter,
  reportError,
  requireVigilHome,
  resolveBusUrl,
  UsageError,
  type Writers,
} from "./args.ts"
import { AUDIT_USAGE, type AuditCommand, parseAudit } from "./audit-args.ts"
import {
  AuditCheckFailed,
  connectOps,
  type ProofResult,
  proveInclusion,
  type TailItem,
  tailStream,
} from "./audit-bus.ts"

export interface AuditIo extends Writers {
  /** Whether stderr is a terminal (progress bar) or not (a percentage line at most every second). */
  readonly errIsTty: boolean
  readonly errColumns?: number
}

export const processAuditIo = (): AuditIo => ({
  out: (line) => process.stdout.write(`${line}\n`),
  err: (text) => process.stderr.write(text),
  errIsTty: process.stderr.isTTY === true,
  ...(process.stderr.columns === undefined ? {} : { errColumns: process.stderr.columns }),
})

const num = (n: number) => n.toLocaleString("en-US")
/** `1 leaf`, `2 leaves`, `1,024 leaves`: a count and its noun, singular for exactly one. */
export const count = (n: number, one: string, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`

/**
 * `vigil audit …` with its own arguments (after `audit`), by the CLI convention of args.ts; resolves to the exit
 * code: 0 verified (done), 1 a check failed or the command could not run (one line says why), 2 a usage error.
 */
export const runAudit = async (argv: ReadonlyArray<string>, io: AuditIo = processAuditIo()): Promise<number> => {
  const debug = debugWanted(argv)
  let parsed: ReturnType<typeof parseAudit>
  try {
    parsed = parseAudit(argv)
  } catch (e) {
    const json = argv.includes("--json")
    return reportError({ command: "vigil audit", json, debug, helpHint: "vigil audit --help" }, e, io)
  }
  if (parsed.help) {
    io.out(AUDIT_USAGE.trimEnd())
    return 0
  }
  return executeAudit(parsed.command, parsed.json, io, debug)
}

/** Runs a parsed `vigil audit` command; every failure is reported here, as one line (JSON too with `--json`). */
export const executeAudit = async (
  cmd: AuditCommand,
  json: boolean,
  io: AuditIo = processAuditIo(),
  debug = false,
): Promise<number> => {
  const reporter: Reporter = { command: `vigil audit ${cmd.sub}`, json, debug, helpHint: "vigil audit --help" }
  try {
    requireVigilHome(cmd.home)
    switch (cmd.sub) {
      case "verify":
        return await verifyCommand(cmd.home, cmd.from, cmd.to, json, io)
      case "proof":
        return await proofCommand(cmd.home, cmd.id, cmd.nats, json, io)
      case "tail":
        return await tailCommand(cmd.home, cmd.n, cmd.ocsf, cmd.follow, cmd.nats, json, io)
      case "key":
        return keyCommand(cmd.home, cmd.all, json, io)
    }
  } catch (e) {
    // A range outside the log is a bad argument, known only once the log is read.
    return reportError(reporter, e instanceof AuditInputError ? new UsageError(e.message) : e, io)
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
  const url = await resolveBusUrl(home, nats)
  const { chain } = readHomeTrust(home)
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
  const url = await resolveBusUrl(home, nats)
  const { chain } = readHomeTrust(home)
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
