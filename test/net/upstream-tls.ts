import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import * as tls from 'node:tls'
import t from 'tap'
import { startUpstreamTls } from '../../src/net/index.js'
import { createTestPki, LOOPBACK, type Teardown } from '../helpers/fake-gateway.js'

const pki = await createTestPki()
const other = await createTestPki()

/** A TLS echo server on 127.0.0.1 port 0 with the test PKI's certificate (valid for localhost and 127.0.0.1). */
async function server(t: Teardown): Promise<number> {
  const s = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (c) => c.pipe(c))
  s.on('tlsClientError', () => {})
  t.teardown(() => s.close())
  s.listen(0, LOOPBACK)
  await once(s, 'listening')
  return (s.address() as { port: number }).port
}

async function tcp(t: Teardown, port: number): Promise<Socket> {
  const socket = connect(port, LOOPBACK)
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  return socket
}

t.test('verify-full with the right CA and name: an encrypted, verified connection', async (t) => {
  const port = await server(t)
  const secure = await startUpstreamTls(await tcp(t, port), { mode: 'verify-full', host: 'localhost', ca: pki.caCertPem })
  t.teardown(() => secure.destroy())
  t.ok(secure.authorized, 'the chain and the name were checked')
  secure.write('ping')
  const [echo] = (await once(secure, 'data')) as [Buffer]
  t.equal(echo.toString(), 'ping')
})

t.test('verify-full refuses a server signed by another CA, with ERR_UPSTREAM_LOGIN_FAILED', async (t) => {
  const port = await server(t)
  await t.rejects(startUpstreamTls(await tcp(t, port), { mode: 'verify-full', host: 'localhost', ca: other.caCertPem }), { code: 'ERR_UPSTREAM_LOGIN_FAILED', message: /TLS to the upstream failed/ })
})

t.test('verify-full refuses a name the certificate does not carry', async (t) => {
  const port = await server(t)
  await t.rejects(startUpstreamTls(await tcp(t, port), { mode: 'verify-full', host: 'db.example.internal', ca: pki.caCertPem }), { code: 'ERR_UPSTREAM_LOGIN_FAILED' })
})

t.test('require encrypts without checking who answers (an unknown CA is accepted)', async (t) => {
  const port = await server(t)
  const secure = await startUpstreamTls(await tcp(t, port), { mode: 'require', host: LOOPBACK })
  t.teardown(() => secure.destroy())
  t.notOk(secure.authorized, 'not verified')
  t.ok(secure.encrypted)
})

t.test('a peer that is not TLS fails the start with ERR_UPSTREAM_LOGIN_FAILED', async (t) => {
  const plain = (await import('node:net')).createServer((c) => c.end('not tls\n'))
  t.teardown(() => plain.close())
  plain.listen(0, LOOPBACK)
  await once(plain, 'listening')
  const port = (plain.address() as { port: number }).port
  await t.rejects(startUpstreamTls(await tcp(t, port), { mode: 'require', host: LOOPBACK }), { code: 'ERR_UPSTREAM_LOGIN_FAILED' })
})
