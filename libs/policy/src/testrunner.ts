import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { DATA_CLASSES, TOOLS } from "@vigil/events"
import { Schema } from "effect"
import type { DataClass, Finding } from "./classify.ts"
import { loadBundleDir } from "./contents.ts"
import { type CompileOptions, compileBundle, type Decision, type PolicyEngine } from "./engine.ts"
import type { DeviceInfo } from "./request.ts"

/**
 * Policy tests as code: policies/tests/*.json hold cases — an intent plus what Vigil knows around it, and the
 * decision expected — run against the bundle in a policies/ directory (the default policies, or a role bundle when
 * the case names one). Used by `vigil policy test`, by CI, and by the repo's own vitest suite.
 */

const FINDING_KINDS = ["secret", "pii", "financial", "health", "credential", "custom"] as const
const RoleName = Schema.String.pipe(Schema.check(Schema.isPattern(/^[a-z0-9][a-z0-9-]{0,63}$/u)))
const Strings = Schema.Array(Schema.String)
const Device = Schema.Struct({ id: Schema.String, managed: Schema.Boolean, os: Schema.String })

const Environment = {
  /** Principal's role; default: the case's bundle, else "staff". */
  role: Schema.optionalKey(RoleName),
  grantedFolders: Schema.optionalKey(Strings),
  egressAllowlist: Schema.optionalKey(Strings),
  remoteModelUrl: Schema.optionalKey(Schema.String),
  device: Schema.optionalKey(Device),
  user: Schema.optionalKey(Schema.String),
  cwd: Schema.optionalKey(Schema.String),
}

export const PolicyTestCase = Schema.Struct({
  name: Schema.String.pipe(Schema.check(Schema.isMinLength(1), Schema.isMaxLength(200))),
  /** Role bundle layered on the default policies (policies/roles/<bundle>); default: the file's, else none. */
  bundle: Schema.optionalKey(RoleName),
  request: Schema.Struct({
    tool: Schema.Literals(TOOLS),
    args: Schema.Record(Schema.String, Schema.Json),
    /** Rate the data at least this class (on top of what the path and findings say). */
    dataClass: Schema.optionalKey(Schema.Literals(DATA_CLASSES)),
    /** DLP findings on the arguments; detector defaults to "test", count to 1. */
    dlp: Schema.optionalKey(
      Schema.Array(
        Schema.Struct({
          kind: Schema.Literals(FINDING_KINDS),
          detector: Schema.optionalKey(Schema.String),
          count: Schema.optionalKey(Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))),
        }),
      ),
    ),
    consent: Schema.optionalKey(Schema.Boolean),
    /** Bytes the action would write or send, beyond what the arguments show (e.g. a file upload's size). */
    bytes: Schema.optionalKey(Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(0)))),
    ...Environment,
  }),
  expect: Schema.Struct({
    effect: Schema.Literals(["allow", "deny", "ask"]),
    /** This policy id must be among the decision's rules (the rule fires). */
    rule: Schema.optionalKey(Schema.String),
    /** This policy id must not be among the decision's rules (the rule does not fire). */
    notRule: Schema.optionalKey(Schema.String),
    /** The explanation contains this text (case-insensitive). */
    reasonIncludes: Schema.optionalKey(Schema.String),
    /** These obligation kinds are all present. */
    obligations: Schema.optionalKey(Schema.Array(Schema.Literals(["read-only", "redact", "max-bytes", "ask"]))),
    dataClass: Schema.optionalKey(Schema.Literals(DATA_CLASSES)),
  }),
})
export type PolicyTestCase = typeof PolicyTestCase.Type

export const PolicyTestFile = Schema.Struct({
  $comment: Schema.optionalKey(Schema.String),
  description: Schema.optionalKey(Schema.String),
  /** Defaults for every case in the file. */
  defaults: Schema.optionalKey(Schema.Struct({ bundle: Schema.optionalKey(RoleName), ...Environment })),
  cases: Schema.Array(PolicyTestCase).pipe(Schema.check(Schema.isMinLength(1))),
})
export type PolicyTestFile = typeof PolicyTestFile.Type

