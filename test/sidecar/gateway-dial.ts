import t, { type Test } from 'tap'
import { once } from 'node:events'
import type * as net from 'node:net'
import * as tls from 'node:tls'
import { ManualClock } from '../../src/clock.js'
import { Unreachable } from '../../src/sidecar/failover.js'
import { GatewayDialer, type GatewayDialerOptions } from '../../src/sidecar/gateway-dial.js'
import { TlsSessionCache } from '../../src/sidecar/session-cache.js'
import { startFakeGateway, LOOPBACK } from '../helpers/fake-gateway.js'
import { listen } from '../helpers/net.js'
import { TOKEN, testPki } from '../fixtures/sidecar/harness.js'

async function setup(t: Test, extra: Partial<GatewayDialerOptions> = {}) {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: { settings: { portOverrides: false, autoConnect: false }, resources: [] } })
  const clock = new ManualClock()
  const sessions = new TlsSessionCache()
  const dialer = new GatewayDialer({ ca: pki.caCertPem, servername: 'localhost', connectTls: tls.connect, clock, sessions, ...extra })
  return { pki, fake, clock, sessions, dialer, gw: { host: LOOPBACK, port: fake.port } }
}

async function failure(promise: Promise<unknown>): Promise<Unreachable> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(err instanceof Unreachable)) throw new Error(`expected Unreachable, got ${String(err)}`)
  return err
}

t.test('tlsOptions: the configured name, else the host unless it is an IP address (no SNI with an IP)', async (t) => {
  const { pki } = await setup(t)
  const make = (servername: string | undefined) => new GatewayDialer({ ca: pki.caCertPem, servername, connectTls: tls.connect, clock: new ManualClock(), sessions: undefined })
  t.match(make('gw.internal').tlsOptions({ host: '127.0.0.1', port: 1 }), { host: '127.0.0.1', port: 1, servername: 'gw.internal', minVersion: 'TLSv1.2' })
  t.notOk('servername' in make(undefined).tlsOptions({ host: '127.0.0.1', port: 1 }))
  t.notOk('servername' in make(undefined).tlsOptions({ host: '::1', port: 1 }))
  t.equal(make(undefined).tlsOptions({ host: 'gw.internal', port: 1 }).servername, 'gw.internal')
})

t.test('connect: a verified TLS socket that agreed to the ALPN asked for', async (t) => {
  const { dialer, gw } = await setup(t)
  const socket = await dialer.connect(gw, ['keyway/1'], 5_000)
  t.teardown(() => socket.destroy())
  t.equal(socket.alpnProtocol, 'keyway/1')
  t.ok(socket.authorized)
})

t.test('connect: a certificate for another name is Unreachable', async (t) => {
  const { pki, clock, gw } = await setup(t)
  const wrongName = new GatewayDialer({ ca: pki.caCertPem, servername: 'not-the-gateway.example', connectTls: tls.connect, clock, sessions: undefined })
  const err = await failure(wrongName.connect(gw, ['keyway/1'], 5_000))
  t.match(err.message, /^ERR_TLS_CERT_ALTNAME_INVALID: /)
})

t.test('connect: a failed connection forgets the gateway\'s ticket', async (t) => {
  const { dialer, fake, sessions, gw } = await setup(t)
  const good = await dialer.connect(gw, ['keyway/1'], 5_000)
  t.teardown(() => good.destroy())
  await once(good, 'session')
  t.ok(sessions.ticket(fake.address))
  await fake.down()
  await failure(dialer.connect(gw, ['keyway/1'], 5_000))
  t.equal(sessions.ticket(fake.address), undefined, 'never offered again after a failed handshake')
})

t.test('connect: API connections (http/1.1) neither offer nor keep tickets', async (t) => {
  const { dialer, sessions, gw } = await setup(t)
  const api = await dialer.connect(gw, ['http/1.1'], 5_000)
  t.teardown(() => api.destroy())
  t.equal(api.alpnProtocol, 'http/1.1')
  api.write('GET /v1/whoami HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n')
  api.resume()
  await once(api, 'end')
  t.equal(sessions.size, 0)
})

t.test('connect: no agreed ALPN is Unreachable', async (t) => {
  const { dialer, gw } = await setup(t)
  const err = await failure(dialer.connect(gw, ['keyway/2'], 5_000))
  t.ok(err.message.length > 0)
})

t.test('connect: a peer that closes during the handshake, or never completes it, is Unreachable', async (t) => {
  const { dialer } = await setup(t)
  const closing = await listen(t, (socket) => socket.destroy())
  await failure(dialer.connect({ host: LOOPBACK, port: closing.port }, ['keyway/1'], 5_000))

  const held: net.Socket[] = []
  const silent = await listen(t, (socket) => held.push(socket))
  t.teardown(() => held.forEach((s) => s.destroy()))
  const { clock } = await setup(t)
  const slow = new GatewayDialer({ ca: (await testPki()).caCertPem, servername: 'localhost', connectTls: tls.connect, clock, sessions: undefined })
  const pending = failure(slow.connect({ host: LOOPBACK, port: silent.port }, ['keyway/1'], 100))
  while (held.length === 0) await new Promise((resolve) => setImmediate(resolve))
  clock.advance(100)
  t.equal((await pending).message, 'no TLS connection within 100 ms')
})
