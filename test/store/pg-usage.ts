import pg from 'pg'
import t from 'tap'
import { createUser } from '../../src/admin/index.js'
import { ManualClock, systemClock } from '../../src/clock.js'
import { createLogger } from '../../src/observe/index.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { PostgresStore } from '../../src/store/index.js'
import { TOKEN_USE_FLUSH_MS, TokenUsageWriter, type Queryable } from '../../src/store/pg-usage.js'
import { startPostgres } from '../helpers/postgres.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, openTunnel } from '../helpers/world.js'

const logger = createLogger({ level: 'silent' })
const PASSWORD = 'correct horse battery'
const tick = () => new Promise((resolve) => setImmediate(resolve))

t.test('uses are batched: at most once per token per minute, written every few seconds in one statement (injected clock)', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1))
  const writes: { ids: string[]; at: string[] }[] = []
  const pool: Queryable = {
    query: async (_text: string, values?: unknown[]) => {
      writes.push({ ids: values![0] as string[], at: values![1] as string[] })
      return { rows: [] }
    },
  }
  const writer = new TokenUsageWriter({ pool: pool as never, clock, logger })
  const t0 = clock.now()
  writer.record('a')
  writer.record('a')
  writer.record('b')
  clock.advance(TOKEN_USE_FLUSH_MS - 1)
  writer.record('a')
  await tick()
  t.same(writes, [], 'nothing written before the flush interval')
  clock.advance(1)
  await tick()
  t.same(writes, [{ ids: ['a', 'b'], at: [new Date(t0).toISOString(), new Date(t0).toISOString()] }], 'one statement for the batch; the repeats were not noted')
  writes.length = 0
  clock.advance(50_000)
  writer.record('a')
  clock.advance(TOKEN_USE_FLUSH_MS)
  await tick()
  t.same(writes, [], 'a token used again within the minute is not written again')
  clock.advance(10_000)
  writer.record('a')
  writer.record('c')
  await writer.close()
  t.same(writes.map((w) => w.ids), [['a', 'c']], 'after the minute it is noted again; close() writes what is pending')
  writer.record('d')
  clock.advance(TOKEN_USE_FLUSH_MS)
  await writer.close()
  t.equal(writes.length, 1, 'nothing after close')
})

t.test('a gateway on PostgreSQL writes a service token\'s last use to the store; the admin API token list shows it as lastUsed', async (t) => {
  const own = await startPostgres(t)
  t.teardown(() => own.stop())
  const root = new pg.Client({ host: own.host, port: own.port, user: 'postgres', database: 'postgres' })
  await root.connect()
  await root.query('CREATE DATABASE usage')
  await root.end()
  const upstream = await countingUpstream(t)
  const clock = new ManualClock(Date.now())
  const policy: PolicyDoc = {
    version: 1,
    resources: [{ name: 'db', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${upstream.port}` }],
    roles: [{ name: 'etl', grants: ['db'] }],
    accounts: [{ id: 'svc_etl', type: 'service', name: 'etl', roles: ['etl'] }],
  }
  const world = await createWorld(t, {
    policy,
    clock,
    config: { store: 'postgres', postgres: { connection: `postgresql://postgres@127.0.0.1:${own.port}/usage`, checkInterval: '1s' }, admin: { listen: '127.0.0.1:0' } },
  })
  const etl = await world.serviceToken('svc_etl')
  const tokenId = world.policy.accounts!.find((a) => a.id === 'svc_etl')!.tokens![0]!.id
  const admin = new PostgresStore({ config: world.config, clock: systemClock, logger })
  t.teardown(() => admin.close())
  await admin.migrate()
  await admin.replace(world.policy)
  await createUser(admin.adminContext(), 'root@example.com', { password: PASSWORD, admin: true })

  const running = await world.startGateway()
  const base = `http://127.0.0.1:${running.admin!.address()!.port}`
  const login = await fetch(`${base}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'root@example.com', password: PASSWORD }) })
  t.equal(login.status, 200)
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!
  const listed = async () => ((await (await fetch(`${base}/v1/admin/services/etl/tokens`, { headers: { cookie } })).json()) as { items: { id: string; lastUsed?: string | null }[] }).items
  t.match(await listed(), [{ id: tokenId, lastUsed: null }], 'never used yet')

  const usedAt = clock.now()
  const tunnel = await openTunnel(t, running.gateway.address()!.port, world.caPem, etl, 'db')
  t.match(tunnel.reply, { ok: true })
  tunnel.socket.destroy()
  const rows = async () => (await admin.pool.query<{ token_id: string; last_used: Date }>('SELECT token_id, last_used FROM keyway_token_last_used')).rows
  t.same(await rows(), [], 'noted, not written before the flush')
  clock.advance(TOKEN_USE_FLUSH_MS)
  await until(async () => (await rows()).length === 1, 20_000, 'the batch to be written')
  t.same((await rows()).map((r) => [r.token_id, r.last_used.getTime()]), [[tokenId, usedAt]], 'the token id and the time of use, never the token')
  t.match(await listed(), [{ id: tokenId, lastUsed: new Date(usedAt).toISOString() }], 'the admin API shows it')
})
