// The DLP service: screens prompts, tool results and answers for secrets and personal data before they move on.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "dlp" })
