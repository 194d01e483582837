import type { BlobRef, Event, EventData, TOOLS } from "@vigil/events"
import { STREAM_EVENTS } from "@vigil/events"
import {
  API_ACTIVITY,
  CONFIDENCE,
  DETECTION_FINDING,
  FILE_ACTIVITY,
  FILE_TYPE,
  NETWORK_ACTIVITY,
  OCSF_VERSION,
  type OcsfClass,
  OUTBOUND,
  PROCESS_ACTIVITY,
  SEVERITY,
  type SeverityId,
  SHA_256,
} from "./schema.ts"

/**
 * Vigil event → one OCSF 1.5.0 record, published by the auditor on `vigil.audit.ocsf.<subjectClass>`.
 *
 * Mapping table (class uid, activity id; type_uid = class_uid * 100 + activity_id):
 *
 * | event type                         | OCSF class                 | activity                                      |
 * | ---------------------------------- | -------------------------- | --------------------------------------------- |
 * | task.submitted                     | API Activity 6003          | 1 Create                                      |
 * | intent.proposed                    | API Activity 6003          | 1 Create                                      |
 * | decision.made                      | API Activity 6003          | 1 Create                                      |
 * | consent.requested                  | API Activity 6003          | 1 Create                                      |
 * | consent.granted / consent.denied   | API Activity 6003          | 3 Update (the request is answered)            |
 * | consent.revoked                    | API Activity 6003          | 4 Delete (the durable grant is withdrawn)     |
 * | answer.proposed                    | API Activity 6003          | 1 Create                                      |
 * | checkpoint.signed                  | API Activity 6003          | 1 Create                                      |
 * | containment.ordered                | API Activity 6003          | 99 Other, activity_name "Contain"             |
 * | prompt/intent/result.screened,     | Detection Finding 2004     | 1 Create — when findings ≠ [] or verdict is   |
 * |   answer.released                  |                            |   "blocked"                                   |
 * |                                    | API Activity 6003          | 2 Read — clean screening (DLP read, no hit)   |
 * | answer.blocked                     | Detection Finding 2004     | 1 Create (always: DLP withheld the answer)    |
 * | alert.raised                       | Detection Finding 2004     | 1 Create                                      |
 * | action.* (fs.list, fs.search,      | File System Activity 1001  | 2 Read                                        |
 * |   fs.read, sheet.summarize)        |                            |                                               |
 * | action.* (fs.write)                | File System Activity 1001  | 3 Update                                      |
 * | action.* (fs.move)                 | File System Activity 1001  | 5 Rename                                      |
 * | action.* (fs.delete)               | File System Activity 1001  | 4 Delete                                      |
 * | action.* (shell.exec, plugin.run)  | Process Activity 1007      | started 1 Launch; completed/failed 2 Terminate|
 * | action.* (net.fetch, model.remote) | Network Activity 4001      | started 1 Open; completed 2 Close; failed 4   |
 * |                                    |                            |   Fail (egress, connection_info Outbound)     |
 * | action.completed / action.failed   | API Activity 6003          | 99 Other — only when the caller cannot say    |
 * |   without a known tool             |                            |   which tool the action ran (see Related)     |
 * | change.staged                      | File System Activity 1001  | write: 1 Create (no `before`) / 3 Update;     |
 * |                                    |                            |   move: 5 Rename; delete: 4 Delete            |
 * | change.committed                   | File System Activity 1001  | same activity as the staged op (default 3)    |
 * | change.reverted                    | File System Activity 1001  | the inverse: created→4 Delete, write→3        |
 * |                                    |                            |   Update, move→5 Rename, delete→1 Create      |
 *
 * `action.completed`, `action.failed`, `change.committed` and `change.reverted` carry only the id of the action or
 * change they finish, so the tool and path come from `ctx.related` (what the auditor's fold knows; {@link
 * RelatedIndex} keeps exactly that).
 *
 * Where Vigil's own fields go:
 * - `metadata.uid` = event id, `metadata.correlation_uid` = correlation (task id), `metadata.sequence` = Merkle leaf
 *   index, `metadata.event_code` = event type, `metadata.original_time` = the envelope's RFC 3339 `time`,
 *   `metadata.log_name` = the JetStream stream; `actor.session.uid` = session; `actor.app_uid` = signing key id.
 * - `unmapped.vigil` (OCSF's place for source attributes that have no schema attribute; chosen over `enrichments`,
 *   whose entries must each describe one attribute of the event, and over `metadata.extensions`, which names
 *   registered schema extensions): `{ event_id, event_type, envelope_version, source, session, correlation,
 *   causation?, trace?, leaf_index, stream_seq, kid, sig, blobs?: { <role>: { sha256, size, media_type,
 *   encrypted? } }, data }`. With `leaf_index`, `kid` and `sig` a SIEM can fetch an inclusion proof and verify the
 *   original signed event against a signed checkpoint.
 *
 * Metadata only: content stays in blobs (only their hash, size and media type are copied). `unmapped.vigil.data` is
 * a per-type summary of structured fields. Not copied, because they can carry content: intent `args` values (only
 * the keys, plus a string `path` argument), the model's intent `reason`, consent `question` (may quote a redacted
 * sample), user-written denial/revocation reasons, policy `explanation`s, DLP `explanation`s, sandbox failure
 * `reason`s, ops containment `reason`s, alert `details` values (keys only); their lengths are kept instead. The
 * egress destination of net.fetch / model.remote is an argument value too, so `dst_endpoint` names the tool, not the
 * host.
 */

