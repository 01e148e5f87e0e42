import { request, type RequestOptions } from 'node:https'
import pg from 'pg'
import t from 'tap'
import { systemClock } from '../../src/clock.js'
import { createLogger } from '../../src/observe/index.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { PostgresStore } from '../../src/store/index.js'
import { startPostgres } from '../helpers/postgres.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, ManualClock, openTunnel } from '../helpers/world.js'

function policyFor(port: number): PolicyDoc {
  return {
    version: 1,
    resources: [{ name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${port}` }],
    roles: [{ name: 'etl', grants: ['db'] }],
    accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
  }
}

t.test('a gateway failing closed (postgres.maxStaleness) refuses and ends sessions with ERR_STORE_STALE, to the client and in the audit log', async (t) => {
  const own = await startPostgres(t)
  t.teardown(() => own.stop())
  const setup = new pg.Client({ host: own.host, port: own.port, user: 'postgres', database: 'postgres' })
  await setup.connect()
  await setup.query('CREATE DATABASE stale')
  await setup.end()
  const upstream = await countingUpstream(t)
  const clock = new ManualClock(Date.now())
  const world = await createWorld(t, {
    policy: policyFor(upstream.port),
    clock,
    config: {
      store: 'postgres',
      postgres: { connection: `postgresql://postgres@127.0.0.1:${own.port}/stale`, checkInterval: '1s', connectTimeout: '1s', maxStaleness: '30s' },
    },
  })
  const etl = await world.serviceToken('svc_etl')
  const admin = new PostgresStore({ config: world.config, clock: systemClock, logger: createLogger({ level: 'silent' }) })
  await admin.migrate()
  await admin.replace(world.policy)
  await admin.close()

  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  const live = await openTunnel(t, port, world.caPem, etl, 'db')
  t.match(live.reply, { ok: true }, 'served while the store answers')
  live.socket.resume()

  await own.stop()
  for (let i = 0; i < 60 && !running.store.stale(); i++) {
    clock.advance(1000)
    await new Promise((r) => setTimeout(r, 20))
  }
  await until(() => running.store.stale(), 20_000, 'failing closed after maxStaleness')

  t.match(await world.logs.waitFor((l) => l.event === 'session_revoked'), { account: 'svc_etl', resource: 'db', code: 'ERR_STORE_STALE' }, 'the live session ends with the store code')
  t.match(await world.logs.waitFor((l) => l.event === 'session_end' && l.account === 'svc_etl'), { reason: 'revoked:ERR_STORE_STALE' })

  const refused = await openTunnel(t, port, world.caPem, etl, 'db')
  t.match(refused.reply, { ok: false, code: 'ERR_STORE_STALE' }, 'a new session is refused with the store code, not ERR_ACCOUNT_UNKNOWN')
  t.match(await world.logs.waitFor((l) => l.event === 'tunnel_denied'), { code: 'ERR_STORE_STALE', resource: 'db' }, 'the audit log says why')
  t.notOk(world.logs.text().includes('ERR_ACCOUNT_UNKNOWN'), 'the empty closed policy never speaks for itself')
  t.equal(upstream.accepted, 1, 'the refused tunnel never dialled')

  // The sidecar's API too: not a token refusal (ERR_ACCOUNT_UNKNOWN would stop a sidecar), a gateway to fail over from.
  const api = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/resources', ca: world.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'], headers: { authorization: `Bearer ${etl}` }, agent: false } as RequestOptions, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(api.status, 503)
  t.match(JSON.parse(api.body), { code: 'ERR_STORE_STALE' })
})
