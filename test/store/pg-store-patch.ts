import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import { createLogger } from '../../src/observe/index.js'
import { parsePolicyText, patchDepth, type CompiledPolicy } from '../../src/policy/index.js'
import { PostgresStore } from '../../src/store/index.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'

const logger = createLogger({ level: 'silent' })

const RESOURCES = ['warehouse', 'cache', 'box', 'web']
const POLICY = `version: 1
settings:
  portOverrides: true
  portRange: [20000, 20999]
resources:
  - { name: warehouse, kind: datasource, type: postgres, address: '127.0.0.1:5432' }
  - { name: cache, kind: datasource, type: redis, address: '127.0.0.1:6379', portOverride: 20500 }
  - { name: box, kind: server, type: ssh, address: '127.0.0.1:22' }
  - { name: web, kind: website, type: http, address: '127.0.0.1:80' }
roles:
  - { name: etl, grants: [warehouse, cache] }
  - { name: ops, grants: [box] }
accounts:
${Array.from({ length: 12 }, (_, i) => `  - { id: svc_${i}, type: service, name: s${i}${i % 3 === 0 ? ', roles: [etl]' : ''}${i % 3 === 1 ? ', grants: [{ resource: web }]' : ''} }`).join('\n')}
  - { id: usr_ann, type: user, email: Ann@Example.com, roles: [ops] }
`

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

async function config(t: Test, db: string): Promise<KeywayConfig> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-patch-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  const file = join(dir, 'setup', 'keyway.yaml')
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n  checkInterval: 1h\n`)
  return loadConfig({ file, env: {} })
}

function open(t: Test, c: KeywayConfig, workerMinAccounts?: number): PostgresStore {
  const store = new PostgresStore({ config: c, clock: systemClock, logger, ...(workerMinAccounts === undefined ? {} : { workerMinAccounts }) })
  t.teardown(() => store.close())
  return store
}

/** Everything a gateway reads, account by account, in a comparable form. */
function view(p: CompiledPolicy, now: number): unknown {
  return {
    size: p.accounts.size,
    accounts: [...p.accounts.values()]
      .map((a) => ({
        id: a.id,
        byName: p.accountByName(a.name)?.id,
        account: { ...a, tokens: [...a.tokens.values()] },
        decisions: RESOURCES.map((r) => p.decide(a.id, r, now)),
        effective: p.effectiveResources(a.id, now).map((e) => [e.resource.name, e.resource.portOverride, e.sources]),
      }))
      .sort((x, y) => (x.id < y.id ? -1 : 1)),
  }
}

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32
  }
}

t.test('random admin edits applied as account patches give the same policy as a fresh full load', async (t) => {
  const c = await config(t, 'random')
  const admin = open(t, c)
  await admin.migrate()
  await admin.replace(parsePolicyText(POLICY, 'p').value as never)
  const gateway = open(t, c)
  await gateway.start()
  t.equal(gateway.lastLoad, 'full', 'the first load is whole')
  const r = rng(19)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  let created = 0
  let patched = 0
  const ops = admin.admin
  for (let edit = 0; edit < 80; edit++) {
    const names = [...gateway.current().accounts.values()].filter((a) => a.type === 'service').map((a) => a.name)
    const who = pick(names)
    const roll = r()
    // Refusals (a direct grant while holding a role, ...) are part of the mix: they write nothing.
    const op =
      roll < 0.2 ? ops.grant(who, pick(RESOURCES), r() < 0.5 ? 3_600_000 : undefined)
      : roll < 0.35 ? ops.revoke(who, pick(RESOURCES))
      : roll < 0.5 ? ops.assignRole(who, pick(['etl', 'ops']), true)
      : roll < 0.6 ? ops.unassignRole(who, pick(['etl', 'ops']))
      : roll < 0.7 ? ops.createService(`new-${created++}`, r() < 0.5 ? 'ops' : undefined)
      : roll < 0.78 ? ops.deleteService(who)
      : roll < 0.88 ? ops.rotateToken(who, r() < 0.5 ? 0 : 3_600_000)
      : roll < 0.95 ? ops.revokeTokens(who)
      : ops.assignRole('ann@example.com', pick(['etl', 'ops']), true)
    await op.catch(() => undefined)
    // Sometimes several generations are applied in one load.
    if (r() < 0.6) {
      const result = await gateway.reload()
      t.ok(result.ok, `edit ${edit}: the load succeeded`)
      if (result.ok && result.changed && gateway.lastLoad === 'accounts') patched++
    }
  }
  await gateway.reload()
  t.ok(patched > 20, `most changes were applied as patches (${patched})`)
  t.ok(patchDepth(gateway.current()).patches > 0, 'the served policy is a patched one')
  const fresh = open(t, c)
  await fresh.start()
  t.equal(fresh.lastLoad, 'full')
  for (const now of [Date.now(), Date.now() + 2 * 3_600_000]) {
    t.same(view(gateway.current(), now), view(fresh.current(), now), 'the patched policy decides as a full load of the same generation')
  }
})

t.test('a gap in the change log, or a change to roles, makes the gateway load the whole policy (on its worker thread)', async (t) => {
  const c = await config(t, 'gap')
  const admin = open(t, c)
  await admin.migrate()
  await admin.replace(parsePolicyText(POLICY, 'p').value as never)
  // Every whole load takes the worker's path, as a large policy's does.
  const gateway = open(t, c, 0)
  await gateway.start()
  await admin.admin.revoke('s1', 'web')
  await gateway.reload()
  t.equal(gateway.lastLoad, 'accounts', 'one revocation: patched')
  t.equal(gateway.current().decide('svc_1', 'web', Date.now()).allow, false)

  const g = await admin.generation()
  await admin.admin.revoke('s4', 'web')
  await admin.admin.grant('s7', 'box')
  // The change log lost a generation (a restore, a pruned log): what changed in it is unknown.
  await admin.pool.query('DELETE FROM keyway_changes WHERE generation = $1', [g + 1])
  await gateway.reload()
  t.equal(gateway.lastLoad, 'full', 'a gap: a full resync')
  t.equal(gateway.current().decide('svc_4', 'web', Date.now()).allow, false, 'the change in the lost generation is applied')
  t.equal(gateway.current().decide('svc_7', 'box', Date.now()).allow, true)
  t.same(patchDepth(gateway.current()), { patches: 0, accounts: 0 }, 'and the patches are flattened')

  await admin.admin.grantRole('ops', 'web')
  await gateway.reload()
  t.equal(gateway.lastLoad, 'full', 'a role changed: a full load')
  t.equal(gateway.current().decide('usr_ann', 'web', Date.now()).allow, true)

  // The frame the worker sent back is what the next patch compiles with.
  await admin.admin.assignRole('s2', 'ops', true)
  await gateway.reload()
  t.equal(gateway.lastLoad, 'accounts')
  t.equal(gateway.current().decide('svc_2', 'web', Date.now()).allow, true, 'the new role grant (loaded whole) reaches the patched account')
})
