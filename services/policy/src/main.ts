// The policy decision service: decides every intent (allow, deny, ask) with Cedar policies and signed bundles.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "policy" })
