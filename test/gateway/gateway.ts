import t, { type Test } from 'tap'
import { once } from 'node:events'
import { request, type RequestOptions } from 'node:https'
import type { ConnectionOptions } from 'node:tls'
import { ApiErrorSchema, encodeHello, ReadyResponseSchema, ResourcesResponseSchema, WhoamiResponseSchema } from '../../src/protocol/index.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { fullBacklogServer, readAll } from '../helpers/net.js'
import { refusedPort as idleRefusedPort } from '../helpers/ports.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { connectTls, createWorld, ManualClock, openTunnel, readReply, type World } from '../helpers/world.js'

function policyFor(port: number, extra: Partial<PolicyDoc> = {}): PolicyDoc {
  return {
    version: 1,
    settings: { portOverrides: true, autoConnect: true },
    resources: [
      { name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${port}`, portOverride: 15432 },
      { name: 'cache', kind: 'datasource', type: 'redis', address: `127.0.0.1:${port}`, portOverride: 16379 },
    ],
    roles: [{ name: 'etl', grants: ['db'] }],
    accounts: [
      { id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] },
      { id: 'svc_bi', type: 'service', name: 'bi', roles: [] },
    ],
    ...extra,
  }
}

async function setup(t: Test, options: { clock?: ManualClock; gateway?: Record<string, unknown> } = {}) {
  const upstream = await countingUpstream(t)
  const world = await createWorld(t, { policy: policyFor(upstream.port), ...options })
  const etl = await world.serviceToken('svc_etl')
  const bi = await world.serviceToken('svc_bi')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  return { upstream, world, etl, bi, running, port }
}

async function echoes(socket: import('node:tls').TLSSocket, text: string): Promise<string> {
  socket.resume()
  socket.end(text)
  return (await readAll(socket)).toString()
}

t.test('an account with a role grant reaches the resource; bytes sent with the hello arrive first and exactly', async (t) => {
  const { upstream, world, etl, port } = await setup(t)
  const tunnel = await openTunnel(t, port, world.caPem, etl, 'db', Buffer.from('early-'))
  t.match(tunnel.reply, { ok: true })
  t.equal(await echoes(tunnel.socket, 'late'), 'early-late')
  t.equal(upstream.accepted, 1)
  const end = await world.logs.waitFor((l) => l.event === 'session_end')
  t.match(end, { account: 'svc_etl', resource: 'db', bytes_in: 10, bytes_out: 10, reason: 'done' })
  t.match(world.logs.events('session_start')[0], { account: 'svc_etl', account_name: 'etl', resource: 'db', token_fp: /^sha256:[0-9a-f]{16}$/ })
})

t.test('a refused tunnel never dials the upstream', async (t) => {
  const { upstream, world, etl, bi, port } = await setup(t)
  const noGrant = await openTunnel(t, port, world.caPem, bi, 'db')
  t.match(noGrant.reply, { ok: false, code: 'ERR_GRANT_DENIED' })
  const otherResource = await openTunnel(t, port, world.caPem, etl, 'cache')
  t.match(otherResource.reply, { ok: false, code: 'ERR_GRANT_DENIED' }, 'a grant for db does not reach cache')
  const unknown = await openTunnel(t, port, world.caPem, etl, 'nope')
  t.same(unknown.reply, { ok: false, code: 'ERR_GRANT_DENIED', message: 'access to "nope" denied: ERR_GRANT_DENIED' }, 'an unknown resource is answered as one without a grant')
  t.same(otherResource.reply, { ok: false, code: 'ERR_GRANT_DENIED', message: 'access to "cache" denied: ERR_GRANT_DENIED' }, 'word for word')
  const forged = await openTunnel(t, port, world.caPem, etl.slice(0, -4) + 'AAAA', 'db')
  t.match(forged.reply, { ok: false, code: /^ERR_TOKEN_(SIGNATURE|MALFORMED)$/ })
  t.equal(upstream.accepted, 0)
  const denied = world.logs.events('tunnel_denied')
  t.equal(denied.length, 4)
  t.match(denied.find((l) => l.resource === 'nope'), { code: 'ERR_RESOURCE_UNKNOWN', msg: /ERR_RESOURCE_UNKNOWN/ }, "the gateway's log keeps the difference")
  t.notOk(world.logs.text().includes(etl) || world.logs.text().includes(bi), 'no token in the logs')
})

t.test('garbage and oversized handshakes get a code and no dial', async (t) => {
  const { upstream, world, port } = await setup(t)
  const garbage = await connectTls(t, port, world.caPem)
  garbage.write('GET / HTTP/1.1\r\n\r\n')
  t.match((await readReply(garbage)).reply, { ok: false, code: 'ERR_HANDSHAKE_MALFORMED' })
  const big = await connectTls(t, port, world.caPem)
  big.write(encodeHello({ token: 'x'.repeat(9000), resource: 'db' }))
  t.match((await readReply(big)).reply, { ok: false, code: 'ERR_HANDSHAKE_TOO_LARGE' })
  t.equal(upstream.accepted, 0)
})

t.test('a handshake that never finishes is closed at the deadline (injected clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  const { upstream, world, port, running } = await setup(t, { clock })
  const slow = await connectTls(t, port, world.caPem)
  slow.write(encodeHello({ token: 'abc', resource: 'db' }).subarray(0, 5))
  const replied = readReply(slow)
  await until(() => running.gateway.openTunnels === 1, 20_000, 'the gateway to accept the tunnel')
  clock.advance(4_999)
  t.equal(world.logs.events('tunnel_denied').length, 0, 'not refused before the deadline')
  clock.advance(2)
  t.match((await replied).reply, { ok: false, code: 'ERR_HANDSHAKE_TIMEOUT' })
  t.equal(upstream.accepted, 0)
})

t.test('an expired token and a revoked token are refused with their codes', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, port, running } = await setup(t, { clock })
  const shortLived = await world.serviceToken('svc_etl', { expiresAt: clock.now() + 60_000 })
  await running.reload()
  t.match((await openTunnel(t, port, world.caPem, shortLived, 'db')).reply, { ok: true })
  clock.advance(61_000 + 30_000)
  t.match((await openTunnel(t, port, world.caPem, shortLived, 'db')).reply, { ok: false, code: 'ERR_TOKEN_EXPIRED' })
  const revoked = await world.serviceToken('svc_etl')
  await running.reload()
  world.editPolicy((doc) => {
    const etl = doc.accounts!.find((a) => a.id === 'svc_etl')!
    etl.tokens = etl.tokens!.filter((r) => r.id !== etl.tokens!.at(-1)!.id)
  })
  await running.reload()
  t.match((await openTunnel(t, port, world.caPem, revoked, 'db')).reply, { ok: false, code: 'ERR_TOKEN_REVOKED' })
})

t.test('an unreachable upstream is reported with a code: refused, and never accepting', async (t) => {
  const upstream = await countingUpstream(t)
  const refusedPort = await idleRefusedPort()
  const backlog = await fullBacklogServer(t)
  const world = await createWorld(t, {
    policy: {
      ...policyFor(upstream.port),
      resources: [
        { name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${refusedPort}`, portOverride: 15432 },
        { name: 'cache', kind: 'datasource', type: 'redis', address: `127.0.0.1:${backlog.port}`, portOverride: 16379 },
      ],
      roles: [{ name: 'etl', grants: ['db', 'cache'] }],
    },
    gateway: { connectTimeout: '300ms' },
  })
  const token = await world.serviceToken('svc_etl')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  t.match((await openTunnel(t, port, world.caPem, token, 'db')).reply, { ok: false, code: 'ERR_UPSTREAM_UNREACHABLE' })
  t.match((await openTunnel(t, port, world.caPem, token, 'cache')).reply, { ok: false, code: 'ERR_UPSTREAM_TIMEOUT' })
  t.equal(running.gateway.sessions.size, 0)
  const errors = await metricValues(running.registry, 'keyway_gateway_upstream_connect_errors_total')
  t.same(
    errors.map((v) => [v.labels.resource, v.labels.code, v.value]).sort(),
    [
      ['cache', 'ERR_UPSTREAM_TIMEOUT', 1],
      ['db', 'ERR_UPSTREAM_UNREACHABLE', 1],
    ],
    'connect errors per resource and code',
  )
})

