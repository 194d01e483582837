import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { jsonLines } from "@vigil/test"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/**
 * The one command-line convention of every `vigil` command (cli/src/args.ts), run as a user runs it
 * (`node cli/src/main.ts …`): `--help` exits 0 with usage on stdout, usage errors exit 2, failures exit 1 with one
 * line, `--json` errors are `{"ok":false,"error":…}` on stdout, never a stack trace. No stack is started.
 */

const REPO = resolve(import.meta.dirname, "..")
const MAIN = join(REPO, "cli", "src", "main.ts")

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

let scratch: string
let emptyHome: string
let staleHome: string
let files: Record<"missing" | "notJson" | "noData" | "badTool" | "decision" | "notIntent", string>

const vigil = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Ran> =>
  new Promise((done) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
    delete childEnv.VIGIL_HOME
    if (env.VIGIL_DEBUG === undefined) delete childEnv.VIGIL_DEBUG
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: scratch, env: childEnv, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        done({ code, stdout, stderr })
      },
    )
  })

const STACK_LINE = /^ {4}at /m

/** The convention's checks on every run: the exit code, no stack trace, and under --json only JSON lines. */
const expectRun = (r: Ran, code: number, what: string) => {
  expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code)
  expect(r.stdout, what).not.toMatch(STACK_LINE)
  expect(r.stderr, what).not.toMatch(STACK_LINE)
}

/** A `--json` error: exactly one line on stdout, `{"ok":false,"error":"<message>"}`, and one line on stderr. */
const expectJsonError = (r: Ran, code: number, what: string, message?: RegExp) => {
  expectRun(r, code, what)
  const lines = jsonLines(r.stdout)
  expect(lines, what).toHaveLength(1)
  expect(lines[0], what).toMatchObject({ ok: false, error: expect.any(String) })
  if (message !== undefined) expect(lines[0]!.error, what).toMatch(message)
  expect(r.stderr.trim(), what).not.toBe("")
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "vigil-cli-"))
  emptyHome = join(scratch, "not-a-home")
  mkdirSync(emptyHome)
  // A home whose run file outlived its stack: the supervisor's pid is gone, nothing listens on the recorded port.
  staleHome = join(scratch, "stale")
  mkdirSync(join(staleHome, "keys"), { recursive: true })
  mkdirSync(join(staleHome, "run"))
  writeFileSync(join(staleHome, "keys", "root.pub"), "AAAA\n")
  writeFileSync(
    join(staleHome, "run", "up.json"),
    `${JSON.stringify({ pid: 2 ** 22 + 12345, nats: "nats://127.0.0.1:12" })}\n`,
  )
  const write = (name: string, text: string) => {
    const p = join(scratch, name)
    writeFileSync(p, text)
    return p
  }
  files = {
    missing: join(scratch, "no-such-intent.json"),
    notJson: write("not-json.json", "this is not JSON\n"),
    noData: write("no-data.json", JSON.stringify({ type: "intent.proposed" })),
    badTool: write(
      "bad-tool.json",
      JSON.stringify({ type: "intent.proposed", data: { tool: "rm-rf", args: {}, reason: "x", step: 0 } }),
    ),
    notIntent: write("task.json", JSON.stringify({ type: "task.submitted", data: {} })),
    decision: write(
      "intent.json",
      JSON.stringify({
        type: "intent.proposed",
        data: { tool: "shell.exec", args: { cmd: "ls" }, reason: "list", step: 0 },
      }),
    ),
  }
})

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true })
})

/** Every command: its `--help`, an unknown flag, a missing argument, a malformed value, and `--json` on an error. */
interface CommandCase {
  readonly name: string
  readonly help: ReadonlyArray<string>
  readonly usageLine: RegExp
  readonly unknownFlag: ReadonlyArray<string>
  readonly missing: ReadonlyArray<string>
  readonly malformed: ReadonlyArray<string>
  /** a command line that fails with --json, and its exit code */
  readonly jsonError: () => { args: ReadonlyArray<string>; code: number; message?: RegExp }
}

