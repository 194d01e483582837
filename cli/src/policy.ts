import { readFileSync } from "node:fs"
import type { Event } from "@vigil/events"
import type { SignedBundle } from "@vigil/policy"
import {
  CliFailure,
  debugWanted,
  EXIT_CODES_HELP,
  homeDir,
  jsonWanted,
  parseCommandLine,
  reportError,
  requireVigilHome,
  resolveBusUrl,
  UsageError,
} from "./args.ts"

export const POLICY_USAGE = `usage: vigil policy <test|check|bundle|what-if> [options]

commands:
  test              run policies/tests/* against the default bundle and every role bundle; exits 1 on any failure
  check             validate every bundle (default and each role) against policies/schema.cedarschema
  bundle            sign the bundle with the deployment root key as the next version and publish it to the
                    running bus (hot reload)
  what-if FILE      decide a recorded intent.proposed event (JSON file) with a bundle, without the bus

options:
  --dir DIR         policies directory (default: the repo's policies/)
  --role NAME       role bundle (policies/roles/NAME); default: the default set alone
  --home DIR        Vigil home (root key, NATS users) for bundle; default $VIGIL_HOME or ./.vigil
  --nats URL        bus for bundle; default: the one \`vigil up\` recorded in <home>/run/up.json
  --granted DIR     a granted folder for what-if (repeatable)
  --json            one JSON object per line on stdout, errors included ({"ok":false,"error":…})
  --debug           show stack traces of unexpected errors (or VIGIL_DEBUG=1)
  -h, --help        this text

${EXIT_CODES_HELP}
`

const SUBCOMMANDS: ReadonlyArray<string> = ["test", "check", "bundle", "what-if"]

const POLICY_OPTIONS = {
  dir: { kind: "string" },
  role: { kind: "string" },
  home: { kind: "string" },
  nats: { kind: "string" },
  granted: { kind: "strings" },
} as const

/** The intent.proposed event in `file`, checked: its type and its data as the policy service would decode it. */
const readIntent = async (file: string): Promise<Event<"intent.proposed">> => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new CliFailure(code === "ENOENT" ? `no such file: ${file}` : `cannot read ${file}: ${(e as Error).message}`)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    throw new CliFailure(`${file} is not JSON (${(e as Error).message}); give a recorded intent.proposed event`)
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new CliFailure(`${file} is not a JSON object; give a recorded intent.proposed event`)
  const type = (doc as { type?: unknown }).type
  if (type !== "intent.proposed")
    throw new CliFailure(
      `${file} is ${type === undefined ? "not an event (no type)" : `a ${JSON.stringify(type)} event`}, not intent.proposed`,
    )
  if ((doc as { data?: unknown }).data === undefined)
    throw new CliFailure(`${file} is not a valid intent.proposed event: it has no data`)
  const [{ CATALOG }, { Schema }] = await Promise.all([import("@vigil/events"), import("effect")])
  const decodeIntentData = Schema.decodeUnknownResult(CATALOG["intent.proposed"].data, {
    onExcessProperty: "error",
    errors: "first",
  })
  const data = decodeIntentData((doc as { data?: unknown }).data)
  if (data._tag === "Failure")
    throw new CliFailure(`${file} is not a valid intent.proposed event: its data ${data.failure.message}`)
  return { ...(doc as Event<"intent.proposed">), data: data.success as Event<"intent.proposed">["data"] }
}

/** `vigil policy …` (the arguments after `policy`): returns the exit code (0 ok, 1 failed, 2 usage). */
export const runPolicyCli = async (argv: ReadonlyArray<string>): Promise<number> => {
  const reporter = {
    command: "vigil policy",
    json: jsonWanted(argv),
    debug: debugWanted(argv),
    helpHint: "vigil policy --help",
  }
  try {
    const { values, positionals } = parseCommandLine(argv, POLICY_OPTIONS)
    const sub = positionals[0]
    if (values.help || sub === "help") {
      process.stdout.write(POLICY_USAGE)
      return 0
    }
    if (sub === undefined) throw new UsageError("missing command: test, check, bundle or what-if")
    const r = SUBCOMMANDS.includes(sub) ? { ...reporter, command: `vigil policy ${sub}` } : reporter
    try {
      return await policyCommand(sub, values, positionals.slice(1))
    } catch (e) {
      return reportError(r, e)
    }
  } catch (e) {
    return reportError(reporter, e)
  }
}

