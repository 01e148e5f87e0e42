import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { CliIo, Command } from '../../src/cli/command.js'
import { runCli } from '../../src/cli/run.js'
import { command as listen } from '../../src/cli/listen.js'
import { command as status } from '../../src/cli/status.js'
import { command as connect } from '../../src/cli/connect.js'
import { command as disconnect } from '../../src/cli/disconnect.js'
import { command as wait } from '../../src/cli/wait.js'
import { startFakeGateway, type FakeView } from '../helpers/fake-gateway.js'
import { until } from '../helpers/until.js'
import { LogSink, TOKEN, dial, fakeToken, portOf, roundTrip, testPki } from '../fixtures/sidecar/harness.js'
import { idlePort } from '../helpers/ports.js'

const COMMANDS: Command[] = [listen, status, connect, disconnect, wait]

interface Io extends CliIo {
  out(): string
  err: LogSink
}

function makeIo(env: Record<string, string> = {}, stopSignal?: AbortSignal, onReload?: (fn: () => void) => void): Io {
  const stdout = new PassThrough()
  const chunks: Buffer[] = []
  stdout.on('data', (c: Buffer) => chunks.push(c))
  const err = new LogSink()
  return {
    stdout,
    stderr: err,
    stdin: new PassThrough(),
    env,
    cwd: process.cwd(),
    ...(stopSignal ? { stopSignal } : {}),
    ...(onReload ? { onReload } : {}),
    out: () => Buffer.concat(chunks).toString('utf8'),
    err,
  }
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const io = makeIo(env)
  const code = await runCli(args, COMMANDS, io)
  return { code, out: io.out(), err: io.err.text() }
}

/** Auto-connect on an ephemeral port (no override port): nothing to pick by bind-and-release. */
const VIEW_EPHEMERAL: FakeView = {
  settings: { portOverrides: true, autoConnect: true },
  resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: null }],
}

const VIEW = (port: number): FakeView => ({
  settings: { portOverrides: true, autoConnect: true },
  resources: [{ name: 'pg', kind: 'datasource', type: 'postgres', portOverride: port }],
})

/** Runs `keyway listen` in-process against a fake gateway; stopped (SIGTERM-like) on teardown. */
async function runListen(
  t: Test,
  options: { view: FakeView; extraArgs?: string[]; env?: Record<string, string>; gateway?: (fakeAddress: string) => string; tokenFile?: string | null },
) {
  const pki = await testPki()
  const fake = await startFakeGateway(t, { pki, token: TOKEN, view: options.view })
  const dir = t.testdir({
    'keyway.yaml': 'sidecar:\n  servername: localhost\n  syncInterval: 100ms\n  drainGrace: 1s\nlog:\n  level: debug\n',
    'ca.pem': pki.caCertPem,
    token: `  ${TOKEN}\n`,
  })
  // Not under the test folder: a Unix socket path must stay under 108 bytes.
  const rt = join(mkdtempSync(join(tmpdir(), 'kw-')), 'rt')
  t.teardown(() => rmSync(join(rt, '..'), { recursive: true, force: true }))
  const stop = new AbortController()
  const reloads: (() => void)[] = []
  const io = makeIo(options.env ?? {}, stop.signal, (fn) => reloads.push(fn))
  const args = [
    'listen',
    '--config',
    join(dir, 'keyway.yaml'),
    '--gateway',
    options.gateway ? options.gateway(fake.address) : fake.address,
    '--ca',
    join(dir, 'ca.pem'),
    ...(options.tokenFile === null ? [] : ['--token-file', options.tokenFile ?? join(dir, 'token')]),
    '--control',
    '127.0.0.1:0',
    '--runtime-dir',
    rt,
    ...(options.extraArgs ?? []),
  ]
  const exit = runCli(args, COMMANDS, io)
  let stopped = false
  const stopNow = async (): Promise<number> => {
    if (!stopped) {
      stopped = true
      stop.abort('SIGTERM')
    }
    return exit
  }
  t.teardown(stopNow)
  const line = await Promise.race([
    io.err.waitFor((l) => l.event === 'control_listening'),
    exit.then((code) => {
      throw new Error(`listen exited ${code}: ${io.err.text()}`)
    }),
  ])
  const reload = (): void => {
    for (const fn of reloads) fn()
  }
  return { fake, io, control: String(line.address), rt, socket: String(line.socket), stop: stopNow, dir, reload, exit }
}

