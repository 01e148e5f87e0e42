import t, { type Test } from 'tap'
import * as tls from 'node:tls'
import { ManualClock } from '../../src/clock.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { encodeHello } from '../../src/protocol/index.js'
import { GatewayDialer } from '../../src/sidecar/gateway-dial.js'
import { MuxPool } from '../../src/sidecar/mux-pool.js'
import { V1OnlyGateways, type Tunnel } from '../../src/sidecar/tunnel-v1.js'
import { MuxStream } from '../../src/mux/index.js'
import { startFakeGateway, LOOPBACK } from '../helpers/fake-gateway.js'
import { roundTrip } from '../helpers/mux.js'
import { countingUpstream } from '../helpers/upstream.js'
import { createWorld } from '../helpers/world.js'
import { TOKEN, sinkLogger, testPki } from '../fixtures/sidecar/harness.js'

function policyFor(upstreamPort: number): PolicyDoc {
  return {
    version: 1,
    settings: { portOverrides: true, autoConnect: true },
    resources: [{ name: 'db', kind: 'datasource', type: 'postgres', address: `${LOOPBACK}:${upstreamPort}`, portOverride: 15432 }],
    roles: [{ name: 'etl', grants: ['db'] }],
    accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
  }
}

function pool(t: Test, ca: string) {
  const clock = new ManualClock()
  const { logger, sink } = sinkLogger()
  const dialer = new GatewayDialer({ ca, servername: 'localhost', connectTls: tls.connect, clock, sessions: undefined })
  const v1Only = new V1OnlyGateways(clock)
  const muxPool = new MuxPool({ dialer, v1Only, clock, logger })
  t.teardown(() => muxPool.close())
  return { muxPool, v1Only, sink }
}

function own(t: Test, tunnel: Tunnel): Tunnel {
  t.teardown(() => {
    tunnel.socket.destroy()
  })
  return tunnel
}

t.test('concurrent tunnels to a keyway/2 gateway share one connection; close() ends it and the pool dials anew', async (t) => {
  const upstream = await countingUpstream(t, 'echo')
  const world = await createWorld(t, { policy: policyFor(upstream.port) })
  const token = await world.serviceToken('svc_etl')
  const running = await world.startGateway()
  const gw = { host: LOOPBACK, port: running.gateway.address()!.port }
  const { muxPool, v1Only } = pool(t, world.caPem)
  const hello = encodeHello({ resource: 'db', token })

  const tunnels = await Promise.all([1, 2, 3].map(async () => own(t, await muxPool.open(gw, 'db', hello, 5_000))))
  t.equal(muxPool.size, 1, 'one connection')
  for (const [i, tunnel] of tunnels.entries()) {
    t.ok(tunnel.socket instanceof MuxStream, 'a stream')
    t.equal(tunnel.rest.length, 0)
    tunnel.socket.resume()
    t.equal((await roundTrip(tunnel.socket, Buffer.from(`bytes ${i}`))).toString(), `bytes ${i}`)
  }
  t.notOk(v1Only.has(`${LOOPBACK}:${gw.port}`))

  muxPool.close()
  t.equal(muxPool.size, 0)
  const again = own(t, await muxPool.open(gw, 'db', hello, 5_000))
  again.socket.resume()
  t.equal((await roundTrip(again.socket, Buffer.from('again'))).toString(), 'again')
  t.equal(muxPool.size, 1, 'a new connection after close()')
})

t.test('a keyway/1-only gateway: the caller gets a TLS tunnel and the gateway is remembered as keyway/1', async (t) => {
  const pki = await testPki()
  const fake = await startFakeGateway(t, {
    pki,
    token: TOKEN,
    view: { settings: { portOverrides: false, autoConnect: false }, resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: null }] },
  })
  const { muxPool, v1Only, sink } = pool(t, pki.caCertPem)
  const tunnel = own(t, await muxPool.open({ host: LOOPBACK, port: fake.port }, 'pg', encodeHello({ resource: 'pg', token: TOKEN }), 5_000))
  t.equal((tunnel.socket as tls.TLSSocket).alpnProtocol, 'keyway/1')
  t.equal(muxPool.size, 0, 'no multiplexed connection')
  t.ok(v1Only.has(fake.address))
  await new Promise((resolve) => setImmediate(resolve))
  t.match(sink.events('gateway_no_multiplex'), [{ gateway: fake.address }])
})
