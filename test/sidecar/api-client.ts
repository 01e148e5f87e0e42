import t, { type Test } from 'tap'
import * as https from 'node:https'
import * as tls from 'node:tls'
import { ManualClock } from '../../src/clock.js'
import { isKeywayError, type KeywayError } from '../../src/errors.js'
import type { ResourcesResponse } from '../../src/protocol/index.js'
import { ApiClient } from '../../src/sidecar/api-client.js'
import { Unreachable } from '../../src/sidecar/failover.js'
import { GatewayDialer } from '../../src/sidecar/gateway-dial.js'
import { startFakeGateway, LOOPBACK } from '../helpers/fake-gateway.js'
import { TOKEN, testPki } from '../fixtures/sidecar/harness.js'

const VIEW = { settings: { portOverrides: true, autoConnect: true }, resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: 15432 }] }

async function client(t: Test) {
  const pki = await testPki()
  const clock = new ManualClock()
  const dialer = new GatewayDialer({ ca: pki.caCertPem, servername: 'localhost', connectTls: tls.connect, clock, sessions: undefined })
  const api = new ApiClient({ ca: pki.caCertPem, dialer, connectTls: tls.connect, clock, timeoutMs: 5_000 })
  t.teardown(() => api.close())
  return { api, pki, clock }
}

t.test('JSON answers with ETag, 304 for an unchanged view, error answers as KeywayErrors with the status', async (t) => {
  const { api, pki } = await client(t)
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW })
  const gw = { host: LOOPBACK, port: fake.port }
  const first = await api.request<ResourcesResponse>(gw, 'GET', '/v1/resources', { token: TOKEN })
  t.match(first, { status: 200, body: VIEW, etag: '"g1"' })
  t.same(await api.request(gw, 'GET', '/v1/resources', { token: TOKEN, etag: '"g1"' }), { status: 304, etag: '"g1"' })
  const refused = (await api.request(gw, 'GET', '/v1/whoami', { token: 'wrong' }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(refused, 'ERR_TOKEN_SIGNATURE'))
  t.same(refused.detail, { status: 401 })
  const missing = (await api.request(gw, 'GET', '/v1/nothing', { token: TOKEN }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(missing, 'ERR_NOT_FOUND'))
})

t.test('a gateway that is down is Unreachable (the next one is tried)', async (t) => {
  const { api, pki } = await client(t)
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: VIEW })
  await fake.down()
  t.ok((await api.request({ host: LOOPBACK, port: fake.port }, 'GET', '/v1/resources', { token: TOKEN }).catch((e: unknown) => e)) instanceof Unreachable)
})

t.test('odd answers: an unknown code keeps its text under ERR_INTERNAL; a 2xx without JSON is ERR_INTERNAL', async (t) => {
  const { api, pki } = await client(t)
  const server = https.createServer({ key: pki.keyPem, cert: pki.certPem, ALPNProtocols: ['http/1.1'] }, (req, res) => {
    if (req.url === '/future') {
      res.writeHead(418, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: 'ERR_FROM_THE_FUTURE', message: 'new' }))
    } else {
      res.writeHead(200)
      res.end('not json')
    }
  })
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const gw = { host: LOOPBACK, port: (server.address() as { port: number }).port }
  const future = (await api.request(gw, 'GET', '/future', { token: TOKEN }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(future, 'ERR_INTERNAL'))
  t.equal(future.message, 'GET /future: ERR_FROM_THE_FUTURE: new')
  t.same(future.detail, { status: 418 })
  const text = (await api.request(gw, 'POST', '/text', { token: TOKEN, body: { a: 1 } }).catch((e: unknown) => e)) as KeywayError
  t.ok(isKeywayError(text, 'ERR_INTERNAL'))
  t.equal(text.message, 'POST /text: the gateway answered 200 without a JSON body')
})
