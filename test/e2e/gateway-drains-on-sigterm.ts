import t from 'tap'
import { pgClient, startStack } from '../helpers/stack.js'

t.test('SIGTERM: the gateway stops accepting, lets sessions drain for the grace, closes the rest and exits 0', async (t) => {
  const stack = await startStack(t, { gatewayEnv: { KEYWAY_GATEWAY_DRAIN_GRACE: '5s' } })
  await stack.sidecar(await stack.service('etl-nightly', 'etl'))
  const client = await pgClient(t, stack.overridePort)
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  const ended = new Promise((resolve) => client.once('end', resolve))
  const started = Date.now()
  stack.gateway.child.kill('SIGTERM')
  await stack.gateway.waitLog((l) => l.event === 'gateway_draining')
  t.same((await client.query('SELECT 2 AS two')).rows, [{ two: 2 }], 'a live session keeps working during the grace')
  await ended
  const code = await stack.gateway.exited
  t.equal(code, 0, 'exit 0')
  // A grace long enough for the query above on a loaded machine.
  t.ok(Date.now() - started >= 4_900, 'the session was given the grace period')
  t.match(await stack.gateway.waitLog((l) => l.event === 'gateway_closed'), { forced: 1 })
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_end'), { reason: 'shutdown' })
})

t.test('SIGTERM with no live session exits at once with 0', async (t) => {
  const stack = await startStack(t, { gatewayEnv: { KEYWAY_GATEWAY_DRAIN_GRACE: '30s' } })
  const started = Date.now()
  t.equal(await stack.gateway.stop('SIGTERM'), 0)
  t.ok(Date.now() - started < 20_000, 'no wait for the 30 s grace without sessions (bound 20 s)')
})
