import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import t from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { connect, listenEcho, readExactly } from '../helpers/net.js'
import { startPostgres } from '../helpers/postgres.js'
import { keyway, startDaemon, type Daemon } from '../helpers/processes.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { until } from '../helpers/until.js'

const POLICY = (echoPort: number) => `version: 1
settings:
  portOverrides: false
  autoConnect: false
resources:
  - name: echo
    kind: server
    type: tcp
    address: 127.0.0.1:${echoPort}
  - name: other
    kind: server
    type: tcp
    address: 127.0.0.1:${echoPort}
roles:
  - name: ops
    grants: [echo]
  - name: keep
    grants: [other]
accounts: []
`

/** Sends a line and expects it back through the session. */
async function roundTrip(socket: Socket, text: string): Promise<void> {
  socket.write(text)
  const back = await readExactly(socket, Buffer.byteLength(text))
  if (back.toString() !== text) throw new Error(`echo answered ${JSON.stringify(back.toString())}`)
}

function ended(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) return resolve()
    socket.once('close', () => resolve())
  })
}

t.test('three gateways on one PostgreSQL store: a revocation closes sessions on all of them, a grant reaches a sidecar, an outage drops nothing', async (t) => {
  const store = await startPostgres(t)
  t.teardown(() => store.stop())
  const echo = await listenEcho(t)
  const root = mkdtempSync(join(tmpdir(), 'keyway-ha-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dir = join(root, 'setup')
  await initSetup(dir, { clock: systemClock })
  appendFileSync(join(dir, 'keyway.yaml'), `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${store.port}/postgres\n  checkInterval: 2s\n  connectTimeout: 2s\n`)
  appendFileSync(join(dir, 'ha-policy.yaml'), POLICY(echo.port))
  const env: Record<string, string> = {
    KEYWAY_CONFIG: join(dir, 'keyway.yaml'),
    KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0',
    KEYWAY_GATEWAY_METRICS: '127.0.0.1:0',
    KEYWAY_ADMIN_LISTEN: '',
    KEYWAY_LOG_LEVEL: 'debug',
  }
  const must = async (...args: string[]): Promise<string> => {
    const r = await keyway(args, env)
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  t.match(await must('store', 'migrate'), /schema version \d+/)
  t.match(await must('store', 'import', join(dir, 'ha-policy.yaml')), /imported: generation 1/)

  const gateways: { daemon: Daemon; port: number }[] = []
  for (let i = 0; i < 3; i++) {
    const daemon = startDaemon(t, ['gateway'], env)
    const port = Number(String((await daemon.waitLog((l) => l.event === 'gateway_listening', 60_000)).address).split(':').pop())
    gateways.push({ daemon, port })
  }
  const services: Record<string, string> = {}
  for (const [name, role] of [['job-a', 'ops'], ['job-b', 'ops'], ['job-c', 'ops'], ['job-d', 'keep']] as const) {
    services[name] = (await must('admin', 'services', 'create', name, '--role', role)).trim()
  }
  const sidecar = async (name: string, gateway: number) => {
    const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }
    const daemon = startDaemon(t, ['listen'], { ...env, ...rt, KEYWAY_TOKEN: services[name]!, KEYWAY_CONTROL: '127.0.0.1:0', KEYWAY_GATEWAY: `127.0.0.1:${gateways[gateway]!.port}` })
    const run = (args: string[]) => keyway(args, { ...env, ...rt })
    const ready = await run(['wait', '--timeout', '60'])
    if (ready.code !== 0) throw new Error(`${name}: sidecar not ready: ${ready.stderr}`)
    return { daemon, run }
  }
  /** Connects `resource` in a sidecar and opens a session through it. */
  const session = async (s: { run: (a: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }> }, resource: string): Promise<Socket> => {
    const r = await s.run(['connect', resource])
    if (r.code !== 0) throw new Error(`connect ${resource}: ${r.stderr}`)
    const socket = await connect(t, Number(/127\.0\.0\.1:(\d+)/.exec(r.stdout)![1]))
    await roundTrip(socket, `hello ${resource}\n`)
    return socket
  }
  // Sidecars spread over the three gateways; job-d shares the first with job-a.
  const a = await sidecar('job-a', 0)
  const b = await sidecar('job-b', 1)
  const c = await sidecar('job-c', 2)
  const d = await sidecar('job-d', 0)
  const revoked = [await session(a, 'echo'), await session(b, 'echo'), await session(c, 'echo')]
  const kept = await session(d, 'other')

  // One revocation with keyway admin against the store.
  const allEnded = Promise.all(revoked.map(ended))
  await must('admin', 'roles', 'ungrant', 'ops', 'echo')
  const at = Date.now()
  await Promise.race([allEnded, new Promise((_, reject) => setTimeout(() => reject(new Error('the revoked sessions did not all end within 15 s')), 15_000).unref())])
  t.pass(`the three revoked sessions, one per gateway, ended ${Date.now() - at} ms after the edit landed (bound 15 s; the bench reports the figure)`)
  for (const g of gateways) t.ok(await g.daemon.waitLog((l) => l.event === 'session_revoked' && l.resource === 'echo', 15_000), 'each gateway logged its revocation')
  await roundTrip(kept, 'still here\n')
  t.pass('the session of another role is untouched')

  // A grant on the store reaches a running sidecar (through its gateway's policy).
  await must('admin', 'roles', 'grant', 'keep', 'echo')
  const listed = async (): Promise<string[]> => (JSON.parse((await d.run(['status', '--json'])).stdout) as { resources: { name: string }[] }).resources.map((r) => r.name)
  await until(async () => (await listed()).includes('echo'), 20_000, 'the new grant in the sidecar')
  t.pass('the grant reached the running sidecar')

  // PostgreSQL away: every gateway says so, keeps its policy, drops no session.
  await store.pause()
  for (const g of gateways) await g.daemon.waitLog((l) => l.event === 'store_unreachable', 30_000)
  await roundTrip(kept, 'during the outage\n')
  t.pass('sessions stay up while the store is down')
  const fresh = await session(d, 'echo')
  t.pass('new sessions are decided on the last good policy')
  await store.resume()
  const reloads = gateways.map((g) => g.daemon.lines.filter((l) => l.event === 'policy_reloaded').length)
  // A change right after the restart, possibly before the gateways' LISTEN connections are back: the resync finds it.
  await must('admin', 'roles', 'ungrant', 'keep', 'echo')
  await Promise.race([ended(fresh), new Promise((_, reject) => setTimeout(() => reject(new Error('the change after the outage did not end the session within 20 s')), 20_000).unref())])
  for (const [i, g] of gateways.entries()) {
    await until(() => g.daemon.lines.filter((l) => l.event === 'policy_reloaded').length > reloads[i]!, 20_000, `gateway ${i} to load the change`)
    t.ok(g.daemon.lines.some((l) => l.event === 'store_reachable'), `gateway ${i} logged that the store is back`)
  }
  await roundTrip(kept, 'after the outage\n')
  t.pass('the change made after the restart reached every gateway; the other session never dropped')
})
