export { appendFile, fsync, fsyncDir, rename, replaceFile, tempPathOf, writeFileAtomic, writeOpen } from "./durable.ts"
