#!/usr/bin/env node
// The `vigil` command. Arguments are parsed (args.ts, the one convention of every command) before any command's
// modules are imported: `--help`, `--version` and usage errors answer at once.
import { enableCompileCache } from "node:module"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import {
  CliFailure,
  cliVersion,
  debugWanted,
  EXIT_CODES_HELP,
  homeDir,
  jsonWanted,
  parseCommandLine,
  type Reporter,
  reportError,
  requireVigilHome,
  resolveBusUrl,
  UsageError,
} from "./args.ts"
import { AUDIT_USAGE, type ParsedAudit, parseAudit } from "./audit-args.ts"

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)))

// Node's compile cache (libs/runtime memory.ts, COMPILE_CACHE_DIR) for every module a command loads from here on.
// `vigil` sets NODE_COMPILE_CACHE, so that this file too comes from it and the process never loads the TypeScript
// stripper; started as `node cli/src/main.ts`, the cache still serves everything after this line.
enableCompileCache(process.env.NODE_COMPILE_CACHE ?? resolve(REPO, "node_modules", ".cache", "vigil-node"))

// The defaults of up.ts, repeated here so that `--help` need not import the supervisor (a test keeps them equal).
export const HELP_DEFAULT_PORT = 4290
export const HELP_DEFAULT_AUDIT_PORT = 4380

const USAGE = `vigil — signed, replayable, auditable desktop agent runtime

usage: vigil <command> [options]
       vigil <command> --help
       vigil --version

commands:
  up        start the bus (embedded nats-server unless --nats is given) and the six services; Ctrl-C stops all
  audit     verify the audit log offline, prove an event's inclusion, tail events or OCSF records
            (vigil audit verify|proof <event-id>|tail; see vigil audit --help)
  policy    test|check the policies/ bundles, publish a signed bundle, what-if on a recorded intent
            (see vigil policy --help)
  help      this text; \`vigil help <command>\` is \`vigil <command> --help\`

options of every command:
  --json            machine-readable output: one JSON object per line on stdout, errors included
                    ({"ok":false,"error":"<message>"})
  --debug           show stack traces of unexpected errors (or VIGIL_DEBUG=1)
  -h, --help        usage of the command
  --version         vigil's version

${EXIT_CODES_HELP}
`

const UP_USAGE = `usage: vigil up [options]

Start the bus (Vigil's own nats-server on 127.0.0.1 unless --nats is given), provision it, publish the signed key
manifest and the policy bundle, start the six services and wait until each answers; Ctrl-C stops everything.

options:
  --home DIR        data directory (keys, NATS users, JetStream store, logs); default $VIGIL_HOME or ./.vigil
  --port N          port of the embedded nats-server on 127.0.0.1, 1–65535 (default ${HELP_DEFAULT_PORT})
  --nats URL        use this existing Vigil deployment instead of the embedded server
  --workspace DIR   the folder the agent may work in (default: the demo workspace)
  --audit-port N    port of the auditor's read-only HTTP on 127.0.0.1, 1–65535 (default ${HELP_DEFAULT_AUDIT_PORT})
  --role NAME       policy role bundle from policies/roles/ (e.g. business, engineering-canary);
                    default $VIGIL_POLICY_ROLE or the default set
  --json            one JSON object per line ({"event":"ready",…}; errors {"ok":false,"error":…})
  --debug           show stack traces of unexpected errors (or VIGIL_DEBUG=1)
  -h, --help        this text

${EXIT_CODES_HELP}
`

const UP_OPTIONS = {
  home: { kind: "string" },
  port: { kind: "port" },
  nats: { kind: "string" },
  workspace: { kind: "string" },
  "audit-port": { kind: "port" },
  role: { kind: "string" },
} as const

const COMMANDS = ["up", "audit", "policy", "help"] as const

const argv = process.argv.slice(2)
const debug = debugWanted(argv)
const json = jsonWanted(argv)
const globalReporter: Reporter = { command: "vigil", json, debug, helpHint: "vigil --help" }

// Output piped into `head` and the like: a closed pipe ends the command quietly, as for any Unix tool.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0)
  throw e
})

// Whatever escapes a command still ends as one line (a stack only with --debug or VIGIL_DEBUG=1).
const lastResort = (e: unknown) => {
  const code = reportError(globalReporter, e)
  process.exit(code)
}
process.on("uncaughtException", lastResort)
process.on("unhandledRejection", lastResort)

/**
 * Where the command word is: the first positional argument, skipping the values of options that take one (so that
 * `vigil --home DIR up` still works). Returns -1 when there is none.
 */
const commandIndex = (args: ReadonlyArray<string>): number => {
  const valued = ["home", "port", "nats", "workspace", "audit-port", "role", "dir", "granted", "from", "to", "n"]
  const { tokens } = parseArgs({
    args: [...args],
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: Object.fromEntries(valued.map((n) => [n, { type: "string" as const }])),
  })
  return tokens.find((t) => t.kind === "positional")?.index ?? -1
}

const main = async (): Promise<number> => {
  const at = commandIndex(argv)
  if (at === -1) {
    // Only global options: --version, --help, or a usage error.
    const { values } = parseCommandLine(argv, { version: { kind: "boolean" } })
    if (values.version) {
      process.stdout.write(
        json ? `${JSON.stringify({ ok: true, version: cliVersion() })}\n` : `vigil ${cliVersion()}\n`,
      )
      return 0
    }
    if (values.help) {
      process.stdout.write(USAGE)
      return 0
    }
    process.stderr.write(USAGE)
    throw new UsageError("missing command: up, audit or policy")
  }
  const command = argv[at]!
  const rest = [...argv.slice(0, at), ...argv.slice(at + 1)]
  switch (command) {
    case "help": {
      const topic = rest.find((a) => !a.startsWith("-"))
      if (topic === undefined) {
        process.stdout.write(USAGE)
        return 0
      }
      if (!(COMMANDS as ReadonlyArray<string>).includes(topic) || topic === "help")
        throw new UsageError(`unknown command "${topic}": up, audit or policy`)
      return runCommand(topic, ["--help"])
    }
    default:
      return runCommand(command, rest)
  }
}

