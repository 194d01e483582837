import { keyIdOf, nodeEd25519, randomSeed } from "@vigil/crypto"
import {
  blobRefOf,
  CATALOG,
  type Draft,
  EVENT_TYPES,
  type Event,
  type EventType,
  encodeEvent,
  eventHash,
  newEventId,
  PRINCIPALS,
  type Principal,
  type SigningKey,
  signEvent,
  TOOLS,
  verifyEvent,
} from "@vigil/events"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ocsfSubject, RelatedIndex, type Tool, toOcsf } from "./map.ts"
import { classByUid, OCSF_VERSION } from "./schema.ts"
import { validateOcsf } from "./validate.ts"

const utf8 = new TextEncoder()
const T0 = Date.parse("2026-03-02T09:15:00.000Z")
const PRODUCT_VERSION = "0.1.0-test"

// One random Ed25519 key per principal, as the key manifest would grant them.
const KEYS = Object.fromEntries(
  PRINCIPALS.map((principal) => {
    const seed = randomSeed()
    const publicKey = nodeEd25519.publicKey(seed)
    return [principal, { principal, kid: keyIdOf(publicKey), seed, publicKey } satisfies SigningKey]
  }),
) as Record<Principal, SigningKey>

const verifyOpts = {
  maxBytes: 1 << 20,
  keys: {
    resolve: (kid: string) => {
      const key = Object.values(KEYS).find((k) => k.kid === kid)
      if (key === undefined) return { ok: false as const, reason: "unknown_key" as const, detail: kid }
      const types = new Set<string>(
        EVENT_TYPES.filter((t) => (CATALOG[t].producers as ReadonlyArray<string>).includes(key.principal)),
      )
      return {
        ok: true as const,
        key: {
          kid,
          principal: key.principal,
          publicKey: key.publicKey,
          types,
          notBefore: 0,
          notAfter: 2 ** 52,
          manifestVersion: 1,
        },
      }
    },
  },
}

/** Expected OCSF class uid and activity id of a sample event. */
type Expect = readonly [classUid: number, activityId: number]
interface Sample {
  readonly event: Event
  readonly expect: Expect
}

interface ScenarioInput {
  /** Appears only in blob content, arg values and free text that must not be copied. */
  readonly secret: string
  /** The one argument value that may be copied (a file path). */
  readonly path: string
  /** Extra intent arguments (keys are copied, values never). */
  readonly extraArgs?: Readonly<Record<string, unknown>>
  readonly tools?: ReadonlyArray<Tool>
}

const FS_EXPECT: Readonly<Partial<Record<Tool, number>>> = {
  "fs.list": 2,
  "fs.search": 2,
  "fs.read": 2,
  "sheet.summarize": 2,
  "fs.write": 3,
  "fs.move": 5,
  "fs.delete": 4,
}

/** Class and activity of action.started / completed / failed for a tool (the table in map.ts). */
const actionExpect = (tool: Tool): { started: Expect; completed: Expect; failed: Expect } => {
  const fs = FS_EXPECT[tool]
  if (fs !== undefined) return { started: [1001, fs], completed: [1001, fs], failed: [1001, fs] }
  if (tool === "shell.exec" || tool === "plugin.run") {
    return { started: [1007, 1], completed: [1007, 2], failed: [1007, 2] }
  }
  return { started: [4001, 1], completed: [4001, 2], failed: [4001, 4] }
}

const argsFor = (tool: Tool, secret: string, path: string): Record<string, unknown> => {
  switch (tool) {
    case "fs.move":
      return { path, to: `/home/ana/Archive/${secret}.xlsx` }
    case "fs.write":
      return { path, content: `quarterly totals ${secret}` }
    case "fs.search":
      return { path, query: secret }
    case "net.fetch":
      return { url: `https://${secret}.example.org/export?token=${secret}`, method: "GET" }
    case "model.remote":
      return { model: "summarizer-large", prompt: `Summarize: ${secret}` }
    case "shell.exec":
      return { cmd: `grep -r ${secret} .`, cwd: path }
    case "plugin.run":
      return { plugin: "csv-tools", input: { sheet: secret } }
    default:
      return { path }
  }
}