export type Tool = (typeof TOOLS)[number]
export type ChangeOp = EventData<"change.staged">["op"]

/** What the auditor's fold knows about the action or change an event refers to. */
export interface Related {
  /** The tool of the action (action.completed / action.failed / change.* name only the action or change id). */
  readonly tool?: Tool
  /** The file path the action or change touched: a string `path` argument of the intent, or the change's path. */
  readonly path?: string
  /** The staged op of a change (change.committed / change.reverted). */
  readonly op?: ChangeOp
  /** A staged write that had no previous bytes (`before` absent): the file is new. */
  readonly created?: boolean
}

export interface OcsfContext {
  /** Index of the event's leaf in the auditor's Merkle log. */
  readonly leafIndex: number
  /** JetStream stream sequence of the event in VIGIL_EVENTS. */
  readonly streamSeq: number
  /** Vigil's version, `metadata.product.version`. */
  readonly productVersion: string
  /** The host the services run on (`device.name`, endpoint `hostname`). */
  readonly deviceName?: string
  readonly related?: Related
}

export type OcsfRecord = { readonly [key: string]: unknown }

export interface OcsfMapped {
  readonly classUid: number
  readonly className: string
  /** OCSF class name, the last token of `vigil.audit.ocsf.<subjectClass>`. */
  readonly subjectClass: string
  readonly record: OcsfRecord
}

/** The audit subject a mapped record is published on. */
export const ocsfSubject = (subjectClass: string): string => `vigil.audit.ocsf.${subjectClass}`

export const PRODUCT_NAME = "Vigil"
export const VENDOR_NAME = "Vigil"

type Obj = Record<string, unknown>

/** Drop keys whose value is undefined (optional attributes are omitted, never `null`). */
const clean = (o: Obj): Obj => {
  // A plain loop: this runs several times per record on the auditor's hot path, where entries/filter/fromEntries
  // cost three short-lived arrays per call.
  const out: Obj = {}
  for (const k in o) {
    const v = o[k]
    if (v !== undefined) out[k] = v
  }
  return out
}

interface Plan {
  readonly cls: OcsfClass
  readonly activityId: number
  /** Only with activity 99 (Other): the source-specific activity label. */
  readonly activityName?: string
  readonly severityId: SeverityId
  readonly statusId: number
  /** Only with status 99 (Other): the source-specific status label. */
  readonly status?: string
  readonly statusCode?: string
  readonly statusDetail?: string
  readonly message: string
  /** Class-specific attributes (actor, api, file, finding_info, …). */
  readonly attrs: Obj
  /** Metadata-only summary of `data`, kept under `unmapped.vigil.data`. */
  readonly summary: Obj
}

// ---------------------------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------------------------

const appName = (source: string) => `vigil-${source}`

const actorOf = (event: Event): Obj => ({
  app_name: appName(event.source),
  app_uid: event.kid,
  session: { uid: event.session },
})

const serviceEndpoint = (event: Event, ctx: OcsfContext): Obj =>
  clean({ name: event.source, svc_name: appName(event.source), hostname: ctx.deviceName })

