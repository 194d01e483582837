/**
 * Writes the event JSON Schemas into schemas/ at the repository root, or checks that the checked-in ones match.
 *
 *   node libs/events/src/jsonschema-cli.ts           write schemas/*.json, remove stale *.json files
 *   node libs/events/src/jsonschema-cli.ts --check   exit 1 listing missing, stale and different files
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { generateJsonSchemas } from "./jsonschema.ts"

/** schemas/ at the repository root (this file is libs/events/src/jsonschema-cli.ts), wherever the command runs from. */
export const SCHEMAS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../schemas")

export interface Drift {
  readonly missing: ReadonlyArray<string>
  readonly stale: ReadonlyArray<string>
  readonly different: ReadonlyArray<string>
}

const existingJson = (dir: string): ReadonlyArray<string> => {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isFile() && d.name.endsWith(".json"))
      .map((d) => d.name)
      .sort()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
    throw e
  }
}

/** Compare the generated files with what `dir` holds. */
export const schemaDrift = (dir: string, files: Map<string, string> = generateJsonSchemas()): Drift => {
  const present = existingJson(dir)
  const missing: Array<string> = []
  const different: Array<string> = []
  for (const [name, content] of files) {
    if (!present.includes(name)) missing.push(name)
    else if (readFileSync(join(dir, name), "utf8") !== content) different.push(name)
  }
  const stale = present.filter((name) => !files.has(name))
  return { missing, stale, different }
}

const main = (argv: ReadonlyArray<string>): number => {
  const check = argv.includes("--check")
  const unknown = argv.filter((a) => a !== "--check")
  if (unknown.length > 0) {
    process.stderr.write(`usage: node libs/events/src/jsonschema-cli.ts [--check]\nunknown argument ${unknown[0]}\n`)
    return 2
  }
  const files = generateJsonSchemas()
  const shown = relative(process.cwd(), SCHEMAS_DIR) || "."
  if (check) {
    const drift = schemaDrift(SCHEMAS_DIR, files)
    const problems = [
      ...drift.missing.map((n) => `missing    ${shown}/${n}`),
      ...drift.stale.map((n) => `stale      ${shown}/${n} (no longer generated)`),
      ...drift.different.map((n) => `different  ${shown}/${n}`),
    ]
    if (problems.length > 0) {
      process.stderr.write(
        `event JSON Schemas are out of date (${problems.length} file(s)); run npm run schemas:gen\n${problems.map((p) => `  ${p}\n`).join("")}`,
      )
      return 1
    }
    process.stdout.write(`OK: ${files.size} schema files in ${shown}/ match the event catalog\n`)
    return 0
  }
  mkdirSync(SCHEMAS_DIR, { recursive: true })
  const drift = schemaDrift(SCHEMAS_DIR, files)
  for (const name of drift.stale) rmSync(join(SCHEMAS_DIR, name))
  for (const [name, content] of files) writeFileSync(join(SCHEMAS_DIR, name), content)
  const changed = drift.missing.length + drift.different.length
  process.stdout.write(
    `wrote ${files.size} schema files to ${shown}/ (${changed} new or changed, ${drift.stale.length} stale removed)\n`,
  )
  return 0
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2))
}
