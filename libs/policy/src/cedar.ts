/**
 * The one place that loads Cedar. `@cedar-policy/cedar-wasm` ships three builds: the package root resolves to the
 * bundler build (an ESM `import` of the .wasm file: Node 26 loads it only through its experimental WebAssembly ESM
 * integration, with an ExperimentalWarning, and bundlers/vitest need a wasm plugin), `/web` throws until its async
 * `init()` has run, and `/nodejs` is CommonJS that reads and instantiates the .wasm synchronously on import — the
 * one to use in Node. Its named
 * exports are recognised by Node's CommonJS lexer, so a namespace import works.
 */
import * as cedar from "@cedar-policy/cedar-wasm/nodejs"

export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  EntityUid,
  PolicyJson,
  StatefulAuthorizationCall,
  ValidationAnswer,
} from "@cedar-policy/cedar-wasm/nodejs"
export type CedarValue = import("@cedar-policy/cedar-wasm/nodejs").CedarValueJson

export { cedar }
