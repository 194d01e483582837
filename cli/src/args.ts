/**
 * The one command-line convention of every `vigil` command (and of those added later):
 *
 * - arguments are parsed strictly (node:util parseArgs): an unknown option, a missing value, a malformed number
 *   (ports are whole numbers 1–65535, counts positive integers) or a missing argument is a usage error;
 * - `--help` / `-h` on any command prints that command's usage on stdout and exits 0;
 * - exit codes: 0 success, 1 the command ran and failed (one line on stderr saying what to do), 2 usage error
 *   (stderr, with a pointer to `--help`);
 * - `--json`: results and errors are one JSON object per line on stdout; an error is
 *   `{"ok":false,"error":"<message>"}` (the shape `vigil audit` emits), with the same line on stderr for humans;
 * - never a stack trace, unless `--debug` or `VIGIL_DEBUG=1`.
 *
 * This module imports nothing heavy: `vigil --help` parses before any command's modules load.
 */
import { existsSync, readFileSync } from "node:fs"
import { connect as tcpConnect } from "node:net"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"

export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2

/** The exit codes as every command's `--help` states them. */
export const EXIT_CODES_HELP = `exit codes:
  0  success
  1  the command ran and failed (a check failed, the stack is not running, …): one line on stderr says what to do
  2  usage error: unknown option or command, missing or malformed argument (see --help)`

/** A bad command line: exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

/** The command could not do its work; the message says what to do: exit 1. */
export class CliFailure extends Error {
  override readonly name = "CliFailure"
}

export type OptionKind = "string" | "strings" | "boolean" | "port" | "count" | "index"

export interface OptionSpec {
  readonly kind: OptionKind
  readonly short?: string
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  json: { kind: "boolean" },
  help: { kind: "boolean", short: "h" },
  debug: { kind: "boolean" },
} as const satisfies OptionSpecs

type ValueOf<K extends OptionKind> = K extends "boolean"
  ? boolean
  : K extends "strings"
    ? ReadonlyArray<string>
    : K extends "port" | "count" | "index"
      ? number | undefined
      : string | undefined

export type ParsedValues<S extends OptionSpecs> = { readonly [K in keyof S]: ValueOf<S[K]["kind"]> } & {
  readonly json: boolean
  readonly help: boolean
  readonly debug: boolean
}

export interface Parsed<S extends OptionSpecs> {
  readonly values: ParsedValues<S>
  readonly positionals: ReadonlyArray<string>
}

const PARSE_ERROR = /^ERR_PARSE_ARGS_/

/** Node's parseArgs message, first sentence, without its advice about `--`. */
export const cleanParseMessage = (message: string): string => {
  const m = message.replace(/\. To specify a positional argument.*$/s, "")
  return m
    .replace(/^Unknown option '(.+)'$/, "unknown option $1")
    .replace(/^Option '(.+?)(?: <value>)?' argument missing$/, "option $1 needs a value")
    .replace(/^Unexpected argument '(.+)'.*$/s, "unexpected argument $1")
    .replace(/^Option '(.+?)' does not take an argument$/, "option $1 takes no value")
}

export const parsePort = (name: string, v: string): number => {
  if (!/^[0-9]{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535)
    throw new UsageError(`--${name} must be a TCP port (a whole number 1–65535), got ${JSON.stringify(v)}`)
  return Number(v)
}

export const parseCount = (name: string, v: string): number => {
  if (!/^[1-9][0-9]*$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new UsageError(`--${name} must be a positive whole number, got ${JSON.stringify(v)}`)
  return Number(v)
}

/** A position such as a leaf index: a whole number, 0 allowed. */
export const parseIndex = (name: string, v: string): number => {
  if (!/^(0|[1-9][0-9]*)$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new UsageError(`--${name} must be a whole number (0 or more), got ${JSON.stringify(v)}`)
  return Number(v)
}

/**
 * Parse `argv` strictly against `specs` (plus the common options). Throws {@link UsageError} on an unknown option, a
 * missing value or a malformed number.
 */
export const parseCommandLine = <S extends OptionSpecs>(argv: ReadonlyArray<string>, specs: S): Parsed<S> => {
  const all: OptionSpecs = { ...COMMON_OPTIONS, ...specs }
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {}
  for (const [name, s] of Object.entries(all)) {
    options[name] = {
      type: s.kind === "boolean" ? "boolean" : "string",
      ...(s.kind === "strings" ? { multiple: true } : {}),
      ...(s.short === undefined ? {} : { short: s.short }),
    }
  }
  let raw: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] }
  try {
    raw = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === "string" && PARSE_ERROR.test(code))
      throw new UsageError(cleanParseMessage((e as Error).message))
    throw e
  }
  const values: Record<string, unknown> = {}
  for (const [name, s] of Object.entries(all)) {
    const v = raw.values[name]
    switch (s.kind) {
      case "boolean":
        values[name] = v === true
        break
      case "strings":
        values[name] = Array.isArray(v) ? v.map(String) : []
        break
      case "port":
        values[name] = typeof v === "string" ? parsePort(name, v) : undefined
        break
      case "count":
        values[name] = typeof v === "string" ? parseCount(name, v) : undefined
        break
      case "index":
        values[name] = typeof v === "string" ? parseIndex(name, v) : undefined
        break
      case "string":
        if (v === "") throw new UsageError(`--${name} needs a non-empty value`)
        values[name] = typeof v === "string" ? v : undefined
        break
    }
  }
  return { values: values as ParsedValues<S>, positionals: raw.positionals }
}

