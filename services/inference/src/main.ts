// The inference service: ONNX models and local model servers propose intents and answers.
// A placeholder until its issue lands: it verifies and acknowledges its input (consumeDurables with no handlers).
import { consumeDurables, launch } from "@vigil/runtime"

launch("inference", consumeDurables("inference"))
