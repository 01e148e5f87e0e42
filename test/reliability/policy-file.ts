/**
 * A policy file deleted, truncated or made invalid under a running gateway.
 */
import t from 'tap'
import { renameSync, rmSync, writeFileSync } from 'node:fs'
import { stringify } from 'yaml'
import type { PolicyDoc } from '../../src/policy/index.js'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld, openTunnel } from '../helpers/world.js'
import { twoResourcePolicy } from '../helpers/reliability.js'

/** Writes the policy the way a careful editor does (temp file, rename), so the watcher never reads a half-written file. */
function writeAtomically(file: string, doc: PolicyDoc | string): void {
  writeFileSync(`${file}.tmp`, typeof doc === 'string' ? doc : stringify(doc))
  renameSync(`${file}.tmp`, file)
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('property 18: a policy file deleted, truncated or made invalid while running: the last good policy stays, readiness and metrics say so', async (t) => {
  const upstream = await countingUpstream(t)
  // watchPolicy on: the gateway notices the file change by itself.
  const world = await createWorld(t, { policy: twoResourcePolicy(upstream.port, upstream.port), gateway: { watchPolicy: true, metrics: '127.0.0.1:0' } })
  const token = await world.serviceToken('svc_a')
  const running = await world.startGateway()
  const port = running.gateway.address()!.port
  const metricsPort = (running.observability!.address() as AddressInfo).port
  const generation = running.store.current().generation
  const good = world.policy
  const breakages: [string, () => void, string][] = [
    ['deleted', () => rmSync(world.config.policy), 'ERR_POLICY_IO'],
    ['truncated mid-document', () => writeAtomically(world.config.policy, 'version: 1\nresources:\n  - name: res-a\n    kind: data'), 'ERR_POLICY_INVALID'],
    ['made invalid (unknown role)', () => writeAtomically(world.config.policy, { ...good, accounts: [{ id: 'svc_x', type: 'service', name: 'x', roles: ['no-such-role'] }] }), 'ERR_POLICY_INVALID'],
  ]
  const live = await openTunnel(t, port, world.caPem, token, 'res-a')
  t.match(live.reply, { ok: true })
  for (const [name, breakIt, code] of breakages) {
    const failuresBefore = world.logs.events('policy_reload_failed').length
    breakIt()
    await until(() => world.logs.events('policy_reload_failed').length > failuresBefore, 20_000, `the watcher to notice the file ${name}`)
    t.match(world.logs.events('policy_reload_failed').at(-1), { code }, `${name}: policy_reload_failed ${code}`)
    t.equal(running.store.current().generation, generation, `${name}: the last good policy stays in force`)
    const metrics = (await get(metricsPort, '/metrics')).body
    t.match(metrics, /keyway_policy_last_reload_ok 0/, `${name}: metrics say the file in place is broken`)
    t.match(metrics, new RegExp(`keyway_policy_generation ${generation}\\b`))
    const ready = await get(metricsPort, '/readyz')
    t.equal(ready.status, 200, `${name}: still ready (serving on the last good policy)`)
    t.match(JSON.parse(ready.body), { status: 'ready', policy: { lastReloadOk: false, generation, code } }, `${name}: readiness says the policy is stale`)
    t.match((await openTunnel(t, port, world.caPem, token, 'res-a')).reply, { ok: true }, `${name}: new tunnels still admitted`)
    t.notOk(live.socket.destroyed, `${name}: the live session runs on`)
    writeAtomically(world.config.policy, good)
    await until(async () => /keyway_policy_last_reload_ok 1/.test((await get(metricsPort, '/metrics')).body), 20_000, 'the fixed file to be picked up')
    await until(async () => (JSON.parse((await get(metricsPort, '/readyz')).body) as { policy: { lastReloadOk: boolean } }).policy.lastReloadOk, 20_000, 'readiness to clear')
  }
  t.match(JSON.parse((await get(metricsPort, '/readyz')).body), { policy: { lastReloadOk: true } }, 'readiness clears once the file is good again')
  const failed = (await get(metricsPort, '/metrics')).body.match(/keyway_policy_reloads_total\{result="failed"\} (\d+)/)
  t.ok(Number(failed?.[1]) >= breakages.length, `reloads_total{result="failed"} counted ${failed?.[1]}`)
})

t.test(
  'property 18 (zero-byte truncation): a policy file truncated to nothing keeps the last good policy',
  async (t) => {
    const upstream = await countingUpstream(t)
    const world = await createWorld(t, { policy: twoResourcePolicy(upstream.port, upstream.port) })
    const token = await world.serviceToken('svc_a')
    const running = await world.startGateway()
    const generation = running.store.current().generation
    writeFileSync(world.config.policy, '')
    await running.reload()
    t.equal(running.store.current().generation, generation, 'the last good policy stays')
    t.match((await openTunnel(t, running.gateway.address()!.port, world.caPem, token, 'res-a')).reply, { ok: true }, 'tunnels still admitted')
  },
)