type PolicyValues = ReturnType<typeof parseCommandLine<typeof POLICY_OPTIONS>>["values"]

const noMoreArguments = (rest: ReadonlyArray<string>) => {
  if (rest.length > 0) throw new UsageError(`unexpected argument ${rest[0]}`)
}

const policyCommand = async (sub: string, values: PolicyValues, rest: ReadonlyArray<string>): Promise<number> => {
  // The heavy modules load here, after the command line parsed: `--help` and usage errors answer at once.
  const policies = () => import("@vigil/policy")
  const defaultDir = async () => values.dir ?? (await policies()).POLICIES_DIR
  const json = values.json
  const out = (s: string) => process.stdout.write(`${s}\n`)
  switch (sub) {
    case "test": {
      noMoreArguments(rest)
      const { formatTestReport, runPolicyTests } = await policies()
      const report = runPolicyTests(await defaultDir())
      out(json ? JSON.stringify(report) : formatTestReport(report))
      return report.ok ? 0 : 1
    }
    case "check": {
      noMoreArguments(rest)
      const { compileBundle, listRoles, packBundle } = await policies()
      const dir = await defaultDir()
      const bundles: Array<string | null> = [null, ...listRoles(dir)]
      let ok = true
      for (const role of bundles) {
        const compiled = compileBundle(packBundle(dir, role))
        const name = role ?? "default"
        if (compiled.ok) {
          const n = compiled.engine.policies.length
          out(
            json
              ? JSON.stringify({ bundle: name, ok: true, policies: n, digest: compiled.engine.digest })
              : `ok    ${name}: ${n} policies, digest ${compiled.engine.digest.slice(0, 16)}…`,
          )
        } else {
          ok = false
          out(
            json
              ? JSON.stringify({ bundle: name, ok: false, reason: compiled.reason, errors: compiled.errors })
              : `FAIL  ${name} (${compiled.reason}):\n  ${compiled.errors.join("\n  ")}`,
          )
        }
      }
      return ok ? 0 : 1
    }
    case "bundle": {
      noMoreArguments(rest)
      const root = homeDir(values.home)
      requireVigilHome(root)
      const url = await resolveBusUrl(root, values.nats)
      const [{ homeAt }, { Effect }, { connectRole }, { publishBundle, signedBundleFrom }] = await Promise.all([
        import("@vigil/runtime"),
        import("effect"),
        import("./creds.ts"),
        policies(),
      ])
      const home = homeAt(root)
      const dir = await defaultDir()
      const nc = await connectRole(url, home, "admin").catch((e: unknown) => {
        throw new CliFailure(
          `cannot connect to ${url} as admin: ${(e as Error).message} (is the stack running? \`vigil up\`)`,
        )
      })
      let bundle: SignedBundle
      try {
        // Signed as the next version after the one stored on the bus: the policy service refuses a lower one.
        bundle = await Effect.runPromise(signedBundleFrom(home, values.role ?? null, { dir, bus: nc }))
        await publishBundle(nc, bundle)
      } finally {
        await nc.close().catch(() => undefined)
      }
      out(
        json
          ? JSON.stringify({ ok: true, published: bundle.digest, version: bundle.version, role: values.role ?? null })
          : `published bundle ${bundle.digest} version ${bundle.version} (${values.role ?? "default"})`,
      )
      return 0
    }
    case "what-if": {
      const file = rest[0]
      if (file === undefined) throw new UsageError("missing FILE: give a recorded intent.proposed event (JSON file)")
      noMoreArguments(rest.slice(1))
      const intent = await readIntent(file)
      const { compileBundle, packBundle } = await policies()
      const compiled = compileBundle(packBundle(await defaultDir(), values.role ?? null))
      if (!compiled.ok) throw new CliFailure(`bundle refused (${compiled.reason}): ${compiled.detail}`)
      const d = compiled.engine.decideIntent(intent.data, {
        grantedFolders: [...values.granted],
        role: values.role ?? "staff",
        device: { id: "what-if", managed: false, os: process.platform },
      })
      out(
        json
          ? JSON.stringify({ ok: true, ...d })
          : `${d.effect.toUpperCase()}: ${d.explanation}\n  rules: ${d.rules.join(", ") || "(none)"}\n  bundle: ${d.bundle}`,
      )
      return 0
    }
    default:
      throw new UsageError(`unknown command "${sub}": test, check, bundle or what-if`)
  }
}
