// The policy decision service: decides every intent (allow, deny, ask) with Cedar policies from a root-signed
// bundle, binds each decision to the intent's hash, and turns signed consents and grants into decisions.
import { runService } from "@vigil/runtime"
import { runPolicy } from "./policy.ts"

const list = (v: string | undefined) =>
  (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)

runService({
  name: "policy",
  // Intents arrive a few at a time and each waits for its decision: signatures are checked inline, where a thread
  // hop would add latency (alternating runs at 1k intents/s: p99 lower inline; docs/benchmarks.md, policy notes).
  verifyWorkers: 0,
  custom: ({ home, log }) =>
    runPolicy(
      {
        grantedFolders: list(process.env.VIGIL_GRANTED_FOLDERS ?? process.env.VIGIL_WORKSPACE),
        role: process.env.VIGIL_POLICY_ROLE ?? "staff",
        egressAllowlist: list(process.env.VIGIL_EGRESS_ALLOWLIST),
        dlpTimeoutMs: Number(process.env.VIGIL_DLP_TIMEOUT_MS ?? 10_000),
      },
      home,
      log,
    ),
})