const decodeFile = Schema.decodeUnknownResult(PolicyTestFile, { onExcessProperty: "error", errors: "first" })

export interface CaseResult {
  readonly file: string
  readonly name: string
  /** "default", or the role bundle. */
  readonly bundle: string
  readonly ok: boolean
  /** Why it failed, one line each. */
  readonly failures: ReadonlyArray<string>
  readonly expected: PolicyTestCase["expect"]
  readonly decision?: Decision
}

export interface RuleCoverage {
  /** Passing cases whose `expect.rule` names the policy. */
  fires: number
  /** Passing cases whose `expect.notRule` names the policy. */
  notFires: number
}

export interface PolicyTestReport {
  readonly ok: boolean
  readonly passed: number
  readonly failed: number
  readonly results: ReadonlyArray<CaseResult>
  /** Problems with test files or bundles (each also fails the run). */
  readonly errors: ReadonlyArray<string>
  /** Policy id → how the passing cases exercise it, for every policy of every bundle the run compiled. */
  readonly coverage: Readonly<Record<string, RuleCoverage>>
  /** Digest of each bundle the run compiled ("default" or role → digest). */
  readonly bundles: Readonly<Record<string, string>>
}

export interface RunOptions {
  /** Where the test files are; default `<policiesDir>/tests`. */
  readonly testsDir?: string
  /** How bundles are compiled (see engine.ts). */
  readonly compile?: CompileOptions
}

const DEFAULT_DEVICE: DeviceInfo = { id: "test-device", managed: true, os: "linux" }

/** Run every policies/tests/*.json case against the bundles in `policiesDir`. Never throws. */
export const runPolicyTests = (policiesDir: string, options: RunOptions = {}): PolicyTestReport => {
  const testsDir = options.testsDir ?? join(policiesDir, "tests")
  const errors: string[] = []
  const results: CaseResult[] = []
  const engines = new Map<string, PolicyEngine | string>()
  const coverage: Record<string, RuleCoverage> = {}
  const bundles: Record<string, string> = {}

  const engineFor = (bundle: string): PolicyEngine | string => {
    let e = engines.get(bundle)
    if (e === undefined) {
      try {
        const v = compileBundle(loadBundleDir(policiesDir, bundle === "default" ? null : bundle), options.compile)
        if (v.ok) {
          e = v.engine
          bundles[bundle] = e.digest
          for (const p of e.policies) coverage[p.id] ??= { fires: 0, notFires: 0 }
        } else {
          e = `bundle ${bundle} refused (${v.reason}): ${v.errors.join("; ")}`
        }
      } catch (err) {
        e = `bundle ${bundle}: ${(err as Error).message}`
      }
      if (typeof e === "string") errors.push(e)
      engines.set(bundle, e)
    }
    return e
  }

  let files: string[] = []
  if (!existsSync(testsDir)) errors.push(`${testsDir}: missing`)
  else
    files = readdirSync(testsDir)
      .filter((f) => f.endsWith(".json"))
      .sort()
  if (files.length === 0 && existsSync(testsDir)) errors.push(`${testsDir}: no test files`)

  for (const file of files) {
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(join(testsDir, file), "utf8"))
    } catch (err) {
      errors.push(`${file}: ${(err as Error).message}`)
      continue
    }
    const decoded = decodeFile(parsed)
    if (decoded._tag === "Failure") {
      errors.push(`${file}: ${decoded.failure.message}`)
      continue
    }
    const { defaults = {}, cases } = decoded.success
    const names = new Set<string>()
    for (const c of cases) {
      if (names.has(c.name)) errors.push(`${file}: case name "${c.name}" is used twice`)
      names.add(c.name)
      const bundle = c.bundle ?? defaults.bundle ?? "default"
      const engine = engineFor(bundle)
      const base = { file, name: c.name, bundle, expected: c.expect }
      if (typeof engine === "string") {
        results.push({ ...base, ok: false, failures: [engine] })
        continue
      }
      const r = c.request
      const findings: Finding[] = (r.dlp ?? []).map((f) => ({
        detector: f.detector ?? "test",
        kind: f.kind,
        count: f.count ?? 1,
      }))
      const pick = <K extends keyof typeof Environment>(k: K) => r[k] ?? defaults[k]
      const floor: DataClass | undefined = r.dataClass
      const remoteModelUrl = pick("remoteModelUrl")
      const user = pick("user")
      const cwd = pick("cwd")
      const decision = engine.decideIntent(
        { tool: r.tool, args: r.args },
        {
          grantedFolders: pick("grantedFolders") ?? [],
          egressAllowlist: pick("egressAllowlist") ?? [],
          role: pick("role") ?? (bundle === "default" ? "staff" : bundle),
          device: pick("device") ?? DEFAULT_DEVICE,
          dlpFindings: findings,
          consent: r.consent ?? false,
          ...(remoteModelUrl === undefined ? {} : { remoteModelUrl }),
          ...(user === undefined ? {} : { user }),
          ...(cwd === undefined ? {} : { cwd }),
          ...(floor === undefined ? {} : { dataClassFloor: floor }),
          ...(r.bytes === undefined ? {} : { bytes: r.bytes }),
        },
      )
      const failures = check(c.expect, decision, engine)
      const ok = failures.length === 0
      if (ok) {
        if (c.expect.rule !== undefined) coverage[c.expect.rule] = bump(coverage[c.expect.rule], "fires")
        if (c.expect.notRule !== undefined) coverage[c.expect.notRule] = bump(coverage[c.expect.notRule], "notFires")
      }
      results.push({ ...base, ok, failures, decision })
    }
  }
  const failed = results.filter((r) => !r.ok).length
  return {
    ok: failed === 0 && errors.length === 0,
    passed: results.length - failed,
    failed,
    results,
    errors,
    coverage,
    bundles,
  }
}

