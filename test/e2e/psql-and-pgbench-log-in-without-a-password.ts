import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { cleanEnv } from '../helpers/processes.js'
import { startStack, type Stack } from '../helpers/stack.js'

const run = promisify(execFile)
// Only the gateway's secret file holds it.
const APP_PASSWORD = 'pgbench through keyway 3e9d'

function generationOf(stack: Stack): number {
  return Math.max(0, ...stack.gateway.lines.filter((l) => l.event === 'policy_reloaded').map((l) => l.generation as number))
}

/**
 * The environment of a job that holds no database password: no PGPASSWORD,
 * no ~/.pgpass (HOME is an empty folder), no PGPASSFILE, and `-w` on the
 * command lines so that libpq never prompts either.
 */
function passwordlessEnv(home: string): Record<string, string> {
  const env = cleanEnv({ HOME: home, PGPASSFILE: join(home, 'no-such-pgpass'), PGCONNECT_TIMEOUT: '20' })
  for (const k of Object.keys(env)) if (k.startsWith('PG') && k !== 'PGPASSFILE' && k !== 'PGCONNECT_TIMEOUT') delete env[k]
  return env
}

t.test('psql and pgbench reach PostgreSQL through sidecar and gateway, the gateway logging in as its configured user', async (t) => {
  const stack = await startStack(t, { postgres: { auth: 'scram' } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.pg.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  t.teardown(() => admin.end().catch(() => undefined))
  await admin.query(`CREATE ROLE app LOGIN PASSWORD '${APP_PASSWORD}'`)
  await admin.query('CREATE DATABASE bench OWNER app')
  const secret = join(stack.dir, 'warehouse-password')
  writeFileSync(secret, `${APP_PASSWORD}\n`, { mode: 0o600 })
  const before = generationOf(stack)
  await stack.admin('resources', 'set', 'warehouse', '--username', 'app', '--password-file', secret)
  await stack.gateway.waitLog((l) => l.event === 'policy_reloaded' && (l.generation as number) > before)
  await stack.sidecar(await stack.service('bench-job', 'etl'))
  const port = String(stack.overridePort)
  const home = mkdtempSync(join(tmpdir(), 'keyway-home-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const env = passwordlessEnv(home)

  // Direct, psql cannot log in as app without the password: scram-sha-256 is required.
  const direct = await run('psql', ['-w', '-h', '127.0.0.1', '-p', String(stack.pg.port), '-U', 'app', '-d', 'bench', '-Atc', 'select 1'], { env }).then(
    () => undefined,
    (err: { stderr?: string }) => err.stderr ?? 'failed',
  )
  t.match(direct, /password|fe_sendauth/, 'directly, psql has no password to give')

  await t.test("psql -U anything with no password runs as the gateway's configured user", async (t) => {
    const { stdout, stderr } = await run('psql', ['-w', '-h', '127.0.0.1', '-p', port, '-U', 'anything', '-d', 'bench', '-Atc', 'select current_user, current_database()'], { env })
    t.equal(stdout.trim(), 'app|bench', stderr)
    t.match(await stack.gateway.waitLog((l) => l.event === 'session_start' && l.account_name === 'bench-job'), { resource: 'warehouse', upstream_user: 'app' })
  })

  await t.test('pgbench -i, then pgbench -T 3 (and -C, a new connection per transaction) with zero failed transactions', async (t) => {
    const common = ['-h', '127.0.0.1', '-p', port, '-U', 'anything']
    const init = await run('pgbench', ['-i', '-q', ...common, 'bench'], { env })
    t.match(init.stderr, /done in/, 'pgbench -i completed')
    for (const extra of [[], ['-C']]) {
      const { stdout, stderr } = await run('pgbench', ['-T', '3', '-c', '2', ...extra, ...common, 'bench'], { env, timeout: 120_000 })
      const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? 0)
      t.ok(processed > 0, `pgbench ${extra.join(' ')}: ${processed} transactions (${/tps = [\d.]+/.exec(stdout)?.[0] ?? '?'})`)
      t.match(stdout, /number of failed transactions: 0 \(0\.000%\)/, `no failed transaction ${stderr.trim().slice(-500)}`)
    }
    const inBench = new pg.Client({ host: '127.0.0.1', port: stack.pg.port, user: 'postgres', database: 'bench' })
    await inBench.connect()
    t.teardown(() => inBench.end().catch(() => undefined))
    const { rows } = await inBench.query<{ owner: string }>("SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'pgbench_accounts'")
    t.same(rows, [{ owner: 'app' }], 'the tables belong to the upstream user')
  })

  t.notOk(stack.gateway.stderr().includes(APP_PASSWORD), 'the secret is never logged')
})
