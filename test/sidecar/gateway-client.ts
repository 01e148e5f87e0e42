import t, { type Test } from 'tap'
import { once } from 'node:events'
import type * as net from 'node:net'
import * as tls from 'node:tls'
import { randomBytes } from 'node:crypto'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import type { ResourcesResponse, WhoamiResponse } from '../../src/protocol/index.js'
import { GatewayClient, type ConnectTls, type GatewayClientOptions, type Tunnel } from '../../src/sidecar/index.js'
import { startFakeGateway, LOOPBACK, type FakeView } from '../helpers/fake-gateway.js'
import { TOKEN, roundTrip, readExactly, testPki, sinkLogger } from '../fixtures/sidecar/harness.js'
import { idlePort } from '../helpers/ports.js'

const VIEW: FakeView = {
  settings: { portOverrides: true, autoConnect: true },
  resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: 15432 }],
}

/** The fake gateway speaks keyway/1 only: its tunnels are TLS sockets. */
function tlsOf(tunnel: Tunnel): tls.TLSSocket {
  return tunnel.socket as tls.TLSSocket
}

/** A connectTls that records the port of every dial. */
function recordingDial(): { connectTls: ConnectTls; ports: number[] } {
  const ports: number[] = []
  return {
    ports,
    connectTls: (options) => {
      ports.push(Number(options.port))
      return tls.connect(options)
    },
  }
}

async function setup(t: Test, extra: Partial<GatewayClientOptions> = {}, greeting?: Buffer) {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW, ...(greeting ? { greeting } : {}) })
  const clock = new ManualClock()
  const dial = recordingDial()
  const client = new GatewayClient({
    gateways: [{ host: LOOPBACK, port: fake.port }],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock,
    connectTls: dial.connectTls,
    random: () => 1,
    ...extra,
  })
  t.teardown(() => client.close())
  return { pki, fake, clock, client, dial }
}

t.test('openTunnel: hello, OK reply, then bytes echo exactly', async (t) => {
  const { client, fake } = await setup(t)
  const tunnel = await client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(tunnel).alpnProtocol, 'keyway/1')
  t.equal(tunnel.rest.length, 0)
  t.match(tunnel.session, /^ses_/)
  t.equal(tunnel.gateway, fake.address)
  t.same(fake.hellos, ['pg'])
  const data = randomBytes(100_000)
  tlsOf(tunnel).resume()
  const echoed = await roundTrip(tlsOf(tunnel), data)
  t.ok(echoed.equals(data), 'echo is byte-exact')
  t.equal(client.state().up, true)
})

t.test('openTunnel: later tunnels resume the TLS session; resumption can be turned off', async (t) => {
  const { client } = await setup(t)
  const first = await client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(first).isSessionReused(), false, 'the first tunnel does a full handshake')
  // TLS 1.3 tickets arrive after the handshake, with the first bytes read.
  tlsOf(first).resume()
  await roundTrip(tlsOf(first), Buffer.from('ping'))
  tlsOf(first).destroy()
  const second = await client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(second).isSessionReused(), true, 'the next one resumes')
  tlsOf(second).resume()
  t.ok((await roundTrip(tlsOf(second), Buffer.from('pong'))).equals(Buffer.from('pong')))
  tlsOf(second).destroy()

  const { client: plain } = await setup(t, { tlsSessionResumption: false })
  const a = await plain.openTunnel('pg', TOKEN)
  tlsOf(a).resume()
  await roundTrip(tlsOf(a), Buffer.from('ping'))
  tlsOf(a).destroy()
  const b = await plain.openTunnel('pg', TOKEN)
  t.equal(tlsOf(b).isSessionReused(), false)
  tlsOf(b).destroy()
})

t.test('openTunnel: bytes sent right after the reply come back as rest', async (t) => {
  const greeting = Buffer.from('SSH-2.0-fake\r\n')
  const { client } = await setup(t, {}, greeting)
  const tunnel = await client.openTunnel('pg', TOKEN)
  // The reply and greeting went out in one write; whatever the reader did not
  // return as rest is still buffered on the paused socket.
  const more = tunnel.rest.length < greeting.length ? await readExactly(tlsOf(tunnel), greeting.length - tunnel.rest.length) : Buffer.alloc(0)
  t.ok(Buffer.concat([tunnel.rest, more]).equals(greeting))
  t.ok(tunnel.rest.length > 0, 'the greeting arrived with the reply')
  tlsOf(tunnel).destroy()
})

