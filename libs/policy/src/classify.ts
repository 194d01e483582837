import { DATA_CLASSES, type EventData } from "@vigil/events"
import { Schema } from "effect"
import { compileGlob } from "./glob.ts"

/**
 * Data classification: before any decision, Vigil rates the data an intent touches as public, internal,
 * confidential or restricted, from rules in policies/data-classes.json (path globs, file extensions, DLP findings).
 * The highest class among the matching rules wins; a file no rule matches gets the configured default; data that is
 * not a file (what net.fetch or model.remote would send) starts at "public" and is raised by its DLP findings.
 */

export type DataClass = (typeof DATA_CLASSES)[number]
export type Finding = EventData<"intent.screened">["findings"][number]

export const DataClassSchema = Schema.Literals(DATA_CLASSES)
const FINDING_KINDS = ["secret", "pii", "financial", "health", "credential", "custom"] as const

/** Rank of a class: public 0 … restricted 3. */
export const classRank = (c: DataClass): number => DATA_CLASSES.indexOf(c)
/** The higher of two classes. */
export const maxClass = (a: DataClass, b: DataClass): DataClass => (classRank(a) >= classRank(b) ? a : b)

const RuleId = Schema.String.pipe(Schema.check(Schema.isPattern(/^[a-z0-9][a-z0-9._-]{0,63}$/u)))
const Glob = Schema.String.pipe(Schema.check(Schema.isMinLength(1), Schema.isMaxLength(1024)))
const Extension = Schema.String.pipe(Schema.check(Schema.isPattern(/^[a-z0-9][a-z0-9._-]{0,31}$/u)))
const NonEmptyList = <S extends Schema.Top>(item: S) =>
  Schema.Array(item).pipe(Schema.check(Schema.isMinLength(1), Schema.isMaxLength(256)))

export const DlpCriterion = Schema.Struct({
  /** Any finding of one of these kinds. */
  kinds: Schema.optionalKey(NonEmptyList(Schema.Literals(FINDING_KINDS))),
  /** Any finding by one of these detectors. */
  detectors: Schema.optionalKey(NonEmptyList(Schema.String.pipe(Schema.check(Schema.isMaxLength(64))))),
  /** At least this many findings (of the kinds/detectors above, when given). Default 1. */
  minCount: Schema.optionalKey(Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1)))),
})

/**
 * One rule. Every criterion given must hold (AND); within a criterion any entry may match (OR). A rule with
 * `paths` or `extensions` only matches files; a rule with only `dlp` matches any data.
 */
export const DataClassRule = Schema.Struct({
  id: RuleId,
  class: DataClassSchema,
  description: Schema.optionalKey(Schema.String.pipe(Schema.check(Schema.isMaxLength(500)))),
  /** Globs over the normalised absolute path (see glob.ts). */
  paths: Schema.optionalKey(NonEmptyList(Glob)),
  /** Lower-case file extensions without the dot; "tar.gz" matches names ending in ".tar.gz". */
  extensions: Schema.optionalKey(NonEmptyList(Extension)),
  dlp: Schema.optionalKey(DlpCriterion),
}).pipe(
  Schema.check(
    Schema.makeFilter((r) =>
      r.paths !== undefined || r.extensions !== undefined || r.dlp !== undefined
        ? undefined
        : { path: ["paths"], issue: `rule ${r.id} has no criterion (paths, extensions or dlp)` },
    ),
  ),
)
export type DataClassRule = typeof DataClassRule.Type

export const DATA_CLASS_CONFIG_VERSION = 1

