import t, { type Test } from 'tap'
import { request } from 'node:http'
import { Registry } from 'prom-client'
import { ObservabilityServer, silentLogger } from '../../src/observe/index.js'

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function serve(t: Test, detail: boolean | undefined): Promise<number> {
  const server = new ObservabilityServer({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    logger: silentLogger(),
    ready: () => 'policy /etc/keyway/policy.yaml:3:1: broken',
    readyDetail: (full) => ({ policy: { generation: 4, ...(full ? { error: '/etc/keyway/policy.yaml:3:1: broken' } : {}) } }),
    ...(detail === undefined ? {} : { detail }),
  })
  t.teardown(() => server.close())
  return (await server.start()).port
}

t.test('without detail, /readyz gives the status and no reason or error text; /healthz and /metrics still answer', async (t) => {
  const port = await serve(t, false)
  const ready = await get(port, '/readyz')
  t.equal(ready.status, 503, 'probes still see not ready')
  t.same(JSON.parse(ready.body), { status: 'not ready', policy: { generation: 4 } })
  t.notMatch(ready.body, /\/etc\/keyway/, 'no file path')
  t.equal((await get(port, '/healthz')).status, 200)
  t.equal((await get(port, '/metrics')).status, 200)
})

t.test('with detail (the default, for loopback), /readyz says why', async (t) => {
  const port = await serve(t, undefined)
  const ready = await get(port, '/readyz')
  t.equal(ready.status, 503)
  t.match(JSON.parse(ready.body), { status: 'not ready', reason: /policy\.yaml/, policy: { error: /policy\.yaml/ } })
})
