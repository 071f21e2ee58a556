// Generate tests/vectors/cids.json: CID vectors (PROTOCOL.md sections 1 and 6) computed with the
// `multiformats` npm package, an implementation independent of ours.
//
// Run:   cd tests/vectors/js && npm ci && node ../gen_cids.mjs
//
// Deterministic: all inputs are fixed or regenerated from a rule, so re-running gives a
// byte-identical file.

import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
// npm dependencies come from tests/vectors/js/node_modules via js/deps.mjs.
const { CID, sha256, raw } = await import('./js/deps.mjs')
const mfPkg = JSON.parse(readFileSync(join(here, 'js', 'node_modules', 'multiformats', 'package.json'), 'utf8'))

const OUT = join(here, 'cids.json')
// Workspace root is here/../..; the shared data lives beside it (../shared relative to the root).
const SAMPLE_REL = 'shared/vectors/sample-batch-epoch-11267.json'
const SAMPLE_PATH = join(here, '..', '..', '..', SAMPLE_REL)

const hex = (u8) => Buffer.from(u8).toString('hex')

async function cidV1Raw (bytes) {
  const digest = await sha256.digest(bytes)
  return CID.create(1, raw.code, digest).toString() // base32 lower, multibase prefix 'b'
}

function ruleBytes (length) {
  const b = new Uint8Array(length)
  for (let i = 0; i < length; i++) b[i] = (i * 31 + 7) % 251
  return b
}
const RULE = 'bytes[i] = (i*31+7) % 251'

const cases = []
async function addData (name, bytes) {
  cases.push({ name, dataHex: hex(bytes), cidV1Raw: await cidV1Raw(bytes) })
}
async function addRule (name, length) {
  // i*31+7 stays far below 2^53 for these lengths, so the rule is exact in any integer type >= 32 bits.
  cases.push({ name, generatorRule: RULE, length, cidV1Raw: await cidV1Raw(ruleBytes(length)) })
}

await addData('empty', new Uint8Array(0))
await addData('hello-world-newline', new TextEncoder().encode('hello world\n'))
if (cases[1].cidV1Raw !== 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4') {
  throw new Error('hello world CID mismatch: ' + cases[1].cidV1Raw)
}
await addData('one-byte-0x00', new Uint8Array([0]))
await addData('one-byte-0xff', new Uint8Array([0xff]))
await addData('ascii-a', new TextEncoder().encode('a'))
await addData('utf8-json-object', new TextEncoder().encode('{"projectId":"projét:🚀","epochId":11267}'))
await addRule('rule-1KiB', 1024)
await addRule('rule-200KiB', 200 * 1024)
await addRule('rule-256KiB-exactly-one-chunk', 256 * 1024)

const sampleBytes = readFileSync(SAMPLE_PATH)
cases.push({ name: 'sample-batch-epoch-11267-file-bytes', file: SAMPLE_REL, cidV1Raw: await cidV1Raw(sampleBytes) })

// ---- parse ----
const sample = JSON.parse(sampleBytes.toString('utf8'))
const parseInputs = [
  // CIDv0 (base58btc, dag-pb, sha2-256)
  'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG',
  'QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR',
  // dag-pb CIDv1 (base32)
  'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi',
  // raw CIDv1 from the "hello world\n" case
  cases[1].cidV1Raw,
  // real CIDs from the sample batch
  ...sample.cids.slice(0, 3),
  sample.cids[sample.cids.length - 1]
]
const parse = []
for (const s of parseInputs) {
  const c = CID.parse(s)
  if (c.toString() !== s) throw new Error('round trip failed for ' + s)
  parse.push({
    cid: s,
    version: c.version,
    codec: c.code,
    multihashCode: c.multihash.code,
    digestHex: hex(c.multihash.digest)
  })
}
// CIDv0 <-> v1 sanity: v0 upgraded is a dag-pb v1 with the same digest.
{
  const v0 = CID.parse(parseInputs[0])
  if (v0.version !== 0 || v0.code !== 0x70 || v0.multihash.code !== 0x12) throw new Error('v0 fields')
}

// ---- invalid ----
const invalidCids = ['', 'Qm123', 'bafkreinotacid', '0x1234', 'bafkrei' + 'a'.repeat(10)]
for (const s of invalidCids) {
  let ok = false
  try { CID.parse(s); ok = true } catch (_) {}
  if (ok) throw new Error('expected CID.parse to reject ' + JSON.stringify(s))
}

const doc = { generator: `multiformats ${mfPkg.version}`, cases, parse, invalidCids }
writeFileSync(OUT, JSON.stringify(doc, null, 2) + '\n')
console.log(`wrote ${OUT}: ${cases.length} cases, ${parse.length} parse, ${invalidCids.length} invalid`)
