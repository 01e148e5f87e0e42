import t, { type Test } from 'tap'
import { once } from 'node:events'
import * as tls from 'node:tls'
import { TlsSessionCache, type ConnectTls } from '../../src/sidecar/session-cache.js'
import { startFakeGateway, LOOPBACK } from '../helpers/fake-gateway.js'
import { TOKEN, testPki } from '../fixtures/sidecar/harness.js'

async function setup(t: Test) {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: { settings: { portOverrides: false, autoConnect: false }, resources: [] } })
  const offered: (Buffer | undefined)[] = []
  const connectTls: ConnectTls = (options) => {
    offered.push(options.session)
    return tls.connect(options)
  }
  const options = { host: LOOPBACK, port: fake.port, ca: pki.caCertPem, servername: 'localhost', ALPNProtocols: ['keyway/1'] }
  const open = async (cache: TlsSessionCache): Promise<tls.TLSSocket> => {
    const socket = cache.connect(connectTls, options, fake.address)
    t.teardown(() => socket.destroy())
    await once(socket, 'secureConnect')
    return socket
  }
  return { fake, open, offered }
}

t.test('the ticket a gateway issued is offered on the next connection to it, which resumes', async (t) => {
  const { fake, open } = await setup(t)
  const cache = new TlsSessionCache()
  const first = await open(cache)
  t.notOk(first.isSessionReused(), 'a full handshake first')
  await once(first, 'session')
  t.ok(cache.ticket(fake.address), 'the ticket is kept')
  t.equal(cache.size, 1)
  t.equal(cache.ticket('127.0.0.1:1'), undefined, 'per gateway')

  const second = await open(cache)
  t.ok(second.isSessionReused(), 'an abbreviated handshake')
})

t.test('a forgotten gateway gets a full handshake again', async (t) => {
  const { fake, open } = await setup(t)
  const cache = new TlsSessionCache()
  await once(await open(cache), 'session')
  cache.forget(fake.address)
  t.equal(cache.size, 0)
  t.notOk((await open(cache)).isSessionReused())
})

t.test('the ticket is set on the socket, not passed through options (parsed once)', async (t) => {
  const { open, offered } = await setup(t)
  const cache = new TlsSessionCache()
  await once(await open(cache), 'session')
  await open(cache)
  t.same(offered, [undefined, undefined], 'tls.connect never parses the ticket itself')
})