const runCommand = async (command: string, args: ReadonlyArray<string>): Promise<number> => {
  switch (command) {
    case "up":
      return upCommand(args)
    case "policy":
      return (await import("./policy.ts")).runPolicyCli(args)
    case "audit":
      return auditCommand(args)
    default:
      throw new UsageError(`unknown command "${command}": up, audit or policy`)
  }
}

// ---------------------------------------------------------------------------------------------------------- audit

/** `vigil audit …`: parsed here (usage errors and `--help` load nothing more), then run by audit.ts. */
const auditCommand = async (args: ReadonlyArray<string>): Promise<number> => {
  let parsed: ParsedAudit
  try {
    parsed = parseAudit(args)
  } catch (e) {
    return reportError({ command: "vigil audit", json, debug, helpHint: "vigil audit --help" }, e)
  }
  if (parsed.help) {
    process.stdout.write(AUDIT_USAGE)
    return 0
  }
  // A missing home or a stopped stack is said before the log and bus modules load (they take most of a second).
  let command = parsed.command
  try {
    requireVigilHome(command.home)
    if (command.sub === "proof" || command.sub === "tail")
      command = { ...command, nats: await resolveBusUrl(command.home, command.nats) }
  } catch (e) {
    return reportError({ command: `vigil audit ${command.sub}`, json, debug, helpHint: "vigil audit --help" }, e)
  }
  const { executeAudit } = await import("./audit.ts")
  return executeAudit(command, parsed.json, undefined, debug)
}

// ------------------------------------------------------------------------------------------------------------- up

const upCommand = async (args: ReadonlyArray<string>): Promise<number> => {
  const reporter: Reporter = { command: "vigil up", json, debug, helpHint: "vigil up --help" }
  let values: ReturnType<typeof parseCommandLine<typeof UP_OPTIONS>>["values"]
  try {
    const parsed = parseCommandLine(args, UP_OPTIONS)
    if (parsed.values.help) {
      process.stdout.write(UP_USAGE)
      return 0
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}`)
    values = parsed.values
  } catch (e) {
    return reportError(reporter, e)
  }
  const [{ homeAt, memoryAtRest }, { Cause, Effect, Fiber }, { DEFAULT_AUDIT_PORT, DEFAULT_PORT, up }] =
    await Promise.all([import("@vigil/runtime"), import("effect"), import("./up.ts")])
  const port = values.port ?? DEFAULT_PORT
  const auditPort = values["audit-port"] ?? DEFAULT_AUDIT_PORT
  const home = homeAt(homeDir(values.home))
  const workspace = resolve(values.workspace ?? resolve(REPO, "demo", "workspace"))
  const say = (human: string, obj: Record<string, unknown>) =>
    process.stdout.write(`${json ? JSON.stringify(obj) : human}\n`)
  const program = Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* up({
        home,
        port,
        workspace,
        auditPort,
        role: values.role ?? process.env.VIGIL_POLICY_ROLE ?? null,
        json,
        out: (l) => process.stdout.write(`${l}\n`),
        ...(values.nats === undefined ? {} : { natsUrl: values.nats }),
      })
      const lines = [
        `vigil is up (key manifest v${stack.manifestVersion})`,
        `  bus        ${stack.natsUrl}${stack.embeddedNats ? ` (embedded nats-server, pid ${stack.natsPid})` : " (existing deployment)"}`,
        ...stack.services.map((s) => `  ${s.name.padEnd(10)} pid ${s.pid}`),
        `  home       ${home.root}`,
        `  logs       ${home.logs}`,
        `  workspace  ${workspace}`,
        `  policy     bundle ${stack.policyBundle.slice(0, 12)}… (${values.role ?? "default"} policies)`,
        `  audit log  http://127.0.0.1:${auditPort}/checkpoint (tiles and proofs under the same address)`,
        "Ctrl-C stops everything.",
      ]
      say(lines.join("\n"), {
        event: "ready",
        nats: stack.natsUrl,
        embeddedNats: stack.embeddedNats,
        natsPid: stack.natsPid ?? null,
        services: stack.services,
        manifestVersion: stack.manifestVersion,
        policyBundle: stack.policyBundle,
        home: home.root,
        workspace,
        audit: `http://127.0.0.1:${auditPort}`,
      })
      // The supervisor lives as long as the stack: what start-up left in its heap goes once it is at rest.
      yield* Effect.forkScoped(memoryAtRest)
      const why = yield* stack.crashed
      return yield* Effect.fail(why)
    }),
  )
  // Runs until the stack fails or a signal stops it.
  return new Promise<number>((done) => {
    const fiber = Effect.runFork(program)
    const stop = (signal: string) => {
      say(`\nvigil: ${signal}, stopping…`, { event: "stopping", signal })
      Effect.runFork(Fiber.interrupt(fiber))
    }
    process.once("SIGINT", () => stop("SIGINT"))
    process.once("SIGTERM", () => stop("SIGTERM"))
    fiber.addObserver((exit) => {
      if (exit._tag === "Success" || Cause.hasInterruptsOnly(exit.cause)) done(0)
      else {
        const e = Cause.squash(exit.cause)
        done(reportError(reporter, e instanceof UsageError ? new CliFailure(e.message) : e))
      }
    })
  })
}

try {
  process.exitCode = await main()
} catch (e) {
  process.exitCode = reportError(globalReporter, e)
}
