// The auditor: folds every event into a Merkle log (tlog tiles) with signed checkpoints, feeds SIEMs with OCSF
// records on vigil.audit.ocsf.<class>, raises threshold alerts and answers proof requests.
import { runService } from "@vigil/runtime"
import { DEFAULT_ALERT_RULES, loadAlertRules } from "./alerts.ts"
import { auditorSettingsFromEnv, runAuditor } from "./auditor.ts"

const rules =
  process.env.VIGIL_ALERT_RULES === undefined ? DEFAULT_ALERT_RULES : loadAlertRules(process.env.VIGIL_ALERT_RULES)

runService({
  name: "auditor",
  custom: ({ key, chain, home, log }) =>
    runAuditor(auditorSettingsFromEnv(home.data("auditor"), rules), key, chain, log),
})
