export type { Creds, NatsServer, StartNatsOptions } from "./nats.ts"
export { freePort, NATS_SERVER_BIN, reconnected, startNats } from "./nats.ts"
