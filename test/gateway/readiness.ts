import t from 'tap'
import { Registry } from 'prom-client'
import pino from 'pino'
import { ManualClock } from '../../src/clock.js'
import { dialTcp } from '../../src/forward/index.js'
import { createGatewayMetrics } from '../../src/gateway/index.js'
import { UpstreamReadiness, NOT_READY_TTL_MS, READY_TTL_MS } from '../../src/gateway/readiness.js'
import { SaltedPasswordCache } from '../../src/pgwire/index.js'
import type { Resource, ResourceCredential } from '../../src/policy/index.js'
import { SecretResolver } from '../../src/secrets/index.js'
import { listen, type Teardown } from '../helpers/net.js'
import { refusedPort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'

function resource(name: string, port: number, type = 'tcp', credential?: ResourceCredential): Resource {
  return { name, kind: 'datasource', type, address: `127.0.0.1:${port}`, host: '127.0.0.1', port, portOverride: undefined, credential } as unknown as Resource
}

function setup(t: Teardown, env: NodeJS.ProcessEnv = {}) {
  const clock = new ManualClock(Date.now())
  const registry = new Registry()
  const metrics = createGatewayMetrics(registry)
  const readiness = new UpstreamReadiness({
    clock,
    dial: (host, port, o) => dialTcp(host, port, o),
    logger: pino({ level: 'silent' }),
    metrics,
    settings: { connectTimeout: 5_000, handshakeTimeout: 5_000 },
    credentials: new SecretResolver({ clock, env }),
    saltedPasswords: new SaltedPasswordCache(),
  })
  t.teardown(() => readiness.clear())
  const probes = async (name: string): Promise<string> =>
    (await registry.getSingleMetricAsString('keyway_gateway_readiness_probes_total')).split('\n').filter((l) => l.includes(`resource="${name}"`)).join('\n')
  return { clock, readiness, probes }
}

t.test('a TCP resource: ready once it accepts; answers are cached per resource on the injected clock', async (t) => {
  const { clock, readiness } = setup(t)
  const up = await countingUpstream(t)
  const r = resource('files', up.port)
  const [a, b] = await Promise.all([readiness.check(r), readiness.check(r)])
  t.match(a, { ready: true })
  t.equal(a, b, 'concurrent asks share one probe')
  t.equal(up.accepted, 1)
  clock.advance(READY_TTL_MS - 1)
  t.match(await readiness.check(r), { ready: true })
  t.equal(up.accepted, 1, 'within the ready TTL the answer is reused: no new connection')
  clock.advance(1)
  t.match(await readiness.check(r), { ready: true })
  t.equal(up.accepted, 2, 'after it, probed again')
  t.match(await readiness.check(resource('files', up.port, 'mysql')), { ready: true })
  t.equal(up.accepted, 3, 'a changed resource definition is probed afresh')
  readiness.clear()
  await readiness.check(r)
  t.equal(up.accepted, 4, 'clear() (a policy reload) forgets every answer')
})

t.test('an upstream that refuses: not ready with ERR_UPSTREAM_UNREACHABLE and no address; a failure is reused only briefly', async (t) => {
  const { clock, readiness, probes } = setup(t)
  const port = await refusedPort()
  const r = resource('gone', port)
  const first = await readiness.check(r)
  t.match(first, { ready: false, code: 'ERR_UPSTREAM_UNREACHABLE', message: 'resource "gone" is unreachable' })
  t.notMatch(first.message, String(port), 'the upstream address is not told')
  await readiness.check(r)
  t.match(await probes('gone'), /result="ERR_UPSTREAM_UNREACHABLE"\} 1$/, 'the second ask was answered from the cache')
  clock.advance(NOT_READY_TTL_MS)
  await readiness.check(r)
  t.match(await probes('gone'), /result="ERR_UPSTREAM_UNREACHABLE"\} 2$/, 'after the short not-ready TTL it is probed again')
})

t.test('an upstream that accepts and never answers the login: not ready after handshakeTimeout on the injected clock', async (t) => {
  const { clock, readiness } = setup(t, { SILENT_PASSWORD: 'x' })
  let accepted = 0
  const { port } = await listen(t, (s) => {
    accepted++
    s.on('error', () => {})
  })
  const pending = readiness.check(resource('silent', port, 'redis', { username: undefined, secret: { env: 'SILENT_PASSWORD' }, database: undefined, upstreamTls: 'disable', upstreamCa: undefined }))
  await until(() => accepted === 1 && clock.pending > 0, 20_000, 'the probe to wait on the login')
  clock.advance(5_000)
  t.match(await pending, { ready: false, code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /did not complete the login within 5000 ms/ })
})

t.test('redis with credentials: AUTH and PING; a wrong secret is not ready until it is fixed', async (t) => {
  const redis = await startRedis(t, { users: [{ name: 'app', password: 'right-secret' }] })
  t.teardown(() => redis.stop())
  const env: NodeJS.ProcessEnv = { CACHE_PASSWORD: 'wrong-secret' }
  const { clock, readiness } = setup(t, env)
  const r = resource('cache', redis.port, 'redis', { username: 'app', secret: { env: 'CACHE_PASSWORD' }, database: undefined, upstreamTls: 'disable', upstreamCa: undefined })
  t.match(await readiness.check(r), { ready: false, code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /refused the login as "app": WRONGPASS/ })
  env.CACHE_PASSWORD = 'right-secret'
  clock.advance(NOT_READY_TTL_MS - 1)
  t.match(await readiness.check(r), { ready: false }, 'the failure is reused for its TTL')
  // A refused login forgot the secret read: the fix shows as soon as the failure's TTL is over (not the secret's 2 s).
  clock.advance(1)
  t.match(await readiness.check(r), { ready: true })
  const missing = resource('cache2', redis.port, 'redis', { username: 'app', secret: { env: 'NOT_SET' }, database: undefined, upstreamTls: 'disable', upstreamCa: undefined })
  const m = await readiness.check(missing)
  t.match(m, { ready: false, code: 'ERR_CREDENTIAL_UNAVAILABLE', message: 'the gateway has no usable credential for resource "cache2"' })
})
