#!/usr/bin/env node
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { homeAt } from "@vigil/runtime"
import { Cause, Effect, type Exit, Fiber } from "effect"
import { DEFAULT_AUDIT_PORT, DEFAULT_PORT, up } from "./up.ts"

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)))

const USAGE = `vigil — signed, replayable, auditable desktop agent runtime

usage: vigil <command> [options]

commands:
  up        start the bus (embedded nats-server unless --nats is given) and the six services; Ctrl-C stops all
  audit     verify the audit log offline, prove an event's inclusion, tail events or OCSF records
            (vigil audit verify|proof <event-id>|tail; see vigil audit --help)
  policy    test|check the policies/ bundles, publish a signed bundle, what-if on a recorded intent
            (see vigil policy --help)
  help      this text

options:
  --home DIR        data directory (keys, NATS users, JetStream store, logs); default $VIGIL_HOME or ./.vigil
  --port N          port of the embedded nats-server on 127.0.0.1 (default ${DEFAULT_PORT})
  --nats URL        use this existing Vigil deployment instead of the embedded server
  --workspace DIR   the folder the agent may work in (default: the demo workspace)
  --audit-port N    port of the auditor's read-only HTTP on 127.0.0.1 (default ${DEFAULT_AUDIT_PORT})
  --role NAME       policy role bundle from policies/roles/ (e.g. business, engineering-canary)
  --json            machine-readable output, one JSON object per line
`

// Output piped into `head` and the like: a closed pipe ends the command quietly, as for any Unix tool.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0)
  throw e
})

// `vigil audit …` and `vigil policy …` parse their own arguments (strictly); the rest are `up`'s.
const first = process.argv.slice(2).find((a) => !a.startsWith("-"))
const delegated = first === "audit" || first === "policy"
const { values, positionals } = parseArgs({
  args: delegated ? [first] : process.argv.slice(2),
  allowPositionals: true,
  options: {
    home: { type: "string" },
    port: { type: "string" },
    nats: { type: "string" },
    workspace: { type: "string" },
    "audit-port": { type: "string" },
    role: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
    // vigil audit's own options (it parses its arguments itself, strictly)
    from: { type: "string" },
    to: { type: "string" },
    n: { type: "string" },
    ocsf: { type: "boolean", default: false },
    follow: { type: "boolean", default: false },
  },
})

const command = positionals[0] ?? "help"
const json = values.json === true
const say = (human: string, obj: Record<string, unknown>) =>
  process.stdout.write(`${json ? JSON.stringify(obj) : human}\n`)

const runUntilSignal = <A, E>(program: Effect.Effect<A, E>) => {
  const fiber = Effect.runFork(program)
  const stop = (signal: string) => {
    say(`\nvigil: ${signal}, stopping…`, { event: "stopping", signal })
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.once("SIGINT", () => stop("SIGINT"))
  process.once("SIGTERM", () => stop("SIGTERM"))
  fiber.addObserver((exit) => {
    if (exit._tag === "Failure" && !isInterruptOnly(exit)) {
      const e = Cause.squash(exit.cause)
      process.stderr.write(
        `vigil: ${e instanceof Error || (typeof e === "object" && e !== null && "message" in e) ? (e as { message: string }).message : String(e)}\n`,
      )
    }
    process.exitCode = exit._tag === "Success" || isInterruptOnly(exit) ? 0 : 1
  })
}

const isInterruptOnly = (exit: Exit.Exit<unknown, unknown>) =>
  exit._tag === "Failure" && Cause.hasInterruptsOnly(exit.cause)

if (command === "policy") {
  const args = process.argv.slice(2)
  args.splice(args.indexOf("policy"), 1)
  process.exitCode = await (await import("./policy.ts")).runPolicyCli(args)
} else if (command === "audit") {
  const args = process.argv.slice(2)
  args.splice(args.indexOf("audit"), 1)
  process.exitCode = await (await import("./audit.ts")).runAudit(args)
} else if (values.help === true || command === "help") {
  process.stdout.write(USAGE)
} else if (command === "up") {
  const port = values.port === undefined ? DEFAULT_PORT : Number.parseInt(values.port, 10)
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write(`vigil up: --port must be a TCP port, got ${values.port}\n`)
    process.exit(2)
  }
  const auditPort = values["audit-port"] === undefined ? DEFAULT_AUDIT_PORT : Number.parseInt(values["audit-port"], 10)
  if (!Number.isInteger(auditPort) || auditPort <= 0 || auditPort > 65535) {
    process.stderr.write(`vigil up: --audit-port must be a TCP port, got ${values["audit-port"]}\n`)
    process.exit(2)
  }
  const home = homeAt(values.home ?? process.env.VIGIL_HOME ?? ".vigil")
  const workspace = resolve(values.workspace ?? resolve(REPO, "demo", "workspace"))
  runUntilSignal(
    Effect.scoped(
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
        const why = yield* stack.crashed
        return yield* Effect.fail(why)
      }),
    ),
  )
} else {
  process.stderr.write(`vigil: unknown command "${command}"\n\n${USAGE}`)
  process.exitCode = 2
}
