import t from 'tap'
import { join } from 'node:path'
import { parse } from 'yaml'
import { printableConfig } from '../../src/cli/config.js'
import { MASK, redact } from '../../src/cli/redact.js'
import { tokenFingerprint } from '../../src/auth/index.js'
import { envNameOf, loadConfig, settingPaths } from '../../src/config/index.js'
import { runKeyway, writeAdminSetup } from '../helpers/cli.js'

t.test('config print: the effective configuration as YAML, addresses as host:port', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const r = await runKeyway(['config', 'print', '--config', setup.configFile], { env: { KEYWAY_GATEWAY_CONNECT_TIMEOUT: '7s' } })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `# Effective configuration from ${setup.configFile}`)
  const printed = parse(r.stdout) as Record<string, any>
  t.equal(printed.policy, setup.policyFile, 'paths are absolute')
  t.equal(printed.tokens.issuer, 'keyway-test')
  t.equal(printed.gateway.listen, '127.0.0.1:7443')
  t.equal(printed.gateway.connectTimeout, 7000, 'the environment wins over the file')
  t.same(printed.sidecar.gateways, ['127.0.0.1:7443'])
  const json = JSON.parse((await runKeyway(['config', 'print', '--json', '--config', setup.configFile])).stdout)
  t.equal(json.file, setup.configFile)
  t.equal(json.keys.signing, join(setup.dir, 'signing-key.json'), 'a path to key material is not itself a secret')
})

t.test('KEYWAY_CONFIG names the file; the embedded default is the fallback', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const r = await runKeyway(['config', 'print', '--json'], { env: { KEYWAY_CONFIG: setup.configFile } })
  t.equal(JSON.parse(r.stdout).file, setup.configFile)
  const d = await runKeyway(['config', 'print', '--json'])
  t.match(JSON.parse(d.stdout).file, /config\/keyway\.yaml$/)
})

t.test('secrets are masked by name or by shape', async (t) => {
  const config = loadConfig({ env: {} })
  const withSecrets = {
    ...config,
    sidecar: { ...config.sidecar, token: 'abc', tokenFile: '/run/token' },
    extra: { password: 'p', clientSecret: 's', note: 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln', pem: '-----BEGIN PRIVATE KEY-----\nMII...' },
  }
  const p = printableConfig(withSecrets as never) as Record<string, any>
  t.equal(p.sidecar.token, MASK)
  t.equal(p.sidecar.tokenFile, '/run/token', 'a file name is shown')
  t.same(p.extra, { password: MASK, clientSecret: MASK, note: MASK, pem: MASK })
  t.equal(p.tokens.issuer, config.tokens.issuer, 'the tokens section itself is not a secret')
})

t.test('usage errors exit 2', async (t) => {
  t.equal((await runKeyway(['config'])).code, 2)
  t.equal((await runKeyway(['config', 'show'])).code, 2)
  t.equal((await runKeyway(['config', 'print', '--yaml'])).code, 2)
})

// A real-looking service token: a compact EdDSA JWS.
const TOKEN = 'eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJzdmNfZXRsIiwianRpIjoidG9rXzEifQ.' + 'c2lnbmF0dXJl'.repeat(7)

t.test('KEYWAY_TOKEN is never printed, whatever the output and even when pasted into a setting', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const envs: Record<string, string>[] = [
    { KEYWAY_TOKEN: TOKEN },
    { KEYWAY_TOKEN: `  ${TOKEN}\n` },
    // The usual mistakes: the token where its file belongs, or as a server name.
    { KEYWAY_TOKEN: TOKEN, KEYWAY_TOKEN_FILE: TOKEN },
    { KEYWAY_TOKEN: TOKEN, KEYWAY_SIDECAR_TOKEN_FILE: `/run/${TOKEN}` },
    { KEYWAY_TOKEN: TOKEN, KEYWAY_SIDECAR_SERVERNAME: TOKEN },
  ]
  for (const env of envs) {
    for (const flags of [[], ['--json'], ['--sources'], ['--sources', '--json']]) {
      const r = await runKeyway(['config', 'print', '--config', setup.configFile, ...flags], { env })
      t.equal(r.code, 0, r.stderr)
      t.notMatch(r.stdout + r.stderr, TOKEN, `${Object.keys(env).join(',')} ${flags.join(' ')}: not printed`)
      t.notMatch(r.stdout + r.stderr, TOKEN.slice(0, 40), 'not even its start')
    }
  }
  const r = await runKeyway(['config', 'print', '--config', setup.configFile], { env: { KEYWAY_TOKEN: TOKEN } })
  t.match(r.stdout, `# Service token: KEYWAY_TOKEN (${tokenFingerprint(TOKEN)})`, 'its fingerprint says which token is in use')
  // A token in a setting that fails validation: the error names the setting, not the token.
  const bad = await runKeyway(['config', 'print', '--config', setup.configFile], { env: { KEYWAY_TOKEN: TOKEN, KEYWAY_GATEWAY: TOKEN } })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /ERR_CONFIG_INVALID/)
  t.match(bad.stderr, /KEYWAY_GATEWAY/, 'the variable at fault is named')
  t.notMatch(bad.stdout + bad.stderr, TOKEN.slice(0, 40), 'the token is not')
})

