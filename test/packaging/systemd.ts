/**
 * The systemd units in deploy/systemd/ run real commands with real flags and
 * settings, hand secrets over as credentials, stop after the drain grace, and
 * keep their sandbox. `systemd-analyze verify` (and `security --offline`)
 * check them too where systemd-analyze is installed.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { COMMANDS } from '../../src/cli/commands.js'
import { ENV_ALIASES, envNameOf, loadConfig, settingPaths } from '../../src/config/index.js'
import { runKeyway } from '../helpers/cli.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DIR = join(ROOT, 'deploy/systemd')
const KNOWN_ENV = new Set([...settingPaths().map(envNameOf), ...Object.keys(ENV_ALIASES), 'KEYWAY_TOKEN', 'KEYWAY_CONFIG'])
/** Where the units expect the example configuration (deploy/systemd/keyway.yaml). */
const CONFIG_PATH = '/etc/keyway/keyway.yaml'

/** A unit file: section → key → every value given (keys may repeat). */
type Unit = Map<string, Map<string, string[]>>

function parseUnit(text: string): Unit {
  const unit: Unit = new Map()
  let section: Map<string, string[]> | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const head = /^\[(.+)\]$/.exec(line)
    if (head) {
      section = new Map()
      unit.set(head[1]!, section)
      continue
    }
    const eq = line.indexOf('=')
    if (!section || eq < 0) throw new Error(`not a unit file line: ${line}`)
    const key = line.slice(0, eq).trim()
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()])
  }
  return unit
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.service'))
const units = files.map((file) => {
  const unit = parseUnit(readFileSync(join(DIR, file), 'utf8'))
  const service = unit.get('Service') ?? new Map<string, string[]>()
  const one = (key: string): string | undefined => service.get(key)?.at(-1)
  const exec = one('ExecStart')?.split(/\s+/) ?? []
  const env: Record<string, string> = {}
  for (const value of service.get('Environment') ?? []) {
    for (const m of value.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!
  }
  return { file, unit, service, one, exec, command: exec[1] ?? '', env }
})

/** `30s`, `1min 30s`, `45` (seconds) → ms. */
function unitSeconds(text: string): number {
  let ms = 0
  for (const m of text.matchAll(/(\d+)\s*(ms|s|sec|min|m|h)?/g)) {
    const n = Number(m[1])
    ms += n * ({ ms: 1, s: 1000, sec: 1000, min: 60_000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000)
  }
  return ms
}

t.test('the units: keyway listen, a listen template, keyway gateway', async (t) => {
  t.same(files.sort(), ['keyway-gateway.service', 'keyway-listen.service', 'keyway-listen@.service'])
})

t.test('ExecStart runs a real command with flags it accepts', async (t) => {
  for (const u of units) {
    t.equal(u.exec[0], '/usr/bin/keyway', `${u.file}: /usr/bin/keyway (docs/deployment.md installs it there)`)
    t.ok(COMMANDS.some((c) => c.name === u.command), `${u.file}: keyway ${u.command} is a command`)
    const help = await runKeyway([u.command, '--help'])
    t.equal(help.code, 0)
    for (const flag of u.exec.slice(2).filter((a) => a.startsWith('-'))) {
      t.ok(help.stdout.includes(flag.split('=')[0]!), `${u.file}: keyway ${u.command} accepts ${flag}`)
    }
    const config = u.exec[u.exec.indexOf('--config') + 1]
    t.match(config, /^\/etc\/keyway\/(keyway|%i)\.yaml$/, `${u.file}: the configuration is in /etc/keyway`)
    t.equal(u.one('Type'), 'exec', `${u.file}: Type=exec (Keyway does not speak sd_notify)`)
    t.equal(u.one('ExecReload'), '/bin/kill -HUP $MAINPID', `${u.file}: reload is SIGHUP`)
    t.equal(u.one('Restart'), 'on-failure')
    t.equal(u.one('KillSignal'), 'SIGTERM', `${u.file}: SIGTERM drains`)
  }
})

t.test('every KEYWAY_* variable is a real setting; secrets come as credentials', async (t) => {
  for (const u of units) {
    for (const name of Object.keys(u.env)) if (name.startsWith('KEYWAY_')) t.ok(KNOWN_ENV.has(name), `${u.file}: ${name} is read by Keyway`)
    t.notOk('KEYWAY_TOKEN' in u.env, `${u.file}: never the token itself in the unit`)
    const credentials = new Map((u.service.get('LoadCredential') ?? []).map((v) => v.split(':', 2) as [string, string]))
    for (const [name, value] of Object.entries(u.env)) {
      const m = /^%d\/(.+)$/.exec(value)
      if (m) t.ok(credentials.has(m[1]!), `${u.file}: ${name} names the credential ${m[1]}`)
    }
    if (u.command === 'listen') {
      t.equal(u.env.KEYWAY_TOKEN_FILE, '%d/token', `${u.file}: the token file is the credential`)
      t.match(credentials.get('token'), /^\/etc\/keyway\//)
    } else {
      t.equal(u.env.KEYWAY_GATEWAY_TLS_KEY, '%d/gateway-key.pem', `${u.file}: the TLS key is a credential`)
      t.equal(u.env.KEYWAY_KEYS_SIGNING, '%d/signing-key.json', `${u.file}: the signing key is a credential`)
      const state = u.one('StateDirectory')
      t.ok(state, `${u.file}: a StateDirectory`)
      t.equal(u.env.KEYWAY_STATE, `%S/${state}`, `${u.file}: state lives in it`)
    }
  }
})

t.test('TimeoutStopSec exceeds the drain grace of the example configuration', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'keyway.yaml')
  writeFileSync(file, readFileSync(join(DIR, 'keyway.yaml'), 'utf8'))
  for (const u of units) {
    // %d is the service's credentials folder, %S /var/lib: only the paths matter, nothing is read.
    const env = Object.fromEntries(Object.entries(u.env).map(([k, v]) => [k, v.replace('%d', '/run/credentials/unit').replace('%S', '/var/lib')]))
    const config = loadConfig({ file, env })
    const drain = u.command === 'gateway' ? config.gateway.drainGrace : config.sidecar.drainGrace
    const stop = unitSeconds(u.one('TimeoutStopSec') ?? '90s')
    t.ok(stop > drain, `${u.file}: TimeoutStopSec ${stop} ms > drainGrace ${drain} ms (${CONFIG_PATH})`)
    if (u.command === 'gateway') t.equal(config.bootstrap, false, 'no development state on a server')
  }
})

t.test('the sandbox', async (t) => {
  const required: Record<string, string> = {
    DynamicUser: 'yes',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ProtectHome: 'yes',
    PrivateTmp: 'yes',
    PrivateDevices: 'yes',
    ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes',
    ProtectKernelLogs: 'yes',
    ProtectControlGroups: 'yes',
    RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
    RestrictNamespaces: 'yes',
    LockPersonality: 'yes',
    SystemCallFilter: '@system-service',
    SystemCallErrorNumber: 'EPERM',
    CapabilityBoundingSet: '',
    AmbientCapabilities: '',
    // V8's JIT needs writable and executable memory: MemoryDenyWriteExecute=yes would crash node.
    MemoryDenyWriteExecute: 'no',
  }
  for (const u of units) {
    for (const [key, value] of Object.entries(required)) t.equal(u.one(key), value, `${u.file}: ${key}=${value}`)
    t.notOk(u.service.has('User'), `${u.file}: a dynamic user, no fixed account`)
  }
})

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
t.test('systemd-analyze verify and security', { skip: analyze.status === 0 ? false : 'systemd-analyze is not installed' }, async (t) => {
  // verify insists that ExecStart's binary exists: point it at this checkout's, through a link
  // at a path without spaces (a checkout's path may have some; ExecStart splits on them).
  const dir = t.testdir()
  const bin = mkdtempSync(join(tmpdir(), 'keyway-systemd-'))
  t.teardown(() => rmSync(bin, { recursive: true, force: true }))
  symlinkSync(join(ROOT, 'bin/keyway.js'), join(bin, 'keyway'))
  const paths = units.map((u) => {
    const name = u.file.replace('@.service', '@example.service')
    writeFileSync(join(dir, name), readFileSync(join(DIR, u.file), 'utf8').replaceAll('/usr/bin/keyway', join(bin, 'keyway')))
    return join(dir, name)
  })
  const verify = spawnSync('systemd-analyze', ['verify', ...paths], { encoding: 'utf8', timeout: 60_000 })
  const output = `${verify.stdout ?? ''}${verify.stderr ?? ''}`
  // verify exits 0 on unknown keys and bad values, but names the unit and line. Lines about
  // other units or the machine (no running systemd, ...) are not this test's business.
  const ours = output.split('\n').filter((l) => paths.some((p) => l.includes(basename(p))))
  t.same(ours, [], 'no warning about these units')
  if (ours.length === 0 && verify.status !== 0) t.comment(`systemd-analyze verify exited ${verify.status} for reasons outside these units:\n${output}`)
  else if (output.trim() !== '') t.comment(output)
  for (const path of paths) {
    const security = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=25', path], { encoding: 'utf8', timeout: 60_000 })
    if (/unrecognized option|Unknown option/i.test(security.stderr)) {
      t.comment('systemd-analyze security --offline needs systemd 250 or later')
      break
    }
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout)
    t.ok(score && Number(score[1]) <= 2.5, `${basename(path)}: exposure ${score?.[1]} (0 best, 10 worst)${score ? '' : `\n${security.stdout}${security.stderr}`}`)
  }
})
