import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { openTunnel } from '../helpers/world.js'
import { pgClient, startStack } from '../helpers/stack.js'

t.test('a service account with a role reaches PostgreSQL through keyway listen and keyway gateway; one without the grant never does', async (t) => {
  const stack = await startStack(t)
  const etlToken = await stack.service('etl-nightly', 'etl')
  const biToken = await stack.service('bi-dashboard')

  const etl = await stack.sidecar(etlToken)
  const status = await etl.run(['status', '--json'])
  t.equal(status.code, 0)
  t.match(JSON.parse(status.stdout), { resources: [{ name: 'warehouse', kind: 'datasource', type: 'postgres', localAddress: `127.0.0.1:${stack.overridePort}`, state: 'bound' }] })

  const before = stack.pg.connectionsReceived()
  const client = await pgClient(t, stack.overridePort)
  const { rows } = await client.query<{ answer: number }>('SELECT 6 * 7 AS answer')
  t.same(rows, [{ answer: 42 }], 'psql-like client works on 127.0.0.1:<override port>')
  t.equal(stack.pg.connectionsReceived(), before + 1, 'the upstream saw exactly the one session')

  // The account without a grant: nothing is bound for it, and a tunnel it opens is refused before any dial.
  const bi = await stack.sidecar(biToken)
  const biStatus = JSON.parse((await bi.run(['status', '--json'])).stdout) as { resources: unknown[] }
  t.same(biStatus.resources, [], 'no resource is bound for an account without grants')
  const connected = await bi.run(['connect', 'warehouse'])
  t.equal(connected.code, 1)
  t.match(connected.stderr, /ERR_GRANT_DENIED/)
  // A tunnel opened straight at the gateway with its token is refused before any upstream dial.
  const tunnel = await openTunnel(t, stack.gatewayPort, readFileSync(join(stack.dir, 'ca.pem'), 'utf8'), biToken, 'warehouse')
  t.match(tunnel.reply, { ok: false, code: 'ERR_GRANT_DENIED' })
  t.match(await stack.gateway.waitLog((l) => l.event === 'tunnel_denied'), { code: 'ERR_GRANT_DENIED', resource: 'warehouse', token_fp: /^sha256:/ })
  t.equal(stack.pg.connectionsReceived(), before + 1, 'the upstream never saw a connection for the refused account')

  await client.end()
  const end = await stack.gateway.waitLog((l) => l.event === 'session_end')
  t.match(end, { account_name: 'etl-nightly', resource: 'warehouse', reason: 'done' })
  t.ok((end.bytes_in as number) > 0 && (end.bytes_out as number) > 0)
  const logs = JSON.stringify(stack.gateway.lines)
  t.notOk(logs.includes(etlToken) || logs.includes(biToken), 'no token in the gateway logs')
})
