import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig, envNameOf, DEFAULT_CONFIG_FILE } from '../../src/config/index.js'
import { type DocumentError, isKeywayError } from '../../src/errors.js'

t.test('the embedded default configuration loads', async (t) => {
  const config = loadConfig({ env: {} })
  t.equal(config.file, DEFAULT_CONFIG_FILE)
  t.same(config.gateway.listen, { host: '127.0.0.1', port: 7443 })
  t.equal(config.gateway.connectTimeout, 5000)
  t.ok(config.policy.endsWith('/state/policy.yaml'), 'the development policy lives in the git-ignored state/')
  t.ok(config.bootstrapPolicy.endsWith('/config/policy.yaml'), 'a copy of the tracked config/policy.yaml')
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.gateway))
})

t.test('problems name the key, the position and the fix', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'keyway.yaml')
  writeFileSync(file, 'gateway:\n  listen: 127.0.0.1:99999\n  conectTimeout: 5s\n  idleTimeout: soon\n')
  const err = t.throws(() => loadConfig({ file, env: {} })) as unknown as DocumentError
  t.equal(err.code, 'ERR_CONFIG_INVALID')
  const byKey = new Map(err.problems.map((p) => [p.key, p]))
  t.match(byKey.get('gateway.listen'), { line: 2, col: 3, message: /65535/ })
  t.match(byKey.get('gateway.conectTimeout'), { line: 3, message: /unknown setting "conectTimeout"/ })
  t.match(byKey.get('gateway.idleTimeout'), { line: 4, message: /not a duration/ })
})

t.test('YAML syntax errors are located', async (t) => {
  const dir = t.testdir({ 'keyway.yaml': 'gateway: [\n' })
  const err = t.throws(() => loadConfig({ file: join(dir, 'keyway.yaml'), env: {} })) as unknown as DocumentError
  t.equal(err.code, 'ERR_CONFIG_INVALID')
  t.ok(err.problems.length > 0 && err.problems[0]!.line >= 1)
})

t.test('precedence: flag over environment over file over default', async (t) => {
  const dir = t.testdir({ 'keyway.yaml': 'gateway:\n  connectTimeout: 2s\n' })
  const file = join(dir, 'keyway.yaml')
  t.equal(loadConfig({ file, env: {} }).gateway.connectTimeout, 2000)
  t.equal(loadConfig({ file, env: { KEYWAY_GATEWAY_CONNECT_TIMEOUT: '3s' } }).gateway.connectTimeout, 3000)
  t.equal(
    loadConfig({ file, env: { KEYWAY_GATEWAY_CONNECT_TIMEOUT: '3s' }, overrides: { 'gateway.connectTimeout': '4s' } }).gateway.connectTimeout,
    4000,
  )
  const aliases = loadConfig({ file, env: { KEYWAY_GATEWAY: '127.0.0.1:1,127.0.0.1:2', KEYWAY_CONFIG: 'ignored-when-file-given' } })
  t.same(aliases.sidecar.gateways, [{ host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: 2 }])
  t.equal(envNameOf('gateway.maxConnectionsPerAccount'), 'KEYWAY_GATEWAY_MAX_CONNECTIONS_PER_ACCOUNT')
  const bad = t.throws(() => loadConfig({ file, env: { KEYWAY_GATEWAY_LISTEN: 'nowhere' } })) as unknown as DocumentError
  t.match(bad.problems[0], { file: 'environment KEYWAY_GATEWAY_LISTEN', key: 'gateway.listen' })
})

t.test('an unreadable file is ERR_CONFIG_IO', async (t) => {
  const err = t.throws(() => loadConfig({ file: '/nonexistent/keyway.yaml', env: {} }))
  t.ok(isKeywayError(err, 'ERR_CONFIG_IO'))
})

t.test('precedence for every setting with a flag: flag, then alias variable, then long variable, then file', async (t) => {
  // [setting, flag value, alias variable (or null), alias value, long-variable value, file value, read back]
  const cases: [string, string, string | null, string, string, string, (c: ReturnType<typeof loadConfig>) => unknown][] = [
    ['gateway.listen', '127.0.0.1:4', null, '', '127.0.0.1:3', '127.0.0.1:2', (c) => c.gateway.listen.port],
    ['gateway.metrics', '127.0.0.1:4', null, '', '127.0.0.1:3', '127.0.0.1:2', (c) => (c.gateway.metrics === '' ? 0 : c.gateway.metrics.port)],
    ['log.level', 'error', null, '', 'warn', 'debug', (c) => c.log.level],
    ['sidecar.gateways', '127.0.0.1:4', 'KEYWAY_GATEWAY', '127.0.0.1:5', '127.0.0.1:3', '127.0.0.1:2', (c) => c.sidecar.gateways[0]!.port],
    ['sidecar.ca', '/flag/ca.pem', 'KEYWAY_CA', '/alias/ca.pem', '/long/ca.pem', '/file/ca.pem', (c) => c.sidecar.ca],
    ['sidecar.tokenFile', '/flag/token', 'KEYWAY_TOKEN_FILE', '/alias/token', '/long/token', '/file/token', (c) => c.sidecar.tokenFile],
    ['sidecar.control', '127.0.0.1:4', 'KEYWAY_CONTROL', '127.0.0.1:5', '127.0.0.1:3', '127.0.0.1:2', (c) => c.sidecar.control.port],
  ]
  const values = (flag: string): unknown => (/^\d|^127/.test(flag) && flag.includes(':') ? Number(flag.split(':')[1]) : flag)
  for (const [setting, flag, alias, aliasValue, longValue, fileValue, read] of cases) {
    const [section, key] = setting.split('.') as [string, string]
    const dir = t.testdir({ 'keyway.yaml': `${section}:\n  ${key}: ${setting === 'sidecar.gateways' ? `[${fileValue}]` : fileValue}\n` })
    const file = join(dir, 'keyway.yaml')
    const long = { [envNameOf(setting)]: longValue }
    const env = alias ? { ...long, [alias]: aliasValue } : long
    t.equal(read(loadConfig({ file, env: {} })), values(fileValue), `${setting}: the file over the default`)
    t.equal(read(loadConfig({ file, env: long })), values(longValue), `${setting}: ${envNameOf(setting)} over the file`)
    if (alias) t.equal(read(loadConfig({ file, env })), values(aliasValue), `${setting}: ${alias} over ${envNameOf(setting)}`)
    t.equal(read(loadConfig({ file, env, overrides: { [setting]: flag } })), values(flag), `${setting}: the flag over the environment`)
  }
  // --config over KEYWAY_CONFIG.
  const a = t.testdir({ 'keyway.yaml': 'log:\n  level: warn\n' })
  t.equal(loadConfig({ file: join(a, 'keyway.yaml'), env: { KEYWAY_CONFIG: '/nonexistent/keyway.yaml' } }).log.level, 'warn')
})
