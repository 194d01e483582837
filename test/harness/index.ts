export type { SampleKeys } from "./audit-sample.ts"
export { buildSampleHome, sampleEvents, sampleSession } from "./audit-sample.ts"
export { jsonLines } from "./cli.ts"
export type {
  BusFixture,
  BusFixtureOptions,
  BusServices,
  Deployment,
  DeploymentOptions,
  RunningBus,
  VigilBus,
} from "./deployment.ts"
export {
  BLOB,
  busFixture,
  busFor,
  busLayer,
  busLayerOf,
  consumeTasks,
  createDeployment,
  DLP_TASKS,
  screenedDraft,
  screenHandler,
  startBus,
  startVigilBus,
  taskDraft,
} from "./deployment.ts"
export type { ServiceProcess, TestHome } from "./home.ts"
export { prepareHome, runServiceToExit, startService } from "./home.ts"
export type { Creds, NatsServer, StartNatsOptions } from "./nats.ts"
export { freePort, NATS_SERVER_BIN, reconnected, startNats } from "./nats.ts"
export type { Producers } from "./producers.ts"
export { producers } from "./producers.ts"
export type { StoredMsg } from "./streams.ts"
export { consumerInfo, countStored, eventually, readStream, sleep } from "./streams.ts"