t.test('keyway listen / wait / status / connect / disconnect, then SIGTERM drains and exits 0', async (t) => {
  const pgPort = await idlePort()
  const { fake, io, control, rt, socket: controlSocket, stop } = await runListen(t, { view: VIEW(pgPort) })
  t.match(control, /^127\.0\.0\.1:\d+$/)
  t.equal(controlSocket, join(rt, 'control.sock'), 'the control API is a Unix socket in the runtime directory')

  const waited = await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])
  t.equal(waited.code, 0, waited.err)

  const table = await cli(['status', '--runtime-dir', rt])
  t.equal(table.code, 0)
  const lines = table.out.trimEnd().split('\n')
  t.match(lines[0], /^NAME\s+KIND\s+TYPE\s+ADDRESS\s+STATE$/)
  t.match(lines[1], new RegExp(`^pg\\s+datasource\\s+postgres\\s+127\\.0\\.0\\.1:${pgPort}\\s+bound$`))

  const socket = await dial(t, pgPort)
  t.equal((await roundTrip(socket, Buffer.from('through the CLI sidecar'))).toString(), 'through the CLI sidecar')

  // A new grant reaches the running sidecar within a sync interval.
  fake.setView({
    settings: { portOverrides: true, autoConnect: false },
    resources: [...VIEW(pgPort).resources, { name: 'web', kind: 'website', type: 'http', portOverride: null }],
  })
  await until(async () => {
    const s = await cli(['status', '--json'], { KEYWAY_SIDECAR_RUNTIME_DIR: rt })
    return (JSON.parse(s.out) as { resources: { name: string }[] }).resources.some((r) => r.name === 'web')
  }, 20_000, 'the new grant')
  const json = JSON.parse((await cli(['status', '--json', '--runtime-dir', rt])).out) as Record<string, unknown>
  t.match(json, { ready: true, account: { name: 'ci-runner' }, settings: { autoConnect: false }, resources: [{ name: 'pg' }, { name: 'web', state: 'not connected' }] })

  const connected = await cli(['connect', 'web', '--runtime-dir', rt])
  t.equal(connected.code, 0, connected.err)
  t.match(connected.out, /^127\.0\.0\.1:\d+\n$/)
  const webSocket = await dial(t, portOf(connected.out.trim()))
  t.equal((await roundTrip(webSocket, Buffer.from('GET / HTTP/1.0\r\n\r\n'))).toString(), 'GET / HTTP/1.0\r\n\r\n')

  const disconnected = await cli(['disconnect', 'web'], { KEYWAY_SIDECAR_RUNTIME_DIR: rt })
  t.equal(disconnected.code, 0)
  t.equal(disconnected.out, 'disconnected web\n')
  t.equal(disconnected.err, 'bind it again with: keyway connect web', 'the way back is said')
  const again = await cli(['disconnect', 'web', '--runtime-dir', rt])
  t.equal(again.code, 1)
  t.match(again.err, /^keyway: ERR_NOT_CONNECTED: resource "web" is not connected/)
  const denied = await cli(['connect', 'nope', '--runtime-dir', rt])
  t.equal(denied.code, 1)
  t.match(denied.err, /ERR_GRANT_DENIED/)

  t.equal(await stop(), 0, 'SIGTERM: drains and exits 0')
  t.ok(io.err.events('sidecar_stopped').length === 1)
  t.match(io.err.events('sidecar_authenticated')[0], { component: 'sidecar', account_name: 'ci-runner' })
  t.notOk(io.err.text().includes(TOKEN), 'the token never reaches the logs')

  const gone = await cli(['status', '--runtime-dir', rt])
  t.equal(gone.code, 1)
  t.match(gone.err, /^keyway: ERR_SIDECAR_UNREACHABLE: cannot reach the sidecar control endpoint at \/\S+\/control\.sock/)
})

t.test('keyway wait: not ready in time is ERR_NOT_READY (exit 1); gateway failover from the flag list', async (t) => {
  const dead = await idlePort()
  const pgPort = await idlePort()
  const deadOnly = await runListen(t, { view: VIEW(pgPort), gateway: () => `127.0.0.1:${dead}` })
  const notReady = await cli(['wait', '--runtime-dir', deadOnly.rt, '--timeout', '0.3'])
  t.equal(notReady.code, 1)
  t.match(notReady.err, /^keyway: ERR_NOT_READY: the sidecar was not ready within 0\.3 s: gateway unreachable: /)
  t.equal(await deadOnly.stop(), 0, 'a sidecar whose gateway is down still stops cleanly')

  const failover = await runListen(t, { view: VIEW(pgPort), gateway: (fake) => `127.0.0.1:${dead},${fake}` })
  t.equal((await cli(['wait', '--runtime-dir', failover.rt, '--timeout', '10'])).code, 0)
  const socket = await dial(t, pgPort)
  t.equal((await roundTrip(socket, Buffer.from('second gateway'))).toString(), 'second gateway')
  t.equal(await failover.stop(), 0)
})

