/**
 * `vigil audit`'s command line, parsed by the one convention (args.ts) into the command it names. Imports nothing
 * heavy: `vigil audit --help` and every usage error answer before the log, key and bus modules load.
 */
import { EXIT_CODES_HELP, homeDir, parseCommandLine, UsageError } from "./args.ts"

export const AUDIT_USAGE = `usage: vigil audit <verify|proof|tail|key> [options]

  verify [--from N] [--to N]   check the auditor's log offline: every leaf a valid signed event the key manifest
                               authorised (leaves [from, to)), ids unique, tiles and root recomputed, every signed
                               checkpoint consistent with the leaves; exits 1 naming the first bad leaf and why
  proof <event-id>             ask the auditor for the event's inclusion proof and verify it and the checkpoint
  tail [--n N] [--ocsf] [--follow]
                               the last N (default 20) events, or OCSF records with their leaf indexes; --follow
                               keeps printing new ones until Ctrl-C (--n 0 --follow: only new ones). Each is verified as the services verify
                               events (OCSF records: against the auditor's leaf); one that does not verify is
                               printed as "REFUSED <reason>: …" ("verified": false in --json): not an audit entry
  key [--all]                  the checkpoints' verifier key in c2sp.org/signed-note form,
                               <origin>+<key id>+<base64 key>, for any signed-note verifier: the auditor key the
                               key manifest grants now; --all: every auditor key it ever granted, newest first
                               (older checkpoints are signed by older keys). One key a line

options:
  --home DIR    Vigil home (default $VIGIL_HOME or ./.vigil)
  --nats URL    the bus (proof, tail; default: the one \`vigil up\` recorded in <home>/run/up.json)
  --json        one JSON object per line
  --debug       show stack traces of unexpected errors (or VIGIL_DEBUG=1)
  -h, --help    this text

${EXIT_CODES_HELP}
`

const AUDIT_OPTIONS = {
  home: { kind: "string" },
  nats: { kind: "string" },
  from: { kind: "index" },
  to: { kind: "index" },
  n: { kind: "index" },
  ocsf: { kind: "boolean" },
  follow: { kind: "boolean" },
  all: { kind: "boolean" },
} as const

type AuditOption = keyof typeof AUDIT_OPTIONS

export const AUDIT_SUBCOMMANDS = ["verify", "proof", "tail", "key"] as const
export type AuditSubcommand = (typeof AUDIT_SUBCOMMANDS)[number]

/** The options each subcommand takes besides --home (and the common ones): any other is a usage error. */
const TAKES: Readonly<Record<AuditSubcommand, ReadonlyArray<AuditOption>>> = {
  verify: ["from", "to"],
  proof: ["nats"],
  tail: ["nats", "n", "ocsf", "follow"],
  key: ["all"],
}

export type AuditCommand =
  | { readonly sub: "verify"; readonly home: string; readonly from?: number; readonly to?: number }
  | { readonly sub: "proof"; readonly home: string; readonly id: string; readonly nats?: string }
  | {
      readonly sub: "tail"
      readonly home: string
      readonly n: number
      readonly ocsf: boolean
      readonly follow: boolean
      readonly nats?: string
    }
  | { readonly sub: "key"; readonly home: string; readonly all: boolean }

export type ParsedAudit =
  | { readonly help: true; readonly json: boolean }
  | { readonly help: false; readonly json: boolean; readonly command: AuditCommand }

const isSub = (s: string): s is AuditSubcommand => (AUDIT_SUBCOMMANDS as ReadonlyArray<string>).includes(s)

/** `vigil audit`'s arguments (after `audit`) → the command, `--help`, or a {@link UsageError}. */
export const parseAudit = (argv: ReadonlyArray<string>): ParsedAudit => {
  const { values: v, positionals } = parseCommandLine(argv, AUDIT_OPTIONS)
  const sub = positionals[0]
  if (v.help || sub === "help") return { help: true, json: v.json }
  if (sub === undefined) throw new UsageError("missing command: verify, proof, tail or key")
  if (!isSub(sub)) throw new UsageError(`unknown command "${sub}": verify, proof, tail or key`)
  for (const name of Object.keys(AUDIT_OPTIONS) as AuditOption[]) {
    const given = v[name] !== undefined && v[name] !== false
    if (given && name !== "home" && !TAKES[sub].includes(name))
      throw new UsageError(`--${name} does not apply to \`audit ${sub}\``)
  }
  const home = homeDir(v.home)
  const nats = v.nats === undefined ? {} : { nats: v.nats }
  const extra = positionals[sub === "proof" ? 2 : 1]
  if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`)
  const json = v.json
  switch (sub) {
    case "verify":
      if (v.from !== undefined && v.to !== undefined && v.from > v.to)
        throw new UsageError(`--from ${v.from} is past --to ${v.to}`)
      return {
        help: false,
        json,
        command: {
          sub,
          home,
          ...(v.from === undefined ? {} : { from: v.from }),
          ...(v.to === undefined ? {} : { to: v.to }),
        },
      }
    case "proof": {
      const id = positionals[1]
      if (id === undefined) throw new UsageError("missing the event id: vigil audit proof <event-id>")
      return { help: false, json, command: { sub, home, id, ...nats } }
    }
    case "tail":
      // Nothing of the past and nothing new would show nothing at all.
      if (v.n === 0 && !v.follow) throw new UsageError("--n 0 shows nothing without --follow")
      return { help: false, json, command: { sub, home, n: v.n ?? 20, ocsf: v.ocsf, follow: v.follow, ...nats } }
    case "key":
      return { help: false, json, command: { sub, home, all: v.all } }
  }
}
