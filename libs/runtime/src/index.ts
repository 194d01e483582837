export type { Home } from "./home.ts"
export { ensureHome, homeAt } from "./home.ts"
export { runMain, runMainWith } from "./main.ts"
export { COMPILE_CACHE_DIR, memoryAtRest, nodeProcessEnv, releaseMemory } from "./memory.ts"
export type { Child } from "./processes.ts"
export { isAlive, spawnChild, tcpReachable, waitFor } from "./processes.ts"
export type { LaunchOptions, ServiceBus, ServiceSettingsShape, StartError } from "./service.ts"
export {
  consumeDurables,
  Health,
  launch,
  loadChain,
  loadSigningKey,
  ServiceIdentity,
  ServiceSettings,
  ServiceStartError,
  serviceBus,
  serviceMain,
  setting,
  wholeNumber,
} from "./service.ts"
export type { ExitInfo, RestartPolicy, Supervised, SupervisorHandlers } from "./supervisor.ts"
export { describeExit, logTail, restartPolicyFromEnv, supervise } from "./supervisor.ts"
export type { TelemetrySettings } from "./telemetry.ts"
export { TelemetryError, telemetryEnabled, telemetryLayer, telemetrySettings } from "./telemetry.ts"