/**
 * A realistic session covering every catalog type: a task, DLP screening (masked, clean, blocked), consent
 * (granted, denied, revoked), an action per tool (started, completed, failed), a staged write committed and another
 * reverted, an answer released and one blocked, a checkpoint, an alert and a containment order.
 */
const scenario = (input: ScenarioInput): Sample[] => {
  const { secret, path } = input
  const session = "sess_ana-01"
  const correlation = "task_q3-report"
  let tick = 0
  const out: Sample[] = []
  const sign = <T extends EventType>(principal: Principal, draft: Omit<Draft<T>, "session" | "correlation">) => {
    tick += 1
    const ms = T0 + tick * 250
    return signEvent(KEYS[principal], {
      ...draft,
      session,
      correlation,
      id: newEventId(ms),
      time: new Date(ms).toISOString(),
      trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    } as Draft<T>)
  }
  const add = (event: Event, expect: Expect) => {
    out.push({ event, expect })
    return event
  }
  const blob = (text: string, mediaType = "text/plain; charset=utf-8") => blobRefOf(utf8.encode(text), mediaType)

  const prompt = `Please total the Q3 sheet; my IBAN is ${secret}`
  const task = add(
    sign("gateway", {
      type: "task.submitted",
      data: { channel: "ui", workspace: "/home/ana/Documents", promptChars: prompt.length },
      blobs: { prompt: blob(prompt) },
    }),
    [6003, 1],
  )
  add(
    sign("dlp", {
      type: "prompt.screened",
      causation: task.id,
      data: {
        task: task.id,
        verdict: "masked",
        findings: [{ detector: "iban", kind: "financial", count: 1, score: 0.97, field: "prompt" }],
      },
      blobs: { masked: blob(prompt.replace(secret, "[IBAN]")) },
    }),
    [2004, 1],
  )
  add(
    sign("dlp", {
      type: "prompt.screened",
      causation: task.id,
      data: { task: task.id, verdict: "clean", findings: [] },
      blobs: { masked: blob(`clean copy ${secret}`) },
    }),
    [6003, 2],
  )

  let step = 0
  for (const tool of input.tools ?? TOOLS) {
    step += 1
    const intent = add(
      sign("inference", {
        type: "intent.proposed",
        causation: task.id,
        data: {
          tool,
          args: {
            ...argsFor(tool, secret, path),
            ...(input.extraArgs ?? {}),
          } as Event<"intent.proposed">["data"]["args"],
          reason: `The user asked about ${secret}`,
          step,
        },
      }),
      [6003, 1],
    )
    add(
      sign("dlp", {
        type: "intent.screened",
        causation: intent.id,
        data:
          tool === "net.fetch"
            ? {
                intent: intent.id,
                verdict: "blocked",
                findings: [{ detector: "token", kind: "credential", count: 2, score: 0.88, field: "args.url" }],
              }
            : { intent: intent.id, verdict: "clean", findings: [] },
      }),
      tool === "net.fetch" ? [2004, 1] : [6003, 2],
    )
    const decision = add(
      sign("policy", {
        type: "decision.made",
        causation: intent.id,
        data: {
          intent: intent.id,
          intentHash: eventHash(intent),
          effect: tool === "fs.delete" ? "ask" : "allow",
          rules: ["workspace-read", "egress-allowlist"],
          explanation: `Allowed because ${secret} is in the workspace`,
          obligations: [
            { kind: "max-bytes", bytes: 1_000_000 },
            { kind: "redact", classes: ["confidential"] },
          ],
          bundle: "a".repeat(64),
          dataClass: "internal",
        },
      }),
      [6003, 1],
    )
    const started = add(
      sign("sandbox", {
        type: "action.started",
        causation: decision.id,
        data: { decision: decision.id, intent: intent.id, tool, tier: tool === "plugin.run" ? "wasm" : "os" },
      }),
      actionExpect(tool).started,
    )
    add(
      sign("sandbox", {
        type: "action.completed",
        causation: started.id,
        data: { action: started.id, exitCode: 0, durationMs: 42 },
        blobs: { output: blob(`output mentioning ${secret}`) },
      }),
      actionExpect(tool).completed,
    )
    add(
      sign("sandbox", {
        type: "action.failed",
        causation: started.id,
        data: { action: started.id, code: "timeout", reason: `stderr: ${secret} not found` },
      }),
      actionExpect(tool).failed,
    )
    add(
      sign("dlp", {
        type: "result.screened",
        causation: started.id,
        data: {
          action: started.id,
          verdict: tool === "fs.read" ? "blocked" : "masked",
          findings: [{ detector: "aws-key", kind: "secret", count: 1 }],
        },
        blobs: { masked: blob(`masked output ${secret}`) },
      }),
      [2004, 1],
    )
    if (tool === "fs.write") {
      const created = add(
        sign("sandbox", {
          type: "change.staged",
          causation: started.id,
          data: {
            action: started.id,
            op: "write",
            path,
            after: blob(`new bytes ${secret}`, "application/vnd.ms-excel"),
          },
        }),
        [1001, 1],
      )
      add(sign("gateway", { type: "change.reverted", causation: created.id, data: { change: created.id } }), [1001, 4])
      const updated = add(
        sign("sandbox", {
          type: "change.staged",
          causation: started.id,
          data: {
            action: started.id,
            op: "write",
            path,
            before: blob(`old bytes ${secret}`),
            after: blob(`newer bytes ${secret}`),
          },
        }),
        [1001, 3],
      )
      add(sign("gateway", { type: "change.committed", causation: updated.id, data: { change: updated.id } }), [1001, 3])
    }
    if (tool === "fs.delete") {
      const request = add(
        sign("gateway", {
          type: "consent.requested",
          causation: decision.id,
          data: {
            decision: decision.id,
            intent: intent.id,
            question: `Delete ${path}? It contains "${secret}"`,
            proposed: { kind: "durable", tool: "fs.delete", pathPrefix: "/home/ana/Documents/tmp" },
          },
        }),
        [6003, 1],
      )
      const grant = add(
        sign("gateway", {
          type: "consent.granted",
          causation: request.id,
          data: {
            request: request.id,
            intent: intent.id,
            scope: { kind: "durable", tool: "fs.delete", pathPrefix: "/home/ana/Documents/tmp", until: "2026-04-01" },
          },
        }),
        [6003, 3],
      )
      add(
        sign("gateway", {
          type: "consent.denied",
          causation: request.id,
          data: { request: request.id, intent: intent.id, reason: `not ${secret}` },
        }),
        [6003, 3],
      )
      add(
        sign("gateway", { type: "consent.revoked", causation: grant.id, data: { grant: grant.id, reason: secret } }),
        [6003, 4],
      )
      const removed = add(
        sign("sandbox", {
          type: "change.staged",
          causation: started.id,
          data: { action: started.id, op: "delete", path, before: blob(`deleted bytes ${secret}`) },
        }),
        [1001, 4],
      )
      add(sign("gateway", { type: "change.reverted", causation: removed.id, data: { change: removed.id } }), [1001, 1])
    }
    if (tool === "fs.move") {
      const moved = add(
        sign("sandbox", {
          type: "change.staged",
          causation: started.id,
          data: { action: started.id, op: "move", path },
        }),
        [1001, 5],
      )
      add(sign("gateway", { type: "change.committed", causation: moved.id, data: { change: moved.id } }), [1001, 5])
    }
  }

  const answerText = `The total is 4,200; account ${secret}`
  const answer = add(
    sign("inference", {
      type: "answer.proposed",
      causation: task.id,
      data: { task: task.id, step: step + 1 },
      blobs: { answer: blob(answerText) },
    }),
    [6003, 1],
  )
  add(
    sign("dlp", {
      type: "answer.released",
      causation: answer.id,
      data: { answer: answer.id, verdict: "clean", findings: [] },
      blobs: { answer: blob(answerText) },
    }),
    [6003, 2],
  )
  add(
    sign("dlp", {
      type: "answer.released",
      causation: answer.id,
      data: {
        answer: answer.id,
        verdict: "masked",
        findings: [
          { detector: "email", kind: "pii", count: 2, score: 0.5 },
          { detector: "luhn", kind: "financial", count: 1 },
        ],
      },
      blobs: { answer: blob(answerText.replace(secret, "[ACCOUNT]")) },
    }),
    [2004, 1],
  )
  add(
    sign("dlp", {
      type: "answer.blocked",
      causation: answer.id,
      data: {
        answer: answer.id,
        findings: [{ detector: "private-key", kind: "credential", count: 1, score: 0.99 }],
        explanation: `Withheld: contains ${secret}`,
      },
    }),
    [2004, 1],
  )
  add(
    sign("auditor", {
      type: "checkpoint.signed",
      data: {
        origin: "vigil.example/log",
        size: 128,
        root: "b".repeat(64),
        note: "vigil.example/log\n128\nq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8=\n\n— vigil.example/log AbCdEf==\n",
      },
    }),
    [6003, 1],
  )
  add(
    sign("auditor", {
      type: "alert.raised",
      causation: task.id,
      data: {
        rule: "dlp.blocked-burst",
        severity: "high",
        summary: "3 DLP blocks in one session within 60 s",
        evidence: [task.id, answer.id],
        details: { window_s: 60, sample: secret },
      },
    }),
    [2004, 1],
  )
  add(
    sign("ops", {
      type: "containment.ordered",
      data: { target: session, reason: `investigating ${secret}` },
    }),
    [6003, 99],
  )
  return out
}