const bump = (c: RuleCoverage | undefined, k: keyof RuleCoverage): RuleCoverage => {
  const out = c ?? { fires: 0, notFires: 0 }
  out[k]++
  return out
}

const check = (expect: PolicyTestCase["expect"], d: Decision, engine: PolicyEngine): string[] => {
  const f: string[] = []
  const known = (id: string) => engine.policies.some((p) => p.id === id)
  if (d.effect !== expect.effect) f.push(`expected ${expect.effect}, got ${d.effect} (${d.explanation})`)
  if (expect.rule !== undefined) {
    if (!known(expect.rule)) f.push(`rule ${expect.rule} is not a policy of this bundle`)
    else if (!d.rules.includes(expect.rule)) {
      f.push(`expected rule ${expect.rule} to decide, got [${d.rules.join(", ")}]`)
    }
  }
  if (expect.notRule !== undefined) {
    if (!known(expect.notRule)) f.push(`rule ${expect.notRule} is not a policy of this bundle`)
    else if (d.rules.includes(expect.notRule)) f.push(`expected rule ${expect.notRule} not to decide, but it did`)
  }
  if (
    expect.reasonIncludes !== undefined &&
    !d.explanation.toLowerCase().includes(expect.reasonIncludes.toLowerCase())
  ) {
    f.push(`expected the explanation to mention "${expect.reasonIncludes}", got "${d.explanation}"`)
  }
  for (const k of expect.obligations ?? []) {
    if (!d.obligations.some((o) => o.kind === k)) {
      f.push(`expected obligation ${k}, got [${d.obligations.map((o) => o.kind).join(", ")}]`)
    }
  }
  if (expect.dataClass !== undefined && d.dataClass !== expect.dataClass) {
    f.push(`expected data class ${expect.dataClass}, got ${d.dataClass ?? "none"}`)
  }
  return f
}

/** Human-readable summary of a report, one line per failure. */
export const formatTestReport = (report: PolicyTestReport): string => {
  const lines: string[] = []
  for (const e of report.errors) lines.push(`ERROR ${e}`)
  for (const r of report.results) {
    if (!r.ok) lines.push(`FAIL  ${r.file} › ${r.name} [${r.bundle}]\n        ${r.failures.join("\n        ")}`)
  }
  lines.push(
    `${report.passed} passed, ${report.failed} failed${report.errors.length > 0 ? `, ${report.errors.length} errors` : ""}`,
  )
  return lines.join("\n")
}