const deviceOf = (ctx: OcsfContext): Obj =>
  clean({ type_id: 0, type: "Unknown", name: ctx.deviceName ?? "unknown", hostname: ctx.deviceName })

const trimSeparators = (path: string): string => path.replace(/[/\\]+$/u, "")

const baseName = (path: string): string => {
  const trimmed = trimSeparators(path)
  const parts = trimmed.split(/[/\\]/u)
  const last = parts[parts.length - 1]
  return last !== undefined && last !== "" ? last : path
}

const parentFolder = (path: string): string | undefined => {
  const trimmed = trimSeparators(path)
  const cut = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"))
  if (cut < 0) return undefined
  return cut === 0 ? trimmed.slice(0, 1) : trimmed.slice(0, cut)
}

type FileTypeId = keyof typeof FILE_TYPE

const fileOf = (path: string | undefined, typeId: FileTypeId, blob?: BlobRef): Obj =>
  clean({
    name: path === undefined || path === "" ? "unknown" : baseName(path),
    path: path === "" ? undefined : path,
    parent_folder: path === undefined ? undefined : parentFolder(path),
    type_id: typeId,
    type: FILE_TYPE[typeId],
    size: blob?.size,
    mime_type: blob?.mediaType,
    hashes: blob === undefined ? undefined : [{ ...SHA_256, value: blob.sha256 }],
  })

const blobSummary = (b: BlobRef): Obj =>
  clean({ sha256: b.sha256, size: b.size, media_type: b.mediaType, encrypted: b.encrypted })

type Findings = EventData<"prompt.screened">["findings"]
type Verdict = EventData<"prompt.screened">["verdict"]

const findingsSummary = (findings: Findings): Obj => ({
  finding_count: findings.reduce((n, f) => n + f.count, 0),
  findings: findings.map((f) =>
    clean({ detector: f.detector, kind: f.kind, count: f.count, score: f.score, field: f.field }),
  ),
})

const kindsOf = (findings: Findings): ReadonlyArray<string> => [...new Set(findings.map((f) => f.kind))].sort()

/** Severity of a DLP finding set: the worst kind found; a block with no itemised finding is Medium. */
const KIND_SEVERITY: Readonly<Record<Findings[number]["kind"], SeverityId>> = {
  credential: 4,
  secret: 4,
  financial: 3,
  health: 3,
  pii: 3,
  custom: 2,
}
const findingsSeverity = (findings: Findings): SeverityId =>
  findings.length === 0 ? 3 : (Math.max(...findings.map((f) => KIND_SEVERITY[f.kind])) as SeverityId)

const ALERT_SEVERITY: Readonly<Record<EventData<"alert.raised">["severity"], SeverityId>> = {
  info: 1,
  low: 2,
  medium: 3,
  high: 4,
  critical: 5,
}