/** Map a scenario in log order, feeding the auditor's RelatedIndex like the auditor does. */
const mapAll = (samples: ReadonlyArray<Sample>, index = new RelatedIndex()) =>
  samples.map((s, i) => {
    const related = index.lookup(s.event)
    index.observe(s.event)
    const ctx = {
      leafIndex: 1000 + i,
      streamSeq: 5000 + i,
      productVersion: PRODUCT_VERSION,
      deviceName: "ana-laptop",
      ...(related === undefined ? {} : { related }),
    }
    return { ...s, leafIndex: ctx.leafIndex, ctx, mapped: toOcsf(s.event, ctx) }
  })

/** Every string in a JSON value, keys included. */
const strings = (value: unknown): string[] => {
  if (typeof value === "string") return [value]
  if (Array.isArray(value)) return value.flatMap(strings)
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => [k, ...strings(v)])
  }
  return []
}

const at = (record: object, path: string): unknown =>
  path.split(".").reduce<unknown>((o, k) => (typeof o === "object" && o !== null ? (o as never)[k] : undefined), record)

describe("toOcsf over every catalog event type", () => {
  const SECRET = "CANARY-7f3b9c2e-do-not-leak"
  const PATH = "/home/ana/Documents/q3-report.xlsx"
  const samples = scenario({ secret: SECRET, path: PATH })
  const mapped = mapAll(samples)

  it("builds valid, signed events for every catalog type", () => {
    const types = new Set(samples.map((s) => s.event.type))
    expect([...EVENT_TYPES].filter((t) => !types.has(t))).toEqual([])
    for (const { event } of samples) {
      const verified = verifyEvent(encodeEvent(event), verifyOpts)
      expect(verified.ok ? "ok" : `${event.type}: ${verified.reason} ${verified.detail}`).toBe("ok")
    }
  })

  it("maps each event to a record that validateOcsf accepts, with the expected class and type_uid", () => {
    for (const {
      event,
      expect: [classUid, activityId],
      mapped: m,
      leafIndex,
    } of mapped) {
      const label = `${event.type} (${(event.data as { tool?: string }).tool ?? ""})`
      expect(validateOcsf(m.record), label).toEqual([])
      expect([m.classUid, at(m.record, "activity_id")], label).toEqual([classUid, activityId])
      expect(at(m.record, "class_uid"), label).toBe(classUid)
      expect(at(m.record, "type_uid"), label).toBe(classUid * 100 + activityId)
      const cls = classByUid(classUid)
      expect(m.className, label).toBe(cls?.caption)
      expect(m.subjectClass, label).toBe(cls?.name)
      expect(at(m.record, "category_uid"), label).toBe(cls?.categoryUid)
      expect(ocsfSubject(m.subjectClass)).toMatch(/^vigil\.audit\.ocsf\.[a-z_]+$/u)
      expect(at(m.record, "metadata.uid"), label).toBe(event.id)
      expect(at(m.record, "metadata.correlation_uid"), label).toBe(event.correlation)
      expect(at(m.record, "metadata.version"), label).toBe(OCSF_VERSION)
      expect(at(m.record, "metadata.product.version"), label).toBe(PRODUCT_VERSION)
      expect(at(m.record, "metadata.sequence"), label).toBe(leafIndex)
      expect(at(m.record, "unmapped.vigil.leaf_index"), label).toBe(leafIndex)
      expect(at(m.record, "unmapped.vigil.sig"), label).toBe(event.sig)
      expect(at(m.record, "unmapped.vigil.kid"), label).toBe(event.kid)
      expect(at(m.record, "unmapped.vigil.session"), label).toBe(event.session)
      expect(at(m.record, "time"), label).toBe(Date.parse(event.time))
      // Plain JSON: survives a round trip unchanged.
      expect(JSON.parse(JSON.stringify(m.record)), label).toEqual(m.record)
    }
  })

  it("covers every class", () => {
    expect(new Set(mapped.map((m) => m.mapped.classUid))).toEqual(new Set([6003, 1001, 1007, 4001, 2004]))
  })

  it("copies blob hashes and sizes, never blob content, args values or free text", () => {
    for (const { event, mapped: m } of mapped) {
      const all = strings(m.record)
      expect(
        all.filter((s) => s.includes(SECRET)),
        event.type,
      ).toEqual([])
      for (const [role, ref] of Object.entries(event.blobs ?? {})) {
        expect(at(m.record, `unmapped.vigil.blobs.${role}`), event.type).toEqual({
          sha256: ref.sha256,
          size: ref.size,
          media_type: ref.mediaType,
        })
      }
    }
  })

  it("puts file paths and hashes on File System Activity records", () => {
    const write = mapped.find(
      (m) => m.event.type === "change.staged" && m.event.data.op === "write" && m.event.data.before !== undefined,
    )
    if (write === undefined || write.event.type !== "change.staged") throw new Error("no staged write")
    expect(at(write.mapped.record, "file.path")).toBe(PATH)
    expect(at(write.mapped.record, "file.name")).toBe("q3-report.xlsx")
    expect(at(write.mapped.record, "file.parent_folder")).toBe("/home/ana/Documents")
    expect(at(write.mapped.record, "file.hashes")).toEqual([
      { algorithm_id: 3, algorithm: "SHA-256", value: write.event.data.before?.sha256 },
    ])
    expect(at(write.mapped.record, "file_result.size")).toBe(write.event.data.after?.size)
    const read = mapped.find((m) => m.event.type === "action.started" && m.event.data.tool === "fs.read")
    expect(read && at(read.mapped.record, "file.path")).toBe(PATH)
    const intent = mapped.find((m) => m.event.type === "intent.proposed" && m.event.data.tool === "fs.move")
    expect(intent && at(intent.mapped.record, "unmapped.vigil.data")).toMatchObject({
      arg_keys: ["path", "to"],
      path: PATH,
    })
  })

  it("grades findings and alerts", () => {
    const blocked = mapped.find((m) => m.event.type === "answer.blocked")
    expect(blocked && at(blocked.mapped.record, "severity_id")).toBe(4)
    expect(blocked && at(blocked.mapped.record, "finding_info.types")).toEqual(["dlp:credential"])
    expect(blocked && at(blocked.mapped.record, "confidence_id")).toBe(3)
    const alert = mapped.find((m) => m.event.type === "alert.raised")
    expect(alert && at(alert.mapped.record, "severity_id")).toBe(4)
    expect(alert && at(alert.mapped.record, "finding_info.related_events_count")).toBe(2)
    expect(alert && at(alert.mapped.record, "unmapped.vigil.data.detail_keys")).toEqual(["sample", "window_s"])
  })

  it("is deterministic: same event and context, same record", () => {
    for (const s of mapped) expect(toOcsf(s.event, s.ctx)).toEqual(s.mapped)
  })
})

