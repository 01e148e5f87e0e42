import t from 'tap'
import { idlePort } from '../helpers/ports.js'
import { pgClient, startStack } from '../helpers/stack.js'

t.test('revoking a grant mid-session ends that session within 1 s while another account runs on', async (t) => {
  const stack = await startStack(t)
  // A second resource on the same cluster for the other job, on its own override port.
  const reportsPort = await idlePort()
  await stack.admin('resources', 'add', 'warehouse-ro', '--kind', 'datasource', '--type', 'postgres', '--address', `127.0.0.1:${stack.pg.port}`, '--port-override', String(reportsPort))
  await stack.admin('roles', 'create', 'reporting')
  await stack.admin('roles', 'grant', 'reporting', 'warehouse-ro')
  await stack.sidecar(await stack.service('etl-nightly', 'etl'))
  await stack.sidecar(await stack.service('reports', 'reporting'))

  const etl = await pgClient(t, stack.overridePort)
  const reports = await pgClient(t, reportsPort)
  t.same((await etl.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  t.same((await reports.query('SELECT 2 AS two')).rows, [{ two: 2 }])

  const ended = new Promise((resolve) => etl.once('end', resolve))
  await stack.admin('roles', 'ungrant', 'etl', 'warehouse')
  const revokedAt = Date.now()
  // A generous bound on a loaded machine: the 1 s figure is measured by the bench
  // (bench/README.md), not asserted here. Bounded so a broken reload fails here, not at tap's timeout.
  await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error('the revoked session did not end within 10 s')), 10_000).unref())])
  t.pass(`the revoked session ended ${Date.now() - revokedAt} ms after the edit landed (bound: 10 s)`)
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_revoked'), { account_name: undefined, resource: 'warehouse', code: 'ERR_GRANT_DENIED' })
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_end' && l.resource === 'warehouse'), { reason: 'revoked:ERR_GRANT_DENIED' })

  t.same((await reports.query('SELECT 3 AS three')).rows, [{ three: 3 }], 'the other account\'s session is untouched')
  t.equal(stack.gateway.lines.filter((l) => l.event === 'session_end' && l.resource === 'warehouse-ro').length, 0)
})
