import t from 'tap'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { get } from 'node:http'
import { pgClient, startStack } from '../helpers/stack.js'

function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve(body))
    }).on('error', reject)
  })
}

t.test('SIGHUP reloads the policy; a broken file keeps the last good policy, logs file:line:col and counts a failure', async (t) => {
  const stack = await startStack(t, { gatewayEnv: { KEYWAY_GATEWAY_WATCH_POLICY: 'false' } })
  const token = await stack.service('etl-nightly', 'etl')
  stack.gateway.child.kill('SIGHUP')
  await stack.gateway.waitLog((l) => l.event === 'policy_reloaded')
  await stack.sidecar(token)

  appendFileSync(join(stack.dir, 'policy.yaml'), '\n  - id: svc_broken\n    type: service\n    name: broken\n    roles: [no-such-role]\n')
  stack.gateway.child.kill('SIGHUP')
  const failed = await stack.gateway.waitLog((l) => l.event === 'policy_reload_failed')
  t.match(failed, { code: 'ERR_POLICY_INVALID', problems: [/policy\.yaml:\d+:\d+: .*no-such-role/] })
  const text = await metrics(stack.gatewayMetricsPort)
  t.match(text, /keyway_policy_reloads_total\{result="failed"\} 1/)
  t.match(text, /keyway_policy_last_reload_ok 0/)

  const client = await pgClient(t, stack.overridePort)
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the last good policy still admits the account')
})