describe("RelatedIndex", () => {
  it("without context, a finished action falls back to API Activity 'Other' and a change to an unknown file", () => {
    const samples = scenario({ secret: "CANARY-x", path: "/tmp/a.txt", tools: ["fs.write"] })
    const completed = samples.find((s) => s.event.type === "action.completed")
    const committed = samples.find((s) => s.event.type === "change.committed")
    if (completed === undefined || committed === undefined) throw new Error("scenario incomplete")
    const ctx = { leafIndex: 0, streamSeq: 0, productVersion: PRODUCT_VERSION }
    const a = toOcsf(completed.event, ctx)
    expect([a.classUid, at(a.record, "activity_id"), at(a.record, "activity_name")]).toEqual([
      6003,
      99,
      "Action Completed",
    ])
    expect(validateOcsf(a.record)).toEqual([])
    const c = toOcsf(committed.event, ctx)
    expect([c.classUid, at(c.record, "file.name"), at(c.record, "file.type_id")]).toEqual([1001, "unknown", 0])
    expect(validateOcsf(c.record)).toEqual([])
  })

  it("forgets the oldest entries beyond its capacity", () => {
    const samples = scenario({ secret: "CANARY-y", path: "/tmp/b.txt", tools: ["fs.read", "shell.exec"] })
    const index = new RelatedIndex(1)
    for (const s of samples) index.observe(s.event)
    const completed = samples.filter((s) => s.event.type === "action.completed")
    expect(completed.map((s) => index.lookup(s.event)?.tool)).toEqual([undefined, "shell.exec"])
  })
})

