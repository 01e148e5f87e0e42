import t from 'tap'
import { join } from 'node:path'
import { parse } from 'yaml'
import { MASK, printableConfig } from '../../src/cli/config.js'
import { loadConfig } from '../../src/config/index.js'
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