export const DataClassConfig = Schema.Struct({
  $comment: Schema.optionalKey(Schema.String),
  v: Schema.Literal(DATA_CLASS_CONFIG_VERSION),
  /** Class of a file that no rule matches. */
  default: DataClassSchema,
  /** Compare path globs case-insensitively (default true). */
  caseInsensitive: Schema.optionalKey(Schema.Boolean),
  rules: Schema.Array(DataClassRule).pipe(Schema.check(Schema.isMaxLength(1024))),
}).pipe(
  Schema.check(
    Schema.makeFilter((c) => {
      const seen = new Set<string>()
      for (const [i, r] of c.rules.entries()) {
        if (seen.has(r.id)) return { path: ["rules", i, "id"], issue: `rule id ${r.id} is used twice` }
        seen.add(r.id)
      }
      return undefined
    }),
  ),
)
export type DataClassConfig = typeof DataClassConfig.Type

const decodeConfig = Schema.decodeUnknownResult(DataClassConfig, { onExcessProperty: "error", errors: "all" })

export type ConfigVerdict =
  | { readonly ok: true; readonly config: DataClassConfig }
  | { readonly ok: false; readonly detail: string }

/** Decode and check a data-class configuration (the parsed JSON of data-classes.json). Never throws. */
export const parseDataClassConfig = (input: unknown): ConfigVerdict => {
  const r = decodeConfig(input)
  return r._tag === "Failure" ? { ok: false, detail: r.failure.message } : { ok: true, config: r.success }
}

/** What to classify: a file path (normalised, absolute), DLP findings about its content, or both. */
export interface ClassifyInput {
  readonly path?: string
  readonly findings?: ReadonlyArray<Finding>
}

export interface Classification {
  readonly dataClass: DataClass
  /** Ids of every rule that matched, in configuration order. */
  readonly rules: ReadonlyArray<string>
}

export interface Classifier {
  readonly config: DataClassConfig
  classify(input: ClassifyInput): Classification
}

interface CompiledRule {
  readonly id: string
  readonly cls: DataClass
  readonly paths: ReadonlyArray<(p: string) => boolean> | undefined
  readonly extensions: ReadonlyArray<string> | undefined
  readonly dlp: typeof DlpCriterion.Type | undefined
}

const dlpMatches = (c: typeof DlpCriterion.Type, findings: ReadonlyArray<Finding>): boolean => {
  let n = 0
  for (const f of findings) {
    if (c.kinds !== undefined && !c.kinds.includes(f.kind)) continue
    if (c.detectors !== undefined && !c.detectors.includes(f.detector)) continue
    n += Math.max(f.count, 1)
  }
  return n >= (c.minCount ?? 1)
}

const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1)

/** A classifier over a decoded configuration; globs are compiled once here. */
export const makeClassifier = (config: DataClassConfig): Classifier => {
  const caseInsensitive = config.caseInsensitive ?? true
  const rules: CompiledRule[] = config.rules.map((r) => ({
    id: r.id,
    cls: r.class,
    paths: r.paths?.map((g) => compileGlob(g, { caseInsensitive })),
    extensions: r.extensions,
    dlp: r.dlp,
  }))
  return {
    config,
    classify: ({ path, findings = [] }) => {
      let cls: DataClass | undefined
      const matched: string[] = []
      const name = path === undefined ? undefined : baseName(path).toLowerCase()
      for (const r of rules) {
        if (r.paths !== undefined && (path === undefined || !r.paths.some((m) => m(path)))) continue
        if (r.extensions !== undefined && (name === undefined || !r.extensions.some((e) => name.endsWith(`.${e}`)))) {
          continue
        }
        if (r.dlp !== undefined && !dlpMatches(r.dlp, findings)) continue
        matched.push(r.id)
        cls = cls === undefined ? r.cls : maxClass(cls, r.cls)
      }
      return { dataClass: cls ?? (path === undefined ? "public" : config.default), rules: matched }
    },
  }
}

/** Decode a configuration and build its classifier; throws a TypeError naming the problem when it is invalid. */
export const classifierOf = (input: unknown): Classifier => {
  const v = parseDataClassConfig(input)
  if (!v.ok) throw new TypeError(`invalid data-class configuration: ${v.detail}`)
  return makeClassifier(v.config)
}