describe("validateOcsf", () => {
  const [sample] = mapAll(scenario({ secret: "CANARY-z", path: "/tmp/c.txt", tools: ["fs.read"] }))
  if (sample === undefined) throw new Error("empty scenario")
  const good = sample.mapped.record as Record<string, unknown>
  const without = (path: string): Record<string, unknown> => {
    const copy = structuredClone(good)
    const keys = path.split(".")
    const last = keys.pop() as string
    const parent = keys.reduce<Record<string, unknown>>((o, k) => o[k] as Record<string, unknown>, copy)
    delete parent[last]
    return copy
  }

  it("reports missing base attributes", () => {
    for (const key of ["activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"]) {
      expect(validateOcsf(without(key))).toContain(`missing: ${key}`)
    }
    expect(validateOcsf(without("metadata.product.vendor_name"))).toContain("missing: metadata.product.vendor_name")
    expect(validateOcsf(without("metadata.version"))).toContain("missing: metadata.version")
  })

  it("reports missing class attributes and object constraints", () => {
    expect(validateOcsf(without("api"))).toContain("missing: api")
    expect(validateOcsf(without("api.operation"))).toContain("missing: api.operation")
    expect(validateOcsf(without("src_endpoint"))).toContain("missing: src_endpoint")
    const noActor = structuredClone(good)
    noActor.actor = {}
    expect(validateOcsf(noActor)).toContain(
      "missing: actor.one of process | user | invoked_by | session | app_name | app_uid",
    )
    const finding: Record<string, unknown> = {
      ...structuredClone(good),
      class_uid: 2004,
      category_uid: 2,
      type_uid: 200401,
    }
    delete finding.class_name
    delete finding.category_name
    delete finding.type_name
    delete finding.activity_name
    delete finding.status
    expect(validateOcsf(finding)).toContain("missing: finding_info")
    const network: Record<string, unknown> = { ...finding, class_uid: 4001, category_uid: 4, type_uid: 400101 }
    delete network.src_endpoint
    expect(validateOcsf(network)).toContain("missing: one of src_endpoint | dst_endpoint")
    const file = { ...finding, class_uid: 1001, category_uid: 1, type_uid: 100101, file: { name: "x" } }
    expect(validateOcsf(file)).toEqual(expect.arrayContaining(["missing: device", "missing: file.type_id"]))
  })

  it("reports inconsistent classification and non-JSON values", () => {
    expect(validateOcsf({ ...good, type_uid: 600302 })).toContain("invalid: type_uid: expected 600301, got 600302")
    expect(validateOcsf({ ...good, class_name: "File System Activity" })).toContain(
      'invalid: class_name: expected "API Activity"',
    )
    expect(validateOcsf({ ...good, severity_id: 7 })).toContain("invalid: severity_id: 7 is not in the enum")
    expect(validateOcsf({ ...good, time: Number.NaN })).toContain("invalid: time: not a finite number")
    expect(validateOcsf({ ...good, metadata: { ...(good.metadata as object), version: "1.3.0" } })).toContain(
      'invalid: metadata.version: expected "1.5.0", got "1.3.0"',
    )
    expect(validateOcsf({ ...good, class_uid: 3002 })).toContain(
      "invalid: class_uid: 3002 is not a class this validator knows",
    )
    expect(validateOcsf("nope")).toEqual(["invalid: record: not an object"])
  })

  it("checks the Vigil profile unless asked not to", () => {
    const bare = without("unmapped")
    expect(validateOcsf(bare)).toContain("missing: unmapped.vigil")
    expect(validateOcsf(bare, { vigil: false })).toEqual([])
    expect(validateOcsf(without("unmapped.vigil.leaf_index"))).toContain("missing: unmapped.vigil.leaf_index")
    expect(validateOcsf(without("unmapped.vigil.sig"))).toContain("missing: unmapped.vigil.sig")
    expect(validateOcsf(without("metadata.uid"))).toContain("missing: metadata.uid (vigil event id)")
  })
})

