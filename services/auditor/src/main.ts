// The auditor: folds every event into a Merkle log (tlog tiles) with signed checkpoints, feeds SIEMs with OCSF
// records on vigil.audit.ocsf.<class>, raises threshold alerts and answers proof requests.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { runService } from "@vigil/runtime"
import { DEFAULT_ALERT_RULES, loadAlertRules } from "./alerts.ts"
import { auditorSettingsFromEnv, runAuditor } from "./auditor.ts"

const rules =
  process.env.VIGIL_ALERT_RULES === undefined ? DEFAULT_ALERT_RULES : loadAlertRules(process.env.VIGIL_ALERT_RULES)

const proverSeed = (nats: string): string | undefined => {
  try {
    return readFileSync(join(nats, "prover.nk"), "utf8").trim()
  } catch {
    return undefined
  }
}

runService({
  name: "auditor",
  custom: ({ key, chain, home, log }) => {
    const url = process.env.VIGIL_NATS_URL
    const seed = proverSeed(home.nats)
    const prover = url === undefined || seed === undefined ? undefined : { url, seed }
    if (prover === undefined) log.warn("no prover credentials: the NATS proof API is off (HTTP still serves proofs)")
    return runAuditor(auditorSettingsFromEnv(home.data("auditor"), rules, prover), key, chain, log)
  },
})
