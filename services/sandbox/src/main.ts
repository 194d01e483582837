// The sandbox: runs allowed intents in isolation tiers, stages writes, executes only decisions bound to the intent's hash.
// A placeholder until its issue lands: it verifies and acknowledges its input (consumeDurables with no handlers).
import { consumeDurables, launch } from "@vigil/runtime"

launch("sandbox", consumeDurables("sandbox"))
