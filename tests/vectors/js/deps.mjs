// Re-exports the generator's npm dependencies so that ../gen_cids.mjs resolves them from
// this directory's node_modules (ESM bare specifiers resolve relative to the importing file).
export { CID } from 'multiformats/cid'
export { sha256 } from 'multiformats/hashes/sha2'
export * as raw from 'multiformats/codecs/raw'
export { bases } from 'multiformats/basics'