t.test('keyway wait with no sidecar keeps retrying until the timeout', async (t) => {
  const port = await idlePort()
  const started = Date.now()
  const r = await cli(['wait', '--control', `127.0.0.1:${port}`, '--timeout', '0.4'])
  t.equal(r.code, 1)
  t.ok(Date.now() - started >= 350, 'waited for the timeout')
  t.match(r.err, /ERR_NOT_READY: .*cannot reach the sidecar control endpoint/)
})

t.test('listen: --token-file wins over a stale KEYWAY_TOKEN; KEYWAY_TOKEN wins over KEYWAY_TOKEN_FILE', async (t) => {
  const stale = fakeToken({ sub: 'svc_test', jti: 'stale' })
  const flag = await runListen(t, { view: VIEW_EPHEMERAL, env: { KEYWAY_TOKEN: stale } })
  t.equal((await cli(['wait', '--runtime-dir', flag.rt, '--timeout', '10'])).code, 0, 'the flag\'s token is used')
  t.match(JSON.parse((await cli(['status', '--json', '--runtime-dir', flag.rt])).out), { token: { origin: '--token-file', refused: null } })
  t.match(flag.io.err.events('sidecar_start')[0], { token_origin: '--token-file' })
  t.equal(await flag.stop(), 0)

  const env = await runListen(t, { view: VIEW_EPHEMERAL, env: { KEYWAY_TOKEN: `${TOKEN}\n`, KEYWAY_TOKEN_FILE: '/nonexistent/token' }, tokenFile: null })
  t.equal((await cli(['wait', '--runtime-dir', env.rt, '--timeout', '10'])).code, 0)
  t.match(JSON.parse((await cli(['status', '--json', '--runtime-dir', env.rt])).out), { token: { origin: 'KEYWAY_TOKEN', file: null } })
  t.equal(await env.stop(), 0)
})

t.test('listen: a token that cannot be parsed fails at once, said once, exit 1', async (t) => {
  const pki = await testPki()
  const dir = t.testdir({ 'ca.pem': pki.caCertPem })
  const started = Date.now()
  // The CA is missing too: the token is judged first.
  const r = await cli(['listen', '--gateway', '127.0.0.1:1', '--ca', join(dir, 'missing.pem'), '--control', '127.0.0.1:0'], { KEYWAY_TOKEN: 'not-a-token' })
  t.equal(r.code, 1)
  t.ok(Date.now() - started < 10_000, 'no retrying')
  t.equal(r.err.trim().split('\n').length, 1, 'one line')
  t.match(r.err, /^keyway: ERR_TOKEN_MALFORMED: the token in KEYWAY_TOKEN is not a Keyway token: a token is three base64url segments/)
})

t.test('listen: a token every gateway refuses exits 1 after sidecar.tokenRefusalGrace, saying why', async (t) => {
  const refused = fakeToken({ sub: 'svc_test', jti: 'revoked' })
  const { io, rt, exit, dir } = await runListen(t, { view: VIEW_EPHEMERAL, env: { KEYWAY_SIDECAR_TOKEN_REFUSAL_GRACE: '300ms' } })
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0)
  writeFileSync(join(dir, 'token'), refused)
  t.equal(await exit, 1)
  t.match(io.err.events('token_refused')[0], { code: 'ERR_TOKEN_SIGNATURE', grace_ms: 300, origin: '--token-file' })
  t.match(io.err.text(), /keyway: ERR_TOKEN_SIGNATURE: every gateway refused the service token for \d+ s \(sidecar\.tokenRefusalGrace\)/)
  t.notOk(io.err.text().includes(refused))
})

