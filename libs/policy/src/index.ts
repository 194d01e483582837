export type { BundleVerdict } from "./bundle.ts"
export {
  bundleSigningBytes,
  packBundle,
  SignedBundle,
  signBundle,
  verifyBundle,
  verifyBundleSignature,
} from "./bundle.ts"
export { POLICIES_DIR, signedBundleFrom } from "./bundle-sign.ts"
export { publishBundle, storedBundleVersion } from "./bundle-store.ts"
export { listRoles, loadBundleDir } from "./contents.ts"
export type { Decision, PolicyEngine } from "./engine.ts"
export { compileBundle, compileBundleOrThrow } from "./engine.ts"
export type { IntentInput, RequestOptions } from "./request.ts"
export { buildRequest } from "./request.ts"
export { formatTestReport, runPolicyTests } from "./testrunner.ts"
