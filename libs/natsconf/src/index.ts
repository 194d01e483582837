export type { GeneratedFile } from "./infra.ts"
export { EXAMPLE_CLUSTER, EXAMPLE_PORT, INFRA_NATS_DIR, infraFiles } from "./infra.ts"
export type { UserNkey } from "./nkeys.ts"
export { generateUserNkeys, publicKeyOfSeed, publicKeys } from "./nkeys.ts"
export type {
  ClusterConfOptions,
  ClusterNode,
  PermissionsSource,
  RenderedNode,
  ServerConfOptions,
  UserKeys,
  UsersSource,
} from "./render.ts"
export {
  DEFAULT_CLUSTER_NAME,
  DEFAULT_HOST,
  DEFAULT_MAX_PAYLOAD,
  GENERATED_HEADER,
  renderClusterConf,
  renderPermissionsBlock,
  renderPermissionsConf,
  renderServerConf,
  renderUsersConf,
} from "./render.ts"
export type { AccountSpec, DurableSpec, Export, Grant, Import, Permissions, Role } from "./roles.ts"
export {
  AUDIT_CHECKPOINT,
  AUDIT_OCSF,
  AUDITOR_DURABLE,
  accountOf,
  accounts,
  durableRead,
  durablesFor,
  grantsOf,
  isRole,
  KV_KEYS_STREAM,
  nkeyVariable,
  PROOF_ASKERS,
  permissionsFor,
  permsVariable,
  ROLES,
  SIEM_DURABLE,
  STORE_ACCOUNT,
} from "./roles.ts"