t.test('listen: a changed token file is re-read (and on SIGHUP); a malformed one is refused and the last good token stays', async (t) => {
  const { rt, stop, dir, reload, io } = await runListen(t, { view: VIEW_EPHEMERAL })
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0)
  writeFileSync(join(dir, 'token'), 'not-the-token\n')
  reload()
  await io.err.waitFor((l) => l.event === 'token_reload_failed')
  t.match(io.err.events('token_reload_failed')[0], { code: 'ERR_TOKEN_MALFORMED' })
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0, 'still ready on the last good token')

  writeFileSync(join(dir, 'token'), fakeToken({ sub: 'svc_test', jti: 'wrong' }))
  reload()
  await until(async () => JSON.parse((await cli(['status', '--json', '--runtime-dir', rt])).out).ready === false, 20_000, 'the wrong token to be used')
  const snapshot = JSON.parse((await cli(['status', '--json', '--runtime-dir', rt])).out) as { reason: string }
  t.match(snapshot.reason, /^the gateway refuses the token: ERR_TOKEN_SIGNATURE: .*write a valid token to .*token \(re-read at once\)/)
  const text = await cli(['status', '--runtime-dir', rt])
  t.match(text.out, /token refused: ERR_TOKEN_SIGNATURE: /)
  writeFileSync(join(dir, 'token'), TOKEN)
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0, 'picked up without a signal')
  t.equal(io.err.events('token_replaced').length, 2)
  t.notOk(io.err.text().includes(TOKEN))
  t.equal(await stop(), 0)
})

t.test('status (text): a hand-disconnected resource says why and how to get it back', async (t) => {
  const { rt, stop } = await runListen(t, { view: VIEW_EPHEMERAL })
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0)
  t.equal((await cli(['disconnect', 'pg', '--runtime-dir', rt])).code, 0)
  const text = await cli(['status', '--runtime-dir', rt])
  const lines = text.out.trimEnd().split('\n')
  t.match(lines[0], /^NAME\s+KIND\s+TYPE\s+ADDRESS\s+STATE\s+WHY$/)
  t.match(lines[1], /^pg\s+datasource\s+postgres\s+-\s+not connected\s+disconnected by hand: run "keyway connect pg"$/)
  t.match(text.err, /^not ready: resource pg not bound: disconnected by hand while auto-connect is on; run "keyway connect pg"/)
  const readyz = await cli(['wait', '--runtime-dir', rt, '--timeout', '0.2'])
  t.equal(readyz.code, 1, '/readyz says not ready')
  t.match(readyz.err, /ERR_NOT_READY: .*disconnected by hand while auto-connect is on; run "keyway connect pg"/, 'with the reason')
  t.equal((await cli(['connect', 'pg', '--runtime-dir', rt])).code, 0)
  t.equal((await cli(['wait', '--runtime-dir', rt, '--timeout', '10'])).code, 0)
  t.equal(await stop(), 0)
})

t.test('listen refuses to start without a token, without a CA, or on a non-loopback control address', async (t) => {
  const pki = await testPki()
  const dir = t.testdir({ 'ca.pem': pki.caCertPem, empty: '\n' })
  const base = ['listen', '--gateway', '127.0.0.1:1', '--ca', join(dir, 'ca.pem')]

  const noToken = await cli(base)
  t.equal(noToken.code, 1)
  t.match(noToken.err, /keyway: ERR_TOKEN_MISSING: no service token: give --token-file FILE, or set KEYWAY_TOKEN, KEYWAY_TOKEN_FILE or sidecar\.tokenFile/)

  const empty = await cli([...base, '--token-file', join(dir, 'empty')])
  t.match(empty.err, /ERR_TOKEN_MISSING: the token file .* is empty/)

  const noCa = await cli(['listen', '--gateway', '127.0.0.1:1', '--ca', join(dir, 'missing.pem')], { KEYWAY_TOKEN: TOKEN })
  t.equal(noCa.code, 1)
  t.match(noCa.err, /ERR_CONFIG_IO: cannot read the gateway CA certificate/)

  const exposed = await cli([...base, '--control', '0.0.0.0:7070'], { KEYWAY_TOKEN: TOKEN })
  t.equal(exposed.code, 1)
  t.match(exposed.err, /ERR_CONFIG_INVALID: sidecar\.control must be a loopback address .*"0\.0\.0\.0"/)

  const badGateway = await cli(['listen', '--gateway', 'nowhere'], { KEYWAY_TOKEN: TOKEN })
  t.equal(badGateway.code, 1)
  t.match(badGateway.err, /sidecar\.gateways/)
})

t.test('usage errors exit 2', async (t) => {
  t.equal((await cli(['connect'])).code, 2)
  t.equal((await cli(['disconnect', 'a', 'b'])).code, 2)
  const badTimeout = await cli(['wait', '--timeout', 'soon'])
  t.equal(badTimeout.code, 2)
  t.match(badTimeout.err, /--timeout takes a number of seconds/)
  t.equal((await cli(['status', '--bogus'])).code, 2)
  t.equal((await cli(['listen', '--nope'])).code, 2)
})