const CASES: ReadonlyArray<CommandCase> = [
  {
    name: "vigil",
    help: ["--help"],
    usageLine: /^usage: vigil <command>/m,
    unknownFlag: ["--bogus"],
    missing: [],
    malformed: ["--version=2"],
    jsonError: () => ({ args: ["--bogus", "--json"], code: 2, message: /unknown option --bogus/ }),
  },
  {
    name: "up",
    help: ["up", "--help"],
    usageLine: /^usage: vigil up/m,
    unknownFlag: ["up", "--bogus"],
    missing: ["up", "--port"],
    malformed: ["up", "--port", "12abc"],
    jsonError: () => ({ args: ["up", "--audit-port", "70000", "--json"], code: 2, message: /--audit-port must be/ }),
  },
  {
    name: "audit verify",
    help: ["audit", "verify", "--help"],
    usageLine: /^usage: vigil audit/m,
    unknownFlag: ["audit", "verify", "--bogus"],
    missing: ["audit"],
    malformed: ["audit", "verify", "--from", "12abc"],
    jsonError: () => ({
      args: ["audit", "verify", "--home", emptyHome, "--json"],
      code: 1,
      message: /^not a Vigil home: .*not-a-home \(run `vigil up` first/,
    }),
  },
  {
    name: "audit proof",
    help: ["audit", "proof", "--help"],
    usageLine: /^usage: vigil audit/m,
    unknownFlag: ["audit", "proof", "x", "--bogus"],
    missing: ["audit", "proof"],
    malformed: ["audit", "proof", "a", "b"],
    jsonError: () => ({
      args: ["audit", "proof", "01J00000000000000000000000", "--home", staleHome, "--json"],
      code: 1,
      message: /^the stack is not running \(stale run file /,
    }),
  },
  {
    name: "audit tail",
    help: ["audit", "tail", "--help"],
    usageLine: /^usage: vigil audit/m,
    unknownFlag: ["audit", "tail", "--bogus"],
    missing: ["audit", "tail", "--n"],
    malformed: ["audit", "tail", "--n", "12abc"],
    jsonError: () => ({
      args: ["audit", "tail", "--home", staleHome, "--json"],
      code: 1,
      message: /^the stack is not running \(stale run file /,
    }),
  },
  {
    name: "audit key",
    help: ["audit", "key", "--help"],
    usageLine: /^usage: vigil audit/m,
    unknownFlag: ["audit", "key", "--bogus"],
    missing: ["audit", "key", "--home"],
    malformed: ["audit", "key", "extra"],
    jsonError: () => ({
      args: ["audit", "key", "--home", emptyHome, "--json"],
      code: 1,
      message: /^not a Vigil home: .*not-a-home \(run `vigil up` first/,
    }),
  },
  {
    name: "policy test",
    help: ["policy", "test", "--help"],
    usageLine: /^usage: vigil policy/m,
    unknownFlag: ["policy", "test", "--bogus"],
    missing: ["policy"],
    malformed: ["policy", "test", "extra"],
    jsonError: () => ({ args: ["policy", "nope", "--json"], code: 2, message: /unknown command "nope"/ }),
  },
  {
    name: "policy check",
    help: ["policy", "check", "--help"],
    usageLine: /^usage: vigil policy/m,
    unknownFlag: ["policy", "check", "--bogus"],
    missing: ["policy", "check", "--dir"],
    malformed: ["policy", "check", "--dir", ""],
    jsonError: () => ({
      args: ["policy", "check", "--dir", join(scratch, "no-policies"), "--json"],
      code: 1,
      message: /no-policies/,
    }),
  },
  {
    name: "policy bundle",
    help: ["policy", "bundle", "--help"],
    usageLine: /^usage: vigil policy/m,
    unknownFlag: ["policy", "bundle", "--bogus"],
    missing: ["policy", "bundle", "--home"],
    malformed: ["policy", "bundle", "extra"],
    jsonError: () => ({
      args: ["policy", "bundle", "--home", emptyHome, "--json"],
      code: 1,
      message: /^not a Vigil home: .*not-a-home \(run `vigil up` first/,
    }),
  },
  {
    name: "policy what-if",
    help: ["policy", "what-if", "--help"],
    usageLine: /^usage: vigil policy/m,
    unknownFlag: ["policy", "what-if", "x.json", "--bogus"],
    missing: ["policy", "what-if"],
    malformed: ["policy", "what-if", "a.json", "b.json"],
    jsonError: () => ({
      args: ["policy", "what-if", files.noData, "--json"],
      code: 1,
      message: /not a valid intent\.proposed event/,
    }),
  },
]

describe.concurrent.each(CASES)("$name", (c) => {
  it("--help: usage and the exit codes on stdout, exit 0", async () => {
    const r = await vigil(c.help)
    expectRun(r, 0, c.help.join(" "))
    expect(r.stdout).toMatch(c.usageLine)
    expect(r.stdout).toMatch(/^exit codes:/m)
    expect(r.stderr).toBe("")
  })

  it("an unknown flag: a usage error on stderr, exit 2", async () => {
    const r = await vigil(c.unknownFlag)
    expectRun(r, 2, c.unknownFlag.join(" "))
    expect(r.stderr).toMatch(/--bogus/)
    expect(r.stdout).toBe("")
  })

  it("a missing argument: exit 2", async () => {
    const r = await vigil(c.missing)
    expectRun(r, 2, c.missing.join(" "))
    expect(r.stderr.trim()).not.toBe("")
    expect(r.stdout).toBe("")
  })

  it("a malformed value: exit 2", async () => {
    const r = await vigil(c.malformed)
    expectRun(r, 2, c.malformed.join(" "))
    expect(r.stderr.trim()).not.toBe("")
  })

  it('--json on an error: {"ok":false,"error":…} on stdout', async () => {
    const { args, code, message } = c.jsonError()
    expectJsonError(await vigil(args), code, args.join(" "), message)
  })
})

describe.concurrent("vigil", () => {
  it("--version prints cli/package.json's version, exit 0", async () => {
    const version = (JSON.parse(readFileSync(join(REPO, "cli", "package.json"), "utf8")) as { version: string }).version
    const r = await vigil(["--version"])
    expectRun(r, 0, "--version")
    expect(r.stdout).toBe(`vigil ${version}\n`)
    expect(jsonLines((await vigil(["--version", "--json"])).stdout)).toEqual([{ ok: true, version }])
  })

  it("`help <command>` is `<command> --help`; an unknown command exits 2", async () => {
    const r = await vigil(["help", "policy"])
    expectRun(r, 0, "help policy")
    expect(r.stdout).toMatch(/^usage: vigil policy/m)
    expectJsonError(await vigil(["frobnicate", "--json"]), 2, "frobnicate", /unknown command "frobnicate"/)
  })

  it("ports are whole numbers 1–65535 (--port 12abc is not port 12)", async () => {
    const bad: Array<[string, string]> = [
      ["--port", "12abc"],
      ["--port", "0"],
      ["--port", "65536"],
      ["--port", "1.5"],
      ["--audit-port", "12abc"],
      ["--audit-port", "0x10"],
    ]
    for (const [flag, value] of bad) {
      const r = await vigil(["up", `${flag}=${value}`, "--json"])
      expectJsonError(r, 2, `${flag}=${value}`, new RegExp(`^${flag} must be a TCP port`))
    }
  })

  it("up's --help states up.ts's default ports", async () => {
    const { DEFAULT_PORT, DEFAULT_AUDIT_PORT } = await import("../cli/src/up.ts")
    const r = await vigil(["up", "--help"])
    expect(r.stdout).toMatch(new RegExp(`--port N .*\\(default ${DEFAULT_PORT}\\)`))
    expect(r.stdout).toMatch(new RegExp(`--audit-port N .*\\(default ${DEFAULT_AUDIT_PORT}\\)`))
  })

  it("--help loads no command module: main.ts and the argument modules import only node: builtins and each other", () => {
    for (const file of ["main.ts", "args.ts", "audit-args.ts"]) {
      const src = readFileSync(join(REPO, "cli", "src", file), "utf8")
      const staticImports = [...src.matchAll(/^import .* from "([^"]+)"$/gm)].map((m) => m[1])
      for (const spec of staticImports) expect(spec, file).toMatch(/^(node:|\.\/(audit-)?args\.ts$)/)
    }
  })

  it("--debug or VIGIL_DEBUG=1 shows the stack of an unexpected error; without, one line", async () => {
    const args = ["policy", "check", "--dir", join(scratch, "no-policies")]
    const plain = await vigil(args)
    expectRun(plain, 1, "plain")
    expect(plain.stderr.trim().split("\n")).toHaveLength(1)
    expect((await vigil([...args, "--debug"])).stderr).toMatch(STACK_LINE)
    expect((await vigil(args, { VIGIL_DEBUG: "1" })).stderr).toMatch(STACK_LINE)
  })
})

describe.concurrent("vigil audit", () => {
  it.each([
    [["audit", "verify", "--follow"], /--follow does not apply to `audit verify`/],
    [["audit", "key", "--from", "3"], /--from does not apply to `audit key`/],
    [["audit", "proof", "x", "--n", "3"], /--n does not apply to `audit proof`/],
    [["audit", "tail", "--n", "0"], /--n 0 shows nothing without --follow/],
    [["audit", "tail", "--n", "-1"], /--n/],
    [["audit", "verify", "--from", "1.5"], /--from must be a whole number/],
    [["audit", "verify", "--from", "5", "--to", "2"], /--from 5 is past --to 2/],
    [["audit", "bogus"], /unknown command "bogus"/],
    [["audit"], /missing command: verify, proof, tail or key/],
  ])("%j: a usage error naming the option, exit 2, before the home is looked at", async (args, message) => {
    const r = await vigil([...args, "--home", join(scratch, "nothing-here")])
    expectRun(r, 2, args.join(" "))
    expect(r.stderr).toMatch(message)
    expect(r.stderr).toMatch(/\(see `vigil audit --help`\)\n$/)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stdout).toBe("")
  })

  it("a home whose key manifest cannot be read: exit 1 (a set-up failure, not a usage error), one line", async () => {
    const home = join(scratch, "no-manifest")
    mkdirSync(join(home, "keys"), { recursive: true })
    writeFileSync(join(home, "keys", "root.pub"), "AAAA\n")
    for (const sub of ["verify", "key"]) {
      const r = await vigil(["audit", sub, "--home", home])
      expectRun(r, 1, sub)
      expect(r.stderr).toMatch(new RegExp(`^vigil audit ${sub}: cannot read the key manifest in `))
      expect(r.stderr.trim().split("\n")).toHaveLength(1)
      expectJsonError(await vigil(["audit", sub, "--home", home, "--json"]), 1, sub, /^cannot read the key manifest/)
    }
  })
})

describe.concurrent("vigil policy what-if", () => {
  it("decides a valid intent.proposed: exit 0, the decision (ok: true under --json)", async () => {
    const r = await vigil(["policy", "what-if", files.decision])
    expectRun(r, 0, "what-if")
    expect(r.stdout).toMatch(/^DENY: /)
    const [d] = jsonLines((await vigil(["policy", "what-if", files.decision, "--json"])).stdout)
    expect(d).toMatchObject({ ok: true, effect: "deny", rules: ["no-shell"] })
  })

  it.each([
    ["missing", /no such file/],
    ["notJson", /is not JSON/],
    ["noData", /not a valid intent\.proposed event: it has no data/],
    ["badTool", /not a valid intent\.proposed event: .*tool/],
    ["notIntent", /a "task\.submitted" event, not intent\.proposed/],
  ] as const)("%s: a clear error, exit 1, never a DENY", async (which, message) => {
    const r = await vigil(["policy", "what-if", files[which]])
    expectRun(r, 1, which)
    expect(r.stdout).toBe("")
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expectJsonError(await vigil(["policy", "what-if", files[which], "--json"]), 1, which, message)
  })
})

describe.concurrent("a home that is missing, or whose stack stopped", () => {
  it("says: not a Vigil home (run `vigil up` first)", async () => {
    for (const args of [
      ["policy", "bundle", "--home", emptyHome],
      ["audit", "verify", "--home", emptyHome],
      ["audit", "tail", "--home", join(scratch, "nothing-here")],
    ]) {
      const r = await vigil(args)
      expectRun(r, 1, args.join(" "))
      expect(r.stderr).toMatch(/: not a Vigil home: \S+ \(run `vigil up` first/)
      expect(r.stderr).not.toMatch(/ENOENT/)
    }
  })

  it("a stale run file says the stack is not running, without trying the bus", async () => {
    // Time against the same command's --help, run just before (the machine may be loaded): connecting to the
    // recorded bus would take seconds more (the connection timeout is 5 s).
    const timed = async (args: ReadonlyArray<string>) => {
      const started = performance.now()
      const r = await vigil(args)
      return { r, ms: performance.now() - started }
    }
    for (const args of [
      ["policy", "bundle", "--home", staleHome],
      ["audit", "tail", "--home", staleHome],
    ]) {
      const baseline = await timed([...args, "--help"])
      const { r, ms } = await timed(args)
      expectRun(r, 1, args.join(" "))
      expect(r.stderr).toMatch(
        /the stack is not running \(stale run file .*up\.json: its supervisor, pid \d+, is gone\)/,
      )
      expect(ms - baseline.ms).toBeLessThan(2_500)
    }
  })

  it("a live pid but nothing on the recorded port is stale too", async () => {
    const home = join(scratch, "stale-port")
    mkdirSync(join(home, "keys"), { recursive: true })
    mkdirSync(join(home, "run"))
    writeFileSync(join(home, "keys", "root.pub"), "AAAA\n")
    writeFileSync(
      join(home, "run", "up.json"),
      `${JSON.stringify({ pid: process.pid, nats: "nats://127.0.0.1:12" })}\n`,
    )
    const r = await vigil(["policy", "bundle", "--home", home, "--json"])
    expectJsonError(
      r,
      1,
      "stale port",
      /^the stack is not running \(stale run file .*nothing listens on nats:\/\/127\.0\.0\.1:12\)/,
    )
  })
})

describe("vigil up", () => {
  it("a bus it cannot reach: exit 1, one line, the JSON error", async () => {
    const r = await vigil(["up", "--nats", "nats://127.0.0.1:1", "--home", join(scratch, "up-home"), "--json"])
    expectJsonError(r, 1, "up --nats unreachable", /127\.0\.0\.1:1/)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
  })
})
