// An independent gossipsub collector for the ingress tests: js-libp2p 2.x with
// @chainsafe/libp2p-gossipsub 14.1.2 (TCP + Noise + yamux), configured like the deployed Go
// collectors (go-libp2p-pubsub: D 10, Dlo 8, Dhi 16, Dlazy 10, Dout 4, Dscore 6, heartbeat 700 ms,
// history 12/6, gossip factor 0.25, flood publish, StrictSign, message id = from + seqno, their
// score parameters), and publishing what they publish:
//   - every submission as {"epoch_id":N,"submissions":[<submission JSON as received>],
//     "snapshotter_id":"<peer id>","signature":null} on <prefix>/all (epoch 0: <prefix>/0),
//     and the same submission written on a long-lived /collect stream as <uuid v4><JSON>;
//   - every heartbeat period (10 s deployed; --heartbeat-ms in tests) a discovery heartbeat on
//     <prefix>/0 ({"epoch_id":0,"submissions":null,...,"signature":<base64>}) and a
//     mesh-formation heartbeat on <prefix>/all (a submission with epochId 0, empty snapshotCid,
//     project test:mesh-formation:local-collector).
//
// Usage: node collector.mjs CONFIG.json  — runs several nodes in one process and prints one JSON
// line with what each saw. Config:
//   { "ingress": "/ip4/…/tcp/…/p2p/<id>", "prefix": "/powerloom/snapshot-submissions",
//     "nodes": 3, "watchers": [2], "interconnect": false, "heartbeatMs": 10000,
//     "gossipHeartbeatMs": 700, "meshWaitMs": 10000, "settleMs": 1500,
//     "submissions": [{ "node": 0, "epoch": 7, "json": "{…}", "collect": true }],
//     "raw": [{ "node": 0, "topic": "all", "data": "…" }], "observeMs": 0 }
// Watchers publish nothing (not even heartbeats): they only record what reaches them.

import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { pushable } from 'it-pushable'

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const prefix = (cfg.prefix ?? '/powerloom/snapshot-submissions').replace(/\/$/, '')
const TOPIC = { 0: `${prefix}/0`, all: `${prefix}/all` }
const enc = new TextEncoder()
const dec = new TextDecoder()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The go collectors' gossipconfig, expressed in js-libp2p-gossipsub's options.
function gossipOptions (self) {
  const topicParams = {
    topicWeight: 10,
    timeInMeshWeight: 10,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 10000,
    firstMessageDeliveriesWeight: 100,
    firstMessageDeliveriesDecay: 0.999,
    firstMessageDeliveriesCap: 10000,
    meshMessageDeliveriesWeight: 0,
    meshMessageDeliveriesDecay: 0.999,
    meshMessageDeliveriesThreshold: 1,
    meshMessageDeliveriesCap: 1,
    meshMessageDeliveriesActivation: 24 * 3600 * 1000,
    meshMessageDeliveriesWindow: 24 * 3600 * 1000,
    meshFailurePenaltyWeight: 0,
    meshFailurePenaltyDecay: 0.9,
    invalidMessageDeliveriesWeight: -100,
    invalidMessageDeliveriesDecay: 0.5
  }
  return {
    D: 10,
    Dlo: 8,
    Dhi: 16,
    Dlazy: 10,
    Dout: 4,
    Dscore: 6,
    heartbeatInterval: cfg.gossipHeartbeatMs ?? 700,
    mcacheLength: 12,
    mcacheGossip: 6,
    gossipFactor: 0.25,
    fanoutTTL: 60000,
    opportunisticGraftTicks: 30,
    opportunisticGraftPeers: 4,
    pruneBackoff: 5 * 60 * 1000,
    unsubcribeBackoff: 30 * 1000,
    floodPublish: true,
    globalSignaturePolicy: 'StrictSign',
    emitSelf: false,
    allowPublishToZeroTopicPeers: true,
    maxInboundDataLength: 1024 * 1024,
    scoreParams: {
      appSpecificScore: (p) => (p === self() ? 100000 : 10000),
      appSpecificWeight: 10,
      topicScoreCap: 100000,
      IPColocationFactorWeight: 0,
      IPColocationFactorThreshold: 1000,
      behaviourPenaltyWeight: 0,
      behaviourPenaltyThreshold: 1000,
      behaviourPenaltyDecay: 0.999,
      decayInterval: 1000,
      decayToZero: 0.01,
      retainScore: 30 * 60 * 1000,
      topics: { [TOPIC[0]]: topicParams, [TOPIC.all]: topicParams }
    },
    scoreThresholds: {
      gossipThreshold: -100000,
      publishThreshold: -200000,
      graylistThreshold: -500000,
      acceptPXThreshold: 0,
      opportunisticGraftThreshold: 1
    }
  }
}

