/**
 * The probe of issue 17 as a test: NODE_TLS_REJECT_UNAUTHORIZED=0 in the
 * sidecar's environment must not switch off the check of the gateway's
 * certificate, nor of its name.
 */
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tls from 'node:tls'
import { createDevPki, type DevPki } from '../../src/pki/index.js'
import { createTestPki, LOOPBACK } from '../helpers/fake-gateway.js'
import { startDaemon } from '../helpers/processes.js'
import { TOKEN } from '../fixtures/sidecar/harness.js'

/** A TLS server that speaks every Keyway ALPN and keeps every byte a client sends after the handshake. */
async function rogueGateway(t: Test, pki: DevPki) {
  const received: Buffer[] = []
  let handshakes = 0
  const server = tls.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['keyway/2', 'keyway/1', 'http/1.1'] }, (socket) => {
    handshakes++
    socket.on('data', (c: Buffer) => received.push(c))
    socket.on('error', () => {})
  })
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => server.listen({ host: LOOPBACK, port: 0 }, resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { port: (server.address() as { port: number }).port, received, handshakes: () => handshakes }
}

async function probe(t: Test, rogue: DevPki, caPem: string, servername: string) {
  const gateway = await rogueGateway(t, rogue)
  const dir = mkdtempSync(join(tmpdir(), 'kw-rogue-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'ca.pem'), caPem)
  const sidecar = startDaemon(t, ['listen'], {
    NODE_TLS_REJECT_UNAUTHORIZED: '0',
    KEYWAY_TOKEN: TOKEN,
    KEYWAY_GATEWAY: `${LOOPBACK}:${gateway.port}`,
    KEYWAY_CA: join(dir, 'ca.pem'),
    KEYWAY_SIDECAR_SERVERNAME: servername,
    KEYWAY_CONTROL: `${LOOPBACK}:0`,
    KEYWAY_SIDECAR_RUNTIME_DIR: join(dir, 'rt'),
    KEYWAY_LOG_LEVEL: 'debug',
  })
  const failed = await sidecar.waitLog((l) => l.event === 'sync_failed', 20_000)
  return { gateway, failed, sidecar }
}

t.test('with NODE_TLS_REJECT_UNAUTHORIZED=0, a gateway whose certificate another CA signed never gets the token', async (t) => {
  const [trusted, rogue] = [await createTestPki(), await createTestPki()]
  const { gateway, failed } = await probe(t, rogue, trusted.caCertPem, 'localhost')
  t.match(failed, { code: 'ERR_GATEWAY_UNAVAILABLE', reason: /certificate/i })
  t.equal(gateway.handshakes(), 0, 'no TLS session was completed with the rogue server')
  t.notOk(Buffer.concat(gateway.received).toString('latin1').includes(TOKEN), 'the token was never sent')
})

t.test('with NODE_TLS_REJECT_UNAUTHORIZED=0, a certificate of the right CA for another name is refused too', async (t) => {
  const pki = await createDevPki({ hosts: ['other.example'] })
  const { gateway, failed } = await probe(t, pki, pki.caCertPem, 'gateway.example')
  t.match(failed, { code: 'ERR_GATEWAY_UNAVAILABLE', reason: /gateway\.example/ })
  t.equal(Buffer.concat(gateway.received).length, 0, 'not one byte reached the server')
})
