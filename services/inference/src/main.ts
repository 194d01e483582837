// The inference service: ONNX models and local model servers propose intents and answers.
// This process verifies and acknowledges its input; domain handlers join `handlers` as their issues land.
import { runService } from "@vigil/runtime"

runService({ name: "inference" })
