import t, { type Test } from 'tap'
import * as http from 'node:http'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { silentLogger } from '../../src/observe/index.js'
import { ControlClient, startControlServer } from '../../src/sidecar/index.js'
import { LOOPBACK } from '../helpers/fake-gateway.js'
import { occupyPort, portOf, sidecarWorld, dial, roundTrip, type World } from '../fixtures/sidecar/harness.js'
import { idlePort } from '../helpers/ports.js'

async function withControl(t: Test, world: World) {
  const server = await startControlServer({ address: { host: LOOPBACK, port: 0 }, target: world.sidecar, registry: world.registry, logger: silentLogger() })
  t.teardown(() => server.close())
  const port = server.address()!.port
  return { port, client: new ControlClient({ host: LOOPBACK, port }) }
}

function request(port: number, method: string, path: string, options: { body?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    const req = http.request({ host: LOOPBACK, port, method, path, agent: false, headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

const VIEW = (port: number) => ({
  settings: { portOverrides: true, autoConnect: false },
  resources: [
    { name: 'pg', kind: 'datasource' as const, type: 'postgres', portOverride: port },
    { name: 'web', kind: 'website' as const, type: 'http', portOverride: null },
  ],
})

t.test('status, connect and disconnect through the control API', async (t) => {
  const pgPort = await idlePort()
  const world = await sidecarWorld(t, { view: VIEW(pgPort) })
  const { client } = await withControl(t, world)

  const before = await client.status()
  t.match(before, {
    ready: true,
    reason: null,
    account: { name: 'ci-runner' },
    tokenFingerprint: /^sha256:[0-9a-f]{16}$/,
    gateway: { up: true, gateway: world.fake.address },
    settings: { portOverrides: true, autoConnect: false },
    resources: [
      { name: 'pg', kind: 'datasource', type: 'postgres', localAddress: '', state: 'not connected', sessions: 0 },
      { name: 'web', kind: 'website', type: 'http', localAddress: '', state: 'not connected', sessions: 0 },
    ],
  })

  t.same(await client.connect('pg'), { resource: 'pg', localAddress: `127.0.0.1:${pgPort}` })
  const web = await client.connect('web')
  t.match(web.localAddress, /^127\.0\.0\.1:\d+$/)
  const socket = await dial(t, portOf(web.localAddress))
  t.equal((await roundTrip(socket, Buffer.from('GET /'))).toString(), 'GET /')
  t.match((await client.status()).resources, [{ name: 'pg', state: 'bound' }, { name: 'web', state: 'bound', localAddress: web.localAddress }])

  t.same(await client.disconnect('pg'), { resource: 'pg' })
  const notConnected = (await client.disconnect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(notConnected, 'ERR_NOT_CONNECTED'))
  const denied = (await client.connect('secret').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(denied, 'ERR_GRANT_DENIED'))
  t.equal(denied.detail?.status, 404)
})

t.test('errors are {code, message} with a 4xx status', async (t) => {
  const taken = await occupyPort(t)
  const world = await sidecarWorld(t, { view: VIEW(taken.port) })
  const { port } = await withControl(t, world)
  const json = { 'content-type': 'application/json' }

  const inUse = await request(port, 'POST', '/v1/connect', { body: '{"resource":"pg"}', headers: json })
  t.equal(inUse.status, 409)
  t.match(JSON.parse(inUse.body), { code: 'ERR_PORT_IN_USE', message: new RegExp(`"pg".*${taken.port}`) })

  const notJson = await request(port, 'POST', '/v1/connect', { body: 'resource=pg', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(notJson.status, 400)
  t.match(JSON.parse(notJson.body), { code: 'ERR_USAGE', message: /application\/json/ })

  const badBody = await request(port, 'POST', '/v1/connect', { body: '{"resource":', headers: json })
  t.equal(badBody.status, 400)
  t.match(JSON.parse(badBody.body), { code: 'ERR_USAGE' })

  const noResource = await request(port, 'POST', '/v1/disconnect', { body: '{}', headers: json })
  t.equal(noResource.status, 400)
  t.match(JSON.parse(noResource.body), { code: 'ERR_USAGE', message: /resource/ })

  const wrongMethod = await request(port, 'GET', '/v1/connect')
  t.equal(wrongMethod.status, 405)
  t.equal(wrongMethod.headers.allow, 'POST')

  const unknown = await request(port, 'GET', '/v1/nothing')
  t.equal(unknown.status, 404)
  t.match(JSON.parse(unknown.body), { code: 'ERR_NOT_FOUND' })
})

t.test('a request addressed to a non-loopback host is refused (DNS rebinding)', async (t) => {
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const { port } = await withControl(t, world)
  for (const path of ['/v1/status', '/metrics', '/readyz']) {
    const res = await request(port, 'GET', path, { headers: { host: 'attacker.example:7070' } })
    t.equal(res.status, 403, path)
    t.match(JSON.parse(res.body), { code: 'ERR_USAGE', message: /loopback/ })
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
    t.equal((await request(port, 'GET', '/v1/status', { headers: { host } })).status, 200, host)
  }
})

t.test('/healthz, /readyz and /metrics', async (t) => {
  const pgPort = await idlePort()
  const world = await sidecarWorld(t, { view: { ...VIEW(pgPort), settings: { portOverrides: true, autoConnect: true } } })
  const { port, client } = await withControl(t, world)
  t.equal((await request(port, 'GET', '/healthz')).status, 200)
  t.same(await client.readyz(), { ready: true })
  const metrics = await request(port, 'GET', '/metrics')
  t.equal(metrics.status, 200)
  for (const name of [
    'keyway_sidecar_sessions_active',
    'keyway_sidecar_sessions_total',
    'keyway_sidecar_bytes_total',
    'keyway_sidecar_resources_bound 2',
    'keyway_sidecar_gateway_up 1',
    'keyway_sidecar_sync_total{result="ok"} 1',
  ]) {
    t.ok(metrics.body.includes(name), name)
  }

  await world.fake.down()
  world.clock.advance(1_000)
  await world.sidecar.sync()
  const ready = await request(port, 'GET', '/readyz')
  t.equal(ready.status, 503)
  t.match(JSON.parse(ready.body), { status: 'not ready', reason: /^gateway unreachable: / })
  t.match(await client.readyz(), { ready: false, reason: /gateway unreachable/ })
  t.equal((await request(port, 'GET', '/healthz')).status, 200, 'alive while the gateway is down')
})

t.test('only loopback: a non-loopback control address is refused', async (t) => {
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  for (const host of ['0.0.0.0', '192.168.1.10', '::']) {
    const err = (await startControlServer({ address: { host, port: 0 }, target: world.sidecar, registry: world.registry, logger: silentLogger() }).catch(
      (e: unknown) => e,
    )) as KeywayError
    t.ok(isKeywayError(err, 'ERR_CONFIG_INVALID'), host)
    t.match(err.message, /sidecar\.control must be a loopback address/)
  }
})

t.test('a control port in use is ERR_PORT_IN_USE', async (t) => {
  const taken = await occupyPort(t)
  const world = await sidecarWorld(t, { view: VIEW(await idlePort()) })
  const err = (await startControlServer({ address: { host: LOOPBACK, port: taken.port }, target: world.sidecar, registry: world.registry, logger: silentLogger() }).catch(
    (e: unknown) => e,
  )) as KeywayError
  t.ok(isKeywayError(err, 'ERR_PORT_IN_USE'))
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${taken.port}`))
})

t.test('a control client with no sidecar behind: ERR_SIDECAR_UNREACHABLE', async (t) => {
  const port = await idlePort()
  const err = (await new ControlClient({ host: LOOPBACK, port }).status().catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_SIDECAR_UNREACHABLE'))
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`))
})