t.test('metrics: session duration and upstream connect latency per resource; per account, the soonest expiry of a live session\'s token', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, port, running } = await setup(t, { clock })
  const token = await world.serviceToken('svc_etl', { expiresAt: clock.now() + 3_600_000 })
  await running.reload()
  t.same(await metricValues(running.registry, 'keyway_gateway_session_token_expiry_seconds'), [], 'absent without a live session')
  const tunnel = await openTunnel(t, port, world.caPem, token, 'db')
  t.match(tunnel.reply, { ok: true })
  const [expiry] = await metricValues(running.registry, 'keyway_gateway_session_token_expiry_seconds')
  t.match(expiry, { labels: { account: 'etl' } })
  t.ok(expiry !== undefined && expiry.value > 3_598 && expiry.value <= 3_600, `expires in ${expiry?.value} s`)
  clock.advance(10_000)
  t.equal(await echoes(tunnel.socket, 'x'), 'x')
  await world.logs.waitFor((l) => l.event === 'session_end')
  const duration = await metricValues(running.registry, 'keyway_gateway_session_duration_seconds')
  t.match(duration.find((v) => v.metricName === 'keyway_gateway_session_duration_seconds_count' && v.labels.resource === 'db'), { value: 1 })
  t.match(duration.find((v) => v.metricName === 'keyway_gateway_session_duration_seconds_sum' && v.labels.resource === 'db'), { value: 10 }, 'the injected clock\'s 10 s')
  const connect = await metricValues(running.registry, 'keyway_gateway_upstream_connect_duration_seconds')
  t.match(connect.find((v) => v.metricName === 'keyway_gateway_upstream_connect_duration_seconds_count' && v.labels.resource === 'db'), { value: 1 })
  t.same(await metricValues(running.registry, 'keyway_gateway_session_token_expiry_seconds'), [], 'absent again once the session ended')
})

