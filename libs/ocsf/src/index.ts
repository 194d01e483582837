export { ocsfSubject, RelatedIndex, toOcsf } from "./map.ts"
export { validateOcsf } from "./validate.ts"
