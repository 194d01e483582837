import { fileURLToPath } from "node:url"
import { CATALOG, newEventId } from "@vigil/events"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { type BundleContents, bundleDigest, loadBundleDir } from "./contents.ts"
import {
  CONSENT_NOTE,
  compileBundle,
  compileBundleOrThrow,
  DEFAULT_DENY,
  type Decision,
  PolicyBundleError,
} from "./engine.ts"
import { buildRequest, type RequestOptions } from "./request.ts"

const POLICIES = fileURLToPath(new URL("../../../policies", import.meta.url))
const base = loadBundleDir(POLICIES)

const ENV: Omit<RequestOptions, "dataClasses"> = {
  grantedFolders: ["/home/ana/Documents"],
  role: "staff",
  device: { id: "dev-1", managed: true, os: "linux" },
  egressAllowlist: ["*.example.org"],
  remoteModelUrl: "https://models.example.org/v1",
}

/** The shipped schema and data classes with these policies only. */
const only = (policies: Record<string, string>): BundleContents => ({ ...base, policies })
const withPolicy = (file: string, text: string): BundleContents => ({
  ...base,
  policies: { ...base.policies, [file]: text },
})
const refusal = (contents: unknown) => {
  const v = compileBundle(contents)
  if (v.ok) throw new Error("expected the bundle to be refused")
  return v
}

