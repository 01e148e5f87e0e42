import t, { type Test } from 'tap'
import * as tls from 'node:tls'
import { setImmediate as tick } from 'node:timers/promises'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import { encodeHello, encodeReply } from '../../src/protocol/index.js'
import { Unreachable } from '../../src/sidecar/failover.js'
import { GatewayDialer } from '../../src/sidecar/gateway-dial.js'
import { handshakeV1, V1_RECHECK_MS, V1OnlyGateways } from '../../src/sidecar/tunnel-v1.js'
import { startFakeGateway, LOOPBACK } from '../helpers/fake-gateway.js'
import { readExactly } from '../helpers/net.js'
import { TOKEN, testPki } from '../fixtures/sidecar/harness.js'

const VIEW = { settings: { portOverrides: false, autoConnect: false }, resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: null }] }

t.test('V1OnlyGateways: a keyway/1-only gateway is remembered for a minute, then offered keyway/2 again', async (t) => {
  const clock = new ManualClock()
  const v1 = new V1OnlyGateways(clock)
  t.notOk(v1.has('127.0.0.1:1'))
  v1.remember('127.0.0.1:1')
  t.ok(v1.has('127.0.0.1:1'))
  t.notOk(v1.has('127.0.0.1:2'), 'per gateway')
  clock.advance(V1_RECHECK_MS - 1)
  t.ok(v1.has('127.0.0.1:1'))
  clock.advance(1)
  t.notOk(v1.has('127.0.0.1:1'), 'rechecked')
  t.equal(V1_RECHECK_MS, 60_000)
})

/** A keyway/1 TLS socket to `port` (the fake gateway, or a test's own server). */
async function dialV1(t: Test, port: number, clock = new ManualClock()): Promise<tls.TLSSocket> {
  const pki = await testPki()
  const dialer = new GatewayDialer({ ca: pki.caCertPem, servername: 'localhost', connectTls: tls.connect, clock, sessions: undefined })
  const socket = await dialer.connect({ host: LOOPBACK, port }, ['keyway/1'], 5_000)
  t.teardown(() => socket.destroy())
  return socket
}

t.test('handshakeV1: hello, OK reply, then the paused socket carries bytes', async (t) => {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW, greeting: Buffer.from('hi') })
  const clock = new ManualClock()
  const tunnel = await handshakeV1(await dialV1(t, fake.port), fake.address, 'pg', encodeHello({ resource: 'pg', token: TOKEN }), 5_000, clock)
  t.match(tunnel, { session: /^ses_/, gateway: fake.address })
  const socket = tunnel.socket as tls.TLSSocket
  t.ok(socket.isPaused(), 'paused for forward()')
  const greeting = Buffer.concat([tunnel.rest, tunnel.rest.length < 2 ? await readExactly(socket, 2 - tunnel.rest.length) : Buffer.alloc(0)])
  t.equal(greeting.toString(), 'hi', 'bytes after the reply are not lost')
  socket.write('echo')
  t.equal((await readExactly(socket, 4)).toString(), 'echo')
  t.equal(clock.pending, 0, 'the reply timer is cleared')
})

t.test('handshakeV1: a refusal rejects with the gateway\'s code, marked refused', async (t) => {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW })
  fake.refuse.set('pg', { code: 'ERR_ACCOUNT_SUSPENDED', message: 'the account is suspended' })
  const err = (await handshakeV1(await dialV1(t, fake.port), fake.address, 'pg', encodeHello({ resource: 'pg', token: TOKEN }), 5_000, new ManualClock()).catch(
    (e: unknown) => e,
  )) as KeywayError
  t.ok(isKeywayError(err, 'ERR_ACCOUNT_SUSPENDED'))
  t.equal(err.message, 'the account is suspended')
  t.same(err.detail, { gateway: fake.address, resource: 'pg', refused: true })
})

/** A keyway/1 TLS server that hands each socket to `onSocket`. */
async function server(t: Test, onSocket: (socket: tls.TLSSocket) => void): Promise<number> {
  const pki = await testPki()
  const s = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['keyway/1'] }, onSocket)
  const sockets = new Set<tls.TLSSocket>()
  s.on('secureConnection', (socket: tls.TLSSocket) => {
    sockets.add(socket)
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => s.listen(0, LOOPBACK, resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => s.close(() => resolve()))
  })
  return (s.address() as { port: number }).port
}

t.test('handshakeV1: no reply in time is ERR_HANDSHAKE_TIMEOUT; a hang-up without a reply is Unreachable; an unknown code is ERR_INTERNAL', async (t) => {
  const hello = encodeHello({ resource: 'pg', token: TOKEN })
  const clock = new ManualClock()
  const silent = await server(t, () => {})
  const pending = handshakeV1(await dialV1(t, silent), 'gw', 'pg', hello, 250, clock).catch((e: unknown) => e)
  await tick()
  clock.advance(250)
  const timeout = (await pending) as KeywayError
  t.ok(isKeywayError(timeout, 'ERR_HANDSHAKE_TIMEOUT'))
  t.equal(timeout.message, 'gateway gw did not answer the tunnel request for "pg" within 250 ms')

  const hangUp = await server(t, (socket) => socket.once('data', () => socket.end()))
  const closed = await handshakeV1(await dialV1(t, hangUp), 'gw', 'pg', hello, 0, clock).catch((e: unknown) => e)
  t.ok(closed instanceof Unreachable, 'the next gateway may serve')

  const odd = await server(t, (socket) => socket.once('data', () => socket.end(encodeReply({ ok: false, code: 'ERR_FROM_THE_FUTURE' as never, message: 'new' }))))
  const unknown = (await handshakeV1(await dialV1(t, odd), 'gw', 'pg', hello, 0, clock).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(unknown, 'ERR_INTERNAL'))
  t.equal(unknown.message, 'ERR_FROM_THE_FUTURE: new')
})
