// The DLP service: screens prompts, tool results and answers for secrets and personal data before they move on.
// A placeholder until its issue lands: it verifies and acknowledges its input (consumeDurables with no handlers).
import { consumeDurables, launch } from "@vigil/runtime"

launch("dlp", consumeDurables("dlp"))
