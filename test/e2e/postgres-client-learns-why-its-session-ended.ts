import pg from 'pg'
import t from 'tap'
import { pgClient, startStack } from '../helpers/stack.js'
import { until } from '../helpers/until.js'

/** The first 'error' a pg client emits (a FATAL ErrorResponse on an idle connection), bounded. */
function nextError(client: pg.Client): Promise<Error & { code?: string }> {
  return Promise.race([
    new Promise<Error & { code?: string }>((resolve) => client.once('error', resolve)),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no error reached the client within 10 s')), 10_000).unref()),
  ])
}

t.test('a PostgreSQL client whose account is suspended, or whose grant is revoked, reads the keyway code; new connections are told why', async (t) => {
  const stack = await startStack(t)
  const sidecar = await stack.sidecar(await stack.service('etl-nightly', 'etl'))

  // Suspension: the live session ends with an ErrorResponse, not "server closed the connection unexpectedly".
  const first = await pgClient(t, stack.overridePort)
  t.same((await first.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  const suspended = nextError(first)
  await stack.admin('services', 'suspend', 'etl-nightly')
  const err = await suspended
  t.match(err.message, /^keyway: ERR_ACCOUNT_SUSPENDED: /, 'the message names the keyway code')
  t.equal(err.code, '28000', 'SQLSTATE invalid_authorization_specification')
  await stack.admin('services', 'resume', 'etl-nightly')

  // Revocation. The gateway applies the resume when its watcher fires: until then a new client is refused.
  let second: pg.Client | undefined
  await until(
    async () => {
      second = await pgClient(t, stack.overridePort).catch(() => undefined)
      return second !== undefined
    },
    20_000,
    'the resumed account to connect',
  )
  if (second === undefined) return
  t.same((await second.query('SELECT 2 AS two')).rows, [{ two: 2 }])
  const revoked = nextError(second)
  await stack.admin('roles', 'ungrant', 'etl', 'warehouse')
  const err2 = await revoked
  t.match(err2.message, /^keyway: ERR_GRANT_DENIED: /)
  t.equal(err2.code, '28000', 'SQLSTATE invalid_authorization_specification')

  // The removed grant's port stays bound for a while and tells each new client why, instead of Connection refused.
  const late = new pg.Client({ host: '127.0.0.1', port: stack.overridePort, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 })
  late.on('error', () => {})
  const refused = await late.connect().then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  )
  t.match(refused, { message: /^keyway: ERR_GRANT_DENIED: /, code: '28000' }, 'a new connection learns the refusal')
  const status = JSON.parse((await sidecar.run(['status', '--json'])).stdout) as { resources: Array<{ name: string; state: string; reason?: string; fix?: string }> }
  t.match(status.resources.find((r) => r.name === 'warehouse'), { state: 'grant removed', reason: 'grant_removed', fix: /grant was removed/ })
  t.match(await sidecar.daemon.waitLog((l) => l.event === 'resource_grant_removed'), { resource: 'warehouse', grace_ms: 60_000 })
})