async function metricValues(registry: import('prom-client').Registry, name: string) {
  return (await registry.getSingleMetric(name)!.get()).values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>
}

t.test('revoking a grant ends that session and leaves the other account running', async (t) => {
  const { world, etl, bi, port, running } = await setup(t)
  world.editPolicy((doc) => {
    doc.accounts!.find((a) => a.id === 'svc_bi')!.grants = [{ resource: 'cache' }]
  })
  await running.reload()
  const a = await openTunnel(t, port, world.caPem, etl, 'db')
  const b = await openTunnel(t, port, world.caPem, bi, 'cache')
  t.match([a.reply, b.reply], [{ ok: true }, { ok: true }])
  t.equal(running.gateway.sessions.size, 2)
  const closed = once(a.socket, 'end')
  a.socket.resume()
  world.editPolicy((doc) => {
    doc.roles = [{ name: 'etl', grants: [] }]
  })
  await running.reload()
  await closed
  const revoked = await world.logs.waitFor((l) => l.event === 'session_revoked')
  t.match(revoked, { account: 'svc_etl', resource: 'db', code: 'ERR_GRANT_DENIED' })
  t.match(await world.logs.waitFor((l) => l.event === 'session_end' && l.account === 'svc_etl'), { reason: 'revoked:ERR_GRANT_DENIED' })
  t.equal(running.gateway.sessions.size, 1, 'the other session runs on')
  t.equal(await echoes(b.socket, 'still here'), 'still here')
})

t.test('a temporary grant ends its session at its expiry (injected clock)', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, bi, port, running } = await setup(t, { clock })
  world.editPolicy((doc) => {
    doc.accounts!.find((a) => a.id === 'svc_bi')!.grants = [{ resource: 'db', expires: new Date(clock.now() + 60_000).toISOString() }]
  })
  await running.reload()
  const tunnel = await openTunnel(t, port, world.caPem, bi, 'db')
  t.match(tunnel.reply, { ok: true })
  const closed = once(tunnel.socket, 'end')
  tunnel.socket.resume()
  clock.advance(59_000)
  t.equal(running.gateway.sessions.size, 1, 'still valid before the expiry')
  clock.advance(1_001)
  await closed
  t.match(await world.logs.waitFor((l) => l.event === 'session_revoked'), { code: 'ERR_GRANT_EXPIRED' })
  t.match((await openTunnel(t, port, world.caPem, bi, 'db')).reply, { ok: false, code: 'ERR_GRANT_EXPIRED' })
})

