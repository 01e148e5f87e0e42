import t, { type Test } from 'tap'
import { once } from 'node:events'
import { Registry } from 'prom-client'
import { Sidecar } from '../../src/sidecar/index.js'
import { connect, readAll, sha256OfStream, writeRandom } from '../helpers/net.js'
import { withPort } from '../helpers/ports.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld } from '../helpers/world.js'

async function chain(t: Test, mode: 'echo' | 'sink' = 'echo') {
  const upstream = await countingUpstream(t, mode)
  return withPort(t, 'override port of db', async (overridePort) => {
    const world = await createWorld(t, {
      policy: {
        version: 1,
        settings: { portOverrides: true, autoConnect: true },
        resources: [{ name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${upstream.port}`, portOverride: overridePort }],
        roles: [{ name: 'etl', grants: ['db'] }],
        accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
      },
    })
    const token = await world.serviceToken('svc_etl')
    const running = await world.startGateway()
    const sidecar = new Sidecar({
      config: { ...world.config.sidecar, gateways: [{ host: '127.0.0.1', port: running.gateway.address()!.port }] },
      ca: world.caPem,
      token,
      logger: world.logger,
      registry: new Registry(),
    })
    t.teardown(() => sidecar.close())
    await sidecar.start()
    await until(
      () => {
        const reason = sidecar.ready()
        // Taken by another process: the step runs again on the next port.
        if (reason !== undefined && /already in use/.test(reason)) throw new Error(reason)
        return reason === undefined
      },
      20_000,
      'the sidecar to be ready',
    )
    return { upstream, world, running, sidecar, overridePort }
  })
}

t.test('64 MiB each way through client → sidecar → TLS → gateway → upstream arrive byte-exact', async (t) => {
  const { overridePort, running } = await chain(t)
  const client = await connect(t, overridePort)
  const received = sha256OfStream(client)
  const sent = await writeRandom(client, 64 * 1024 * 1024)
  client.end()
  const back = await received
  t.equal(back.bytes, sent.bytes)
  t.equal(back.sha256, sent.sha256, 'SHA-256 of what came back equals what was sent')
  await until(() => running.gateway.sessions.size === 0, 20_000, 'the gateway session to end')
})

t.test('half-close: the client ends its side and still receives everything the upstream sends after', async (t) => {
  const { overridePort, upstream, running } = await chain(t, 'sink')
  const client = await connect(t, overridePort)
  client.end('request then FIN')
  await upstream.waitAccepted(1)
  const [server] = [...upstream.open]
  await until(() => upstream.digests[0] !== undefined, 20_000, 'the upstream to see the FIN')
  const reply = readAll(client)
  server!.write('late answer, ')
  server!.end('after the client FIN')
  t.equal((await reply).toString(), 'late answer, after the client FIN')
  await until(() => running.gateway.sessions.size === 0, 20_000, 'the session to end')
  t.match(await running.gateway.metrics.sessionsClosed.get(), { values: [{ labels: { reason: 'done' }, value: 1 }] })
})

t.test('half-close the other way: the upstream ends first, the client keeps sending and the upstream receives it all', async (t) => {
  const { overridePort, upstream } = await chain(t, 'sink')
  const client = await connect(t, overridePort)
  client.write('hello')
  await upstream.waitAccepted(1)
  const [server] = [...upstream.open]
  server!.end('bye')
  const clientGotEnd = once(client, 'end')
  client.resume()
  await clientGotEnd
  client.end(' and more after your FIN')
  await until(() => upstream.digests[0] !== undefined, 20_000, 'the upstream to see the client FIN')
  const { createHash } = await import('node:crypto')
  t.equal(upstream.digests[0], createHash('sha256').update('hello and more after your FIN').digest('hex'))
})

t.test('no sockets leak: after 50 sessions the gateway and sidecar hold none', async (t) => {
  const { overridePort, running, sidecar, upstream } = await chain(t)
  for (let i = 0; i < 50; i++) {
    const client = await connect(t, overridePort)
    client.end(`ping ${i}`)
    t.equal((await readAll(client)).toString(), `ping ${i}`)
  }
  await until(() => running.gateway.sessions.size === 0 && upstream.open.size === 0, 20_000, 'every session to end')
  t.equal(running.gateway.openTunnels, 0, 'no tunnel socket left on the gateway')
  t.same(sidecar.status().map((r) => r.sessions), [0], 'no session left on the sidecar')
})