const confidenceOf = (findings: Findings): Obj => {
  const scores = findings.flatMap((f) => (f.score === undefined ? [] : [f.score]))
  if (scores.length === 0) return {}
  const top = Math.max(...scores)
  const id = top >= 0.9 ? 3 : top >= 0.6 ? 2 : 1
  return { confidence_id: id, confidence: CONFIDENCE[id], confidence_score: Math.round(top * 100) }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

// ---------------------------------------------------------------------------------------------------------------
// Per-class plans
// ---------------------------------------------------------------------------------------------------------------

interface ApiOptions {
  readonly activityId: number
  readonly activityName?: string
  readonly resources: ReadonlyArray<Obj>
  readonly summary: Obj
  readonly message: string
  readonly severityId?: SeverityId
  readonly statusId?: number
  readonly statusCode?: string
  readonly statusDetail?: string
}

const apiPlan = (event: Event, ctx: OcsfContext, o: ApiOptions): Plan => ({
  cls: API_ACTIVITY,
  activityId: o.activityId,
  ...(o.activityName === undefined ? {} : { activityName: o.activityName }),
  severityId: o.severityId ?? 1,
  statusId: o.statusId ?? 1,
  ...(o.statusCode === undefined ? {} : { statusCode: o.statusCode }),
  ...(o.statusDetail === undefined ? {} : { statusDetail: o.statusDetail }),
  message: o.message,
  attrs: {
    actor: actorOf(event),
    api: {
      operation: event.type,
      service: { name: event.source },
      request: { uid: event.id },
      version: String(event.v),
    },
    src_endpoint: serviceEndpoint(event, ctx),
    ...(o.resources.length === 0 ? {} : { resources: o.resources.map(clean) }),
  },
  summary: o.summary,
})

interface Screen {
  readonly what: "prompt" | "intent_args" | "action_output" | "answer"
  readonly ref: string
  readonly verdict: Verdict
  readonly findings: Findings
}

/** DLP screening: a Detection Finding when DLP found or blocked something, else an API Activity Read. */
const screenPlan = (event: Event, ctx: OcsfContext, s: Screen, extra: Obj = {}): Plan => {
  const summary = { ref: s.ref, verdict: s.verdict, ...findingsSummary(s.findings), ...extra }
  const resource = { uid: s.ref, type: s.what }
  if (s.findings.length === 0 && s.verdict !== "blocked") {
    return apiPlan(event, ctx, {
      activityId: 2,
      resources: [resource],
      summary,
      message: `${event.type}: ${s.what} ${s.verdict}`,
    })
  }
  const kinds = kindsOf(s.findings)
  const count = s.findings.reduce((n, f) => n + f.count, 0)
  const title = `DLP ${s.verdict} ${s.what}: ${plural(count, "finding")}${kinds.length === 0 ? "" : ` (${kinds.join(", ")})`}`
  const detectors = [...new Set(s.findings.map((f) => f.detector))].sort()
  return {
    cls: DETECTION_FINDING,
    activityId: 1,
    severityId: findingsSeverity(s.findings),
    statusId: 1,
    message: title,
    attrs: {
      finding_info: clean({
        uid: event.id,
        title,
        desc:
          detectors.length === 0 ? `verdict ${s.verdict}` : `verdict ${s.verdict}; detectors ${detectors.join(", ")}`,
        types: kinds.length === 0 ? [`dlp:${s.verdict}`] : kinds.map((k) => `dlp:${k}`),
        created_time: Date.parse(event.time),
        data_sources: [appName(event.source)],
        related_events: [{ uid: s.ref }],
      }),
      resources: [resource],
      is_alert: s.verdict === "blocked",
      ...confidenceOf(s.findings),
    },
    summary,
  }
}

const FS_TOOLS: Readonly<Partial<Record<Tool, { readonly activityId: number; readonly fileType: FileTypeId }>>> = {
  "fs.list": { activityId: 2, fileType: 2 },
  "fs.search": { activityId: 2, fileType: 2 },
  "fs.read": { activityId: 2, fileType: 1 },
  "sheet.summarize": { activityId: 2, fileType: 1 },
  "fs.write": { activityId: 3, fileType: 1 },
  "fs.move": { activityId: 5, fileType: 1 },
  "fs.delete": { activityId: 4, fileType: 1 },
}
const PROCESS_TOOLS: ReadonlySet<Tool> = new Set<Tool>(["shell.exec", "plugin.run"])

interface Action {
  readonly phase: "started" | "completed" | "failed"
  /** The action.started event id (the action's identity). */
  readonly actionId: string
  readonly tool: Tool | undefined
  readonly exitCode?: number
  readonly durationMs?: number
  readonly code?: string
  readonly summary: Obj
}

const actionPlan = (event: Event, ctx: OcsfContext, a: Action): Plan => {
  const path = ctx.related?.path
  const failed = a.phase === "failed" || (a.phase === "completed" && a.exitCode !== 0)
  const statusCode = a.phase === "failed" ? a.code : a.phase === "completed" ? String(a.exitCode) : undefined
  const status: Pick<Plan, "statusId" | "status" | "statusCode" | "statusDetail"> =
    a.phase === "started"
      ? { statusId: 99, status: "Started" }
      : { statusId: failed ? 2 : 1, statusDetail: a.phase, ...(statusCode === undefined ? {} : { statusCode }) }
  const severityId: SeverityId = failed ? 2 : 1
  const summary = { ...a.summary, ...(a.tool === undefined ? {} : { tool: a.tool }), ...(path ? { path } : {}) }
  const duration = a.durationMs === undefined ? {} : { duration: a.durationMs }
  const what = `${a.tool ?? "action"} ${a.phase}`
  const fs = a.tool === undefined ? undefined : FS_TOOLS[a.tool]
  if (a.tool === undefined) {
    return apiPlan(event, ctx, {
      activityId: 99,
      activityName: a.phase === "failed" ? "Action Failed" : "Action Completed",
      resources: [{ uid: a.actionId, type: "action" }],
      summary,
      message: what,
      severityId,
      statusId: status.statusId,
      ...(status.statusCode === undefined ? {} : { statusCode: status.statusCode }),
      statusDetail: a.phase,
    })
  }
  const base = { severityId, ...status, message: path ? `${what}: ${path}` : what, summary }
  if (fs !== undefined) {
    return {
      ...base,
      cls: FILE_ACTIVITY,
      activityId: fs.activityId,
      attrs: { actor: actorOf(event), device: deviceOf(ctx), file: fileOf(path, fs.fileType), ...duration },
    }
  }
  if (PROCESS_TOOLS.has(a.tool)) {
    return {
      ...base,
      cls: PROCESS_ACTIVITY,
      activityId: a.phase === "started" ? 1 : 2,
      attrs: {
        actor: actorOf(event),
        device: deviceOf(ctx),
        process: clean({
          uid: a.actionId,
          name: a.tool,
          created_time: a.phase === "started" ? Date.parse(event.time) : undefined,
        }),
        ...(a.phase === "completed" ? { exit_code: a.exitCode } : {}),
        ...duration,
      },
    }
  }
  return {
    ...base,
    cls: NETWORK_ACTIVITY,
    activityId: a.phase === "started" ? 1 : a.phase === "completed" ? 2 : 4,
    attrs: {
      actor: actorOf(event),
      src_endpoint: serviceEndpoint(event, ctx),
      dst_endpoint: { name: "egress", svc_name: a.tool },
      connection_info: { ...OUTBOUND, uid: a.actionId },
      ...duration,
    },
  }
}

const STAGED_ACTIVITY = (op: ChangeOp, created: boolean): number =>
  op === "move" ? 5 : op === "delete" ? 4 : created ? 1 : 3
const REVERTED_ACTIVITY = (op: ChangeOp | undefined, created: boolean): number =>
  op === "move" ? 5 : op === "delete" ? 1 : op === "write" && created ? 4 : 3

interface Change {
  readonly activityId: number
  readonly statusId: number
  readonly status?: string
  readonly statusDetail: string
  readonly path: string | undefined
  readonly before?: BlobRef
  readonly after?: BlobRef
  readonly summary: Obj
}

const changePlan = (event: Event, ctx: OcsfContext, c: Change): Plan => ({
  cls: FILE_ACTIVITY,
  activityId: c.activityId,
  severityId: 1,
  statusId: c.statusId,
  ...(c.status === undefined ? {} : { status: c.status }),
  statusDetail: c.statusDetail,
  message: `${event.type}: ${c.path ?? "unknown path"}`,
  attrs: {
    actor: actorOf(event),
    device: deviceOf(ctx),
    file: fileOf(c.path, c.path === undefined ? 0 : 1, c.before),
    ...(c.after === undefined ? {} : { file_result: fileOf(c.path, 1, c.after) }),
  },
  summary: c.summary,
})

// ---------------------------------------------------------------------------------------------------------------
// The mapping
// ---------------------------------------------------------------------------------------------------------------

const planOf = (event: Event, ctx: OcsfContext): Plan => {
  const related = ctx.related
  switch (event.type) {
    case "task.submitted": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [
          { uid: event.correlation, type: "task" },
          { name: d.workspace, type: "workspace" },
        ],
        summary: { channel: d.channel, workspace: d.workspace, prompt_chars: d.promptChars },
        message: `task submitted via ${d.channel}`,
      })
    }
    case "prompt.screened":
      return screenPlan(event, ctx, {
        what: "prompt",
        ref: event.data.task,
        verdict: event.data.verdict,
        findings: event.data.findings,
      })
    case "intent.proposed": {
      const d = event.data
      const path = typeof d.args.path === "string" ? d.args.path : undefined
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [clean({ uid: event.id, type: "intent", name: d.tool })],
        summary: clean({
          tool: d.tool,
          step: d.step,
          arg_keys: Object.keys(d.args).sort(),
          path,
          reason_chars: d.reason.length,
        }),
        message: path === undefined ? `intent ${d.tool}` : `intent ${d.tool}: ${path}`,
      })
    }
    case "intent.screened":
      return screenPlan(event, ctx, {
        what: "intent_args",
        ref: event.data.intent,
        verdict: event.data.verdict,
        findings: event.data.findings,
      })
    case "decision.made": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [
          { uid: d.intent, type: "intent" },
          { uid: d.bundle, type: "policy_bundle" },
        ],
        summary: clean({
          intent: d.intent,
          intent_hash: d.intentHash,
          effect: d.effect,
          rules: [...d.rules],
          obligations: d.obligations.map((o) =>
            clean({ kind: o.kind, bytes: o.bytes, classes: o.classes === undefined ? undefined : [...o.classes] }),
          ),
          bundle: d.bundle,
          data_class: d.dataClass,
          explanation_chars: d.explanation.length,
        }),
        message: `decision ${d.effect}${d.rules.length === 0 ? "" : ` (${d.rules.join(", ")})`}`,
        severityId: d.effect === "deny" ? 2 : 1,
      })
    }
    case "consent.requested": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [
          { uid: d.intent, type: "intent" },
          { uid: d.decision, type: "decision" },
        ],
        summary: {
          decision: d.decision,
          intent: d.intent,
          proposed: scopeSummary(d.proposed),
          question_chars: d.question.length,
        },
        message: `consent requested (${d.proposed.kind})`,
      })
    }
    case "consent.granted": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 3,
        resources: [
          { uid: d.request, type: "consent_request" },
          { uid: d.intent, type: "intent" },
        ],
        summary: { request: d.request, intent: d.intent, scope: scopeSummary(d.scope) },
        message: `consent granted (${d.scope.kind})`,
        statusDetail: "granted",
      })
    }
    case "consent.denied": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 3,
        resources: [
          { uid: d.request, type: "consent_request" },
          { uid: d.intent, type: "intent" },
        ],
        summary: { request: d.request, intent: d.intent, reason_chars: d.reason?.length ?? 0 },
        message: "consent denied",
        statusDetail: "denied",
      })
    }
    case "consent.revoked": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 4,
        resources: [{ uid: d.grant, type: "consent_grant" }],
        summary: { grant: d.grant, reason_chars: d.reason?.length ?? 0 },
        message: "consent revoked",
      })
    }
    case "action.started": {
      const d = event.data
      return actionPlan(event, ctx, {
        phase: "started",
        actionId: event.id,
        tool: d.tool,
        summary: { decision: d.decision, intent: d.intent, tier: d.tier },
      })
    }
    case "action.completed": {
      const d = event.data
      return actionPlan(event, ctx, {
        phase: "completed",
        actionId: d.action,
        tool: related?.tool,
        exitCode: d.exitCode,
        durationMs: d.durationMs,
        summary: { action: d.action, exit_code: d.exitCode, duration_ms: d.durationMs },
      })
    }
    case "action.failed": {
      const d = event.data
      return actionPlan(event, ctx, {
        phase: "failed",
        actionId: d.action,
        tool: related?.tool,
        code: d.code,
        summary: { action: d.action, code: d.code, reason_chars: d.reason.length },
      })
    }
    case "change.staged": {
      const d = event.data
      const created = d.op === "write" && d.before === undefined
      return changePlan(event, ctx, {
        activityId: STAGED_ACTIVITY(d.op, created),
        statusId: 99,
        status: "Staged",
        statusDetail: "staged",
        path: d.path,
        ...(d.before === undefined ? {} : { before: d.before }),
        ...(d.after === undefined ? {} : { after: d.after }),
        summary: clean({
          action: d.action,
          op: d.op,
          path: d.path,
          before: d.before === undefined ? undefined : blobSummary(d.before),
          after: d.after === undefined ? undefined : blobSummary(d.after),
          tool: related?.tool,
        }),
      })
    }
    case "change.committed":
    case "change.reverted": {
      const committed = event.type === "change.committed"
      const created = related?.created === true
      return changePlan(event, ctx, {
        activityId: committed
          ? related?.op === undefined
            ? 3
            : STAGED_ACTIVITY(related.op, created)
          : REVERTED_ACTIVITY(related?.op, created),
        statusId: 1,
        statusDetail: committed ? "committed" : "reverted",
        path: related?.path,
        summary: clean({ change: event.data.change, op: related?.op, path: related?.path }),
      })
    }
    case "result.screened":
      return screenPlan(event, ctx, {
        what: "action_output",
        ref: event.data.action,
        verdict: event.data.verdict,
        findings: event.data.findings,
      })
    case "answer.proposed": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [
          { uid: event.id, type: "answer" },
          { uid: d.task, type: "task" },
        ],
        summary: { task: d.task, step: d.step },
        message: `answer proposed (step ${d.step})`,
      })
    }
    case "answer.released":
      return screenPlan(event, ctx, {
        what: "answer",
        ref: event.data.answer,
        verdict: event.data.verdict,
        findings: event.data.findings,
      })
    case "answer.blocked":
      return screenPlan(
        event,
        ctx,
        { what: "answer", ref: event.data.answer, verdict: "blocked", findings: event.data.findings },
        { explanation_chars: event.data.explanation.length },
      )
    case "checkpoint.signed": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 1,
        resources: [{ name: d.origin, uid: `${d.origin}#${d.size}`, type: "merkle_checkpoint" }],
        summary: { origin: d.origin, size: d.size, root: d.root, note: d.note },
        message: `checkpoint ${d.origin} size ${d.size}`,
      })
    }
    case "alert.raised": {
      const d = event.data
      return {
        cls: DETECTION_FINDING,
        activityId: 1,
        severityId: ALERT_SEVERITY[d.severity],
        statusId: 1,
        message: `alert ${d.rule} (${d.severity})`,
        attrs: {
          finding_info: {
            uid: event.id,
            title: d.rule,
            desc: d.summary,
            types: ["vigil:alert"],
            created_time: Date.parse(event.time),
            data_sources: [appName(event.source)],
            ...(d.evidence.length === 0
              ? {}
              : { related_events: d.evidence.map((uid) => ({ uid })), related_events_count: d.evidence.length }),
          },
          is_alert: true,
        },
        summary: clean({
          rule: d.rule,
          severity: d.severity,
          evidence: [...d.evidence],
          detail_keys: d.details === undefined ? undefined : Object.keys(d.details).sort(),
        }),
      }
    }
    case "containment.ordered": {
      const d = event.data
      return apiPlan(event, ctx, {
        activityId: 99,
        activityName: "Contain",
        resources: [{ uid: d.target, type: "session" }],
        summary: { target: d.target, reason_chars: d.reason.length },
        message: `containment ordered for session ${d.target}`,
        severityId: 3,
      })
    }
    default: {
      const unknown: never = event
      throw new TypeError(`no OCSF mapping for event type ${(unknown as Event).type}`)
    }
  }
}

