/**
 * Engine throughput: decisions per second of the compiled, pre-parsed default bundle, on a mix of intents.
 *
 *   node test/bench/policy-engine.ts [policiesDir] [seconds-per-measurement]
 *
 * Measures (1) `engine.decide` on pre-built requests — the engine alone, with and without Cedar checking each
 * request against the schema; (2) `engine.decideIntent` — request
 * building (paths, data classes, entities) plus the decision, without and with the engine's answer cache (the intents
 * repeat, so the cached run is all hits); (3) for reference, Cedar's stateless `isAuthorized`,
 * which parses the policy set and schema on every call.
 */
// The Node build of Cedar, as libs/policy/src/cedar.ts loads it (the engine's own, for the stateless reference run).
import * as cedar from "@cedar-policy/cedar-wasm/nodejs"
import {
  buildRequest,
  compileBundleOrThrow,
  type IntentInput,
  loadBundleDir,
  POLICIES_DIR,
  type RequestOptions,
} from "@vigil/policy"

const dir = process.argv[2] ?? POLICIES_DIR
const seconds = Number(process.argv[3] ?? 3)

const contents = loadBundleDir(dir)
// Without the answer cache, so every call below reaches Cedar (the intents repeat); the cached engine is measured last.
const engine = compileBundleOrThrow(contents, { answerCache: 0 })
const fast = compileBundleOrThrow(contents, { validateRequests: false, answerCache: 0 })
const cached = compileBundleOrThrow(contents)
const env: Omit<RequestOptions, "dataClasses"> = {
  grantedFolders: ["/home/ana/Documents"],
  role: "staff",
  device: { id: "dev-1", managed: true, os: "linux" },
  egressAllowlist: ["*.example.org"],
  remoteModelUrl: "https://models.example.org/v1",
}
const intents: IntentInput[] = [
  { tool: "fs.read", args: { path: "/home/ana/Documents/Projects/2026/plan.md" } },
  { tool: "fs.read", args: { path: "/home/ana/Documents/Finance/q3-forecast.xlsx" } },
  { tool: "fs.list", args: { path: "/home/ana/Documents/Projects" } },
  { tool: "fs.write", args: { path: "/home/ana/Documents/draft.md", content: "Hello there" } },
  { tool: "net.fetch", args: { url: "https://docs.example.org/guide" } },
  { tool: "net.fetch", args: { url: "https://paste.evil.test/upload" } },
  { tool: "sheet.summarize", args: { path: "/home/ana/Documents/Public/prices.csv" } },
  { tool: "shell.exec", args: { cmd: "ls -la" } },
]
const requests = intents.map((i) => buildRequest(i, { ...env, dataClasses: engine.classifier }))
const staticPolicies = Object.fromEntries(engine.policies.map((p) => [p.id, p.text]))

const measure = (name: string, fn: (i: number) => void): number => {
  for (let i = 0; i < 2000; i++) fn(i) // warm-up
  let n = 0
  const start = process.hrtime.bigint()
  const budget = BigInt(Math.round(seconds * 1e9))
  let elapsed = 0n
  while (elapsed < budget) {
    for (let k = 0; k < 500; k++) fn(n++)
    elapsed = process.hrtime.bigint() - start
  }
  const rate = n / (Number(elapsed) / 1e9)
  console.log(`${name.padEnd(48)} ${Math.round(rate).toLocaleString("en-US").padStart(10)} decisions/s`)
  return rate
}

console.log(`bundle ${engine.digest.slice(0, 16)}… (${engine.policies.length} policies), ${intents.length} intents`)
let sink = 0
measure("engine.decide (pre-parsed, pre-built request)", (i) => {
  sink += engine.decide(requests[i % requests.length]!).rules.length
})
measure("engine.decide, validateRequests: false", (i) => {
  sink += fast.decide(requests[i % requests.length]!).rules.length
})
measure("engine.decideIntent (build request + decide)", (i) => {
  sink += engine.decideIntent(intents[i % intents.length]!, env).rules.length
})
measure("engine.decideIntent, answer cache (repeated intents)", (i) => {
  sink += cached.decideIntent(intents[i % intents.length]!, env).rules.length
})
measure("cedar.isAuthorized (parses policies every call)", (i) => {
  const r = requests[i % requests.length]!
  const a = cedar.isAuthorized({
    principal: r.principal,
    action: r.action,
    resource: r.resource,
    context: r.context,
    entities: r.entities,
    policies: { staticPolicies },
    schema: contents.schema,
    validateRequest: true,
  })
  sink += a.type === "success" ? 1 : 0
})
if (sink < 0) console.log(sink)