t.test('redact masks known secrets and anything shaped like a token', async (t) => {
  t.equal(redact(`/srv/${TOKEN}`), `/srv/${MASK}`)
  t.equal(redact('s3cret-value-here in a message', ['s3cret-value-here']), `${MASK} in a message`)
  t.equal(redact('/etc/keyway/token'), '/etc/keyway/token', 'paths stay')
  const p = printableConfig(loadConfig({ env: { KEYWAY_SIDECAR_SERVERNAME: 'gw.example.internal' } }), ['gw.example.internal'])
  t.equal((p.sidecar as Record<string, unknown>).servername, MASK, 'a value equal to a known secret')
})

t.test('config print --sources: every setting, its value, where it comes from, its variable', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const env = { KEYWAY_GATEWAY_CONNECT_TIMEOUT: '7s', KEYWAY_GATEWAY: 'gw-a:7443,gw-b:7443', KEYWAY_SIDECAR_CONTROL: '127.0.0.1:7071', KEYWAY_CONTROL: '127.0.0.1:7072' }
  const r = await runKeyway(['config', 'print', '--sources', '--json', '--config', setup.configFile], { env })
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { file: string; settings: { setting: string; value: unknown; source: string; env: string }[] }
  t.equal(out.file, setup.configFile)
  t.same(out.settings.map((s) => s.setting), settingPaths(), 'every setting, in schema order')
  const by = Object.fromEntries(out.settings.map((s) => [s.setting, s]))
  t.same(by['gateway.connectTimeout'], { setting: 'gateway.connectTimeout', value: 7000, source: 'env KEYWAY_GATEWAY_CONNECT_TIMEOUT', env: 'KEYWAY_GATEWAY_CONNECT_TIMEOUT' })
  t.same(by['sidecar.gateways']?.value, ['gw-a:7443', 'gw-b:7443'])
  t.equal(by['sidecar.gateways']?.source, 'env KEYWAY_GATEWAY', 'an alias is named')
  t.equal(by['sidecar.control']?.value, '127.0.0.1:7072', 'the alias wins over KEYWAY_SIDECAR_CONTROL, as loadConfig applies them')
  t.equal(by['sidecar.control']?.source, 'env KEYWAY_CONTROL')
  t.equal(by['tokens.issuer']?.source, 'file')
  t.equal(by['tokens.issuer']?.value, 'keyway-test')
  t.equal(by['gateway.drainGrace']?.source, 'default')
  for (const s of out.settings) t.equal(s.env, envNameOf(s.setting))

  const table = await runKeyway(['config', 'print', '--sources', '--config', setup.configFile], { env })
  t.equal(table.code, 0, table.stderr)
  t.match(table.stdout, /^SETTING\s+VALUE\s+SOURCE\s+VARIABLE$/m)
  t.match(table.stdout, /^gateway\.connectTimeout\s+7000\s+env KEYWAY_GATEWAY_CONNECT_TIMEOUT\s+KEYWAY_GATEWAY_CONNECT_TIMEOUT$/m)
  t.match(table.stdout, /^sidecar\.servername\s+""\s+default\s+KEYWAY_SIDECAR_SERVERNAME$/m, 'an empty value is shown as ""')
  t.match(table.stdout, /^sidecar\.gateways\s+gw-a:7443,gw-b:7443\s+env KEYWAY_GATEWAY\s+KEYWAY_SIDECAR_GATEWAYS$/m)
})
