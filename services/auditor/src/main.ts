// The auditor: folds every event into a Merkle log (tlog tiles) with signed checkpoints, feeds SIEMs with OCSF
// records on vigil.audit.ocsf.<class>, raises threshold alerts and answers proof requests.
import { launch } from "@vigil/runtime"
import { AuditorLive } from "./auditor.ts"

// Throughput-bound (every event of the bus, in batches): signatures are checked on worker threads, one per CPU
// beyond the first (the template's default; VIGIL_VERIFY_WORKERS overrides it).
launch("auditor", AuditorLive)
