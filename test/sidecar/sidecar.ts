import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { once } from 'node:events'
import { Registry } from 'prom-client'
import { ManualClock } from '../../src/clock.js'
import { loadConfig } from '../../src/config/index.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { silentLogger } from '../../src/observe/index.js'
import { Sidecar } from '../../src/sidecar/index.js'
import { LOOPBACK, startFakeGateway, type FakeView } from '../helpers/fake-gateway.js'
import { readAll } from '../helpers/net.js'
import { SSL_REQUEST, initial, parseErrorResponse, startup } from '../helpers/pgwire.js'
import { until } from '../helpers/until.js'
import {
  TOKEN,
  closedWith,
  dial,
  dialError,
  fakeToken,
  metricValue,
  occupyPort,
  portOf,
  readExactly,
  roundTrip,
  sidecarWorld,
  testPki,
} from '../fixtures/sidecar/harness.js'
import { idlePort } from '../helpers/ports.js'

function view(settings: FakeView['settings'], ...resources: [string, number | null][]): FakeView {
  return {
    settings,
    resources: resources.map(([name, portOverride]) => ({ name, kind: 'datasource', type: 'postgres', portOverride })),
  }
}

const AUTO = { portOverrides: true, autoConnect: true }
const MANUAL = { portOverrides: true, autoConnect: false }
const NO_OVERRIDES = { portOverrides: false, autoConnect: false }

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

