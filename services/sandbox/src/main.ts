// The sandbox: runs allowed intents in isolation tiers, stages writes, executes only decisions bound to the intent's hash.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "sandbox" })
