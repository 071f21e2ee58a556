// Generate tests/vectors/cids.json: CID vectors (docs/protocol.md sections 1 and 6) computed with the
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
const { CID, sha256, raw, bases } = await import('./js/deps.mjs')
const mfPkg = JSON.parse(readFileSync(join(here, 'js', 'node_modules', 'multiformats', 'package.json'), 'utf8'))

const OUT = join(here, 'cids.json')
// Paths in the vectors are relative to the workspace root (here/../..); the real batch is kept
// next to this script (tests/vectors/README.md says where it came from).
const SAMPLE_REL = 'tests/vectors/sample-batch-epoch-11267.json'
const SAMPLE_PATH = join(here, '..', '..', SAMPLE_REL)

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

// ---- spellings: one CID, many strings; canonical = CIDv1 in lower-case base32 ----
// Every multibase multiformats knows except `identity` (a NUL prefix and raw bytes, not text).
// A composite decoder dispatching on the prefix reads them all back, independently of ours.
const textBases = Object.values(bases).filter((b) => b.name !== 'identity')
const anyBase = textBases.map((b) => b.decoder).reduce((a, d) => a.or(d))
// (The composed decoder dispatches on one UTF-16 unit, so the emoji prefix is decoded on its own.)
const decodeAny = (s) =>
  s.startsWith('Qm')
    ? CID.parse(s)
    : CID.decode(s.startsWith(bases.base256emoji.prefix) ? bases.base256emoji.decode(s) : anyBase.decode(s))
const spellings = []
const spellingSources = [
  // dag-pb, born CIDv0
  'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG',
  // raw, the "hello world\n" case
  cases[1].cidV1Raw,
  // a real snapshot CID of the sample batch
  sample.cids[0]
]
for (const src of spellingSources) {
  const cid = CID.parse(src)
  const v1 = cid.toV1()
  const canonical = v1.toString()
  const forms = []
  if (cid.version === 0) {
    forms.push({ spelling: 'v0-base58btc', cid: cid.toString() })
    // The CIDv0 bytes (no version/codec prefix) under an explicit base58btc multibase prefix.
    forms.push({ spelling: 'v0-bytes-multibase-base58btc', cid: bases.base58btc.encode(cid.bytes) })
  }
  for (const b of textBases) forms.push({ spelling: `v1-${b.name}`, cid: b.encode(v1.bytes) })
  // base32 is read case-insensitively (RFC 4648): the prefix decides the base, not the case.
  const lower = bases.base32.encode(v1.bytes)
  forms.push({ spelling: 'v1-base32-upper-case-body', cid: 'b' + lower.slice(1).toUpperCase() })
  forms.push({ spelling: 'v1-base32upper-lower-case-body', cid: 'B' + lower.slice(1) })
  forms.push({ spelling: 'v1-base32-mixed-case', cid: lower.slice(0, 20) + lower.slice(20).toUpperCase() })
  for (const f of forms) {
    const back = decodeAny(f.cid)
    if (!back.toV1().equals(v1)) throw new Error(`${f.spelling} of ${src} does not decode to it`)
    if (back.toV1().toString() !== canonical) throw new Error('canonical form differs: ' + f.cid)
  }
  if (!forms.some((f) => f.cid === canonical)) throw new Error('no canonical spelling for ' + src)
  spellings.push({ source: src, canonical, codec: v1.code, forms })
}
if (spellings[1].canonical !== cases[1].cidV1Raw) throw new Error('raw canonical differs')