t.test('openTunnel: a refusal rejects with the gateway code and counts as up', async (t) => {
  const { client, fake } = await setup(t)
  fake.refuse.set('pg', { code: 'ERR_ACCOUNT_SUSPENDED', message: 'the account is suspended' })
  const err = (await client.openTunnel('pg', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_ACCOUNT_SUSPENDED'))
  t.equal(err.message, 'the account is suspended')
  t.equal(err.detail?.refused, true)
  t.equal(client.state().up, true)

  const denied = (await client.openTunnel('nope', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(denied, 'ERR_GRANT_DENIED'))

  const badToken = (await client.openTunnel('pg', 'wrong-token').catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(badToken, 'ERR_TOKEN_SIGNATURE'))

  fake.refuse.set('pg', { code: 'ERR_SOMETHING_NEW' as never, message: 'from a newer gateway' })
  const unknown = (await client.openTunnel('pg', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(unknown, 'ERR_INTERNAL'), 'an unknown code maps to ERR_INTERNAL')
  t.match(unknown.message, /ERR_SOMETHING_NEW/)
})

t.test('failover: a dead first gateway is skipped, and the good one is remembered', async (t) => {
  const dead = await idlePort()
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW })
  const dial = recordingDial()
  const { logger, sink } = sinkLogger()
  const client = new GatewayClient({
    gateways: [
      { host: LOOPBACK, port: dead },
      { host: LOOPBACK, port: fake.port },
    ],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock: new ManualClock(),
    connectTls: dial.connectTls,
    logger,
  })
  t.teardown(() => client.close())
  const tunnel = await client.openTunnel('pg', TOKEN)
  tlsOf(tunnel).destroy()
  t.same(dial.ports, [dead, fake.port])
  t.equal(client.state().gateway, fake.address)
  const again = await client.openTunnel('pg', TOKEN)
  tlsOf(again).destroy()
  t.same(dial.ports, [dead, fake.port, fake.port], 'the last good gateway is tried first')
  const view = await client.api<ResourcesResponse>('GET', '/v1/resources', { token: TOKEN })
  t.equal(view.status, 200)
  t.same(dial.ports.slice(3), [fake.port])
  t.ok(sink.events('gateway_attempt_failed').length >= 1)
  t.notOk(sink.text().includes(TOKEN), 'the token is never logged')
})

t.test('no gateway: ERR_GATEWAY_UNAVAILABLE, then fail fast during backoff, then retry', async (t) => {
  const dead1 = await idlePort()
  const dead2 = await idlePort()
  const pki = await testPki()
  const clock = new ManualClock()
  const dial = recordingDial()
  const client = new GatewayClient({
    gateways: [
      { host: LOOPBACK, port: dead1 },
      { host: LOOPBACK, port: dead2 },
    ],
    ca: pki.caCertPem,
    clock,
    connectTls: dial.connectTls,
    random: () => 1,
  })
  t.teardown(() => client.close())
  const err = (await client.openTunnel('pg', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(err, 'ERR_GATEWAY_UNAVAILABLE'))
  t.match(err.message, new RegExp(`127\\.0\\.0\\.1:${dead1}: ECONNREFUSED.*127\\.0\\.0\\.1:${dead2}: ECONNREFUSED`))
  t.same(dial.ports, [dead1, dead2])
  t.match(client.state(), { up: false, failures: 1, lastError: /ECONNREFUSED/ })
  t.equal(client.retryInMs(), 250)

  const fast = (await client.api('GET', '/v1/resources', { token: TOKEN }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(fast, 'ERR_GATEWAY_UNAVAILABLE'))
  t.match(fast.message, /next try in 250 ms/)
  t.equal(dial.ports.length, 2, 'no dial during the backoff')

  // Backoff doubles per failed round and is capped.
  const delays: number[] = []
  for (let i = 0; i < 7; i++) {
    clock.advance(client.retryInMs())
    await client.openTunnel('pg', TOKEN).catch(() => {})
    delays.push(client.retryInMs())
  }
  t.same(delays, [500, 1000, 1500, 1500, 1500, 1500, 1500], 'capped at 1.5 s, so a returning gateway is used within 2 s')
})

t.test('backoff has jitter: at least half the exponential delay', async (t) => {
  const dead = await idlePort()
  const pki = await testPki()
  const client = new GatewayClient({ gateways: [{ host: LOOPBACK, port: dead }], ca: pki.caCertPem, clock: new ManualClock(), random: () => 0 })
  await client.openTunnel('pg', TOKEN).catch(() => {})
  t.equal(client.retryInMs(), 125)
})

t.test('the certificate is verified against the CA and the server name', async (t) => {
  const { fake } = await setup(t)
  const otherPki = await (await import('../helpers/fake-gateway.js')).createTestPki()
  const wrongCa = new GatewayClient({ gateways: [{ host: LOOPBACK, port: fake.port }], ca: otherPki.caCertPem, servername: 'localhost', clock: new ManualClock() })
  const e1 = (await wrongCa.openTunnel('pg', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(e1, 'ERR_GATEWAY_UNAVAILABLE'))
  t.match(e1.message, /certificate/i)

  const pki = await testPki()
  const wrongName = new GatewayClient({ gateways: [{ host: LOOPBACK, port: fake.port }], ca: pki.caCertPem, servername: 'gateway.example', clock: new ManualClock() })
  const e2 = (await wrongName.openTunnel('pg', TOKEN).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(e2, 'ERR_GATEWAY_UNAVAILABLE'))
  t.match(e2.message, /gateway\.example/)

  // No servername: the IP address is checked against the certificate's IP SAN.
  const byIp = new GatewayClient({ gateways: [{ host: LOOPBACK, port: fake.port }], ca: pki.caCertPem, clock: new ManualClock() })
  t.teardown(() => byIp.close())
  const tunnel = await byIp.openTunnel('pg', TOKEN)
  tlsOf(tunnel).destroy()
  const who = await byIp.api<WhoamiResponse>('GET', '/v1/whoami', { token: TOKEN })
  t.equal(who.status, 200)
})

t.test('a gateway that closes without a reply is skipped like a dead one', async (t) => {
  const pki = await testPki()
  const hangUp = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['keyway/1', 'http/1.1'] }, (s) => s.destroy())
  hangUp.listen({ host: LOOPBACK, port: 0 })
  await once(hangUp, 'listening')
  t.teardown(() => hangUp.close())
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW })
  const client = new GatewayClient({
    gateways: [
      { host: LOOPBACK, port: (hangUp.address() as net.AddressInfo).port },
      { host: LOOPBACK, port: fake.port },
    ],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock: new ManualClock(),
  })
  const tunnel = await client.openTunnel('pg', TOKEN)
  t.equal(tunnel.gateway, fake.address)
  tlsOf(tunnel).destroy()
})

t.test('a gateway that does not reply in time: ERR_HANDSHAKE_TIMEOUT', async (t) => {
  const pki = await testPki()
  const got: Buffer[] = []
  let onHello!: () => void
  const helloSeen = new Promise<void>((resolve) => {
    onHello = resolve
  })
  const silent = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['keyway/1'] }, (s) => {
    s.on('data', (c: Buffer) => {
      got.push(c)
      onHello()
    })
    s.on('error', () => {})
  })
  silent.listen({ host: LOOPBACK, port: 0 })
  await once(silent, 'listening')
  t.teardown(() => {
    silent.close()
  })
  const clock = new ManualClock()
  const client = new GatewayClient({
    gateways: [{ host: LOOPBACK, port: (silent.address() as net.AddressInfo).port }],
    ca: pki.caCertPem,
    servername: 'localhost',
    clock,
    connectTimeoutMs: 3_000,
  })
  const pending = client.openTunnel('pg', TOKEN).catch((e: unknown) => e)
  await helloSeen
  clock.advance(3_000)
  const err = (await pending) as KeywayError
  t.ok(isKeywayError(err, 'ERR_HANDSHAKE_TIMEOUT'))
  t.match(err.message, /3000 ms/)
  t.equal(client.state().up, true, 'a slow answer is not a dead gateway')
})

