import t, { type Test } from 'tap'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { readAll } from '../helpers/net.js'
import { until } from '../helpers/until.js'
import { createWorld, ManualClock } from '../helpers/world.js'

const policy = {
  version: 1 as const,
  resources: [],
  accounts: [{ id: 'svc_etl', type: 'service' as const, name: 'etl', roles: [] }],
}

async function setup(t: Test, gateway: Record<string, unknown> = {}) {
  const clock = new ManualClock(Date.now())
  const world = await createWorld(t, { policy, clock, gateway })
  const running = await world.startGateway()
  return { clock, world, running, port: running.gateway.address()!.port }
}

/** An API connection (ALPN http/1.1) from `localAddress` on the loopback range. */
function apiSocket(t: Test, port: number, caPem: string, localAddress = '127.0.0.1'): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, localAddress, ca: caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] } as ConnectionOptions, () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
    socket.on('error', () => {})
    t.teardown(() => socket.destroy())
  })
}

t.test('headers trickled one line at a time are cut at apiHeadersTimeout with 408 (injected clock)', async (t) => {
  const { clock, world, running, port } = await setup(t, { apiHeadersTimeout: '10s', apiRequestTimeout: '30s' })
  const slow = await apiSocket(t, port, world.caPem, '127.0.0.2')
  const answer = readAll(slow)
  await until(() => running.gateway.apiConnections === 1, 20_000, 'the API to take the connection')
  slow.write('GET /v1/whoami HTTP/1.1\r\n')
  for (let i = 0; i < 3; i++) {
    clock.advance(3_000)
    slow.write(`x-trickle-${i}: ${i}\r\n`)
  }
  t.equal(running.gateway.apiConnections, 1, 'still open at 9 s')
  clock.advance(1_000)
  const text = (await answer).toString()
  t.match(text, /^HTTP\/1\.1 408 /)
  t.match(text, /"code":"ERR_API_HEADERS_TIMEOUT"/)
  await until(() => running.gateway.apiConnections === 0, 20_000, 'the connection to close')
  t.match(world.logs.events('api_rejected'), [{ code: 'ERR_API_HEADERS_TIMEOUT', client: /^127\.0\.0\.2:\d+$/ }])
  t.match(await running.registry.metrics(), /keyway_gateway_api_rejected_total\{code="ERR_API_HEADERS_TIMEOUT"\} 1/)
})

t.test('a body that never completes is cut at apiRequestTimeout, counted from the connection', async (t) => {
  const { clock, world, running, port } = await setup(t, { apiHeadersTimeout: '10s', apiRequestTimeout: '30s' })
  const slow = await apiSocket(t, port, world.caPem)
  const answer = readAll(slow)
  await until(() => running.gateway.apiConnections === 1, 20_000, 'the API to take the connection')
  const armed = clock.pending
  slow.write('POST /v1/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"email":')
  await until(() => clock.pending === armed - 1, 20_000, 'the headers deadline to be cleared by the request')
  clock.advance(29_999)
  t.equal(running.gateway.apiConnections, 1, 'within the request deadline')
  clock.advance(1)
  t.match((await answer).toString(), /^HTTP\/1\.1 408 [^]*ERR_API_REQUEST_TIMEOUT/)
  t.match(world.logs.events('api_rejected'), [{ code: 'ERR_API_REQUEST_TIMEOUT' }])
})

t.test('a kept-alive connection gets fresh deadlines after each answer', async (t) => {
  const { clock, world, running, port } = await setup(t, { apiHeadersTimeout: '10s', apiRequestTimeout: '30s' })
  const s = await apiSocket(t, port, world.caPem)
  await until(() => running.gateway.apiConnections === 1, 20_000, 'the API to take the connection')
  let seen = ''
  s.on('data', (c: Buffer) => (seen += c.toString()))
  for (let i = 1; i <= 4; i++) {
    clock.advance(9_000)
    s.write('GET /v1/whoami HTTP/1.1\r\nhost: x\r\n\r\n')
    await until(() => (seen.match(/HTTP\/1\.1 401/g) ?? []).length === i, 20_000, `answer ${i}`)
  }
  t.equal(running.gateway.apiConnections, 1, '36 s of polling on one connection, each request within its deadlines')
  t.equal(world.logs.events('api_rejected').length, 0)
})

t.test('one address holds at most apiMaxConnectionsPerAddress API connections; others are not affected', async (t) => {
  const { world, running, port } = await setup(t, { apiMaxConnectionsPerAddress: 3 })
  for (let i = 0; i < 3; i++) await apiSocket(t, port, world.caPem, '127.0.0.2')
  await until(() => running.gateway.apiConnections === 3, 20_000, 'three connections')
  const fourth = await apiSocket(t, port, world.caPem, '127.0.0.2')
  const text = (await readAll(fourth)).toString()
  t.match(text, /^HTTP\/1\.1 429 [^]*"code":"ERR_API_ADDRESS_LIMIT"/)
  const other = await apiSocket(t, port, world.caPem, '127.0.0.3')
  let seen = ''
  other.on('data', (c: Buffer) => (seen += c.toString()))
  other.write('GET /v1/whoami HTTP/1.1\r\nhost: x\r\n\r\n')
  await until(() => seen.includes('ERR_TOKEN_MISSING'), 20_000, 'another address to be served')
  t.match(world.logs.events('api_rejected'), [{ code: 'ERR_API_ADDRESS_LIMIT', client: /^127\.0\.0\.2:/ }])
})
