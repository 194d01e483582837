import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { availableParallelism, cpus } from "node:os"

/** Shared shapes and helpers of the benchmarks that `npm run bench` (test/bench/run.ts) runs. */

export interface BenchRow {
  /** What was measured, e.g. "raw JetStream publish → consume". */
  readonly name: string
  /** Server configuration or implementation, e.g. "unsecured" or "node:crypto". */
  readonly config: string
  readonly value: number
  readonly unit: string
  /** Spread, CPU shares, per-round figures. */
  readonly detail?: string
}

export interface BenchReport {
  /** Section id in docs/benchmarks.md (`<!-- bench:<id>:start -->` … `<!-- bench:<id>:end -->`). */
  readonly id: string
  readonly title: string
  readonly rows: ReadonlyArray<BenchRow>
  /** Markdown paragraphs written after the table (method, what limits each side). */
  readonly notes: ReadonlyArray<string>
  /** Parameters worth recording next to the figures (N, rounds, window, …). */
  readonly params: Readonly<Record<string, string | number>>
}

export interface BenchOptions {
  /** Events per round (default: the benchmark's own). */
  readonly n?: number
  readonly rounds?: number
  /** In-flight publishes (benchmarks that publish). */
  readonly window?: number
  /** Messages per pull (benchmarks that consume). */
  readonly batch?: number
  /** Skip optional parts (e.g. the secured-server rows). */
  readonly quick: boolean
  readonly log: (line: string) => void
}

export interface Benchmark {
  readonly id: string
  readonly title: string
  run(opts: BenchOptions): Promise<BenchReport>
}

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = s.length >> 1
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" })
  const n = Number.parseInt(r.stdout ?? "", 10)
  return Number.isFinite(n) && n > 0 ? n : 100
})()

/** utime + stime of a process or thread in seconds, from /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat). */
export const procCpuSeconds = (path: string): number => {
  try {
    const stat = readFileSync(path, "utf8")
    // Fields after the `(comm)`, which may itself contain spaces: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK
  } catch {
    return Number.NaN
  }
}

/** Busy CPU seconds of the whole machine (all CPUs), from /proc/stat. */
export const machineBusySeconds = (): number => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? ""
    const f = line.trim().split(/\s+/u).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    const busy = f.slice(0, 8).reduce((a, b, i) => (i === 3 || i === 4 ? a : a + b), 0)
    return busy / CLK_TCK
  } catch {
    return Number.NaN
  }
}

/** Seconds a thread spent waiting on a run queue for a CPU, from /proc/<pid>/task/<tid>/schedstat. */
export const runQueueWaitSeconds = (path: string): number => {
  try {
    return Number(readFileSync(path, "utf8").split(" ")[1]) / 1e9
  } catch {
    return Number.NaN
  }
}

export interface CpuShare {
  /** CPU seconds per wall second (1.0 = one core busy all the time). */
  readonly nats: number
  /** The whole node process (main thread, worker threads, libuv, GC). */
  readonly node: number
  /** The node main (event loop) thread alone. */
  readonly nodeMain: number
  /** Share of the time the event loop thread was runnable but waiting for a CPU. */
  readonly nodeMainWait: number
  /** The process given to {@link cpuMeter} beside this one (a service under test); NaN when none was. */
  readonly other: number
  /** Everything else on the machine (other users' processes): a noise indicator. */
  readonly others: number
  /** The whole machine's busy share of all its CPUs (1.0 = every CPU busy all the time). */
  readonly machine: number
}

/** Samples CPU use of nats-server, of this process and of `otherPid` (when given) over an interval. */
export const cpuMeter = (natsPid: number, otherPid?: number): { stop: () => CpuShare } => {
  const natsPath = `/proc/${natsPid}/stat`
  const otherPath = otherPid === undefined ? undefined : `/proc/${otherPid}/stat`
  const otherCpu = () => (otherPath === undefined ? Number.NaN : procCpuSeconds(otherPath))
  const mainPath = `/proc/${process.pid}/task/${process.pid}/stat`
  const schedPath = `/proc/${process.pid}/task/${process.pid}/schedstat`
  const t0 = process.hrtime.bigint()
  const w0 = runQueueWaitSeconds(schedPath)
  const n0 = procCpuSeconds(natsPath)
  const m0 = procCpuSeconds(mainPath)
  const o0 = otherCpu()
  const u0 = process.cpuUsage()
  const b0 = machineBusySeconds()
  return {
    stop: () => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9
      const u = process.cpuUsage(u0)
      const nats = (procCpuSeconds(natsPath) - n0) / wall
      const node = (u.user + u.system) / 1e6 / wall
      const other = (otherCpu() - o0) / wall
      const busy = (machineBusySeconds() - b0) / wall
      return {
        nats,
        node,
        nodeMain: (procCpuSeconds(mainPath) - m0) / wall,
        nodeMainWait: (runQueueWaitSeconds(schedPath) - w0) / wall,
        other,
        others: Math.max(0, busy - nats - node - (Number.isNaN(other) ? 0 : other)),
        machine: busy / availableParallelism(),
      }
    },
  }
}

export const pct = (x: number): string => `${Math.round(x * 100)}%`

export interface MachineInfo {
  readonly date: string
  readonly nproc: number
  readonly cpu: string
  readonly node: string
  readonly natsServer: string
  readonly os: string
}

export const machineInfo = (natsBin: string): MachineInfo => {
  const nproc = Number.parseInt(spawnSync("nproc", { encoding: "utf8" }).stdout ?? "", 10)
  let cpu = cpus()[0]?.model ?? "unknown"
  try {
    const m = /^model name\s*:\s*(.+)$/mu.exec(readFileSync("/proc/cpuinfo", "utf8"))
    if (m?.[1] !== undefined) cpu = m[1].trim()
  } catch {
    // not Linux: keep os.cpus()
  }
  const nats = spawnSync(natsBin, ["--version"], { encoding: "utf8" })
  const kernel = spawnSync("uname", ["-sr"], { encoding: "utf8" }).stdout?.trim() ?? process.platform
  return {
    date: `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
    nproc: Number.isFinite(nproc) ? nproc : cpus().length,
    cpu,
    node: process.version,
    natsServer: (nats.stdout ?? "").trim().replace(/^nats-server:\s*/u, "") || "unknown",
    os: kernel,
  }
}

const fmtNumber = (v: number): string => {
  if (!Number.isFinite(v)) return String(v)
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US")
  if (Math.abs(v) >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

/** Rows as a Markdown table (also readable on a terminal). */
export const markdownTable = (rows: ReadonlyArray<BenchRow>): string => {
  const head = ["Measurement", "Configuration", "Value", "Unit", "Detail"]
  const body = rows.map((r) => [r.name, r.config, fmtNumber(r.value), r.unit, r.detail ?? ""])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((c, i) => (i === 2 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join(" | ")} |`
  const sep = `| ${widths.map((w, i) => (i === 2 ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`
  return [line(head), sep, ...body.map(line)].join("\n")
}