async function makeNode () {
  let id = ''
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub(gossipOptions(() => id))
    }
  })
  id = node.peerId.toString()
  node.services.pubsub.subscribe(TOPIC[0])
  node.services.pubsub.subscribe(TOPIC.all)
  const received = []
  node.services.pubsub.addEventListener('message', (e) => {
    received.push({ topic: e.detail.topic, data: dec.decode(e.detail.data) })
  })
  return { node, id, received, collect: null }
}

const b64 = (s) => Buffer.from(s).toString('base64')

function discoveryHeartbeat (id, n) {
  const sig = b64(`heartbeat-discovery-${n}-${Math.floor(Date.now() / 1000)}`)
  return `{"epoch_id":0,"submissions":null,"snapshotter_id":"${id}","signature":"${sig}"}`
}

function meshFormationHeartbeat (id, n) {
  const sig = b64(`heartbeat-submissions-${n}-${Math.floor(Date.now() / 1000)}`)
  return `{"epoch_id":0,"submissions":[{"request":{"projectId":"test:mesh-formation:local-collector"}}],"snapshotter_id":"${id}","signature":"${sig}"}`
}

// The submission JSON goes in verbatim, as Go's json.Marshal embeds the struct it marshals.
function envelope (epoch, json, id) {
  return `{"epoch_id":${epoch},"submissions":[${json}],"snapshotter_id":"${id}","signature":null}`
}

async function publish (n, topic, text) {
  try {
    await n.node.services.pubsub.publish(topic, enc.encode(text))
    return true
  } catch (e) {
    return String(e?.message ?? e)
  }
}

const ingress = multiaddr(cfg.ingress)
const ingressId = ingress.getPeerId()
const count = cfg.nodes ?? 1
const watchers = new Set(cfg.watchers ?? [])
const nodes = []
for (let i = 0; i < count; i++) nodes.push(await makeNode())

for (const n of nodes) await n.node.dial(ingress)
if (cfg.interconnect) {
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      await nodes[i].node.dial(nodes[j].node.getMultiaddrs()[0])
    }
  }
}

// Heartbeats, as the collectors send them.
let beat = 0
const beats = setInterval(() => {
  beat++
  for (const [i, n] of nodes.entries()) {
    if (watchers.has(i)) continue
    publish(n, TOPIC[0], discoveryHeartbeat(n.id, beat))
    publish(n, TOPIC.all, meshFormationHeartbeat(n.id, beat))
  }
}, cfg.heartbeatMs ?? 10000)

const inMesh = (n, t) => n.node.services.pubsub.getMeshPeers(TOPIC[t]).includes(ingressId)
const deadline = Date.now() + (cfg.meshWaitMs ?? 10000)
while (Date.now() < deadline && !nodes.every((n) => inMesh(n, 0) && inMesh(n, 'all'))) {
  await sleep(50)
}
const meshed = nodes.map((n) => inMesh(n, 0) && inMesh(n, 'all'))

const published = []
for (const s of cfg.submissions ?? []) {
  const n = nodes[s.node ?? 0]
  const topic = s.epoch === 0 ? TOPIC[0] : TOPIC.all
  const env = envelope(s.epoch, s.json, n.id)
  const ok = await publish(n, topic, env)
  let uuid = null
  if (s.collect) {
    if (!n.collect) {
      const stream = await n.node.dialProtocol(ingress, '/collect')
      const out = pushable()
      stream.sink(out).catch(() => {})
      n.collect = out
    }
    uuid = randomUUID()
    n.collect.push(enc.encode(uuid + s.json))
  }
  published.push({ node: s.node ?? 0, envelope: env, ok, uuid })
}
for (const r of cfg.raw ?? []) {
  const n = nodes[r.node ?? 0]
  published.push({ node: r.node ?? 0, envelope: r.data, ok: await publish(n, TOPIC[r.topic], r.data), uuid: null })
}

await sleep(cfg.settleMs ?? 1500)
// Staying in the mesh over many heartbeats shows the ingress is neither pruned nor scored out.
if (cfg.observeMs) await sleep(cfg.observeMs)
clearInterval(beats)

const report = {
  ingressMeshedAtStart: meshed,
  published,
  beats: beat,
  nodes: nodes.map((n) => ({
    peerId: n.id,
    mesh: {
      0: n.node.services.pubsub.getMeshPeers(TOPIC[0]).length,
      all: n.node.services.pubsub.getMeshPeers(TOPIC.all).length
    },
    ingressInMesh: inMesh(n, 0) && inMesh(n, 'all'),
    ingressScore: n.node.services.pubsub.score.score(ingressId),
    received: n.received
  }))
}
for (const n of nodes) n.collect?.end()
await sleep(100)
process.stdout.write(JSON.stringify(report) + '\n')
await Promise.all(nodes.map((n) => n.node.stop()))
process.exit(0)