t.test('a broken policy on reload keeps the last good one', async (t) => {
  const { world, etl, port, running } = await setup(t)
  const generation = running.store.current().generation
  world.editPolicy((doc) => {
    doc.accounts!.push({ id: 'svc_x', type: 'service', name: 'x', roles: ['no-such-role'] })
  })
  await running.reload()
  t.equal(running.store.current().generation, generation)
  t.ok(running.store.lastError)
  const failed = await world.logs.waitFor((l) => l.event === 'policy_reload_failed')
  t.match(failed, { code: 'ERR_POLICY_INVALID', problems: [/policy\.yaml:\d+:\d+: .*no-such-role/] })
  t.match((await openTunnel(t, port, world.caPem, etl, 'db')).reply, { ok: true })
  const metrics = await running.registry.metrics()
  t.match(metrics, /keyway_policy_reloads_total\{result="failed"\} 1/)
  t.match(metrics, /keyway_policy_last_reload_ok 0/)
})

function api(port: number, caPem: string, path: string, headers: Record<string, string> = {}, body?: unknown) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: unknown }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', ca: caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'], headers, agent: false } as RequestOptions,
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined })
        })
      },
    )
    req.on('error', reject)
    req.end(body ? JSON.stringify(body) : undefined)
  })
}

t.test('the API answers who am I and my resources, with ETags, on the same port', async (t) => {
  const { world, etl, port } = await setup(t)
  const auth = { authorization: `Bearer ${etl}` }
  const who = await api(port, world.caPem, '/v1/whoami', auth)
  t.match(who, { status: 200, body: { account: { id: 'svc_etl', name: 'etl', type: 'service', roles: ['etl'] }, token: { kind: 'service' } } })
  const res = await api(port, world.caPem, '/v1/resources', auth)
  t.match(res, {
    status: 200,
    body: { settings: { portOverrides: true, autoConnect: true }, resources: [{ name: 'db', kind: 'datasource', type: 'postgres', portOverride: 15432 }] },
  })
  t.notOk(JSON.stringify(res.body).includes('127.0.0.1'), 'no upstream address leaves the gateway')
  t.same(WhoamiResponseSchema.parse(who.body), who.body, 'whoami is exactly its protocol/ schema')
  t.same(ResourcesResponseSchema.parse(res.body), res.body, 'resources is exactly its protocol/ schema')
  const again = await api(port, world.caPem, '/v1/resources', { ...auth, 'if-none-match': String(res.headers.etag) })
  t.equal(again.status, 304)
  t.match(await api(port, world.caPem, '/v1/whoami'), { status: 401, body: { code: 'ERR_TOKEN_MISSING' } })
  t.match(await api(port, world.caPem, '/v1/whoami', { authorization: 'Bearer x.y.z' }), { status: 401, body: { code: /^ERR_TOKEN_/ } })
  const nope = await api(port, world.caPem, '/v1/nope', auth)
  t.match(nope, { status: 404 })
  t.ok(ApiErrorSchema.safeParse(nope.body).success, 'errors are ApiError')
})

t.test('/v1/resources tells the token its deadline: none, its exp, or the end of its rotation grace (a new ETag)', async (t) => {
  const { world, etl, port, running } = await setup(t)
  const auth = { authorization: `Bearer ${etl}` }
  const open = await api(port, world.caPem, '/v1/resources', auth)
  t.match(open.body, { token: { expiresAt: null, rotatedOut: false } })

  const exp = world.clock.now() + 86_400_000
  const expiring = await world.serviceToken('svc_etl', { expiresAt: exp })
  await running.reload()
  t.match((await api(port, world.caPem, '/v1/resources', { authorization: `Bearer ${expiring}` })).body, {
    token: { expiresAt: new Date(Math.floor(exp / 1000) * 1000).toISOString(), rotatedOut: false },
  })

  // tokens rotate --grace 2m: the old token's record gets an end.
  const graceEnd = new Date(Math.floor(world.clock.now() / 1000) * 1000 + 120_000).toISOString()
  world.editPolicy((doc) => {
    const record = doc.accounts!.find((a) => a.id === 'svc_etl')!.tokens![0]!
    record.expires = graceEnd
  })
  await running.reload()
  const rotated = await api(port, world.caPem, '/v1/resources', { ...auth, 'if-none-match': String(open.headers.etag) })
  t.equal(rotated.status, 200, 'the deadline is part of the ETag: a sidecar polling with If-None-Match learns it')
  t.match(rotated.body, { token: { expiresAt: graceEnd, rotatedOut: true } })
})