t.test('auto-connect binds every granted resource at start; bytes echo exactly', async (t) => {
  const [p1, p2] = [await idlePort(), await idlePort()]
  const { sidecar, registry, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', p1], ['redis', p2]) })
  t.same(sidecar.status(), [
    { name: 'pg', kind: 'datasource', type: 'postgres', localAddress: `127.0.0.1:${p1}`, state: 'bound', sessions: 0 },
    { name: 'redis', kind: 'datasource', type: 'postgres', localAddress: `127.0.0.1:${p2}`, state: 'bound', sessions: 0 },
  ])
  t.equal(sidecar.ready(), undefined)

  const data = randomBytes(512 * 1024)
  const socket = await dial(t, p1)
  const echoed = await roundTrip(socket, data)
  t.equal(echoed.length, data.length)
  t.equal(sha(echoed), sha(data), 'byte-exact through sidecar and tunnel')
  await closedWith(socket)

  await until(async () => (await metricValue(registry, 'keyway_sidecar_sessions_active')) === 0, 20_000, 'the session to end')
  t.equal(await metricValue(registry, 'keyway_sidecar_sessions_total', { resource: 'pg', result: 'ok' }), 1)
  t.equal(await metricValue(registry, 'keyway_sidecar_bytes_total', { resource: 'pg', direction: 'client_to_gateway' }), data.length)
  t.equal(await metricValue(registry, 'keyway_sidecar_bytes_total', { resource: 'pg', direction: 'gateway_to_client' }), data.length)
  t.equal(await metricValue(registry, 'keyway_sidecar_resources_bound'), 2)
  t.equal(await metricValue(registry, 'keyway_sidecar_gateway_up'), 1)
  t.equal(await metricValue(registry, 'keyway_sidecar_sessions_active'), 0)
  t.equal(await metricValue(registry, 'keyway_sidecar_sync_total', { result: 'ok' }), 1)

  const auth = sink.events('sidecar_authenticated')[0]
  t.match(auth, { account_name: 'ci-runner', account: 'svc_test', token_fp: /^sha256:/ })
  t.same(
    sink.events('resource_bound').map((l) => l.resource),
    ['pg', 'redis'],
  )
  t.ok(sink.events('session_end').length === 1, 'debug line per session')
  t.notOk(sink.text().includes(TOKEN), 'the token never reaches the logs')
  t.match(sidecar.snapshot(), { account: { name: 'ci-runner' }, ready: true, reason: null, gateway: { up: true }, settings: AUTO })
})

t.test('bytes the gateway sends right after its reply reach the client first', async (t) => {
  const port = await idlePort()
  const greeting = Buffer.from('220 fake smtp ready\r\n')
  await sidecarWorld(t, { view: view(AUTO, ['mail', port]), greeting })
  const socket = await dial(t, port)
  t.ok((await readExactly(socket, greeting.length)).equals(greeting))
  const echoed = await roundTrip(socket, Buffer.from('EHLO x\r\n'))
  t.equal(echoed.toString(), 'EHLO x\r\n')
})

// KEYWAY_REPEAT=N runs it N times, each in a fresh world: the soak of
// docs/dev/node-versions.md (an empty answer here once meant lost data).
for (let run = 1, runs = Math.max(1, Number(process.env.KEYWAY_REPEAT ?? 1) || 1); run <= runs; run++) {
  t.test(`half-close is carried: the client ends, the answer still arrives${runs > 1 ? ` (run ${run} of ${runs})` : ''}`, async (t) => {
    // The port is the one the sidecar bound (no override), never one picked
    // beforehand: a picked port taken by another process meanwhile left the
    // resource unbound and this test talking to that process, which ended
    // the connection at once (the empty answer seen under load).
    const { sidecar } = await sidecarWorld(t, { view: view(AUTO, ['pg', null]) })
    const [pg] = sidecar.status()
    t.match(pg, { name: 'pg', state: 'bound' })
    const socket = await dial(t, portOf(pg!.localAddress))
    socket.write('first ')
    socket.end('last')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    await once(socket, 'end')
    t.equal(Buffer.concat(chunks).toString(), 'first last')
  })
}

t.test('auto-connect off: nothing is bound until connect(); disconnect() unbinds', async (t) => {
  const port = await idlePort()
  const { sidecar, fake } = await sidecarWorld(t, { view: view(MANUAL, ['pg', port], ['redis', null]) })
  t.same(
    sidecar.status().map((r) => [r.name, r.state, r.localAddress]),
    [
      ['pg', 'not connected', ''],
      ['redis', 'not connected', ''],
    ],
  )
  t.equal(await dialError(port), 'ECONNREFUSED')
  t.equal(sidecar.ready(), undefined, 'ready: nothing needs binding')

  t.same(await sidecar.connect('pg'), { resource: 'pg', localAddress: `127.0.0.1:${port}` })
  t.same(await sidecar.connect('pg'), { resource: 'pg', localAddress: `127.0.0.1:${port}` }, 'connect is idempotent')
  const socket = await dial(t, port)
  t.equal((await roundTrip(socket, Buffer.from('ping'))).toString(), 'ping')

  // Port overrides on, but no override port for this one: an ephemeral port.
  const redis = await sidecar.connect('redis')
  t.not(portOf(redis.localAddress), 0)

  const denied = (await sidecar.connect('mysql').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(denied, 'ERR_GRANT_DENIED'))
  t.match(denied.message, /"mysql"/)

  // A live session on a disconnected resource ends.
  const live = await dial(t, port)
  live.write('x')
  await readExactly(live, 1)
  const liveClosed = closedWith(live)
  t.same(await sidecar.disconnect('pg'), { resource: 'pg' })
  await liveClosed
  t.equal(await dialError(port), 'ECONNREFUSED')
  t.match(sidecar.status()[0], { name: 'pg', state: 'not connected', localAddress: '' })
  const again = (await sidecar.disconnect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(again, 'ERR_NOT_CONNECTED'))

  // Connected resources stay bound across syncs.
  fake.setView(view(MANUAL, ['pg', port], ['redis', null], ['extra', null]))
  await sidecar.sync()
  t.same(
    sidecar.status().map((r) => [r.name, r.state]),
    [
      ['extra', 'not connected'],
      ['pg', 'not connected'],
      ['redis', 'bound'],
    ],
  )
})

t.test('port overrides off: connect() binds an ephemeral port and reports it', async (t) => {
  const { sidecar } = await sidecarWorld(t, { view: view({ portOverrides: false, autoConnect: true }, ['pg', 15999]) })
  t.equal(sidecar.status()[0]!.state, 'not connected', 'auto-connect needs port overrides')
  const { localAddress } = await sidecar.connect('pg')
  t.match(localAddress, /^127\.0\.0\.1:\d+$/)
  t.not(portOf(localAddress), 15999)
  t.equal(sidecar.status()[0]!.localAddress, localAddress)
  const socket = await dial(t, portOf(localAddress))
  t.equal((await roundTrip(socket, Buffer.from('hello'))).toString(), 'hello')
})

t.test('a grant that vanishes keeps its port for grantRemovedGrace, telling each new PostgreSQL client why, then it is released', async (t) => {
  const { sidecar, fake, clock, sink } = await sidecarWorld(t, { view: view(NO_OVERRIDES, ['pg', null]) })
  const p1 = portOf((await sidecar.connect('pg')).localAddress)
  const socket = await dial(t, p1)
  socket.write('a')
  await readExactly(socket, 1)
  const closed = closedWith(socket)

  fake.setView(view(NO_OVERRIDES, ['redis', null]))
  t.equal(await sidecar.sync(), 'ok')
  t.match(sidecar.status().find((r) => r.name === 'pg'), { state: 'grant removed', localAddress: `127.0.0.1:${p1}`, sessions: 1, reason: 'grant_removed', fix: /grant was removed/ })
  t.equal(sidecar.ready(), undefined, 'nothing that should be bound is missing')
  t.match(sink.events('resource_grant_removed')[0], { resource: 'pg', address: `127.0.0.1:${p1}`, grace_ms: 60_000 })

  // A new client is answered with the gateway's refusal, not Connection refused.
  const late = await dial(t, p1)
  late.write(initial(SSL_REQUEST))
  t.equal((await readExactly(late, 1)).toString(), 'N')
  const answer = readAll(late)
  late.resume()
  late.write(startup())
  t.match(parseErrorResponse(await answer), { S: 'FATAL', C: '28000', M: /^keyway: ERR_GRANT_DENIED: / })

  clock.advance(60_000)
  t.match(await sink.waitFor((l) => l.event === 'resource_unbound'), { resource: 'pg', reason: 'grant_removed' })
  await closed
  t.equal(await dialError(p1), 'ECONNREFUSED')
  t.match(sidecar.status().find((r) => r.name === 'pg'), { state: 'not connected', localAddress: '', reason: 'no_grant' }, 'then it is a resource no longer granted')
})

t.test('a grant that comes back within grantRemovedGrace keeps its port as if it never went', async (t) => {
  const { sidecar, fake, clock, sink } = await sidecarWorld(t, { view: view(NO_OVERRIDES, ['pg', null]) })
  const port = portOf((await sidecar.connect('pg')).localAddress)
  fake.setView(view(NO_OVERRIDES))
  await sidecar.sync()
  t.equal(sidecar.status()[0]!.state, 'grant removed')
  fake.setView(view(NO_OVERRIDES, ['pg', null]))
  await sidecar.sync()
  t.match(sidecar.status()[0], { state: 'bound', localAddress: `127.0.0.1:${port}` })
  t.equal(sidecar.status()[0]!.reason, undefined)
  clock.advance(60_000)
  await sidecar.sync()
  t.equal(sidecar.status()[0]!.state, 'bound', 'the grace timer was cancelled')
  t.equal(sink.events('resource_unbound').length, 0)
})

t.test('grantRemovedGrace 0: a grant that vanishes is unbound at once and its live session ends; a new one is bound', async (t) => {
  const [p1, p2] = [await idlePort(), await idlePort()]
  const { sidecar, fake, registry, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', p1]), config: { grantRemovedGrace: 0 } })
  const socket = await dial(t, p1)
  socket.write('a')
  await readExactly(socket, 1)
  t.equal(sidecar.status()[0]!.sessions, 1)
  t.equal(await metricValue(registry, 'keyway_sidecar_sessions_active'), 1)
  const closed = closedWith(socket)

  fake.setView(view(AUTO, ['redis', p2]))
  t.equal(await sidecar.sync(), 'ok')
  await closed
  t.equal(await dialError(p1), 'ECONNREFUSED')
  t.same(
    sidecar.status().map((r) => [r.name, r.state, r.localAddress, r.reason]),
    [
      ['pg', 'not connected', '', 'no_grant'],
      ['redis', 'bound', `127.0.0.1:${p2}`, undefined],
    ],
    'the vanished grant stays in status with the reason',
  )
  t.match(sidecar.status()[0]!.fix, /keyway explain ACCOUNT pg/)
  t.equal(sidecar.ready(), undefined, 'a resource without a grant is nothing to wait for')
  t.match(sink.events('resource_unbound')[0], { resource: 'pg', reason: 'grant_removed' })
  t.match(sink.events('grants_changed').at(-1), { added: ['redis'], removed: ['pg'] })
  const s2 = await dial(t, p2)
  t.equal((await roundTrip(s2, Buffer.from('r'))).toString(), 'r')
})

t.test('the sync loop polls every syncInterval with If-None-Match', async (t) => {
  const port = await idlePort()
  const { sidecar, fake, clock, registry } = await sidecarWorld(t, { view: view(MANUAL, ['pg', null]) })
  const polls = fake.counts.resourcePolls
  clock.advance(999)
  t.equal(fake.counts.resourcePolls, polls, 'not before the interval')
  clock.advance(1)
  t.equal(await sidecar.sync(), 'not_modified', 'the timer started a poll; sync() joins it')
  t.equal(fake.counts.resourcePolls, polls + 1)
  t.equal(fake.counts.notModified, 1)
  t.equal(await metricValue(registry, 'keyway_sidecar_sync_total', { result: 'not_modified' }), 1)

  // Settings change: auto-connect on binds, off unbinds (live sessions continue).
  fake.setView(view(AUTO, ['pg', port]))
  clock.advance(1_000)
  t.equal(await sidecar.sync(), 'ok')
  t.equal(sidecar.status()[0]!.state, 'bound')
  const socket = await dial(t, port)
  socket.write('1')
  await readExactly(socket, 1)
  fake.setView(view(MANUAL, ['pg', port]))
  clock.advance(1_000)
  await sidecar.sync()
  t.equal(sidecar.status()[0]!.state, 'not connected')
  t.equal(await dialError(port), 'ECONNREFUSED')
  socket.write('2')
  t.equal((await readExactly(socket, 1)).toString(), '2', 'the live session survives')

  // An override port that changes moves the listener.
  const moved = await idlePort()
  fake.setView(view(AUTO, ['pg', moved]))
  clock.advance(1_000)
  await sidecar.sync()
  t.equal(sidecar.status()[0]!.localAddress, `127.0.0.1:${moved}`)
})

t.test('a port in use: ERR_PORT_IN_USE naming resource and port; the rest stay bound; retried', async (t) => {
  const taken = await occupyPort(t)
  const free = await idlePort()
  const { sidecar, sink, clock } = await sidecarWorld(t, { view: view(AUTO, ['pg', taken.port], ['redis', free]) })
  const [pg, redis] = sidecar.status()
  t.match(pg, { name: 'pg', state: 'error: ERR_PORT_IN_USE', localAddress: '', error: new RegExp(`"pg".*port ${taken.port}`) })
  t.match(redis, { name: 'redis', state: 'bound' })
  t.match(sidecar.ready(), new RegExp(`^resource pg not bound: .*port ${taken.port} is already in use`))
  t.match(sink.events('bind_failed'), [{ resource: 'pg', port: taken.port, code: 'ERR_PORT_IN_USE', level: 'warn' }])

  const err = (await sidecar.connect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_PORT_IN_USE'))
  t.match(err.message, new RegExp(`"pg" on 127\\.0\\.0\\.1:${taken.port}: port ${taken.port} is already in use`))
  t.same(err.detail, { resource: 'pg', port: taken.port })

  clock.advance(1_000)
  await sidecar.sync()
  t.equal(sink.events('bind_failed').filter((l) => l.level === 'warn').length, 1, 'warned once, not on every retry')
  await taken.release()
  clock.advance(1_000)
  await sidecar.sync()
  t.match(sidecar.status()[0], { name: 'pg', state: 'bound', localAddress: `127.0.0.1:${taken.port}` })
  t.equal(sidecar.ready(), undefined)
})

t.test('the gateway refuses: a PostgreSQL client reads the code, anything else is closed at once, and the code is logged', async (t) => {
  const port = await idlePort()
  const { sidecar, fake, sink, registry } = await sidecarWorld(t, { view: view(AUTO, ['pg', port]), config: { grantRemovedGrace: 0 } })
  fake.refuse.set('pg', { code: 'ERR_ACCOUNT_SUSPENDED', message: 'the account is suspended' })
  const client = await dial(t, port)
  const answer = readAll(client)
  client.write(startup())
  t.match(parseErrorResponse(await answer), { S: 'FATAL', C: '28000', M: 'keyway: ERR_ACCOUNT_SUSPENDED: the account is suspended' })
  const socket = await dial(t, port)
  socket.write('SELECT 1')
  t.same(await closedWith(socket), { bytes: 0 })
  const line = await sink.waitFor((l) => l.event === 'tunnel_failed')
  t.match(line, { level: 'warn', resource: 'pg', code: 'ERR_ACCOUNT_SUSPENDED', result: 'refused' })
  t.equal(await metricValue(registry, 'keyway_sidecar_sessions_total', { resource: 'pg', result: 'refused' }), 2)
  t.equal(sidecar.status()[0]!.state, 'bound', 'the listener stays')

  // A refusal for want of a grant triggers a sync at once.
  fake.refuse.delete('pg')
  const polls = fake.counts.resourcePolls
  fake.setView(view(AUTO))
  const gone = await dial(t, port)
  gone.write('SELECT 1')
  await closedWith(gone)
  await sink.waitFor((l) => l.event === 'resource_unbound')
  t.ok(fake.counts.resourcePolls > polls)
  t.match(sidecar.status(), [{ name: 'pg', state: 'not connected', reason: 'no_grant' }])
})

t.test('gateway down: local connections fail fast, the sidecar keeps running, readiness says why; back up: works', async (t) => {
  const port = await idlePort()
  const { sidecar, fake, clock, registry, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', port]) })
  const live = await dial(t, port)
  live.write('x')
  await readExactly(live, 1)
  const liveClosed = closedWith(live)

  await fake.down()
  await liveClosed
  const socket = await dial(t, port)
  socket.write('SELECT 1')
  t.same(await closedWith(socket), { bytes: 0 }, 'closed, not left hanging')
  t.match(await sink.waitFor((l) => l.event === 'tunnel_failed'), { code: 'ERR_GATEWAY_UNAVAILABLE', result: 'gateway_unavailable' })
  t.equal(await metricValue(registry, 'keyway_sidecar_sessions_total', { resource: 'pg', result: 'gateway_unavailable' }), 1)
  t.equal(await metricValue(registry, 'keyway_sidecar_gateway_up'), 0)
  t.match(sidecar.ready(), /^gateway unreachable: /)

  // During the backoff new connections fail without a dial.
  const fast = await dial(t, port)
  const fastAnswer = readAll(fast)
  fast.write(startup())
  t.match(parseErrorResponse(await fastAnswer), { C: '08006', M: /^keyway: ERR_GATEWAY_UNAVAILABLE: / }, 'a PostgreSQL client reads why')

  clock.advance(5_000)
  t.equal(await sidecar.sync(), 'error')
  t.match(sidecar.ready(), /^gateway unreachable: no gateway reachable: 127\.0\.0\.1:\d+: ECONNREFUSED/)
  t.match(sidecar.snapshot().sync.error, { code: 'ERR_GATEWAY_UNAVAILABLE' })
  t.match(sidecar.status()[0], { state: 'bound' }, 'bindings survive an outage')

  await fake.up()
  clock.advance(5_000)
  t.equal(await sidecar.sync(), 'not_modified')
  t.equal(sidecar.ready(), undefined)
  t.equal(await metricValue(registry, 'keyway_sidecar_gateway_up'), 1)
  const after = await dial(t, port)
  t.equal((await roundTrip(after, Buffer.from('back'))).toString(), 'back')
})

t.test('start with no gateway: nothing bound, not ready, keeps retrying; the first answer binds', async (t) => {
  const port = await idlePort()
  const { sidecar, fake, clock } = await sidecarWorld(t, { view: view(AUTO, ['pg', port]), start: false })
  await fake.down()
  await sidecar.start()
  t.same(sidecar.status(), [])
  t.match(sidecar.ready(), /^gateway unreachable/)
  const err = (await sidecar.connect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_GATEWAY_UNAVAILABLE'))
  await fake.up()
  // The loop reschedules itself after each failure; let it find the gateway.
  for (let i = 0; i < 20 && sidecar.ready() !== undefined; i++) {
    clock.advance(5_000)
    await sidecar.sync()
  }
  t.equal(sidecar.ready(), undefined)
  t.equal(sidecar.status()[0]!.state, 'bound')
})

t.test('failover: the first gateway is dead, the second serves', async (t) => {
  const dead = await idlePort()
  const port = await idlePort()
  const { sidecar, fake } = await sidecarWorld(t, {
    view: view(AUTO, ['pg', port]),
    gateways: (f) => [
      { host: LOOPBACK, port: dead },
      { host: LOOPBACK, port: f.port },
    ],
  })
  t.equal(sidecar.ready(), undefined)
  t.equal(sidecar.snapshot().gateway.gateway, fake.address)
  const socket = await dial(t, port)
  t.equal((await roundTrip(socket, Buffer.from('via second'))).toString(), 'via second')
})

t.test('close() stops listening, lets live sessions drain, then closes them after drainGrace', async (t) => {
  const port = await idlePort()
  const { sidecar, clock, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', port], ['redis', null]), config: { drainGrace: 10_000 } })
  await sidecar.connect('redis')
  const finishing = await dial(t, port)
  const stuck = await dial(t, port)
  for (const s of [finishing, stuck]) {
    s.write('.')
    await readExactly(s, 1)
  }
  let closed = false
  const closing = sidecar.close().then(() => {
    closed = true
  })
  await sink.waitFor((l) => l.event === 'sidecar_drain')
  t.equal(await dialError(port), 'ECONNREFUSED', 'no new connections')
  t.match(sidecar.ready(), /shutting down/)
  finishing.write('still works')
  t.equal((await readExactly(finishing, 11)).toString(), 'still works')
  const stuckClosed = closedWith(stuck)
  t.equal((await roundTrip(finishing, Buffer.from('!'))).toString(), '!')
  t.notOk(closed, 'waits for the other session')
  clock.advance(10_000)
  await stuckClosed
  await closing
  t.ok(closed)
  t.equal(sidecar.close(), sidecar.close(), 'idempotent')
  await sidecar.close()
  const err = (await sidecar.connect('pg').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_SHUTTING_DOWN'))
})

t.test('close() with no sessions returns at once', async (t) => {
  const port = await idlePort()
  const { sidecar } = await sidecarWorld(t, { view: view(AUTO, ['pg', port]) })
  await sidecar.close()
  t.equal(await dialError(port), 'ECONNREFUSED')
})

t.test('only loopback: a non-loopback bind address is refused', async (t) => {
  const pki = await testPki()
  const config = loadConfig({ env: {} }).sidecar
  const make = (bindHost: string) =>
    new Sidecar({ config, ca: pki.caCertPem, token: TOKEN, logger: silentLogger(), registry: new Registry(), clock: new ManualClock(), bindHost })
  const err = t.throws(() => make('0.0.0.0')) as unknown as KeywayError
  t.ok(isKeywayError(err, 'ERR_CONFIG_INVALID'))
  t.match(err.message, /loopback.*"0\.0\.0\.0"/)
  t.ok(isKeywayError(t.throws(() => make('10.0.0.5')), 'ERR_CONFIG_INVALID'))
  t.doesNotThrow(() => make('127.0.0.1'))
  const noToken = t.throws(
    () => new Sidecar({ config, ca: pki.caCertPem, token: '', logger: silentLogger(), registry: new Registry(), clock: new ManualClock() }),
  )
  t.ok(isKeywayError(noToken, 'ERR_TOKEN_MISSING'))
})

t.test('port overrides toggled off leaves connected resources on an ephemeral port', async (t) => {
  const port = await idlePort()
  const { sidecar, fake } = await sidecarWorld(t, { view: view(MANUAL, ['pg', port]) })
  await sidecar.connect('pg')
  fake.setView(view(NO_OVERRIDES, ['pg', port]))
  await sidecar.sync()
  const row = sidecar.status()[0]!
  t.equal(row.state, 'bound')
  t.not(portOf(row.localAddress), port)
})

t.test('disconnect under auto-connect: status says why and how back, not ready; auto-connect off and on rebinds', async (t) => {
  const { sidecar, fake, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', null], ['redis', null]) })
  t.equal(sidecar.ready(), undefined)
  await sidecar.disconnect('pg')
  t.match(sidecar.status()[0], { name: 'pg', state: 'not connected', localAddress: '', reason: 'disconnected', fix: 'disconnected by hand: run "keyway connect pg"' })
  t.notOk('reason' in sidecar.status()[1]!, 'a bound row has no reason')
  t.match(sidecar.ready(), /^resource pg not bound: disconnected by hand while auto-connect is on; run "keyway connect pg"$/, 'readiness follows the README')
  t.match(sidecar.snapshot(), { ready: false, reason: /keyway connect pg/ })

  // A sync does not undo a disconnect.
  await sidecar.sync()
  t.equal(sidecar.status()[0]!.state, 'not connected')

  // Auto-connect off: nothing is wanted, so ready; the row says auto-connect is off.
  fake.setView(view(MANUAL, ['pg', null], ['redis', null]))
  await sidecar.sync()
  t.equal(sidecar.ready(), undefined)
  t.match(sidecar.status()[1], { name: 'redis', reason: 'not_requested', fix: /auto-connect is off: run "keyway connect redis"/ })

  // ... and on again: the hand-disconnected resource is bound again.
  fake.setView(view(AUTO, ['pg', null], ['redis', null]))
  await sidecar.sync()
  t.same(
    sidecar.status().map((r) => [r.name, r.state]),
    [
      ['pg', 'bound'],
      ['redis', 'bound'],
    ],
  )
  t.equal(sidecar.ready(), undefined)
  t.match(sink.events('disconnects_cleared')[0], { resources: ['pg'] })

  // connect() is the other way back.
  await sidecar.disconnect('redis')
  t.match(sidecar.ready(), /redis/)
  await sidecar.connect('redis')
  t.equal(sidecar.ready(), undefined)
})

t.test('a port in use says so in the row, with the fix', async (t) => {
  const taken = await occupyPort(t)
  const { sidecar } = await sidecarWorld(t, { view: view(AUTO, ['pg', taken.port]) })
  t.match(sidecar.status()[0], { state: 'error: ERR_PORT_IN_USE', reason: 'port_in_use', fix: new RegExp(`free port ${taken.port}`) })
})

t.test('sessions are logged at info when they start and end, with resource, bytes each way and duration', async (t) => {
  const { sidecar, sink } = await sidecarWorld(t, { view: view(AUTO, ['pg', null]) })
  const port = portOf(sidecar.status()[0]!.localAddress)
  const socket = await dial(t, port)
  t.equal((await roundTrip(socket, Buffer.from('12345'))).toString(), '12345')
  t.match(await sink.waitFor((l) => l.event === 'session_start'), { level: 'info', resource: 'pg', session: /^ses_/, gateway: /^127\.0\.0\.1:/ })
  socket.end()
  const end = await sink.waitFor((l) => l.event === 'session_end')
  t.match(end, { level: 'info', resource: 'pg', bytes_in: 5, bytes_out: 5, reason: String, duration_ms: Number })
})

t.test('the token deadline: exp from the token, the rotation grace from the gateway; status, gauge, warning', async (t) => {
  const exp = Date.UTC(2027, 0, 1) / 1000
  const token = fakeToken({ sub: 'svc_test', exp })
  const { sidecar, fake, clock, registry, sink } = await sidecarWorld(t, {
    view: view(AUTO),
    deps: { token, tokenOrigin: { origin: '--token-file', file: '/run/keyway/token' } },
    start: false,
  })
  fake.acceptToken(token)
  await sidecar.start()
  t.match(sidecar.snapshot().token, { expiresAt: '2027-01-01T00:00:00.000Z', rotatedOut: false, origin: '--token-file', file: '/run/keyway/token', refused: null })
  t.equal(await metricValue(registry, 'keyway_sidecar_token_expiry_seconds'), exp)
  t.match(sink.events('token_deadline')[0], { level: 'info', expires_at: '2027-01-01T00:00:00.000Z', rotated_out: false })
  t.same(sink.events('token_expiring'), [], 'a year ahead: no warning')

  // Rotated out with a 2 minute grace: the gateway says so, the sidecar warns at once.
  const graceEnd = clock.now() + 120_000
  fake.setView({ ...view(AUTO), token: { expiresAt: new Date(graceEnd).toISOString(), rotatedOut: true } })
  await sidecar.sync()
  t.match(sidecar.snapshot().token, { expiresAt: new Date(graceEnd).toISOString(), rotatedOut: true })
  t.equal(await metricValue(registry, 'keyway_sidecar_token_expiry_seconds'), graceEnd / 1000)
  const warned = sink.events('token_expiring')
  t.equal(warned.length, 1)
  t.match(warned[0], { level: 'warn', rotated_out: true, seconds_left: 120, msg: /rotated out.*write the new token to \/run\/keyway\/token/ })
  await sidecar.sync()
  t.equal(sink.events('token_expiring').length, 1, 'said once')
  t.notOk(sink.text().includes(token), 'the token never reaches the logs')
})

t.test('an open-ended token: the gauge is +Inf; a token near its exp is warned about an hour ahead', async (t) => {
  // A sync interval longer than the jump, so the loop's poll does not time out inside clock.advance().
  const { sidecar, registry, sink, clock, fake } = await sidecarWorld(t, { view: view(AUTO), config: { syncInterval: 36_000_000 } })
  t.equal(await metricValue(registry, 'keyway_sidecar_token_expiry_seconds'), Infinity)
  t.match(sidecar.snapshot().token, { expiresAt: null, rotatedOut: false })
  const soon = clock.now() + 2 * 3_600_000
  fake.setView({ ...view(AUTO), token: { expiresAt: new Date(soon).toISOString(), rotatedOut: false } })
  await sidecar.sync()
  t.same(sink.events('token_expiring'), [])
  clock.advance(3_600_000)
  await sidecar.sync()
  t.match(sink.events('token_expiring'), [{ level: 'warn', rotated_out: false, seconds_left: 3600 }])
})

t.test('a token every gateway refuses: reported, re-read, and given up on only after the grace', async (t) => {
  let reloads = 0
  const fatal: KeywayError[] = []
  const { sidecar, fake, clock, sink } = await sidecarWorld(t, {
    view: view(AUTO, ['pg', null]),
    config: { tokenRefusalGrace: 60_000 },
    deps: { reloadToken: () => reloads++, onFatal: (err) => fatal.push(err), tokenOrigin: { origin: 'KEYWAY_TOKEN_FILE', file: '/run/keyway/token' } },
  })
  fake.acceptToken('someone-else', 'ERR_TOKEN_REVOKED')
  clock.advance(1_000)
  t.equal(await sidecar.sync(), 'error')
  t.match(sink.events('token_refused'), [{ level: 'error', code: 'ERR_TOKEN_REVOKED', grace_ms: 60_000, origin: 'KEYWAY_TOKEN_FILE' }])
  t.match(sidecar.ready(), /^the gateway refuses the token: ERR_TOKEN_REVOKED: .*write a valid token to \/run\/keyway\/token.*exits in 60 s$/)
  t.match(sidecar.snapshot().token.refused, { code: 'ERR_TOKEN_REVOKED', exitAt: new Date(clock.now() + 60_000).toISOString() })
  t.equal(reloads, 1, 'the token source is re-read')

  for (let i = 0; i < 59; i++) {
    clock.advance(1_000)
    await sidecar.sync()
  }
  t.same(fatal, [], 'not before the grace (59 s)')
  t.equal(sink.events('token_refused').length, 1, 'reported once')
  t.equal(sidecar.status()[0]!.state, 'bound', 'bindings stay meanwhile')
  clock.advance(1_000)
  await sidecar.sync()
  t.equal(fatal.length, 1)
  t.ok(isKeywayError(fatal[0], 'ERR_TOKEN_REVOKED'))
  t.match(fatal[0]!.message, /refused the service token for 60 s/)
  t.match(sink.events('token_refused_exit'), [{ code: 'ERR_TOKEN_REVOKED' }])
  await sidecar.sync()
  t.equal(fatal.length, 1, 'once')
})

t.test('a new token from the source during the refusal ends it; transient failures never count', async (t) => {
  const fresh = fakeToken({ sub: 'svc_test', jti: 'new' })
  const fatal: KeywayError[] = []
  let next: string | undefined
  const holder: { sidecar?: Sidecar } = {}
  const world = await sidecarWorld(t, {
    view: view(AUTO, ['pg', null]),
    config: { tokenRefusalGrace: 5_000 },
    deps: {
      reloadToken: () => {
        if (next) holder.sidecar!.setToken(next)
      },
      onFatal: (err) => fatal.push(err),
    },
  })
  const { sidecar, fake, clock, sink } = world
  holder.sidecar = sidecar
  fake.acceptToken(fresh, 'ERR_TOKEN_EXPIRED')
  t.equal(await sidecar.sync(), 'error')
  t.match(sidecar.ready(), /ERR_TOKEN_EXPIRED/)
  next = fresh
  clock.advance(1_000)
  await sidecar.sync()
  t.match(sink.events('token_replaced'), [{ token_fp: /^sha256:/ }])
  t.equal(sidecar.snapshot().token.refused, null)
  clock.advance(1_000)
  t.equal(await sidecar.sync(), 'ok')
  t.equal(sidecar.ready(), undefined)

  // The gateway down for longer than the grace is not a refusal.
  await fake.down()
  for (let i = 0; i < 10; i++) {
    clock.advance(1_000)
    await sidecar.sync()
  }
  t.same(fatal, [])
  t.equal(sidecar.snapshot().token.refused, null)
})

t.test('a gateway that refuses the token does not end failover: the next one is asked', async (t) => {
  const pki = await testPki()
  const stale = await startFakeGateway(t, { pki, token: 'another-token', view: view(AUTO) })
  const { sidecar, fake } = await sidecarWorld(t, {
    view: view(AUTO, ['pg', null]),
    gateways: (f) => [
      { host: LOOPBACK, port: stale.port },
      { host: LOOPBACK, port: f.port },
    ],
  })
  t.equal(sidecar.ready(), undefined)
  t.equal(sidecar.snapshot().gateway.gateway, fake.address)
  const socket = await dial(t, portOf(sidecar.status()[0]!.localAddress))
  t.equal((await roundTrip(socket, Buffer.from('second'))).toString(), 'second')
})

t.test('a token that cannot be parsed is refused at construction and by setToken', async (t) => {
  const pki = await testPki()
  const config = loadConfig({ env: {} }).sidecar
  const make = (token: string) => new Sidecar({ config, ca: pki.caCertPem, token, logger: silentLogger(), registry: new Registry(), clock: new ManualClock() })
  for (const bad of ['not-a-token', 'a.b', 'a.b.c.d', 'eyJ.e30.x y']) {
    const err = t.throws(() => make(bad)) as unknown as KeywayError
    t.ok(isKeywayError(err, 'ERR_TOKEN_MALFORMED'), bad)
    t.notOk(err.message.includes(bad), 'the message never quotes the token')
  }
  const sidecar = make(TOKEN)
  t.ok(isKeywayError(t.throws(() => sidecar.setToken('garbage')), 'ERR_TOKEN_MALFORMED'))
  t.equal(sidecar.snapshot().tokenFingerprint, sidecar.snapshot().token.fingerprint, 'the old token stays')
  await sidecar.close()
})
