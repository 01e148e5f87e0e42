/**
 * The README's quick start as a person runs it: `npm start` in a clone (here a
 * copy of this checkout, at a deep path with spaces in it, under a git
 * repository of its own), the two commands it tells them to run, pasted into
 * a shell in the folder they typed `npm start` in; then all of it once more.
 * The token survives the second run and the clone stays clean.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { PortInUseError, withPort } from '../helpers/ports.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { cleanEnv, startDaemon, type Daemon } from '../helpers/processes.js'

const exec = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))
const TOKEN = /^ey[\w-]+\.[\w-]+\.[\w-]+\n$/

/** A clone as `git clone` + `npm ci` + `npm run build` leave it: the tracked files, dist/ and node_modules/, committed. */
async function cloneAt(dir: string, demoPort: number): Promise<void> {
  mkdirSync(dir, { recursive: true })
  const { stdout } = await exec('git', ['-C', root, 'ls-files', '-z'], { maxBuffer: 16 * 1024 * 1024 })
  for (const file of stdout.split('\0').filter((f) => f !== '' && existsSync(join(root, f)))) cpSync(join(root, file), join(dir, file))
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true })
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  // The demo resource's fixed port 15432 is the default override range, which tests never use.
  const policy = join(dir, 'config/policy.yaml')
  writeFileSync(policy, readFileSync(policy, 'utf8').replace('portOverride: 15432', `portOverride: ${demoPort}`))
  const git = (...args: string[]) => exec('git', ['-C', dir, ...args], { env: cleanEnv({ GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 't@example.com' }) })
  await git('init', '-q')
  // A linked node_modules is a symlink, which the `node_modules/` pattern does not cover.
  writeFileSync(join(dir, '.git/info/exclude'), 'node_modules\n')
  await git('add', '-A')
  await git('commit', '-q', '-m', 'clone')
}

/** `npm start` typed in `cwd` (npm finds the package with --prefix when cwd is elsewhere). */
function npmStart(t: Test, clone: string, cwd: string): Daemon {
  const prefix = cwd === clone ? [] : ['--prefix', clone]
  // The gateway on port 0: a developer's own gateway on 7443/9464 must not matter.
  const env = { KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0', KEYWAY_GATEWAY_METRICS: '127.0.0.1:0', KEYWAY_ADMIN_LISTEN: '127.0.0.1:0' }
  // prestart builds; the copy already holds the build.
  return startDaemon(t, [], env, ['npm', ...prefix, 'start', '--ignore-scripts'], cwd, true)
}

/** Runs a printed line through a shell in `cwd`, as pasted; the sidecar is pointed at the test's gateway. */
function shell(line: string, cwd: string, env: Record<string, string>) {
  return exec('bash', ['-c', line], { cwd, env: cleanEnv(env) }).then(
    (r) => ({ code: 0, ...r }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  )
}

async function sidecarBinds(t: Test, line: string, cwd: string, env: Record<string, string>, demoPort: number): Promise<Daemon> {
  const sidecar = startDaemon(t, [], env, ['bash', '-c', `exec ${line}`], cwd)
  const bound = await sidecar.waitLog((l) => (l.event === 'resource_bound' || l.event === 'bind_failed') && l.resource === 'demo-postgres')
  if (bound.event === 'bind_failed' && bound.code === 'ERR_PORT_IN_USE') throw new PortInUseError(demoPort, 'demo-postgres')
  t.match(bound, { event: 'resource_bound', address: `127.0.0.1:${demoPort}` }, 'the sidecar binds the demo resource')
  await sidecar.stop()
  return sidecar
}

t.test('npm start twice on the embedded default: the printed commands work as printed from where it was typed, the token survives, the clone stays clean', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'keyway quick start '))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  await withPort(t, 'the demo resource port', async (demoPort) => {
    const attempt = mkdtempSync(join(base, 'try-'))
    const clone = join(attempt, 'a deep', 'path', 'keyway')
    const home = join(attempt, 'home')
    mkdirSync(home)
    await cloneAt(clone, demoPort)

    // First run, typed in another folder: the commands must not depend on being in the clone.
    let gateway = npmStart(t, clone, home)
    const created = await gateway.waitLog((l) => l.event === 'dev_state_created')
    t.ok((created.files as string[]).includes(join(clone, 'state/policy.yaml')), 'the development policy is a copy in state/')
    const port = String((await gateway.waitLog((l) => l.event === 'gateway_listening')).address).split(':')[1]
    const steps = (await gateway.waitLog((l) => l.event === 'dev_next_steps')).commands as string[]
    t.equal(steps.length, 2, 'two commands')
    t.same(gateway.stderr().split('\n').filter((l) => l !== '' && !l.startsWith('{') && !l.startsWith('npm ')), [], "the gateway's stderr holds JSON log lines only")
    const [create, listen] = steps as [string, string]
    t.match(create, `--token-file '${join(clone, 'state/demo-job.token')}'`, 'absolute and quoted: the clone is outside the folder, with spaces')
    // The sidecar's control socket in this attempt's own runtime folder, not the user's.
    const env = { KEYWAY_GATEWAY: `127.0.0.1:${port}`, KEYWAY_CONTROL: '127.0.0.1:0', KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }

    const made = await shell(create, home, env)
    t.equal(made.code, 0, made.stderr)
    const tokenFile = join(clone, 'state/demo-job.token')
    const token = readFileSync(tokenFile, 'utf8')
    t.match(token, TOKEN, 'the token alone went to the file')
    t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'mode 0600')
    await sidecarBinds(t, listen, home, env, demoPort)

    // The same command again (shell history): refused, and the token is still there.
    const again = await shell(create, home, env)
    t.equal(again.code, 1)
    t.match(again.stderr, /ERR_FILE_EXISTS/)
    t.equal(readFileSync(tokenFile, 'utf8'), token, 'the token file is untouched')
    await gateway.stop()

    // Second run, typed in the clone, as the README says: no steps to create what exists.
    gateway = npmStart(t, clone, clone)
    const port2 = String((await gateway.waitLog((l) => l.event === 'gateway_listening')).address).split(':')[1]
    await gateway.waitLog((l) => l.event === 'metrics_listening')
    t.notOk(gateway.lines.some((l) => l.event === 'dev_next_steps'), 'no next steps once the demo account exists')
    t.notOk(gateway.lines.some((l) => l.event === 'dev_state_created'), 'nothing created the second time')
    const env2 = { ...env, KEYWAY_GATEWAY: `127.0.0.1:${port2}` }
    const relativeListen = 'node bin/keyway.js listen --config config/keyway.yaml --token-file state/demo-job.token'
    await sidecarBinds(t, relativeListen, clone, env2, demoPort)
    await gateway.stop()

    const { stdout: status } = await exec('git', ['-C', clone, 'status', '--porcelain', '--untracked-files=all'])
    t.equal(status, '', 'git status of the clone is clean: state/ holds everything the quick start wrote')
  })
})