/** Whether stack traces may be shown: `--debug` anywhere on the command line, or VIGIL_DEBUG=1. */
export const debugWanted = (argv: ReadonlyArray<string> = process.argv.slice(2)): boolean =>
  argv.includes("--debug") || process.env.VIGIL_DEBUG === "1"

/** Whether `--json` is on the command line (for errors raised before or during parsing). */
export const jsonWanted = (argv: ReadonlyArray<string>): boolean => argv.includes("--json")

/** Where a command writes: `out` a whole line (the newline is added), `err` text as is. */
export interface Writers {
  readonly out: (line: string) => void
  readonly err: (text: string) => void
}

export const PROCESS_WRITERS: Writers = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (text) => process.stderr.write(text),
}

export interface Reporter {
  /** e.g. "vigil policy what-if" */
  readonly command: string
  readonly json: boolean
  readonly debug: boolean
  /** where `--help` points to, e.g. "vigil policy --help" */
  readonly helpHint: string
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, "; ").trim()

/** The message of anything thrown, on one line. */
export const messageOf = (e: unknown): string =>
  oneLine(
    e instanceof Error
      ? e.message
      : typeof e === "object" && e !== null && "message" in e
        ? String((e as { message: unknown }).message)
        : String(e),
  )

/**
 * Report an error the convention's way and return its exit code: a usage error exits 2, anything else 1.
 * `--json`: `{"ok":false,"error":…}` on stdout; always one line on stderr (a usage error adds the `--help` pointer).
 */
export const reportError = (r: Reporter, e: unknown, io: Writers = PROCESS_WRITERS): number => {
  const usage = e instanceof UsageError
  const message = messageOf(e)
  if (r.json) io.out(JSON.stringify({ ok: false, error: message }))
  io.err(`${r.command}: ${message}${usage ? ` (see \`${r.helpHint}\`)` : ""}\n`)
  if (r.debug && e instanceof Error && e.stack !== undefined && !usage) io.err(`${e.stack}\n`)
  return usage ? EXIT_USAGE : EXIT_FAILED
}

/** `vigil`'s version, from cli/package.json. */
export const cliVersion = (): string =>
  (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version

/** The home directory a command works on: `--home`, else $VIGIL_HOME, else ./.vigil (absolute). */
export const homeDir = (flag: string | undefined): string => resolve(flag ?? process.env.VIGIL_HOME ?? ".vigil")

const ROOT_PUBLIC_KEY = join("keys", "root.pub")

/** Throws "not a Vigil home: DIR (run `vigil up` first)" unless `dir` holds a deployment's keys. */
export const requireVigilHome = (dir: string): void => {
  if (!existsSync(join(dir, ROOT_PUBLIC_KEY))) {
    throw new CliFailure(
      `not a Vigil home: ${dir} (run \`vigil up\` first${existsSync(dir) ? `; no ${ROOT_PUBLIC_KEY} there` : ""}, or pass --home DIR)`,
    )
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const reachable = (host: string, port: number, timeoutMs: number): Promise<boolean> =>
  new Promise((done) => {
    const sock = tcpConnect({ host, port })
    const finish = (ok: boolean) => {
      sock.destroy()
      done(ok)
    }
    sock.setTimeout(timeoutMs, () => finish(false))
    sock.once("connect", () => finish(true))
    sock.once("error", () => finish(false))
  })

/**
 * The bus a command uses: `--nats URL` when given, else the one `vigil up` recorded in `<home>/run/up.json`, checked
 * first (quickly) so that a run file left by a stack that stopped says so instead of timing out on the connection.
 */
export const resolveBusUrl = async (home: string, explicit: string | undefined): Promise<string> => {
  if (explicit !== undefined) return explicit
  const file = join(home, "run", "up.json")
  let recorded: { pid?: unknown; nats?: unknown }
  try {
    recorded = JSON.parse(readFileSync(file, "utf8")) as typeof recorded
  } catch {
    throw new CliFailure(
      `the stack is not running (no run file ${file}): start it with \`vigil up\`, or pass --nats URL`,
    )
  }
  const url = typeof recorded.nats === "string" ? recorded.nats : ""
  const stale = (why: string) =>
    new CliFailure(
      `the stack is not running (stale run file ${file}: ${why}): start it with \`vigil up\`, or pass --nats URL`,
    )
  if (typeof recorded.pid === "number" && !alive(recorded.pid))
    throw stale(`its supervisor, pid ${recorded.pid}, is gone`)
  let target: URL
  try {
    target = new URL(url)
  } catch {
    throw stale(`no valid bus URL in it`)
  }
  const port = target.port === "" ? 4222 : Number(target.port)
  if (!(await reachable(target.hostname, port, 1_000))) throw stale(`nothing listens on ${url}`)
  return url
}