describe("compileBundle", () => {
  it("compiles the shipped default and role bundles without warnings", () => {
    for (const role of [null, "business", "engineering-canary"]) {
      const engine = compileBundleOrThrow(loadBundleDir(POLICIES, role))
      expect(engine.role).toBe(role)
      expect(engine.warnings).toEqual([])
      expect(engine.policies.length).toBeGreaterThan(10)
      for (const p of engine.policies) {
        expect(p.reason.length).toBeGreaterThan(10)
        expect(p.file).toMatch(role === null ? /^default\// : /^(default|roles)\//)
      }
    }
  })

  it("the digest is the SHA-256 of the canonical contents: stable, and any change moves it", () => {
    const e = compileBundleOrThrow(base)
    expect(e.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(e.digest).toBe(bundleDigest(base))
    expect(compileBundleOrThrow(structuredClone(base)).digest).toBe(e.digest)
    const edited = withPolicy("default/10-read.cedar", `${base.policies["default/10-read.cedar"]}\n`)
    expect(bundleDigest(edited)).not.toBe(e.digest)
    expect(bundleDigest(loadBundleDir(POLICIES, "business"))).not.toBe(e.digest)
  })

  it("unknown roles are refused when loading", () => {
    expect(() => loadBundleDir(POLICIES, "sales")).toThrow(/no bundle for role "sales"/)
    expect(() => loadBundleDir(POLICIES, "../default")).toThrow(/not a role name/)
  })

  const P = `@id("p")\n@reason("Because.")\npermit (principal, action == Action::"fs.read", resource);`

  it.each([
    ["missing @id", `@reason("r")\npermit (principal, action, resource);`, /t\.cedar:1: every policy needs @id/],
    ["bad @id", `@id("Has Spaces")\n@reason("r")\npermit (principal, action, resource);`, /matching/],
    ["missing @reason", `@id("x")\npermit (principal, action, resource);`, /t\.cedar:1: every policy needs @reason/],
    ["multi-line @reason", `@id("x")\n@reason("a\nb")\npermit (principal, action, resource);`, /@reason/],
    [
      "bad @effect",
      `@id("x")\n@reason("r")\n@effect("deny")\npermit (principal, action, resource);`,
      /@effect must be "ask"/,
    ],
    [
      "ask on a forbid",
      `@id("x")\n@reason("r")\n@effect("ask")\nforbid (principal, action, resource);`,
      /only applies to permit/,
    ],
    [
      "obligation on a forbid",
      `@id("x")\n@reason("r")\n@obligation("read-only")\nforbid (principal, action, resource);`,
      /forbid policy cannot carry obligations/,
    ],
    [
      "bad obligation",
      `@id("x")\n@reason("r")\n@obligation("redact:pii")\npermit (principal, action, resource);`,
      /"pii" .* is not a data class/,
    ],
    [
      "misspelt annotation",
      `@id("x")\n@reason("r")\n@obligations("read-only")\npermit (principal, action, resource);`,
      /unknown annotation @obligations/,
    ],
    [
      "unknown attribute",
      `// a comment\n${P}\n\n@id("y")\n@reason("r")\npermit (principal, action == Action::"net.fetch", resource)\nwhen { resource.allowlistd };`,
      /default\/t\.cedar:9: .*attribute `allowlistd`.*did you mean `allowlisted`/,
    ],
    [
      "misspelt data class",
      `@id("y")\n@reason("r")\nforbid (principal, action in Action::"egress", resource)\nwhen { context.dataClass == DataClass::"restriced" };`,
      /restriced/,
    ],
    [
      "attribute of the wrong action's context",
      `@id("y")\n@reason("r")\nforbid (principal, action == Action::"fs.read", resource)\nwhen { context.target.inGrantedFolder };`,
      /target/,
    ],
    [
      "a template",
      `@id("y")\n@reason("r")\npermit (principal == ?principal, action, resource);`,
      /templates are not supported/,
    ],
  ])("refuses %s (validation)", (_name, text, message) => {
    const v = refusal(only({ "default/t.cedar": text }))
    expect(v.reason).toBe("validation")
    expect(v.errors.join("\n")).toMatch(message)
  })

  it("refuses a duplicate @id, naming both places", () => {
    const v = refusal(
      withPolicy("default/99-dup.cedar", `@id("no-shell")\n@reason("r")\nforbid (principal, action, resource);`),
    )
    expect(v.reason).toBe("validation")
    expect(v.detail).toMatch(
      /default\/99-dup\.cedar:1: @id\("no-shell"\) is already used at default\/00-boundaries\.cedar:\d+/,
    )
  })

  it("refuses syntax errors (parse), naming the file and line", () => {
    const v = refusal(
      withPolicy(
        "default/99-bad.cedar",
        `${P}\n\n@id("q")\n@reason("r")\npermit (principal, action, resource) when { context.bytes > };`,
      ),
    )
    expect(v.reason).toBe("parse")
    expect(v.detail).toMatch(/^default\/99-bad\.cedar:\d+: /)
  })

  it("refuses a bundle without policies", () => {
    expect(refusal(only({})).reason).toBe("validation")
  })

  it("refuses a schema that does not parse or does not cover the tool catalog (schema)", () => {
    expect(refusal({ ...base, schema: "entity User {" }).reason).toBe("schema")
    const noShell = base.schema.replace(/action "shell\.exec"[^;]*;/u, "")
    const v = refusal({ ...base, schema: noShell, policies: only({ "default/t.cedar": P }).policies })
    expect(v.reason).toBe("schema")
    expect(v.detail).toMatch(/no requestable action for shell\.exec/)
  })

  it("refuses invalid data-class rules and malformed contents (schema)", () => {
    expect(refusal({ ...base, dataClasses: { v: 1, default: "secret", rules: [] } }).detail).toMatch(
      /data-classes\.json/,
    )
    expect(refusal({ ...base, policies: { ...base.policies, "roles/business/x.cedar": P } }).reason).toBe("schema")
    expect(refusal({ ...base, policies: { "../escape.cedar": P } }).reason).toBe("schema")
    expect(refusal("nope").reason).toBe("schema")
    expect(refusal({ ...base, extra: 1 }).reason).toBe("schema")
  })

  it("compileBundleOrThrow throws a PolicyBundleError with the reason code", () => {
    expect(() => compileBundleOrThrow(only({}))).toThrow(PolicyBundleError)
    try {
      compileBundleOrThrow(only({}))
    } catch (e) {
      expect((e as PolicyBundleError).reason).toBe("validation")
    }
  })
})

describe("decide: deny > ask > allow", () => {
  const engine = compileBundleOrThrow(
    only({
      "default/t.cedar": `
@id("read")
@reason("Reading is fine.")
@obligation("read-only; max-bytes:100")
permit (principal, action == Action::"fs.read", resource);

@id("read-confidential")
@reason("Confidential reads are asked.")
@effect("ask")
@obligation("redact:confidential; max-bytes:50")
permit (principal, action == Action::"fs.read", resource)
when { context.dataClass == DataClass::"confidential" };

@id("never-restricted")
@reason("Restricted data is off limits.")
forbid (principal, action == Action::"fs.read", resource)
when { context.dataClass == DataClass::"restricted" };

@id("overflow")
@reason("This policy overflows on huge writes.")
forbid (principal, action == Action::"fs.write", resource)
when { context.bytes * 4611686018427387904 > 0 };

@id("write")
@reason("Writing is fine.")
permit (principal, action == Action::"fs.write", resource);
`,
    }),
  )
  const read = (path: string, extra: Partial<RequestOptions> = {}): Decision =>
    engine.decideIntent({ tool: "fs.read", args: { path } }, { ...ENV, ...extra })

  it("a plain permit allows, with its obligations", () => {
    const d = read("/home/ana/Documents/a.txt")
    expect(d).toMatchObject({
      effect: "allow",
      rules: ["read"],
      explanation: "Reading is fine.",
      obligations: [{ kind: "read-only" }, { kind: "max-bytes", bytes: 100 }],
      dataClass: "internal",
      bundle: engine.digest,
    })
  })

  it("an ask permit wins over a plain permit; obligations of every matching permit apply", () => {
    const d = read("/home/ana/Documents/Finance/a.xlsx")
    expect(d.effect).toBe("ask")
    expect(d.rules).toEqual(["read-confidential"])
    expect(d.explanation).toBe("Confidential reads are asked.")
    expect(d.obligations).toEqual([
      { kind: "read-only" },
      { kind: "redact", classes: ["confidential"] },
      { kind: "max-bytes", bytes: 50 },
      { kind: "ask" },
    ])
    expect(d.diagnostics.permits).toEqual(["read", "read-confidential"])
  })

  it("consent turns an ask into an allow, keeping the other obligations", () => {
    const d = read("/home/ana/Documents/Finance/a.xlsx", { consent: true })
    expect(d.effect).toBe("allow")
    expect(d.rules).toEqual(["read-confidential"])
    expect(d.explanation).toBe(`Confidential reads are asked. ${CONSENT_NOTE}`)
    expect(d.obligations.map((o) => o.kind)).toEqual(["read-only", "redact", "max-bytes"])
  })

  it("a forbid wins over everything, consent included", () => {
    const d = read("/home/ana/Documents/id.pem", { consent: true, dataClassFloor: "restricted" })
    expect(d).toMatchObject({ effect: "deny", rules: ["never-restricted"], obligations: [] })
    expect(d.explanation).toBe("Restricted data is off limits.")
  })

  it("nothing matches: default deny", () => {
    const d = engine.decideIntent({ tool: "fs.delete", args: { path: "/home/ana/Documents/a" } }, ENV)
    expect(d).toMatchObject({ effect: "deny", rules: [], explanation: DEFAULT_DENY, obligations: [] })
  })

  it("a policy that errors while evaluating denies (an erroring forbid is not a non-matching one)", () => {
    const d = engine.decideIntent(
      { tool: "fs.write", args: { path: "/home/ana/Documents/a.txt", content: "12345" } },
      ENV,
    )
    expect(d.effect).toBe("deny")
    expect(d.rules).toEqual([])
    expect(d.explanation).toMatch(/^policy engine error: policy overflow: /)
    expect(d.diagnostics.errors).toHaveLength(1)
    const empty = engine.decideIntent({ tool: "fs.write", args: { path: "/home/ana/Documents/a.txt" } }, ENV)
    expect(empty.effect).toBe("allow")
  })

  it("a request that does not fit the schema denies", () => {
    const ok = engine.decideIntent({ tool: "fs.read", args: { path: "/home/ana/Documents/a.txt" } }, ENV)
    expect(ok.effect).toBe("allow")
    const built = { ...okRequest(), context: { ...okRequest().context, bytes: "many" } }
    const d = engine.decide(built)
    expect(d.effect).toBe("deny")
    expect(d.explanation).toMatch(/^policy engine error: /)
    const wrongType = engine.decide({ ...okRequest(), resource: { type: "Destination", id: "x" } })
    expect(wrongType.effect).toBe("deny")
    const garbage = engine.decide({ ...okRequest(), entities: "not entities" as never })
    expect(garbage.effect).toBe("deny")
    expect(garbage.explanation).toMatch(/^policy engine error: /)
  })

  it("an intent that cannot be mapped denies without a data class", () => {
    const d = engine.decideIntent({ tool: "fs.teleport", args: {} }, ENV)
    expect(d.effect).toBe("deny")
    expect(d.explanation).toBe('policy engine error: unknown tool "fs.teleport"')
    expect(d.dataClass).toBeUndefined()
  })

  const okRequest = () =>
    buildRequest(
      { tool: "fs.read", args: { path: "/home/ana/Documents/a.txt" } },
      { ...ENV, dataClasses: engine.classifier },
    )
})

describe("the entity model: roles, devices, folder hierarchy", () => {
  const policies = {
    "default/t.cedar": `
@id("business-role")
@reason("Business role.")
permit (principal in Role::"business", action == Action::"fs.read", resource)
when { principal.role == Role::"business" };

@id("unmanaged")
@reason("Unmanaged devices may not write.")
forbid (principal, action == Action::"fs.write", resource)
unless { principal.device.managed };

@id("projects")
@reason("Anything below Projects may be written.")
permit (principal, action == Action::"fs.write", resource in Folder::"/home/ana/Documents/Projects");

@id("egress-group")
@reason("Egress is off.")
forbid (principal, action in Action::"egress", resource);

@id("anything")
@reason("Anything else.")
permit (principal, action, resource) unless { action in Action::"files" };
`,
  }
  for (const validateRequests of [true, false]) {
    const engine = compileBundleOrThrow(only(policies), { validateRequests })
    const decide = (tool: string, args: Record<string, unknown>, extra: Partial<RequestOptions> = {}) =>
      engine.decideIntent({ tool, args }, { ...ENV, ...extra })

    it(`validateRequests: ${validateRequests}`, () => {
      const read = { path: "/home/ana/Documents/a.txt" }
      expect(decide("fs.read", read, { role: "business" })).toMatchObject({ effect: "allow", rules: ["business-role"] })
      expect(decide("fs.read", read).effect).toBe("deny")
      const inProjects = { path: "/home/ana/Documents/Projects/2026/plan.md", content: "x" }
      expect(decide("fs.write", inProjects)).toMatchObject({ effect: "allow", rules: ["projects"] })
      expect(decide("fs.write", { path: "/home/ana/Documents/ProjectsOld/a.md" }).effect).toBe("deny")
      expect(decide("fs.write", inProjects, { device: { id: "byod", managed: false, os: "win32" } })).toMatchObject({
        effect: "deny",
        rules: ["unmanaged"],
      })
      expect(decide("net.fetch", { url: "https://docs.example.org/" })).toMatchObject({ rules: ["egress-group"] })
      expect(decide("model.remote", { model: "m", prompt: "p" })).toMatchObject({ rules: ["egress-group"] })
      expect(decide("plugin.run", { plugin: "p" })).toMatchObject({ effect: "allow", rules: ["anything"] })
      expect(decide("fs.list", { path: "/home/ana/Documents" }).effect).toBe("deny")
    })

    it(`a request whose action is not its tool denies (validateRequests: ${validateRequests})`, () => {
      const r = buildRequest({ tool: "plugin.run", args: { plugin: "p" } }, { ...ENV, dataClasses: engine.classifier })
      expect(engine.decide(r).effect).toBe("allow")
      const d = engine.decide({ ...r, tool: "net.fetch" })
      expect(d.effect).toBe("deny")
      expect(d.explanation).toMatch(/does not match its tool/)
    })
  }
})

describe("decisions fit the catalog's decision.made", () => {
  const decode = Schema.decodeUnknownSync(CATALOG["decision.made"].data)
  it("for every shipped bundle and a spread of intents", () => {
    const intents = [
      { tool: "fs.read", args: { path: "/home/ana/Documents/Finance/a.xlsx" } },
      { tool: "fs.read", args: { path: "/home/ana/Documents/.ssh/id_rsa" } },
      { tool: "fs.write", args: { path: "/home/ana/Documents/a.txt", content: "x" } },
      { tool: "net.fetch", args: { url: "https://docs.example.org/" } },
      { tool: "net.fetch", args: { url: "http://evil.test/" } },
      { tool: "sheet.summarize", args: { path: "/home/ana/Documents/b.csv" } },
      { tool: "shell.exec", args: { cmd: "ls" } },
      { tool: "fs.read", args: {} },
    ]
    for (const role of [null, "business", "engineering-canary"]) {
      const engine = compileBundleOrThrow(loadBundleDir(POLICIES, role))
      for (const intent of intents) {
        const d = engine.decideIntent(intent, ENV)
        expect(() =>
          decode({
            intent: newEventId(),
            intentHash: "0".repeat(64),
            effect: d.effect,
            rules: d.rules,
            explanation: d.explanation,
            obligations: d.obligations,
            bundle: d.bundle,
            ...(d.dataClass === undefined ? {} : { dataClass: d.dataClass }),
          }),
        ).not.toThrow()
      }
    }
  })
})

describe("the answer cache", () => {
  const intents: Array<[string, Record<string, unknown>, Partial<RequestOptions>]> = [
    ["fs.read", { path: "/home/ana/Documents/a.txt" }, {}],
    ["fs.delete", { path: "/home/ana/Documents/a.txt" }, {}],
    ["fs.delete", { path: "/home/ana/Documents/a.txt" }, { consent: true }],
    ["fs.read", { path: "/home/ana/Finance/salaries.xlsx" }, {}],
    [
      "net.fetch",
      { url: "https://docs.example.org/x" },
      { dlpFindings: [{ detector: "aws-key", kind: "secret", count: 1 }] },
    ],
    ["net.fetch", { url: "https://docs.example.org/x" }, {}],
    ["shell.exec", { cmd: "ls" }, {}],
  ]
  const all = (e: ReturnType<typeof compileBundleOrThrow>) =>
    intents.map(([tool, args, extra]) => e.decideIntent({ tool, args }, { ...ENV, ...extra }))

  it("answers a repeated request exactly as Cedar does, telling apart requests that differ only in context", () => {
    const plain = compileBundleOrThrow(base, { answerCache: 0 })
    const cached = compileBundleOrThrow(base)
    const expected = all(plain)
    expect(new Set(expected.map((d) => d.effect))).toEqual(new Set(["allow", "ask", "deny"]))
    expect(all(cached)).toEqual(expected)
    expect(cached.cacheStats()).toEqual({ hits: 0, calls: intents.length, size: intents.length })
    expect(all(cached)).toEqual(expected)
    expect(cached.cacheStats()).toEqual({ hits: intents.length, calls: intents.length, size: intents.length })
    expect(plain.cacheStats()).toMatchObject({ hits: 0, size: 0 })
  })

  it("keeps at most its size, dropping the least recently used", () => {
    const e = compileBundleOrThrow(base, { answerCache: 2 })
    const [a, b, c] = intents.map(
      ([tool, args, extra]) =>
        () =>
          e.decideIntent({ tool, args }, { ...ENV, ...extra }),
    )
    a?.()
    b?.()
    a?.() // a is now the most recent: c evicts b
    c?.()
    expect(e.cacheStats()).toEqual({ hits: 1, calls: 3, size: 2 })
    a?.()
    b?.()
    expect(e.cacheStats()).toEqual({ hits: 2, calls: 4, size: 2 })
  })
})
