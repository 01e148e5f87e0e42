import t from 'tap'
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startDaemon } from '../helpers/processes.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { pgClient, startStack } from '../helpers/stack.js'

/** Writes `token` as a Kubernetes Secret volume does: a timestamped folder, swapped in by renaming the `..data` link. */
function secretVolume(dir: string): (token: string, n: number) => void {
  mkdirSync(dir, { mode: 0o700 })
  return (token, n) => {
    const folder = `..2026_12_04_0${n}`
    mkdirSync(join(dir, folder))
    writeFileSync(join(dir, folder, 'token'), `${token}\n`, { mode: 0o600 })
    symlinkSync(folder, join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
    if (n === 0) symlinkSync('..data/token', join(dir, 'token'))
  }
}

interface Status {
  ready: boolean
  token: { fingerprint: string; origin: string; expiresAt: string | null; rotatedOut: boolean }
}

t.test('tokens rotate --grace: the sidecar shows the deadline (status, gauge, warning) and takes the new token from its Secret file without a restart', async (t) => {
  const stack = await startStack(t)
  const oldToken = await stack.service('etl-job', 'etl')
  const write = secretVolume(join(stack.dir, 'secret'))
  write(oldToken, 0)
  const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }
  const daemon = startDaemon(t, ['listen', '--control', '127.0.0.1:0'], { ...stack.env, ...rt, KEYWAY_TOKEN_FILE: join(stack.dir, 'secret', 'token') })
  const control = String((await daemon.waitLog((l) => l.event === 'control_listening')).address)
  const run = (args: string[]) => stack.run(args, rt)
  const status = async (): Promise<Status> => JSON.parse((await run(['status', '--json'])).stdout) as Status
  t.equal((await run(['wait', '--timeout', '20'])).code, 0)
  t.match(await status(), { ready: true, token: { origin: 'KEYWAY_TOKEN_FILE', expiresAt: null, rotatedOut: false } })

  const before = Date.now()
  const rotated = await stack.admin('tokens', 'rotate', 'etl-job', '--grace', '2m')
  const newToken = rotated.stdout.trim()
  const warning = await daemon.waitLog((l) => l.event === 'token_expiring')
  t.match(warning, { level: 'warn', rotated_out: true })
  const deadline = Date.parse(String(warning.expires_at))
  t.ok(deadline >= before + 100_000 && deadline <= Date.now() + 121_000, `the deadline is the end of the 2 minute grace: ${String(warning.expires_at)}`)
  t.match(await status(), { token: { expiresAt: new Date(deadline).toISOString(), rotatedOut: true } })
  const metrics = await fetch(`http://${control}/metrics`).then((r) => r.text())
  t.match(metrics, new RegExp(`^keyway_sidecar_token_expiry_seconds ${deadline / 1000}$`, 'm'))

  // The job keeps working on the old token meanwhile.
  const client = await pgClient(t, stack.overridePort)
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  await client.end()

  write(newToken, 1)
  await daemon.waitLog((l) => l.event === 'token_replaced')
  for (let i = 0; i < 100 && (await status()).token.rotatedOut; i++) await new Promise((r) => setTimeout(r, 100))
  t.match(await status(), { ready: true, token: { expiresAt: null, rotatedOut: false } }, 'the new token has no end')
  const after = await pgClient(t, stack.overridePort)
  t.same((await after.query('SELECT 2 AS two')).rows, [{ two: 2 }])
  t.notOk(daemon.stderr().includes(oldToken) || daemon.stderr().includes(newToken), 'no token in the logs')
  t.equal(daemon.child.exitCode, null, 'no restart')
})
