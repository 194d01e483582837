export type { ChangeOp, OcsfContext, OcsfMapped, OcsfRecord, Related, Tool } from "./map.ts"
export { classOfTool, ocsfSubject, PRODUCT_NAME, RelatedIndex, toOcsf, VENDOR_NAME } from "./map.ts"
export type { OcsfClass, SeverityId, StatusId } from "./schema.ts"
export {
  API_ACTIVITY,
  classByUid,
  DETECTION_FINDING,
  FILE_ACTIVITY,
  FINDING_STATUS,
  NETWORK_ACTIVITY,
  OCSF_CLASSES,
  OCSF_VERSION,
  PROCESS_ACTIVITY,
  SEVERITY,
  STATUS,
} from "./schema.ts"
export type { ValidateOptions } from "./validate.ts"
export { BASE_REQUIRED, CLASS_RULES, OBJECT_RULES, validateOcsf } from "./validate.ts"
