/**
 * The slice of OCSF that Vigil emits: five event classes, their categories and activity captions, and the enums the
 * mapper and the validator share.
 *
 * Target: OCSF **1.5.0** (`metadata.version`). Where these facts come from, and how sure they are:
 * - Class ids, category ids, activity ids/captions, severity, status and finding-status enums, and which attributes
 *   exist on each class and object: the zod schemas generated from the schema.ocsf.io 1.5.0 export
 *   (github.com/mcm/typescript-ocsf, `src/v1_5/events/{api_activity,file_activity,network_activity,
 *   detection_finding}.ts`, `src/v1_5/objects/{metadata,product,actor,api,session,request,resource_details,
 *   network_connection_info,network_endpoint,related_event,finding_info,fingerprint,file,service}.ts`).
 * - Which attributes are *required*: the OCSF source (github.com/ocsf/ocsf-schema `events/base_event.json` as
 *   compiled into ocsf/ocsf-lib-py `schema_cache/schema-1.3.0.json`; `events/application/api_activity.json`,
 *   `events/system/{system,file_activity,process_activity}.json`, `events/network/network.json`,
 *   `events/findings/finding.json`, `objects/{metadata,api,actor,_endpoint,network_endpoint,device,file,process,
 *   fingerprint,finding_info}.json`). Requirement flags of these classes have not changed across 1.x, with two
 *   exceptions noted in validate.ts (`product.name`/`vendor_name` and `finding_info.title`).
 * - Process Activity (1007) was read from the OCSF source only (no 1.5.0 generated file was consulted); its
 *   activity captions Launch/Terminate and `exit_code` are unchanged since 1.0.
 */
export const OCSF_VERSION = "1.5.0"

/** Base-event severity (`severity_id` → `severity`). */
export const SEVERITY = {
  0: "Unknown",
  1: "Informational",
  2: "Low",
  3: "Medium",
  4: "High",
  5: "Critical",
  6: "Fatal",
  99: "Other",
} as const
export type SeverityId = keyof typeof SEVERITY

/** Base-event status (`status_id` → `status`): whether the reported activity succeeded. */
export const STATUS = { 0: "Unknown", 1: "Success", 2: "Failure", 99: "Other" } as const

/** Finding lifecycle status (Findings category overrides `status_id`), OCSF 1.5.0. */
export const FINDING_STATUS = {
  0: "Unknown",
  1: "New",
  2: "In Progress",
  3: "Suppressed",
  4: "Resolved",
  5: "Archived",
  99: "Other",
} as const

export interface OcsfClass {
  readonly uid: number
  /** OCSF class caption, e.g. "API Activity". */
  readonly caption: string
  /** OCSF class name, also the last token of the NATS subject `vigil.audit.ocsf.<name>`. */
  readonly name: string
  readonly categoryUid: number
  readonly categoryName: string
  readonly activities: Readonly<Record<number, string>>
  /** The `status_id` enum of this class (findings have their own). */
  readonly statuses: Readonly<Record<number, string>>
}

export const API_ACTIVITY: OcsfClass = {
  uid: 6003,
  caption: "API Activity",
  name: "api_activity",
  categoryUid: 6,
  categoryName: "Application Activity",
  activities: { 0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other" },
  statuses: STATUS,
}

export const FILE_ACTIVITY: OcsfClass = {
  uid: 1001,
  caption: "File System Activity",
  name: "file_activity",
  categoryUid: 1,
  categoryName: "System Activity",
  activities: {
    0: "Unknown",
    1: "Create",
    2: "Read",
    3: "Update",
    4: "Delete",
    5: "Rename",
    6: "Set Attributes",
    7: "Set Security",
    8: "Get Attributes",
    9: "Get Security",
    10: "Encrypt",
    11: "Decrypt",
    12: "Mount",
    13: "Unmount",
    14: "Open",
    99: "Other",
  },
  statuses: STATUS,
}

export const PROCESS_ACTIVITY: OcsfClass = {
  uid: 1007,
  caption: "Process Activity",
  name: "process_activity",
  categoryUid: 1,
  categoryName: "System Activity",
  activities: { 0: "Unknown", 1: "Launch", 2: "Terminate", 3: "Open", 4: "Inject", 5: "Set User ID", 99: "Other" },
  statuses: STATUS,
}

export const NETWORK_ACTIVITY: OcsfClass = {
  uid: 4001,
  caption: "Network Activity",
  name: "network_activity",
  categoryUid: 4,
  categoryName: "Network Activity",
  activities: {
    0: "Unknown",
    1: "Open",
    2: "Close",
    3: "Reset",
    4: "Fail",
    5: "Refuse",
    6: "Traffic",
    7: "Listen",
    99: "Other",
  },
  statuses: STATUS,
}

export const DETECTION_FINDING: OcsfClass = {
  uid: 2004,
  caption: "Detection Finding",
  name: "detection_finding",
  categoryUid: 2,
  categoryName: "Findings",
  activities: { 0: "Unknown", 1: "Create", 2: "Update", 3: "Close", 99: "Other" },
  statuses: FINDING_STATUS,
}

export const OCSF_CLASSES: ReadonlyArray<OcsfClass> = [
  API_ACTIVITY,
  FILE_ACTIVITY,
  PROCESS_ACTIVITY,
  NETWORK_ACTIVITY,
  DETECTION_FINDING,
]

export const classByUid = (uid: number): OcsfClass | undefined => OCSF_CLASSES.find((c) => c.uid === uid)

/** `file.type_id` captions used here. */
export const FILE_TYPE = { 0: "Unknown", 1: "Regular File", 2: "Folder" } as const
/** `fingerprint.algorithm_id` 3. */
export const SHA_256 = { algorithm_id: 3, algorithm: "SHA-256" } as const
/** `connection_info.direction_id` 2. */
export const OUTBOUND = { direction_id: 2, direction: "Outbound" } as const
/** `confidence_id` captions (findings). */
export const CONFIDENCE = { 0: "Unknown", 1: "Low", 2: "Medium", 3: "High", 99: "Other" } as const
