import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { listRoles, loadBundleDir } from "./contents.ts"
import { compileBundleOrThrow } from "./engine.ts"
import { formatTestReport, runPolicyTests } from "./testrunner.ts"

const POLICIES = fileURLToPath(new URL("../../../policies", import.meta.url))
const temps: string[] = []
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true })
})

/** A copy of policies/ in a temp dir, with `edit` applied to one file. */
const mutated = (file: string, edit: (text: string) => string): string => {
  const dir = mkdtempSync(join(tmpdir(), "vigil-policies-"))
  temps.push(dir)
  cpSync(POLICIES, dir, { recursive: true })
  const path = join(dir, file)
  const before = readFileSync(path, "utf8")
  const after = edit(before)
  expect(after, "the mutation must change the file").not.toBe(before)
  writeFileSync(path, after)
  return dir
}

describe("the repo's policy tests", () => {
  const report = runPolicyTests(POLICIES)

  it("all pass against the default and role bundles", () => {
    expect(report.errors).toEqual([])
    expect(report.results.filter((r) => !r.ok).map((r) => `${r.file} › ${r.name}: ${r.failures.join("; ")}`)).toEqual(
      [],
    )
    expect(report.ok).toBe(true)
    expect(report.passed).toBeGreaterThanOrEqual(60)
    expect(Object.keys(report.bundles).sort()).toEqual(["business", "default", "engineering-canary"])
  })

  it("every policy of every bundle has a case where it fires and one where it does not", () => {
    const ids = new Set<string>()
    for (const role of [null, ...listRoles(POLICIES)]) {
      for (const p of compileBundleOrThrow(loadBundleDir(POLICIES, role)).policies) ids.add(p.id)
    }
    const gaps = [...ids].filter((id) => {
      const c = report.coverage[id]
      return c === undefined || c.fires === 0 || c.notFires === 0
    })
    expect(gaps).toEqual([])
  })
})

describe("without request validation", () => {
  it("every case decides exactly as with it", () => {
    const strict = runPolicyTests(POLICIES)
    const fast = runPolicyTests(POLICIES, { compile: { validateRequests: false } })
    expect(fast.ok).toBe(true)
    expect(fast.results.map((r) => r.decision)).toEqual(strict.results.map((r) => r.decision))
  })
})

describe("a changed policy flips cases and fails the run", () => {
  it("letting secrets leave (no-secrets-leave narrowed to personal data)", () => {
    const dir = mutated("default/30-egress.cedar", (t) =>
      t.replace("when { context.dlp.secretsFound }", "when { context.dlp.piiFound }"),
    )
    const report = runPolicyTests(dir)
    expect(report.ok).toBe(false)
    const failed = report.results.filter((r) => !r.ok).map((r) => r.name)
    expect(failed).toContain("a token in the URL stops the fetch")
    expect(failed).toContain("personal data is not a secret: asked and masked, not refused")
    expect(formatTestReport(report)).toMatch(/FAIL {2}egress\.json › a token in the URL stops the fetch \[default\]/)
  })

  it("writing without asking (change-ask loses its @effect)", () => {
    const dir = mutated("default/20-changes.cedar", (t) =>
      t.replace(
        '@reason("Vigil asks before changing, moving or deleting your files.")\n@effect("ask")',
        '@reason("Vigil asks before changing, moving or deleting your files.")',
      ),
    )
    const report = runPolicyTests(dir)
    expect(report.ok).toBe(false)
    const writeCase = report.results.find((r) => r.name === "writing a file asks first")
    expect(writeCase?.ok).toBe(false)
    expect(writeCase?.decision?.effect).toBe("allow")
    expect(writeCase?.failures[0]).toMatch(/expected ask, got allow/)
  })

  it("a role bundle: the canary opens egress again", () => {
    const dir = mutated("roles/engineering-canary/10-no-egress.cedar", (t) =>
      t.replace(
        'forbid (principal, action in Action::"egress", resource);',
        'forbid (principal, action in Action::"egress", resource) when { false };',
      ),
    )
    const report = runPolicyTests(dir)
    expect(report.ok).toBe(false)
    expect(report.results.filter((r) => !r.ok).every((r) => r.bundle === "engineering-canary")).toBe(true)
  })

  it("a bundle that no longer validates fails every case of that bundle", () => {
    const dir = mutated("default/10-read.cedar", (t) =>
      t.replace("resource.inGrantedFolder &&", "resource.inGrantedFoldr &&"),
    )
    const report = runPolicyTests(dir)
    expect(report.ok).toBe(false)
    expect(report.errors.join("\n")).toMatch(/bundle default refused \(validation\).*10-read\.cedar:\d+/)
    expect(report.passed).toBe(0)
  })

  it("a malformed test file is an error, not a silent pass", () => {
    const dir = mutated("tests/plugins.json", (t) => t.replace('"effect": "ask"', '"effect": "maybe"'))
    const report = runPolicyTests(dir)
    expect(report.ok).toBe(false)
    expect(report.errors.join("\n")).toMatch(/^plugins\.json: /)
  })

  it("a case naming a policy the bundle does not have fails", () => {
    const dir = mutated("tests/plugins.json", (t) => t.replace('"rule": "plugin-ask"', '"rule": "plugin-asks"'))
    const report = runPolicyTests(dir)
    expect(report.results.find((r) => !r.ok)?.failures.join()).toMatch(/plugin-asks is not a policy of this bundle/)
  })
})
