/**
 * Regenerates the checked-in nats-server configs in infra/nats/ from the event catalog.
 *
 *   node libs/natsconf/src/cli.ts           rewrite infra/nats/ generated files
 *   node libs/natsconf/src/cli.ts --check   exit 1 naming each drifted or missing file
 *   node libs/natsconf/src/cli.ts users DIR write DIR/users.conf (public keys) and DIR/nkeys.json (seeds, 0600)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { INFRA_NATS_DIR, infraFiles } from "./infra.ts"
import { generateUserNkeys, publicKeys } from "./nkeys.ts"
import { renderUsersConf } from "./render.ts"

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..")

/** Generated files whose content on disk differs from what the catalog produces (paths relative to the repo). */
export const driftedFiles = (root: string = repoRoot): ReadonlyArray<string> =>
  infraFiles()
    .filter((f) => {
      const p = join(root, INFRA_NATS_DIR, f.path)
      return !existsSync(p) || readFileSync(p, "utf8") !== f.content
    })
    .map((f) => join(INFRA_NATS_DIR, f.path))

/** Writes every generated file; returns those that changed. */
export const writeInfraFiles = (root: string = repoRoot): ReadonlyArray<string> => {
  const changed = driftedFiles(root)
  for (const f of infraFiles()) {
    const p = join(root, INFRA_NATS_DIR, f.path)
    mkdirSync(dirname(p), { recursive: true })
    writeFileSync(p, f.content)
  }
  return changed
}

/** Writes a per-install users file with fresh nkeys, and the seeds beside it (readable by the owner only). */
export const writeUsers = (dir: string): { usersConf: string; seeds: string } => {
  const creds = generateUserNkeys()
  mkdirSync(dir, { recursive: true })
  const usersConf = join(dir, "users.conf")
  const seeds = join(dir, "nkeys.json")
  writeFileSync(seeds, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 })
  writeFileSync(usersConf, renderUsersConf(publicKeys(creds)))
  return { usersConf, seeds }
}

const main = (argv: ReadonlyArray<string>): number => {
  if (argv[0] === "users") {
    const dir = argv[1]
    if (dir === undefined) {
      process.stderr.write("usage: cli.ts users DIR\n")
      return 2
    }
    const { usersConf, seeds } = writeUsers(resolve(dir))
    process.stdout.write(`wrote ${relative(process.cwd(), usersConf)} and ${relative(process.cwd(), seeds)}\n`)
    return 0
  }
  if (argv.includes("--check")) {
    const drifted = driftedFiles()
    for (const f of drifted) process.stderr.write(`drifted: ${f} (run: node libs/natsconf/src/cli.ts)\n`)
    return drifted.length === 0 ? 0 : 1
  }
  if (argv.length > 0) {
    process.stderr.write("usage: cli.ts [--check] | users DIR\n")
    return 2
  }
  const changed = writeInfraFiles()
  process.stdout.write(changed.length === 0 ? "infra/nats up to date\n" : `wrote ${changed.join(", ")}\n`)
  return 0
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2))
}
