import t from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { freePort } from '../helpers/net.js'
import { cleanEnv, KEYWAY_BIN, startDaemon } from '../helpers/processes.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))

t.test('npm start on the embedded default: the gateway creates its dev state and the two commands it prints work', async (t) => {
  // A copy of the package's config/, so the test leaves the working tree alone.
  const dir = mkdtempSync(join(tmpdir(), 'keyway-quickstart-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(join(root, 'config'), join(dir, 'config'), { recursive: true })
  const [gatewayPort, metricsPort, controlPort, demoPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
  // The demo resource's fixed port may be taken on a busy machine: move it, the commands stay as printed.
  const policyFile = join(dir, 'config/policy.yaml')
  writeFileSync(policyFile, readFileSync(policyFile, 'utf8').replace('portOverride: 15432', `portOverride: ${demoPort}`))
  const env = {
    KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
    KEYWAY_GATEWAY_METRICS: `127.0.0.1:${metricsPort}`,
    KEYWAY_ADMIN_LISTEN: '127.0.0.1:0',
    KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}`,
    KEYWAY_CONTROL: `127.0.0.1:${controlPort}`,
    KEYWAY_SIDECAR_RUNTIME_DIR: join(dir, 'rt'),
  }
  const gateway = startDaemon(t, ['gateway', '--config', join(dir, 'config/keyway.yaml')], env)
  const created = await gateway.waitLog((l) => l.event === 'dev_state_created')
  t.equal((created.files as string[]).length, 6, 'signing key, JWKS, CA, CA key, gateway certificate and key')
  t.ok(existsSync(join(dir, 'state/ca.pem')))
  await gateway.waitLog((l) => l.event === 'metrics_listening')

  // The printed commands, as a person would paste them (run from the folder holding config/).
  const printed = gateway
    .stderr()
    .split('\n')
    .filter((l) => (l.startsWith('  node bin/keyway.js') && !l.includes(' --admin ')) || l.startsWith('  KEYWAY_TOKEN='))
    .map((l) => l.trim().replace('--config config/', `--config ${dir}/config/`).replaceAll('node bin/keyway.js', `${process.execPath} ${KEYWAY_BIN}`))
  t.equal(printed.length, 2, 'two commands printed')
  t.match(gateway.stderr(), /Admin API on http:\/\/127\.0\.0\.1:\d+\/v1\/admin\/[^\n]*\n\n  node bin\/keyway\.js admin users create you@example\.com --admin --password-stdin --config /, 'where the admin API is and how to create the first admin')
  const [create, listen] = printed as [string, string]
  await run('bash', ['-c', create], { cwd: dir, env: cleanEnv(env) })
  const token = readFileSync(join(dir, 'demo-job.token'), 'utf8')
  t.match(token, /^ey[\w-]+\.[\w-]+\.[\w-]+\n?$/, 'the token alone went to the file')
  // The listen command runs until stopped: run it through bash as a daemon would be.
  const sidecar = startDaemon(t, [], env, ['bash', '-c', `exec env ${listen}`], dir)
  t.match(await sidecar.waitLog((l) => l.event === 'resource_bound'), { resource: 'demo-postgres', address: `127.0.0.1:${demoPort}` })
})