t.test('close() drains: a live session finishes, then the gateway stops', async (t) => {
  const { world, etl, port, running } = await setup(t)
  const tunnel = await openTunnel(t, port, world.caPem, etl, 'db')
  // Connected before the drain, hello sent during it: refused.
  const late = await connectTls(t, port, world.caPem)
  const closing = running.close()
  await world.logs.waitFor((l) => l.event === 'gateway_draining')
  late.write(encodeHello({ token: etl, resource: 'db' }))
  t.match((await readReply(late)).reply, { ok: false, code: 'ERR_SHUTTING_DOWN' })
  t.equal(await echoes(tunnel.socket, 'finish me'), 'finish me')
  await closing
  t.match(await world.logs.waitFor((l) => l.event === 'gateway_closed'), { forced: 0 })
})

t.test('refused API calls are audited with the code, the token fingerprint and account, and the client, never the token', async (t) => {
  const { world, etl, port } = await setup(t)
  const forged = etl.slice(0, -4) + 'AAAA'
  t.match(await api(port, world.caPem, '/v1/whoami', { authorization: `Bearer ${forged}` }), { status: 401 })
  await api(port, world.caPem, '/v1/nope')
  const { issueToken, newTokenId, tokenFingerprint } = await import('../../src/auth/index.js')
  const unlisted = await issueToken(world.signingKey, { issuer: 'keyway-test', audience: 'keyway-test', subject: 'svc_etl', tokenId: newTokenId(), kind: 'service', now: world.clock.now() })
  t.match(await api(port, world.caPem, '/v1/resources', { authorization: `Bearer ${unlisted}` }), { status: 401, body: { code: 'ERR_TOKEN_REVOKED' } })
  const denied = world.logs.events('api_denied')
  t.match(denied, [
    { level: 'warn', code: /^ERR_TOKEN_/, token_fp: tokenFingerprint(forged), client: /^127\.0\.0\.1:\d+$/, path: '/v1/whoami' },
    { code: 'ERR_NOT_FOUND', path: '/v1/nope' },
    { code: 'ERR_TOKEN_REVOKED', account: 'svc_etl', token_fp: tokenFingerprint(unlisted) },
  ])
  t.notOk(world.logs.text().includes(forged) || world.logs.text().includes(unlisted), 'no token in the logs')
})

t.test('PROXY v2 from a configured balancer: the real client is logged; without the header, or late, the connection is refused', async (t) => {
  const clock = new ManualClock(Date.now())
  const { world, bi, port } = await setup(t, { clock, gateway: { proxyProtocolFrom: ['127.0.0.1/32'] } })
  const { connect: tcpConnect } = await import('node:net')
  const { connect: tlsConnectOver } = await import('node:tls')
  const { proxyV2 } = await import('../helpers/proxy.js')
  const raw = tcpConnect({ host: '127.0.0.1', port })
  t.teardown(() => raw.destroy())
  await once(raw, 'connect')
  raw.write(proxyV2({ host: '203.0.113.9', port: 51000 }))
  const tls = tlsConnectOver({ socket: raw, ca: world.caPem, servername: 'localhost', ALPNProtocols: ['keyway/1'] })
  await once(tls, 'secureConnect')
  tls.write(encodeHello({ token: bi, resource: 'db' }))
  t.match((await readReply(tls)).reply, { ok: false, code: 'ERR_GRANT_DENIED' })
  t.match(world.logs.events('tunnel_denied'), [{ client: '203.0.113.9:51000', account: 'svc_bi' }], 'the audit names the real client')

  // A listed address that speaks TLS straight away: the header is required.
  await t.rejects(connectTls(t, port, world.caPem), 'no TLS without the header')
  t.match(await world.logs.waitFor((l) => l.event === 'proxy_header_refused'), { code: 'ERR_PROXY_HEADER', client: /^127\.0\.0\.1:/ })

  // A listed address that sends nothing is closed at handshakeTimeout (injected clock).
  const silent = tcpConnect({ host: '127.0.0.1', port })
  t.teardown(() => silent.destroy())
  await once(silent, 'connect')
  const closed = once(silent, 'close')
  await until(() => world.logs.events('proxy_header_refused').length === 1 && clock.pending > 0, 20_000, 'the header deadline to be armed')
  clock.advance(5_000)
  await closed
  t.match(world.logs.events('proxy_header_refused')[1], { msg: /no complete PROXY header within 5000 ms/ })
})

