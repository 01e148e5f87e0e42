/**
 * The sidecar offers nothing beyond the loopback interface.
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { startControlServer, Sidecar } from '../../src/sidecar/index.js'
import { idlePort } from '../helpers/ports.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { keyway } from '../helpers/processes.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { createWorld } from '../helpers/world.js'
import { listeningSockets, twoResourcePolicy } from '../helpers/reliability.js'

t.test('property 11: the sidecar binds loopback only: every listener it opens is on 127.0.0.1; non-loopback settings are refused', async (t) => {
  const upstream = await countingUpstream(t)
  const [pa, pb] = [await idlePort(), await idlePort()]
  const policy = twoResourcePolicy(upstream.port, upstream.port)
  policy.resources![0]!.portOverride = pa
  policy.resources![1]!.portOverride = pb
  policy.roles = [{ name: 'role-a', grants: ['res-a', 'res-b'] }]
  const world = await createWorld(t, { policy })
  const token = await world.serviceToken('svc_a')
  const running = await world.startGateway()
  const before = new Set(listeningSockets())
  const registry = new Registry()
  const sidecar = new Sidecar({ config: { ...world.config.sidecar, gateways: [{ host: '127.0.0.1', port: running.gateway.address()!.port }] }, ca: world.caPem, token, logger: world.logger, registry })
  t.teardown(() => sidecar.close())
  const control = await startControlServer({ address: { host: '127.0.0.1', port: 0 }, runtimeDir: tempRuntimeDir(t), target: sidecar, registry, logger: world.logger })
  t.teardown(() => control.close())
  await sidecar.start()
  await until(() => sidecar.ready() === undefined, 20_000, 'sidecar ready')
  const opened = listeningSockets().filter((a) => !before.has(a))
  t.same(opened.sort(), [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`, `127.0.0.1:${control.address()!.port}`].sort(), `the kernel's listening sockets of the sidecar: ${opened.join(', ')}`)
  t.ok(opened.every((a) => a.startsWith('127.0.0.1:')), 'all on 127.0.0.1, none on 0.0.0.0 or ::')
  t.same(sidecar.status().map((r) => r.localAddress.split(':')[0]), ['127.0.0.1', '127.0.0.1'])

  for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com']) {
    t.throws(() => new Sidecar({ config: world.config.sidecar, ca: world.caPem, token, logger: world.logger, registry: new Registry(), bindHost: host }), { code: 'ERR_CONFIG_INVALID' }, `resource bind address ${host} refused`)
    await t.rejects(startControlServer({ address: { host, port: 0 }, runtimeDir: tempRuntimeDir(t), target: sidecar, registry: new Registry(), logger: world.logger }), { code: 'ERR_CONFIG_INVALID' }, `control address ${host} refused`)
  }
  const cli = await keyway(['listen', '--config', world.config.file, '--control', '0.0.0.0:0'], { KEYWAY_TOKEN: token })
  t.not(cli.code, 0, '`keyway listen --control 0.0.0.0:0` does not start')
  t.match(cli.stderr, /ERR_CONFIG_INVALID/)
  t.same(listeningSockets().filter((a) => !a.startsWith('127.0.0.1:')), [], 'this process listens on nothing but 127.0.0.1')
})
