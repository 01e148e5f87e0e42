/**
 * Canaries for src/read-buffer/node-internals.ts: each checks that a private
 * Node API still behaves as the seam assumes, on the Node this runs on (CI:
 * 26 and 24), and fails naming the internal and the Node version.
 */
import { once } from 'node:events'
import * as net from 'node:net'
import * as tls from 'node:tls'
import t from 'tap'
import { forward } from '../../src/forward/index.js'
import { adoptAccepted, canSetTlsSession, checkFastPath, hasReadBuffer, noDelayFlag, setTlsSession, useReadBuffer } from '../../src/read-buffer/index.js'
import { createTestPki } from '../helpers/fake-gateway.js'
import { LOOPBACK, connect, listenOnce, readAll, sha256OfStream, writeRandom } from '../helpers/net.js'
import { within } from '../helpers/until.js'

const MiB = 1024 * 1024
/** How a canary names what broke. */
const on = (internal: string): string => `${internal} on Node ${process.version}`

t.test(`moveAcceptedHandle (adoptAccepted): bytes, half-close, listener count and close (${process.version})`, async (t) => {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true })
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const client = await connect(t, port, { allowHalfOpen: true })
  const [raw] = await accepted
  const adopted = adoptAccepted(raw)
  t.teardown(() => adopted.destroy())
  t.ok(adopted !== raw && hasReadBuffer(adopted), on('_handle / _server / new net.Socket({ handle, onread }): an accepted socket is adopted'))
  t.equal(noDelayFlag(adopted), true, on("kSetNoDelay: the listener's noDelay moves with the handle"))
  const counted = await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  t.equal(counted, 1, on('_server: the listener counts the adopted connection once'))

  // A reader that holds back: forward() between the adopted socket and an echo upstream, the client reading slowly.
  const echo = await listenOnce(t, { allowHalfOpen: true })
  const upstream = await connect(t, echo.port, { allowHalfOpen: true })
  const far = await echo.accepted
  far.pipe(far)
  const session = forward(adopted, upstream)
  const sent = writeRandom(client, 8 * MiB, { end: true })
  client.pause()
  await new Promise((resolve) => setTimeout(resolve, 50))
  const got = sha256OfStream(client)
  client.resume()
  const [out, back] = await Promise.all([sent, got])
  t.equal(back.bytes, out.bytes, on('onread on an adopted socket: every byte comes back'))
  t.equal(back.sha256, out.sha256, on('onread on an adopted socket: byte for byte (a reused buffer overwritten early would differ)'))
  const result = await within(session.done, 10_000, on('the session over an adopted socket to end after both half-closes'))
  t.equal(result.reason, 'done', on('half-close through an adopted socket'))

  // server.close() waits for adopted connections and then completes.
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  await within(closed, 5_000, on('_server: server.close() to complete once the adopted connection closed'))
  t.pass(on('listener closes after adoption'))
})

t.test(`moveAcceptedHandle: a half-close answer arrives on an adopted socket (${process.version})`, async (t) => {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true })
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  t.teardown(() => server.close())
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const client = await connect(t, (server.address() as net.AddressInfo).port, { allowHalfOpen: true })
  client.write('first ')
  client.end('last')
  const adopted = adoptAccepted((await accepted)[0])
  t.teardown(() => adopted.destroy())
  t.ok(hasReadBuffer(adopted), on('adoption'))
  const reading = readAll(adopted)
  adopted.resume()
  const request = await reading
  t.equal(request.toString(), 'first last', on('onread on an adopted socket: bytes before the FIN'))
  adopted.end('answer')
  t.equal((await readAll(client)).toString(), 'answer', on('an adopted socket answers after the peer half-closed'))
})

t.test(`setOnread (useReadBuffer): a tls.Server socket, bytes and half-close (${process.version})`, async (t) => {
  const pki = await createTestPki()
  const server = tls.createServer({ key: pki.keyPem, cert: pki.certPem, allowHalfOpen: true })
  const secure = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve))
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  t.teardown(() => server.close())
  const client = tls.connect({ host: LOOPBACK, port: (server.address() as net.AddressInfo).port, ca: pki.caCertPem, servername: 'localhost', allowHalfOpen: true } as tls.ConnectionOptions)
  t.teardown(() => client.destroy())
  await once(client, 'secureConnect')
  const a = await secure
  t.teardown(() => a.destroy())
  t.equal(useReadBuffer(a, 16 * 1024), true, on('kBuffer / kBufferGen / kBufferCb and TLSWrap useUserBuffer: found and set'))
  const echo = await listenOnce(t, { allowHalfOpen: true })
  const upstream = await connect(t, echo.port, { allowHalfOpen: true })
  const far = await echo.accepted
  far.pipe(far)
  const session = forward(a, upstream)
  const sent = writeRandom(client, 8 * MiB, { end: true })
  client.pause()
  await new Promise((resolve) => setTimeout(resolve, 50))
  const got = sha256OfStream(client)
  client.resume()
  const [out, back] = await Promise.all([sent, got])
  t.equal(back.bytes, out.bytes, on('TLS reads into reused buffers: every byte comes back'))
  t.equal(back.sha256, out.sha256, on('TLS reads into reused buffers: byte for byte'))
  const result = await within(session.done, 10_000, on('the TLS session to end after both half-closes'))
  t.equal(result.reason, 'done', on('half-close through a TLS socket with reused buffers'))
})

t.test(`setTlsSession (TLSSocket#setSession): a ticket is offered and resumed (${process.version})`, async (t) => {
  t.equal(canSetTlsSession(), true, on('TLSSocket#setSession exists'))
  const pki = await createTestPki()
  const server = tls.createServer({ key: pki.keyPem, cert: pki.certPem }, (s) => s.end())
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const options = { host: LOOPBACK, port, ca: pki.caCertPem, servername: 'localhost' }
  const first = tls.connect(options)
  t.teardown(() => first.destroy())
  const [ticket] = (await once(first, 'session')) as [Buffer]
  const second = tls.connect(options)
  t.teardown(() => second.destroy())
  t.equal(setTlsSession(second, ticket), true)
  await once(second, 'secureConnect')
  t.equal(second.isSessionReused(), true, on('TLSSocket#setSession before connect: the session is resumed'))
})

t.test(`the start-up self-test passes on this Node (${process.version}), and the switch skips it`, async (t) => {
  const fast = await checkFastPath(true)
  t.same(fast, { enabled: true }, on(`the self-test of checkFastPath (${fast.reason ?? ''})`))
  t.same(await checkFastPath(false), { enabled: false, reason: 'switched off (forward.nodeInternals: off)' })
})
