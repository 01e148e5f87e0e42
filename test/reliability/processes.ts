/**
 * Faults of whole processes (real `keyway gateway` and `keyway listen`):
 * SIGKILL and restart, file-descriptor exhaustion.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { request } from 'node:http'
import { connect as netConnect } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { withPorts } from '../helpers/ports.js'
import { startDaemon } from '../helpers/processes.js'
import { countingUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/until.js'
import { connectTls, createWorld, openTunnel } from '../helpers/world.js'
import { cpuMs, msSince, twoResourcePolicy } from '../helpers/reliability.js'

function readyz(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', (err) => resolve({ status: 0, body: err.message }))
    req.end()
  })
}

/** One request through the sidecar's local port to the echo upstream; true when it came back. */
function pingThrough(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true })
    let got = ''
    s.on('data', (c: Buffer) => (got += c.toString()))
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(got === 'ping'))
    s.on('end', () => s.end())
    s.end('ping')
    s.setTimeout(2_000, () => s.destroy())
  })
}

/**
 * A world and a started `keyway gateway` on fixed ports of the test file's
 * block (a restarted gateway must come back on the same address), started
 * again on the next ports if one is taken.
 */
async function processWorld(t: Test) {
  const upstream = await countingUpstream(t)
  return withPorts(t, 'gateway and override ports', 3, async ([gatewayPort, metricsPort, overridePort]) => {
    const policy = twoResourcePolicy(upstream.port, upstream.port)
    policy.resources![0]!.portOverride = overridePort!
    const world = await createWorld(t, { policy })
    const token = await world.serviceToken('svc_a')
    const env = {
      KEYWAY_CONFIG: world.config.file,
      KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
      KEYWAY_GATEWAY_METRICS: `127.0.0.1:${metricsPort}`,
      KEYWAY_ADMIN_LISTEN: '127.0.0.1:0',
      KEYWAY_LOG_LEVEL: 'info',
    }
    const gateway = startDaemon(t, ['gateway'], env)
    await gateway.waitLog((l) => l.event === 'metrics_listening')
    return { upstream, overridePort: overridePort!, world, token, gatewayPort: gatewayPort!, metricsPort: metricsPort!, env, gateway }
  })
}

/** Starts `keyway listen` for `w` (control endpoint on port 0) and resolves with its control port. */
async function startSidecar(t: Test, w: Awaited<ReturnType<typeof processWorld>>) {
  const sidecar = startDaemon(t, ['listen'], { ...w.env, KEYWAY_TOKEN: w.token, KEYWAY_CONTROL: '127.0.0.1:0', KEYWAY_GATEWAY: `127.0.0.1:${w.gatewayPort}` })
  const address = String((await sidecar.waitLog((l) => l.event === 'control_listening')).address)
  return { sidecar, controlPort: Number(address.slice(address.lastIndexOf(':') + 1)) }
}

t.test('property 16: gateway SIGKILLed and restarted: the running sidecar serves new connections again soon after the restart (2 s target, reported), and its readiness reports the outage meanwhile', async (t) => {
  const w = await processWorld(t)
  let gateway = w.gateway
  const { sidecar, controlPort } = await startSidecar(t, w)
  await until(async () => (await readyz(controlPort)).status === 200, 20_000, 'the sidecar to be ready')
  await until(() => pingThrough(w.overridePort), 10_000, 'a connection through the sidecar before the kill')
  t.pass('works before the kill')

  gateway.child.kill('SIGKILL')
  await gateway.exited
  const killedAt = process.hrtime.bigint()
  let outage = { status: 0, body: '' }
  await until(async () => (outage = await readyz(controlPort)).status === 503, 20_000, 'readiness to report the outage')
  t.match(JSON.parse(outage.body), { status: 'not ready', reason: /gateway/ }, `readiness reports the outage ${msSince(killedAt).toFixed(0)} ms after the kill: ${outage.body}`)
  t.notOk(await pingThrough(w.overridePort), 'a connection during the outage is closed at once')
  t.equal(sidecar.child.exitCode, null, 'the sidecar keeps running')

  gateway = startDaemon(t, ['gateway'], w.env)
  await gateway.waitLog((l) => l.event === 'gateway_listening')
  const restartedAt = process.hrtime.bigint()
  let attempts = 0
  // The 2 s target is a figure to report, not a bound to race on a loaded machine: the bound here is generous.
  await until(async () => (attempts++, await pingThrough(w.overridePort)), 15_000, 'a new connection through the sidecar to work after the restart')
  const recovered = msSince(restartedAt)
  t.pass(`new connections work ${recovered.toFixed(0)} ms after the restart (${attempts} attempts; target 2 s, bound 15 s), without restarting the sidecar`)
  await until(async () => (await readyz(controlPort)).status === 200, 20_000, 'readiness to recover')
  t.pass(`readiness back to 200 ${msSince(restartedAt).toFixed(0)} ms after the restart`)
})