t.test('PROXY v2 from an unlisted address is a handshake error; its plain TLS works', async (t) => {
  const { world, bi, port } = await setup(t, { gateway: { proxyProtocolFrom: ['127.0.0.1'] } })
  const { connect: tcpConnect } = await import('node:net')
  const { connect: tlsConnectOver } = await import('node:tls')
  const { proxyV2 } = await import('../helpers/proxy.js')
  const raw = tcpConnect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
  t.teardown(() => raw.destroy())
  await once(raw, 'connect')
  raw.write(proxyV2({ host: '203.0.113.9', port: 51000 }))
  const forged = tlsConnectOver({ socket: raw, ca: world.caPem, servername: 'localhost', ALPNProtocols: ['keyway/1'] })
  const [err] = (await once(forged, 'error').catch((e: unknown) => [e])) as [Error]
  t.ok(err instanceof Error, 'the handshake fails')
  t.equal(world.logs.events('tunnel_denied').length, 0, 'nothing reached the tunnel')
  const direct = tlsConnectOver({ host: '127.0.0.1', port, localAddress: '127.0.0.2', ca: world.caPem, servername: 'localhost', ALPNProtocols: ['keyway/1'] } as ConnectionOptions)
  t.teardown(() => direct.destroy())
  await once(direct, 'secureConnect')
  direct.write(encodeHello({ token: bi, resource: 'db' }))
  t.match((await readReply(direct)).reply, { ok: false, code: 'ERR_GRANT_DENIED' })
  t.match(world.logs.events('tunnel_denied'), [{ client: /^127\.0\.0\.2:\d+$/ }])
})

t.test('GET /v1/ready: a granted resource is probed through the gateway (cached); an ungranted or unknown one is 404 ERR_GRANT_DENIED', async (t) => {
  const clock = new ManualClock(Date.now())
  const { upstream, world, etl, bi, running, port } = await setup(t, { clock })
  const auth = { authorization: `Bearer ${etl}` }
  const ready = await api(port, world.caPem, '/v1/ready?resource=db', auth)
  t.match(ready, { status: 200, body: { resource: 'db', ready: true, checkedAt: new Date(clock.now()).toISOString() } })
  t.same(ReadyResponseSchema.parse(ready.body), ready.body, 'the answer is exactly its protocol/ schema')
  t.equal(upstream.accepted, 1, 'a TCP connect at the gateway')
  await api(port, world.caPem, '/v1/ready?resource=db', auth)
  t.equal(upstream.accepted, 1, 'the second ask is answered from the cache')
  clock.advance(3_000)
  await api(port, world.caPem, '/v1/ready?resource=db', auth)
  t.equal(upstream.accepted, 2, 'past the cache TTL it is probed again')
  t.match(await api(port, world.caPem, '/v1/ready?resource=cache', auth), { status: 404, body: { code: 'ERR_GRANT_DENIED' } }, 'not granted to etl')
  t.match(await api(port, world.caPem, '/v1/ready?resource=nope', auth), { status: 404, body: { code: 'ERR_GRANT_DENIED' } }, 'an unknown name answers as an ungranted one')
  t.match(await api(port, world.caPem, '/v1/ready?resource=db', { authorization: `Bearer ${bi}` }), { status: 404, body: { code: 'ERR_GRANT_DENIED' } })
  t.match(await api(port, world.caPem, '/v1/ready?resource=db'), { status: 401, body: { code: 'ERR_TOKEN_MISSING' } })
  t.match(await api(port, world.caPem, '/v1/ready', auth), { status: 400, body: { code: 'ERR_USAGE' } })
  t.equal(upstream.accepted, 2, 'refused asks never dial')
  const gone = await idleRefusedPort()
  world.editPolicy((doc) => {
    doc.resources!.find((r) => r.name === 'db')!.address = `127.0.0.1:${gone}`
  })
  await running.reload()
  const down = await api(port, world.caPem, '/v1/ready?resource=db', auth)
  t.match(down, { status: 200, body: { resource: 'db', ready: false, code: 'ERR_UPSTREAM_UNREACHABLE', message: 'resource "db" is unreachable' } })
  t.match(await running.registry.metrics(), /keyway_gateway_readiness_probes_total\{resource="db",result="ERR_UPSTREAM_UNREACHABLE"\} 1/)
})
