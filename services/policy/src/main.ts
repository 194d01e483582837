// The policy decision service: decides every intent (allow, deny, ask) with Cedar policies from a root-signed
// bundle, binds each decision to the intent's hash, and turns signed consents and grants into decisions.
import { launch } from "@vigil/runtime"
import { PolicyLive } from "./policy.ts"

// Intents arrive a few at a time and each waits for its decision: signatures are checked inline, where a thread hop
// would add latency (alternating runs at 1k intents/s: p99 lower inline; docs/benchmarks.md, policy notes).
launch("policy", PolicyLive, { verifyWorkers: 0 })
