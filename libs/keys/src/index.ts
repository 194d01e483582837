export { ManifestChain } from "./chain.ts"
export type { RootKey } from "./deployment.ts"
export {
  ensureDeploymentKeys,
  ensureManifest,
  homeSigningKeys,
  ROOT_KEY_NAME,
  ROOT_PUBLIC_KEY_FILE,
  rotateSigningKey,
  signingKeyOf,
} from "./deployment.ts"
export { KeyStore } from "./keystore.ts"
export { buildManifest, Manifest, manifestDigest, rotateKey, signManifest, verifyManifest } from "./manifest.ts"
