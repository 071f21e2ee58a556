// Re-exports the generator's npm dependencies so that ../gen_cids.mjs resolves them from
// this directory's node_modules (ESM bare specifiers resolve relative to the importing file).
export { CID } from 'multiformats/cid'
export { sha256 } from 'multiformats/hashes/sha2'
export * as raw from 'multiformats/codecs/raw'
export { bases } from 'multiformats/basics'
// gen_unixfs.mjs: the UnixFS importer js-ipfs adds files with, and a block store to watch it.
export { importer } from 'ipfs-unixfs-importer'
export { fixedSize } from 'ipfs-unixfs-importer/chunker'
export { balanced } from 'ipfs-unixfs-importer/layout'
export { MemoryBlockstore } from 'blockstore-core/memory'