t.test('property 17: descriptor exhaustion (prlimit on the gateway process): accept errors back off without a crash or a busy loop, and service recovers when descriptors free up', async (t) => {
  const w = await processWorld(t)
  const gateway = w.gateway
  const pid = gateway.child.pid!
  const used = readdirSync(`/proc/${pid}/fd`).length
  const limit = used + 24
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`])
  t.comment(`gateway pid ${pid}: ${used} descriptors open, limit lowered to ${limit}`)

  // Fill the table with live TLS connections until the gateway can take no more.
  const held: TLSSocket[] = []
  let refusedTls = 0
  for (let i = 0; i < limit + 20 && refusedTls < 5; i++) {
    const s = await connectTls(t, w.gatewayPort, w.world.caPem).catch(() => undefined)
    if (s) {
      s.on('error', () => {})
      held.push(s)
    } else refusedTls++
  }
  const fdsNow = readdirSync(`/proc/${pid}/fd`).length
  t.ok(refusedTls > 0, `exhausted: ${held.length} connections held, then TLS connects failed (${fdsNow}/${limit} descriptors)`)

  // While exhausted: a stream of connection attempts, and the CPU the gateway spends meanwhile.
  const cpu0 = cpuMs(pid)
  const start = process.hrtime.bigint()
  let failed = 0
  for (let i = 0; i < 100; i++) {
    const ok = await openTunnel(t, w.gatewayPort, w.world.caPem, w.token, 'res-a').then(
      (x) => (x.socket.destroy(), x.reply.ok),
      () => false,
    )
    if (!ok) failed++
  }
  // Pending connections left in the accept queue must not make the loop spin either.
  const pending = Array.from({ length: 20 }, () => netConnect({ host: '127.0.0.1', port: w.gatewayPort }).on('error', () => {}))
  t.teardown(() => pending.forEach((s) => s.destroy()))
  await until(() => msSince(start) > 1_500, 20_000)
  const wall = msSince(start)
  const cpu = cpuMs(pid) - cpu0
  t.comment(`exhausted for ${wall.toFixed(0)} ms: ${failed}/100 tunnel attempts failed; gateway CPU ${cpu.toFixed(0)} ms (${((100 * cpu) / wall).toFixed(1)}%); accept_error lines ${gateway.lines.filter((l) => l.event === 'accept_error').length}`)
  t.ok(failed > 0, 'attempts fail while exhausted')
  t.ok(cpu < 0.5 * wall, `no busy loop: ${cpu.toFixed(0)} ms CPU in ${wall.toFixed(0)} ms`)
  t.equal(gateway.child.exitCode, null, 'no crash')

  for (const s of held) s.destroy()
  for (const s of pending) s.destroy()
  const freedAt = process.hrtime.bigint()
  await until(
    async () =>
      openTunnel(t, w.gatewayPort, w.world.caPem, w.token, 'res-a').then(
        (x) => (x.socket.destroy(), x.reply.ok),
        () => false,
      ),
    5_000,
    'service to recover',
  )
  t.pass(`service recovered ${msSince(freedAt).toFixed(0)} ms after the descriptors were freed`)
  t.equal(gateway.child.exitCode, null, 'still running')
})
