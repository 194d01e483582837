import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { classifierOf, type Finding, makeClassifier, maxClass, parseDataClassConfig } from "./classify.ts"

const SHIPPED = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../../policies/data-classes.json", import.meta.url)), "utf8"),
) as unknown

const secret: Finding = { detector: "aws", kind: "secret", count: 1 }
const pii: Finding = { detector: "email", kind: "pii", count: 2 }

describe("the shipped data-classes.json", () => {
  const c = classifierOf(SHIPPED)

  it("is valid", () => {
    expect(parseDataClassConfig(SHIPPED).ok).toBe(true)
  })

  it.each([
    ["/home/ana/Documents/todo.txt", "internal"],
    ["/home/ana/Documents/Public/flyer.pdf", "public"],
    ["/home/ana/Documents/Finance/q3.xlsx", "confidential"],
    ["/home/ana/Documents/finance/q3.xlsx", "confidential"],
    ["/home/ana/Documents/team-budget.xlsx", "confidential"],
    ["/home/ana/Documents/Public/salaries.csv", "confidential"],
    ["/home/ana/.ssh/config", "restricted"],
    ["/home/ana/Documents/server.pem", "restricted"],
    ["/home/ana/Documents/Vault.KDBX", "restricted"],
    ["/home/ana/Documents/app/.env", "restricted"],
    ["/home/ana/Documents/app/.env.local", "restricted"],
    ["/home/ana/Documents/app/environment.md", "internal"],
  ] as const)("%s is %s", (path, cls) => {
    expect(c.classify({ path }).dataClass).toBe(cls)
  })

  it("DLP secrets make anything restricted; personal data makes it confidential", () => {
    expect(c.classify({ path: "/home/ana/Documents/Public/readme.txt", findings: [secret] })).toEqual({
      dataClass: "restricted",
      rules: ["public-folders", "dlp-secrets"],
    })
    expect(c.classify({ findings: [pii] }).dataClass).toBe("confidential")
    expect(c.classify({ findings: [{ ...secret, kind: "credential" }] }).dataClass).toBe("restricted")
  })

  it("data that is not a file starts at public, not at the file default", () => {
    expect(c.classify({}).dataClass).toBe("public")
    expect(c.classify({ findings: [{ detector: "x", kind: "custom", count: 1 }] }).dataClass).toBe("public")
  })
})

describe("rules", () => {
  const base = { v: 1, default: "internal" } as const

  it("every criterion of a rule must hold; within one, any entry", () => {
    const c = makeClassifier({
      ...base,
      rules: [
        { id: "finance-sheets", class: "confidential", paths: ["**/Finance/**"], extensions: ["xlsx", "csv"] },
        { id: "many-emails", class: "restricted", dlp: { kinds: ["pii"], minCount: 3 } },
        { id: "by-detector", class: "confidential", dlp: { detectors: ["iban"] } },
        { id: "archives", class: "public", extensions: ["tar.gz"] },
      ],
    })
    expect(c.classify({ path: "/x/Finance/a.xlsx" }).dataClass).toBe("confidential")
    expect(c.classify({ path: "/x/Finance/a.docx" }).dataClass).toBe("internal")
    expect(c.classify({ path: "/x/Other/a.csv" }).dataClass).toBe("internal")
    expect(c.classify({ path: "/x/a.tar.gz" }).dataClass).toBe("public")
    expect(c.classify({ path: "/x/a.gz" }).dataClass).toBe("internal")
    expect(c.classify({ findings: [pii] }).dataClass).toBe("public")
    expect(c.classify({ findings: [pii, { ...pii, count: 1 }] }).dataClass).toBe("restricted")
    expect(c.classify({ findings: [{ detector: "iban", kind: "financial", count: 1 }] }).dataClass).toBe("confidential")
  })

  it("highest class wins regardless of rule order", () => {
    const rules = [
      { id: "a", class: "restricted", paths: ["/s/**"] },
      { id: "b", class: "public", paths: ["/s/p/**"] },
    ] as const
    expect(makeClassifier({ ...base, rules: [...rules] }).classify({ path: "/s/p/x" }).dataClass).toBe("restricted")
    expect(makeClassifier({ ...base, rules: [...rules].reverse() }).classify({ path: "/s/p/x" }).dataClass).toBe(
      "restricted",
    )
  })

  it("case sensitivity can be switched on", () => {
    const c = makeClassifier({
      ...base,
      caseInsensitive: false,
      rules: [{ id: "hr", class: "confidential", paths: ["**/HR/**"] }],
    })
    expect(c.classify({ path: "/x/hr/a" }).dataClass).toBe("internal")
    expect(c.classify({ path: "/x/HR/a" }).dataClass).toBe("confidential")
  })

  it("maxClass orders the catalog's classes", () => {
    expect(maxClass("public", "restricted")).toBe("restricted")
    expect(maxClass("confidential", "internal")).toBe("confidential")
  })
})

describe("configuration errors", () => {
  const bad: ReadonlyArray<[string, unknown]> = [
    ["unknown class", { v: 1, default: "secret", rules: [] }],
    ["wrong version", { v: 2, default: "internal", rules: [] }],
    ["rule without criterion", { v: 1, default: "internal", rules: [{ id: "x", class: "public" }] }],
    [
      "duplicate rule id",
      {
        v: 1,
        default: "internal",
        rules: [
          { id: "x", class: "public", paths: ["/a"] },
          { id: "x", class: "public", paths: ["/b"] },
        ],
      },
    ],
    ["unknown field", { v: 1, default: "internal", rules: [{ id: "x", class: "public", globs: ["/a"] }] }],
    ["upper-case extension", { v: 1, default: "internal", rules: [{ id: "x", class: "public", extensions: ["PEM"] }] }],
    ["empty paths", { v: 1, default: "internal", rules: [{ id: "x", class: "public", paths: [] }] }],
    [
      "unknown finding kind",
      { v: 1, default: "internal", rules: [{ id: "x", class: "public", dlp: { kinds: ["pin"] } }] },
    ],
  ]
  for (const [name, input] of bad) {
    it(`refuses: ${name}`, () => {
      const v = parseDataClassConfig(input)
      expect(v.ok).toBe(false)
      expect(() => classifierOf(input)).toThrow(/invalid data-class configuration/)
    })
  }
})
