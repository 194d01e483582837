// The few libsodium bindings Vigil calls (sodium-native 5 ships no types; @types/sodium-native describes v2).
declare module "sodium-native" {
  export function crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void
  export function crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void
  export function crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean
  export function sodium_malloc(size: number): Buffer
  export function sodium_memzero(buf: Uint8Array): void
  /** Constant-time comparison of two buffers of the same length. */
  export function sodium_memcmp(a: Uint8Array, b: Uint8Array): boolean
}
