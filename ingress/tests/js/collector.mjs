// Independent /collect client, written the way deployed Go local collectors behave: one
// connection, a few long-lived streams, each message (36-byte UUID + JSON) sent with one write,
// back to back, no framing. Usage: node collector.mjs <multiaddr-with-/p2p/> <messages.json> <streams>
// where messages.json is a JSON array of message strings. Prints "sent N" when done.
import { readFileSync } from 'node:fs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'

const [addr, file, streamsArg] = process.argv.slice(2)
const messages = JSON.parse(readFileSync(file, 'utf8')).map((m) => new TextEncoder().encode(m))
const nStreams = Number(streamsArg ?? '2')

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()]
})

const streams = []
for (let i = 0; i < nStreams; i++) {
  streams.push(await node.dialProtocol(multiaddr(addr), '/collect', { signal: AbortSignal.timeout(20_000) }))
}

let sent = 0
await Promise.all(streams.map(async (stream, s) => {
  for (let i = s; i < messages.length; i += nStreams) {
    // One write per message, as the Go collectors do.
    if (!stream.send(messages[i])) {
      await stream.onDrain({ signal: AbortSignal.timeout(20_000) })
    }
    sent++
  }
}))
// Long-lived streams: keep them open a moment, then close cleanly.
await new Promise((resolve) => setTimeout(resolve, 500))
await Promise.all(streams.map((s) => s.close()))
await node.stop()
console.log(`sent ${sent}`)