// ---- consensus: spellings of one CID are one vote and cannot win a tie by sorting first ----
// `winner` is the plurality over canonical CIDs, ties to the smallest canonical string
// (docs/protocol.md section 6); `stringWinner` is what counting the raw strings would give.
function pluralityOf (votes, key) {
  const counts = new Map()
  for (const v of votes) counts.set(key(v), (counts.get(key(v)) || 0) + 1)
  let best = null
  for (const [c, n] of [...counts.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    if (best === null || n > best.votes) best = { cid: c, votes: n }
  }
  return { cid: best.cid, votes: best.votes, distinct: counts.size }
}
function consensusCase (name, votes) {
  const p = pluralityOf(votes, (v) => decodeAny(v).toV1().toString())
  const naive = pluralityOf(votes, (v) => v)
  return { name, votes, winner: p.cid, winnerVotes: p.votes, total: votes.length, distinctCids: p.distinct, stringWinner: naive.cid }
}
const form = (i, name) => spellings[i].forms.find((f) => f.spelling === name).cid
const pb = spellings[0] // dag-pb, canonical bafybei…
const hw = spellings[1] // raw, canonical bafkrei… (sorts before bafybei…)
const consensus = [
  // 3 to 3: the tie goes to the smaller canonical CID (hw). Spelled in base2 ('0…' sorts before
  // every 'b…'), pb would win the tie if strings were compared.
  consensusCase('base2-spelling-cannot-win-a-tie-by-sorting-first', [
    form(0, 'v1-base2'), form(0, 'v1-base2'), form(0, 'v1-base2'), hw.canonical, hw.canonical, hw.canonical]),
  // The same with upper-case base32 ('B…') and with CIDv0 ('Q…').
  consensusCase('upper-case-spelling-cannot-win-a-tie-by-sorting-first', [
    hw.canonical, form(0, 'v1-base32upper'), hw.canonical, form(0, 'v1-base32upper')]),
  consensusCase('v0-spelling-cannot-win-a-tie-by-sorting-first', [
    form(0, 'v0-base58btc'), hw.canonical, form(0, 'v0-base58btc'), hw.canonical]),
  // Three spellings of pb are three votes for one CID and beat two votes for hw; counted as
  // strings each spelling would be one vote and hw would win.
  consensusCase('spellings-of-one-cid-are-one-vote', [
    form(0, 'v1-base2'), form(0, 'v1-base32upper'), form(0, 'v0-base58btc'), hw.canonical, hw.canonical]),
  // 2 to 2 between two spelled CIDs: the smallest canonical string wins, whatever the spellings.
  consensusCase('tie-between-spelled-cids-goes-to-smallest-canonical', [
    form(2, 'v1-base32upper'), form(2, 'v1-base36'), form(1, 'v1-base2'), form(1, 'v1-base32-mixed-case')])
]
for (const c of consensus.slice(0, 3)) {
  if (c.winner !== hw.canonical || c.stringWinner === hw.canonical) throw new Error('tie vector ' + c.name)
}
if (consensus[3].winner !== pb.canonical || consensus[3].winnerVotes !== 3) throw new Error('one-vote vector')

// ---- invalid spellings: strings that are not a (bare) CID, with why ----
const v1Bytes = CID.parse(cases[1].cidV1Raw).bytes
const b32 = (bytes) => bases.base32.encode(bytes)
const invalidSpellings = [
  { why: 'CIDv0 with a lower-case q (no such multibase)', cid: 'qmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' },
  { why: 'CIDv0 one character short', cid: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd' },
  { why: 'CIDv0 with a character outside base58 (0)', cid: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0' },
  { why: 'unknown multibase prefix', cid: 'x' + cases[1].cidV1Raw.slice(1) },
  { why: 'leading space', cid: ' ' + cases[1].cidV1Raw },
  { why: 'trailing newline', cid: cases[1].cidV1Raw + '\n' },
  { why: 'an IPFS path, not a bare CID', cid: '/ipfs/' + cases[1].cidV1Raw },
  { why: 'a gateway URL, not a bare CID', cid: 'https://ipfs.io/ipfs/' + cases[1].cidV1Raw },
  { why: 'truncated: one base32 character dropped', cid: cases[1].cidV1Raw.slice(0, -1) },
  { why: 'digest one byte short of its declared length', cid: b32(v1Bytes.slice(0, -1)) },
  { why: 'a trailing byte after the CID', cid: b32(Uint8Array.from([...v1Bytes, 0])) },
  { why: 'CID version 2', cid: b32(Uint8Array.from([2, ...v1Bytes.slice(1)])) },
  // multiformats reads this raw CID with an explicit version 0 as a CIDv0, i.e. as a *different*
  // (dag-pb) CID; we reject it (the cid crate: "CIDv0 cannot be specified in CIDv1 format").
  { why: 'explicit version 0 in a multibase CID', cid: b32(Uint8Array.from([0, ...v1Bytes.slice(1)])), multiformatsAccepts: true },
  { why: 'multibase text that is not a CID', cid: b32(new TextEncoder().encode('hello world')) },
  { why: 'multibase prefix alone', cid: 'b' }
]
for (const x of invalidSpellings) {
  let parsed = null
  try { parsed = decodeAny(x.cid) } catch (e) { x.multiformatsError = String(e.message) }
  if (x.multiformatsAccepts) {
    if (parsed === null || parsed.toV1().toString() === cases[1].cidV1Raw) throw new Error('multiformats changed: ' + x.why)
    x.multiformatsReadsAs = parsed.toString()
  } else if (parsed !== null) {
    throw new Error(`expected multiformats to reject ${JSON.stringify(x.cid)} (${x.why})`)
  }
}

const doc = { generator: `multiformats ${mfPkg.version}`, cases, parse, invalidCids, spellings, consensus, invalidSpellings }
writeFileSync(OUT, JSON.stringify(doc, null, 2) + '\n')
console.log(`wrote ${OUT}: ${cases.length} cases, ${parse.length} parse, ${invalidCids.length} invalid, ` +
  `${spellings.length} CIDs x spellings, ${consensus.length} consensus, ${invalidSpellings.length} invalid spellings`)
