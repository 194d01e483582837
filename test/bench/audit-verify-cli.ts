// Throughput of `vigil audit verify` on a sample log: builds a home with N sample events (default 20,000) in a temp
// dir, then verifies it `--rounds` times (default 3). Reports wall-clock events/s and the CPU seconds the process used
// (all threads: this one and the signature workers), so a busy machine can be told from a slow verifier.
// `node test/bench/audit-verify-cli.ts [N] [--rounds R] [--keep]`
import { mkdtempSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { auditLogDir, readHomeTrust, verifyAuditLog } from "@vigil/auditlog"
import { buildSampleHome } from "../harness/audit-sample.ts"

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: "string" }, keep: { type: "boolean", default: false } },
})
const count = Number(positionals[0] ?? 20_000)
const rounds = Number(values.rounds ?? 3)
const root = mkdtempSync(join(tmpdir(), "vigil-audit-bench-"))
try {
  const t0 = performance.now()
  await buildSampleHome(root, count)
  console.log(`built ${count} events in ${((performance.now() - t0) / 1000).toFixed(1)} s (${root})`)
  const trust = readHomeTrust(root)
  const rates: number[] = []
  for (let r = 0; r < rounds; r++) {
    const cpu0 = process.cpuUsage()
    const t = performance.now()
    const report = await verifyAuditLog({ dir: auditLogDir(root), ...trust })
    const s = (performance.now() - t) / 1000
    const used = process.cpuUsage(cpu0)
    const cpu = (used.user + used.system) / 1e6
    if (!report.ok) console.log(report.first)
    rates.push(report.leavesChecked / s)
    console.log(
      `${s.toFixed(2)} s  ${(report.leavesChecked / s).toFixed(0).padStart(6)} events/s  cpu ${cpu.toFixed(2)} s ` +
        `(${(cpu / s).toFixed(2)} cores, ${(report.leavesChecked / cpu) | 0} events per cpu-second)`,
    )
  }
  rates.sort((a, b) => a - b)
  console.log(
    `${count} events, ${availableParallelism()} cpus: best ${rates.at(-1)?.toFixed(0)}, median ` +
      `${rates[Math.floor(rates.length / 2)]?.toFixed(0)} events/s`,
  )
} finally {
  if (values.keep !== true) rmSync(root, { recursive: true, force: true })
}