t.test('api: JSON, ETag and 304, error bodies, keep-alive', async (t) => {
  const { client, fake, dial } = await setup(t)
  const first = await client.api<ResourcesResponse>('GET', '/v1/resources', { token: TOKEN })
  t.equal(first.status, 200)
  t.ok(first.etag)
  t.same((first as { body: ResourcesResponse }).body.resources.map((r) => r.name), ['pg'])
  const second = await client.api<ResourcesResponse>('GET', '/v1/resources', { token: TOKEN, etag: first.etag! })
  t.equal(second.status, 304)
  t.equal(fake.counts.notModified, 1)
  fake.setView({ ...VIEW, resources: [] })
  const third = await client.api<ResourcesResponse>('GET', '/v1/resources', { token: TOKEN, etag: first.etag! })
  t.equal(third.status, 200)
  t.not(third.etag, first.etag)
  t.equal(dial.ports.length, 1, 'one kept-alive connection served every request')

  const unauthorized = (await client.api('GET', '/v1/resources', { token: 'nope' }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(unauthorized, 'ERR_TOKEN_SIGNATURE'))
  t.equal(unauthorized.detail?.status, 401)
  const missing = (await client.api('GET', '/v1/nothing', { token: TOKEN }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(missing, 'ERR_NOT_FOUND'))
  t.equal(client.state().up, true)
})

t.test('api: a kept-alive connection the gateway dropped is retried once, not counted as down', async (t) => {
  const { client, fake, dial } = await setup(t)
  await client.api('GET', '/v1/resources', { token: TOKEN })
  await fake.down()
  await fake.up()
  const again = await client.api('GET', '/v1/resources', { token: TOKEN })
  t.equal(again.status, 200)
  t.equal(client.state().failures, 0)
  t.equal(dial.ports.length, 2)
})

t.test('openTunnel: the next tunnel resumes the TLS session, offering the ticket once', async (t) => {
  const { client } = await setup(t)
  const first = await client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(first).isSessionReused(), false, 'the first tunnel makes a full handshake')
  tlsOf(first).destroy()
  const second = await client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(second).isSessionReused(), true, 'the second tunnel resumes with the first ticket')
  tlsOf(second).destroy()
  const off = await setup(t, { tlsSessionResumption: false })
  ;(await off.client.openTunnel('pg', TOKEN)).socket.destroy()
  const again = await off.client.openTunnel('pg', TOKEN)
  t.equal(tlsOf(again).isSessionReused(), false, 'tlsSessionResumption: false never resumes')
  tlsOf(again).destroy()
})