describe("no content leaks (property)", () => {
  const argKey = fc.stringMatching(/^[a-z][a-z0-9_]{0,11}$/u).filter((k) => k !== "path")
  const secretArb = fc.stringMatching(/^[A-Za-z0-9]{12,32}$/u).map((s) => `CANARY${s}`)
  const pathArb = fc
    .array(fc.stringMatching(/^[a-z0-9._-]{1,12}$/u), { minLength: 1, maxLength: 4 })
    .map((parts) => `/home/user/${parts.join("/")}`)

  it("no string in any record contains blob content or an argument value; the path argument does appear", () => {
    fc.assert(
      fc.property(
        secretArb,
        pathArb,
        fc.constantFrom(...TOOLS),
        fc.array(argKey, { maxLength: 4 }),
        fc.integer({ min: 0, max: 3 }),
        (secret, path, tool, keys, shape) => {
          fc.pre(!path.includes("CANARY"))
          const value = (i: number): unknown =>
            [secret, `${i}:${secret}`, [secret, { deep: secret }], { nested: { value: secret } }][(i + shape) % 4]
          const extraArgs = Object.fromEntries(keys.map((k, i) => [k, value(i)]))
          const samples = scenario({ secret, path, extraArgs, tools: [tool, "fs.read"] })
          for (const { event, mapped: m } of mapAll(samples)) {
            const leaked = strings(m.record).filter((s) => s.includes(secret))
            if (leaked.length > 0) throw new Error(`${event.type} leaked ${JSON.stringify(leaked)}`)
            if (event.type === "intent.proposed" && typeof event.data.args.path === "string") {
              expect(strings(m.record)).toContain(path)
            }
          }
        },
      ),
      { numRuns: 60 },
    )
  })
})
