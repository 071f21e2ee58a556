// Generate tests/vectors/unixfs.json: the CIDs and dag-pb blocks `ipfs add --cid-version=1
// --raw-leaves` gives (docs/protocol.md section 6), made with npm's `ipfs-unixfs-importer` (the importer
// js-ipfs adds files with; the js-ipfs emulator gives the same CIDs) and `blockstore-core`'s memory
// store, implementations independent of ours.
//
// Run:   cd tests/vectors/js && npm ci && node ../gen_unixfs.mjs
//
// Deterministic: the bytes of every case are regenerated from a rule (or are the sample batch
// committed here), so re-running gives a byte-identical file.

import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { importer, fixedSize, balanced, MemoryBlockstore } = await import('./js/deps.mjs')
const version = (pkg) =>
  JSON.parse(readFileSync(join(here, 'js', 'node_modules', pkg, 'package.json'), 'utf8')).version

const OUT = join(here, 'unixfs.json')
const SAMPLE_REL = 'tests/vectors/sample-batch-epoch-11267.json'
const CHUNK = 262144
const MAX_LINKS = 174
const RULE = 'bytes[i] = (i*31+7) % 251'
const DAG_PB = 0x70

function ruleBytes (length) {
  const b = new Uint8Array(length)
  for (let i = 0; i < length; i++) b[i] = (i * 31 + 7) % 251
  return b
}

// What `ipfs add --cid-version=1 --raw-leaves` sets, spelled out rather than left to defaults.
const OPTIONS = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  wrapWithDirectory: false,
  chunker: fixedSize({ chunkSize: CHUNK }),
  layout: balanced({ maxChildrenPerNode: MAX_LINKS })
}

// The memory store keys blocks by multihash and forgets the codec; this one also keeps every
// block put into it under its CID, which tells raw leaves from dag-pb nodes.
class RecordingBlockstore extends MemoryBlockstore {
  constructor () {
    super()
    this.seen = new Map()
  }

  _put (key, val, options) {
    this.seen.set(key.toString(), { cid: key, bytes: Buffer.concat(val.map((v) => Buffer.from(v))) })
    return super._put(key, val, options)
  }
}

async function add (bytes) {
  const store = new RecordingBlockstore()
  let root
  for await (const entry of importer([{ content: bytes }], store, OPTIONS)) root = entry.cid
  const nodes = []
  let leaves = 0
  for (const { cid, bytes: block } of store.seen.values()) {
    if (cid.code === DAG_PB) nodes.push({ cid: cid.toString(), bytesHex: block.toString('hex') })
    else leaves++
  }
  nodes.sort((a, b) => (a.cid < b.cid ? -1 : a.cid > b.cid ? 1 : 0))
  return { cid: root.toString(), leafBlocks: leaves, nodes }
}

const cases = []
async function addRule (name, length) {
  cases.push({ name, generatorRule: RULE, length, ...(await add(ruleBytes(length))) })
}

await addRule('empty', 0)
await addRule('one-byte', 1)
await addRule('one-chunk-less-a-byte', CHUNK - 1)
await addRule('exactly-one-chunk', CHUNK)
await addRule('one-chunk-and-a-byte', CHUNK + 1)
await addRule('two-chunks', 2 * CHUNK)
await addRule('one-mib', 1024 * 1024)
await addRule('one-mib-and-five', 1024 * 1024 + 5)
await addRule('174-chunks-one-full-node', MAX_LINKS * CHUNK)
await addRule('174-chunks-and-a-byte-two-levels', MAX_LINKS * CHUNK + 1)
const sample = readFileSync(join(here, '..', '..', SAMPLE_REL))
cases.push({ name: 'sample-batch', file: SAMPLE_REL, length: sample.length, ...(await add(sample)) })

// Known values before anything is written: one chunk is its raw block (the hello-world CID of
// cids.json), more than one is a dag-pb root, past 174 chunks the tree has two levels.
const hello = await add(new TextEncoder().encode('hello world\n'))
if (hello.cid !== 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4') throw new Error('hello: ' + hello.cid)
for (const c of cases) {
  const chunks = Math.max(1, Math.ceil(c.length / CHUNK))
  if (chunks === 1 && (!c.cid.startsWith('bafkrei') || c.nodes.length !== 0)) throw new Error(c.name + ': not one raw block')
  if (chunks > 1 && !c.cid.startsWith('bafybei')) throw new Error(c.name + ': not a dag-pb root')
  const expectNodes = chunks === 1 ? 0 : chunks <= MAX_LINKS ? 1 : Math.ceil(chunks / MAX_LINKS) + 1
  if (c.nodes.length !== expectNodes) throw new Error(`${c.name}: ${c.nodes.length} nodes, expected ${expectNodes}`)
}

const out = {
  generator: `ipfs-unixfs-importer ${version('ipfs-unixfs-importer')}, blockstore-core ${version('blockstore-core')}`,
  options: { cidVersion: 1, rawLeaves: true, chunkSize: CHUNK, layout: 'balanced', maxChildrenPerNode: MAX_LINKS, reduceSingleLeafToSelf: true },
  cases
}
writeFileSync(OUT, JSON.stringify(out, null, 2) + '\n')
console.log(`wrote ${OUT}: ${cases.length} cases`)
