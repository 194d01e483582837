export { copyBytes, decodeBase64, encodeBase64, equalBytes, fromHex, toHex } from "./bytes.ts"
