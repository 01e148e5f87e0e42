import t from 'tap'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { createDevPki, type DevPki } from '../../src/pki/dev-pki.js'

/** Starts a TLS server on 127.0.0.1:0 answering "hello"; closed at teardown. */
async function serve(t: { teardown(fn: () => void | Promise<void>): void }, pki: DevPki): Promise<number> {
  const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (socket) => {
    socket.end('hello')
  })
  // A refused client aborts the handshake; that is the point of some tests, not a failure.
  server.on('tlsClientError', () => {})
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
      }),
  )
  return (server.address() as AddressInfo).port
}

interface Outcome {
  authorized: boolean
  error?: NodeJS.ErrnoException
  data?: string
}

/** Connects with the given options and reports what happened. */
function connect(port: number, options: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options })
    let data = ''
    socket.on('secureConnect', () => {
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => (data += chunk))
      socket.on('end', () => {
        resolve({ authorized: socket.authorized, data })
        socket.destroy()
      })
    })
    socket.on('error', (error: NodeJS.ErrnoException) => {
      socket.destroy()
      resolve({ authorized: false, error })
    })
  })
}

t.test('a client trusting the CA is authorized (servername localhost)', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const port = await serve(t, pki)
  const res = await connect(port, { ca: pki.caCertPem, servername: 'localhost' })
  t.equal(res.error, undefined)
  t.equal(res.authorized, true)
  t.equal(res.data, 'hello')
})

t.test('the IP SAN verifies too (no servername)', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const port = await serve(t, pki)
  const res = await connect(port, { ca: pki.caCertPem })
  t.equal(res.error, undefined)
  t.equal(res.authorized, true)
})

t.test('a client trusting another CA is refused', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const other = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  const port = await serve(t, pki)
  const res = await connect(port, { ca: other.caCertPem, servername: 'localhost' })
  t.equal(res.authorized, false)
  t.ok(res.error, 'handshake fails')
  t.match(res.error?.code, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/)
})

t.test('a name not in the SANs is refused', async (t) => {
  const pki = await createDevPki({ hosts: ['localhost'] })
  const port = await serve(t, pki)
  const res = await connect(port, { ca: pki.caCertPem, servername: 'keyway.test' })
  t.equal(res.authorized, false)
  t.equal(res.error?.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  const byIp = await connect(port, { ca: pki.caCertPem })
  t.equal(byIp.error?.code, 'ERR_TLS_CERT_ALTNAME_INVALID', 'no IP SAN for 127.0.0.1')
})

t.test('certificate contents', async (t) => {
  const now = Date.UTC(2026, 0, 1)
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1', '::1', 'gw.keyway.test'], days: 30, now })
  const ca = new X509Certificate(pki.caCertPem)
  const cert = new X509Certificate(pki.certPem)
  t.equal(ca.ca, true)
  t.equal(cert.ca, false)
  t.ok(cert.checkIssued(ca), 'issued by the CA')
  t.ok(cert.verify(ca.publicKey), 'signature verifies with the CA key')
  t.ok(ca.verify(ca.publicKey), 'CA is self-signed')
  t.match(cert.subjectAltName, /DNS:localhost/)
  t.match(cert.subjectAltName, /IP Address:127\.0\.0\.1/)
  t.match(cert.subjectAltName, /IP Address:0:0:0:0:0:0:0:1|IP Address:::1/)
  t.match(cert.subjectAltName, /DNS:gw\.keyway\.test/)
  t.match(cert.subject, /CN=localhost/)
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth EKU')
  t.equal(cert.publicKey.asymmetricKeyType, 'ec')
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal(new Date(cert.validTo).getTime(), now + 30 * 86_400_000)
  t.ok(new Date(cert.validFrom).getTime() < now, 'backdated a little')
  t.ok(cert.checkPrivateKey(createPrivateKey(pki.keyPem)), 'key matches cert')
  t.ok(ca.checkPrivateKey(createPrivateKey(pki.caKeyPem)), 'CA key matches CA cert')
  t.match(pki.keyPem, /^-----BEGIN PRIVATE KEY-----/)
  t.not(cert.serialNumber, ca.serialNumber)
  t.equal(createPublicKey(pki.certPem).asymmetricKeyType, 'ec')

  const { X509Certificate: PeculiarCert, BasicConstraintsExtension, KeyUsagesExtension, KeyUsageFlags } = await import('@peculiar/x509')
  const caExt = new PeculiarCert(pki.caCertPem)
  const bc = caExt.getExtension(BasicConstraintsExtension)
  t.equal(bc?.ca, true)
  t.equal(bc?.critical, true)
  const ku = caExt.getExtension(KeyUsagesExtension)
  t.ok(ku && (ku.usages & KeyUsageFlags.keyCertSign) !== 0, 'CA has keyCertSign')
})

t.test('bad options', async (t) => {
  await t.rejects(createDevPki({ hosts: [] }), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(createDevPki({ hosts: ['bad host'] }), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(createDevPki({ hosts: ['-x.test'] }), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(createDevPki({ hosts: ['localhost'], days: 0 }), { code: 'ERR_CONFIG_INVALID' })
  await t.rejects(createDevPki({ hosts: ['localhost'], days: 1.5 }), { code: 'ERR_CONFIG_INVALID' })
})
