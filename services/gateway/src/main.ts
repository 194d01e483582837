// The gateway: the only door for users (HTTP/WebSocket on 127.0.0.1, the CLI); turns their words into signed task, consent and change events.
// A placeholder until its issue lands: it verifies and acknowledges its input (consumeDurables with no handlers).
import { consumeDurables, launch } from "@vigil/runtime"

launch("gateway", consumeDurables("gateway"))
