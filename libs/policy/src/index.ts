export type { BundleSignatureVerdict, BundleVerdict } from "./bundle.ts"
export {
  BUNDLE_SIGNING_CONTEXT,
  bundleSigningBytes,
  packBundle,
  SignedBundle,
  signBundle,
  verifyBundle,
  verifyBundleSignature,
} from "./bundle.ts"
export type {
  Classification,
  Classifier,
  ClassifyInput,
  ConfigVerdict,
  DataClass,
  Finding,
  FindingKind,
} from "./classify.ts"
export {
  classifierOf,
  classRank,
  DataClassConfig,
  DataClassRule,
  makeClassifier,
  maxClass,
  parseDataClassConfig,
} from "./classify.ts"
export {
  BUNDLE_VERSION,
  BundleContents,
  BundleLoadError,
  bundleDigest,
  DATA_CLASSES_FILE,
  listRoles,
  loadBundleDir,
  SCHEMA_FILE,
} from "./contents.ts"
export type {
  BundleRejection,
  CompileOptions,
  CompileVerdict,
  Decision,
  Effect,
  PolicyEngine,
  PolicyInfo,
} from "./engine.ts"
export {
  CONSENT_NOTE,
  compileBundle,
  compileBundleOrThrow,
  DEFAULT_DENY,
  ENGINE_ERROR,
  PolicyBundleError,
} from "./engine.ts"
export { compileGlob, globMatch } from "./glob.ts"
export type { Obligation } from "./obligations.ts"
export { mergeObligations, parseObligations } from "./obligations.ts"
export type { DeviceInfo, IntentInput, PolicyRequest, RequestOptions, Tool } from "./request.ts"
export { buildRequest, dlpSummary, hostAllowlisted, normalisePath, RequestError } from "./request.ts"
export type { CaseResult, PolicyTestReport } from "./testrunner.ts"
export { formatTestReport, runPolicyTests } from "./testrunner.ts"
