// The auditor: folds every event into a Merkle log with signed checkpoints and feeds SIEMs.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "auditor" })