const scopeSummary = (s: EventData<"consent.granted">["scope"]): Obj =>
  clean({ kind: s.kind, tool: s.tool, path_prefix: s.pathPrefix, until: s.until })

const checkIndex = (what: string, n: number) => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got ${n}`)
}

/** Map one verified Vigil event to its OCSF record. Pure: same event and context, same record. */
export const toOcsf = (event: Event, ctx: OcsfContext): OcsfMapped => {
  checkIndex("leafIndex", ctx.leafIndex)
  checkIndex("streamSeq", ctx.streamSeq)
  const p = planOf(event, ctx)
  const time = Date.parse(event.time)
  const activityName = p.activityId === 99 ? (p.activityName ?? "Other") : (p.cls.activities[p.activityId] ?? "Other")
  const status = p.statusId === 99 ? (p.status ?? "Other") : p.cls.statuses[p.statusId]
  const blobs =
    event.blobs === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(event.blobs)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([role, ref]) => [role, blobSummary(ref)]),
        )
  const record = clean({
    activity_id: p.activityId,
    activity_name: activityName,
    category_uid: p.cls.categoryUid,
    category_name: p.cls.categoryName,
    class_uid: p.cls.uid,
    class_name: p.cls.caption,
    type_uid: p.cls.uid * 100 + p.activityId,
    // The enum caption of type_uid: with activity 99 it reads "…: Other" while activity_name carries the label.
    type_name: `${p.cls.caption}: ${p.cls.activities[p.activityId] ?? "Other"}`,
    severity_id: p.severityId,
    severity: SEVERITY[p.severityId],
    status_id: p.statusId,
    status,
    status_code: p.statusCode,
    status_detail: p.statusDetail,
    time,
    timezone_offset: 0,
    message: p.message,
    metadata: clean({
      version: OCSF_VERSION,
      product: clean({
        name: PRODUCT_NAME,
        vendor_name: VENDOR_NAME,
        version: ctx.productVersion,
        uid: "vigil",
      }),
      uid: event.id,
      correlation_uid: event.correlation,
      event_code: event.type,
      original_time: event.time,
      sequence: ctx.leafIndex,
      log_name: STREAM_EVENTS,
      log_provider: appName("auditor"),
    }),
    ...p.attrs,
    unmapped: {
      vigil: clean({
        event_id: event.id,
        event_type: event.type,
        envelope_version: event.v,
        source: event.source,
        session: event.session,
        correlation: event.correlation,
        causation: event.causation ?? undefined,
        trace: event.trace === "" ? undefined : event.trace,
        leaf_index: ctx.leafIndex,
        stream_seq: ctx.streamSeq,
        kid: event.kid,
        sig: event.sig,
        blobs,
        data: p.summary,
      }),
    },
  })
  return { classUid: p.cls.uid, className: p.cls.caption, subjectClass: p.cls.name, record }
}

// ---------------------------------------------------------------------------------------------------------------
// What the auditor's fold must remember to fill `ctx.related`
// ---------------------------------------------------------------------------------------------------------------

interface Remembered {
  readonly tool?: Tool
  readonly path?: string
  readonly op?: ChangeOp
  readonly created?: boolean
}

/**
 * Remembers, per intent, action and change, the tool, the path and the staged op, so that the events that only name
 * an action or change id (`action.completed`, `action.failed`, `change.*`) can be mapped to the right OCSF class
 * with the right file. Bounded: the oldest entries are forgotten first (a forgotten action maps to API Activity,
 * a forgotten change to a file named "unknown"). Feed it every event in log order, then ask.
 */
export class RelatedIndex {
  readonly #intents = new Map<string, Remembered>()
  readonly #actions = new Map<string, Remembered>()
  readonly #changes = new Map<string, Remembered>()
  readonly #capacity: number

  constructor(capacity = 100_000) {
    this.#capacity = capacity
  }

  #put(map: Map<string, Remembered>, id: string, value: Remembered) {
    map.set(id, value)
    if (map.size > this.#capacity) {
      const oldest = map.keys().next()
      if (oldest.done !== true) map.delete(oldest.value)
    }
  }

  /** What is known about the action or change `event` refers to (call before or after {@link observe}). */
  lookup(event: Event): Related | undefined {
    switch (event.type) {
      case "action.started": {
        const intent = this.#intents.get(event.data.intent)
        return intent?.path === undefined ? { tool: event.data.tool } : { tool: event.data.tool, path: intent.path }
      }
      case "action.completed":
      case "action.failed":
        return this.#actions.get(event.data.action)
      case "change.staged": {
        const tool = this.#actions.get(event.data.action)?.tool
        return tool === undefined ? undefined : { tool }
      }
      case "change.committed":
      case "change.reverted":
        return this.#changes.get(event.data.change)
      default:
        return undefined
    }
  }

  /** Remember what later events will need. */
  observe(event: Event): void {
    switch (event.type) {
      case "intent.proposed": {
        const path = event.data.args.path
        this.#put(
          this.#intents,
          event.id,
          typeof path === "string" ? { tool: event.data.tool, path } : { tool: event.data.tool },
        )
        return
      }
      case "action.started": {
        const path = this.#intents.get(event.data.intent)?.path
        this.#put(
          this.#actions,
          event.id,
          path === undefined ? { tool: event.data.tool } : { tool: event.data.tool, path },
        )
        return
      }
      case "change.staged": {
        const tool = this.#actions.get(event.data.action)?.tool
        this.#put(this.#changes, event.id, {
          ...(tool === undefined ? {} : { tool }),
          path: event.data.path,
          op: event.data.op,
          created: event.data.op === "write" && event.data.before === undefined,
        })
        return
      }
      default:
        return
    }
  }
}
