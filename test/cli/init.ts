import t from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { INIT_FILES } from '../../src/admin/index.js'
import { runKeyway } from '../helpers/cli.js'

t.test('keyway init --dir: files on stdout, next steps on stderr; the setup works with the other commands', async (t) => {
  const root = t.testdir()
  const r = await runKeyway(['init', '--dir', 'setup'], { cwd: root })
  t.equal(r.code, 0, r.stderr)
  const dir = join(root, 'setup')
  t.same(r.stdout.trimEnd().split('\n'), Object.keys(INIT_FILES).map((f) => join(dir, f)))
  // Shell-quoted when the checkout's path needs it (a space, as CI's clean clone has).
  const config = join(dir, 'keyway.yaml')
  const shown = /^[\w@%+=:,./-]+$/.test(config) ? config : `'${config.replaceAll("'", `'\\''`)}'`
  t.ok(r.stderr.includes(`Next steps:\n  export KEYWAY_CONFIG=${shown}\n`), 'an absolute KEYWAY_CONFIG, right from any folder')
  t.match(r.stderr, /keyway admin services create ci --role example/)
  t.same(readdirSync(dir).sort(), Object.keys(INIT_FILES).sort())

  const env = { KEYWAY_CONFIG: join(dir, 'keyway.yaml') }
  t.equal((await runKeyway(['policy', 'check'], { env })).stdout, 'ok\n')
  const created = await runKeyway(['admin', 'services', 'create', 'ci', '--role', 'example'], { env })
  t.equal(created.code, 0, created.stderr)
  const allowed = await runKeyway(['explain', 'ci', 'example-postgres'], { env })
  t.equal(allowed.code, 0, allowed.stdout)

  const again = await runKeyway(['init', '--dir', dir])
  t.equal(again.code, 1)
  t.match(again.stderr, /^keyway: ERR_FILE_EXISTS: refusing to overwrite /)
})

t.test('--host sets the certificate names; stray arguments are usage errors', async (t) => {
  const dir = t.testdir()
  const r = await runKeyway(['init', '--dir', dir, '--host', 'gw.test', '--host', '10.9.8.7'])
  t.equal(r.code, 0, r.stderr)
  const { X509Certificate } = await import('node:crypto')
  const { readFileSync } = await import('node:fs')
  const cert = new X509Certificate(readFileSync(join(dir, 'gateway.pem')))
  t.equal(cert.checkHost('gw.test'), 'gw.test')
  t.equal(cert.checkIP('10.9.8.7'), '10.9.8.7')
  t.equal((await runKeyway(['init', dir])).code, 2)
})
