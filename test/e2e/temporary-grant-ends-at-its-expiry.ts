import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pgClient, startStack } from '../helpers/stack.js'

t.test('a temporary grant ends its session at its expiry', async (t) => {
  const stack = await startStack(t)
  const contractor = await stack.sidecar(await stack.service('contractor'))
  // Granted long enough for the sidecar's next sync, the bind and a connection on a loaded
  // machine, then shortened once the session is up: the test waits seconds for the expiry, not
  // the margin (the gateway runs in its own process, on the real clock).
  await stack.admin('grant', 'contractor', 'warehouse', '--for', '10m')
  // The sidecar binds the new grant on its next sync (auto-connect).
  const bound = await contractor.daemon.waitLog((l) => l.event === 'resource_bound' && l.resource === 'warehouse')
  t.ok(bound)
  const client = await pgClient(t, stack.overridePort)
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  const told = new Promise<Error>((resolve) => client.once('error', resolve))
  const ended = new Promise((resolve) => client.once('end', resolve))
  // Granting again gives the existing temporary grant a new end.
  await stack.admin('grant', 'contractor', 'warehouse', '--for', '4s')
  const expires = Date.parse(/expires: ['"]?([0-9TZ:.-]+)/.exec(readFileSync(join(stack.dir, 'policy.yaml'), 'utf8'))![1]!)
  t.ok(expires - Date.now() < 5_000, 'the grant now ends within seconds')
  await ended
  t.match(await told, { message: /^keyway: ERR_GRANT_EXPIRED: /, code: '28000' }, 'the client reads why')
  const late = Date.now() - expires
  // Never before the expiry; the sweep's promptness is a figure (target 1 s), bounded generously here.
  t.ok(late >= 0 && late < 10_000, `the session ended ${late} ms after the grant's expiry (target 1 s, bound 10 s)`)
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_revoked'), { resource: 'warehouse', code: 'ERR_GRANT_EXPIRED' })
  // The port stays bound for sidecar.grantRemovedGrace, telling new clients why, then is released.
  t.match(await contractor.daemon.waitLog((l) => l.event === 'resource_grant_removed' && l.resource === 'warehouse'), { resource: 'warehouse', grace_ms: 60_000 })
})
