export type { ChainRejection } from "./chain.ts"
export { ManifestChain, ManifestChainError } from "./chain.ts"
export type { DeploymentKeys, RootKey } from "./deployment.ts"
export {
  DeploymentError,
  ensureDeploymentKeys,
  ensureManifest,
  homeSigningKeys,
  ROOT_KEY_NAME,
  ROOT_PUBLIC_KEY_FILE,
  readManifestChain,
  rotateSigningKey,
  signingKeyOf,
} from "./deployment.ts"
export { KEY_NAME_PATTERN, KeyFile, KeyNotFound, KeyPermissionError, KeyStore, KeyStoreError } from "./keystore.ts"
export type { KeyGrant, ManifestRejection, ManifestVerdict, UnsignedManifest } from "./manifest.ts"
export {
  buildManifest,
  Manifest,
  ManifestKey,
  manifestDigest,
  manifestSigningBytes,
  rotateKey,
  rotateKeys,
  signManifest,
  verifyManifest,
} from "./manifest.ts"
