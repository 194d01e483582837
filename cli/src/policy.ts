import { readFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import type { Event } from "@vigil/events"
import {
  compileBundle,
  formatTestReport,
  listRoles,
  packBundle,
  runPolicyTests,
  type SignedBundle,
} from "@vigil/policy"
import { homeAt } from "@vigil/runtime"
import { Effect } from "effect"
import { connectRole, recordedBusUrl } from "./creds.ts"
import { POLICIES_DIR, publishBundle, signedBundleFrom } from "./policy-bundle.ts"

const USAGE = `usage: vigil policy <command> [options]

commands:
  test              run policies/tests/* against the default bundle and every role bundle; non-zero on any failure
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
  --json            machine-readable output
`

/** `vigil policy …`: returns the exit code. */
export const runPolicyCli = async (argv: ReadonlyArray<string>): Promise<number> => {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      dir: { type: "string" },
      role: { type: "string" },
      home: { type: "string" },
      nats: { type: "string" },
      granted: { type: "string", multiple: true },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  })
  const dir = values.dir ?? POLICIES_DIR
  const out = (s: string) => process.stdout.write(`${s}\n`)
  const sub = positionals[0]
  if (values.help === true || sub === undefined || sub === "help") {
    out(USAGE)
    return sub === undefined ? 2 : 0
  }
  switch (sub) {
    case "test": {
      const report = runPolicyTests(dir)
      out(values.json === true ? JSON.stringify(report) : formatTestReport(report))
      return report.ok ? 0 : 1
    }
    case "check": {
      const bundles: Array<string | null> = [null, ...listRoles(dir)]
      let ok = true
      for (const role of bundles) {
        const compiled = compileBundle(packBundle(dir, role))
        const name = role ?? "default"
        if (compiled.ok) {
          const n = compiled.engine.policies.length
          out(
            values.json === true
              ? JSON.stringify({ bundle: name, ok: true, policies: n, digest: compiled.engine.digest })
              : `ok    ${name}: ${n} policies, digest ${compiled.engine.digest.slice(0, 16)}…`,
          )
        } else {
          ok = false
          out(
            values.json === true
              ? JSON.stringify({ bundle: name, ok: false, reason: compiled.reason, errors: compiled.errors })
              : `FAIL  ${name} (${compiled.reason}):\n  ${compiled.errors.join("\n  ")}`,
          )
        }
      }
      return ok ? 0 : 1
    }
    case "bundle": {
      const home = homeAt(values.home ?? process.env.VIGIL_HOME ?? ".vigil")
      const url = values.nats ?? recordedBusUrl(home)
      if (url === undefined) {
        process.stderr.write(
          `vigil policy bundle: no bus URL: pass --nats URL, or start Vigil with \`vigil up\` (it records ${join(home.run, "up.json")})\n`,
        )
        return 2
      }
      const nc = await connectRole(url, home, "admin")
      let bundle: SignedBundle
      try {
        // Signed as the next version after the one stored on the bus: the policy service refuses a lower one.
        bundle = await Effect.runPromise(signedBundleFrom(home, values.role ?? null, { dir, bus: nc }))
        await publishBundle(nc, bundle)
      } finally {
        await nc.close()
      }
      out(
        values.json === true
          ? JSON.stringify({ published: bundle.digest, version: bundle.version, role: values.role ?? null })
          : `published bundle ${bundle.digest} version ${bundle.version} (${values.role ?? "default"})`,
      )
      return 0
    }
    case "what-if": {
      const file = positionals[1]
      if (file === undefined) {
        out(USAGE)
        return 2
      }
      const intent = JSON.parse(readFileSync(file, "utf8")) as Event<"intent.proposed">
      if (intent.type !== "intent.proposed") {
        process.stderr.write(`vigil policy what-if: ${file} is a ${String(intent.type)} event, not intent.proposed\n`)
        return 2
      }
      const compiled = compileBundle(packBundle(dir, values.role ?? null))
      if (!compiled.ok) {
        process.stderr.write(`vigil policy what-if: bundle refused (${compiled.reason}): ${compiled.detail}\n`)
        return 1
      }
      const d = compiled.engine.decideIntent(intent.data, {
        grantedFolders: values.granted ?? [],
        role: values.role ?? "staff",
        device: { id: "what-if", managed: false, os: process.platform },
      })
      out(
        values.json === true
          ? JSON.stringify(d)
          : `${d.effect.toUpperCase()}: ${d.explanation}\n  rules: ${d.rules.join(", ") || "(none)"}\n  bundle: ${d.bundle}`,
      )
      return 0
    }
    default:
      process.stderr.write(`vigil policy: unknown command "${sub}"\n\n${USAGE}`)
      return 2
  }
}
