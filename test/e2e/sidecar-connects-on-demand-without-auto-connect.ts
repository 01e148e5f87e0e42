import t from 'tap'
import { pgClient, startStack } from '../helpers/stack.js'

// One stack for both cases: starting PostgreSQL and a gateway is most of this file's time.
t.test('auto-connect off', async (t) => {
  const stack = await startStack(t)
  await stack.admin('settings', 'set', 'auto-connect', 'off')

  await t.test('nothing is bound until keyway connect; keyway disconnect unbinds', async (t) => {
    const sidecar = await stack.sidecar(await stack.service('notebook', 'etl'))
    const before = JSON.parse((await sidecar.run(['status', '--json'])).stdout) as { resources: { name: string; state: string }[] }
    t.match(before.resources, [{ name: 'warehouse', state: 'not connected' }])

    const connected = await sidecar.run(['connect', 'warehouse'])
    t.equal(connected.code, 0, connected.stderr)
    t.match(connected.stdout, `127.0.0.1:${stack.overridePort}`)
    const client = await pgClient(t, stack.overridePort)
    t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
    await client.end()

    const disconnected = await sidecar.run(['disconnect', 'warehouse'])
    t.equal(disconnected.code, 0, disconnected.stderr)
    const after = JSON.parse((await sidecar.run(['status', '--json'])).stdout) as { resources: { name: string; state: string }[] }
    t.match(after.resources, [{ name: 'warehouse', state: 'not connected' }])
    await t.rejects(pgClient(t, stack.overridePort), 'nothing listens once disconnected')
  })

  await t.test('port overrides off: keyway connect binds an ephemeral loopback port and reports it', async (t) => {
    await stack.admin('settings', 'set', 'port-overrides', 'off')
    const sidecar = await stack.sidecar(await stack.service('notebook-2', 'etl'))
    const connected = await sidecar.run(['connect', 'warehouse'])
    t.equal(connected.code, 0, connected.stderr)
    const m = /127\.0\.0\.1:(\d+)/.exec(connected.stdout)
    t.ok(m, `reports the address: ${connected.stdout}`)
    const port = Number(m![1])
    t.not(port, stack.overridePort)
    const client = await pgClient(t, port)
    t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
    const status = JSON.parse((await sidecar.run(['status', '--json'])).stdout) as { resources: { localAddress: string }[] }
    t.match(status.resources, [{ localAddress: `127.0.0.1:${port}` }])
  })
})
