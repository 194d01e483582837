// The gateway: the only door for users (HTTP/WebSocket on 127.0.0.1, the CLI); turns their words into signed task, consent and change events.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "gateway" })
