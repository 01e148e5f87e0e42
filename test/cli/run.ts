import t from 'tap'
import { runKeyway } from '../helpers/cli.js'

const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzdmNfeCJ9.c2lnbmF0dXJlLWJ5dGVz'

t.test('an error that echoes a token pasted where a path belongs prints it masked', async (t) => {
  const r = await runKeyway(['listen', '--token-file', TOKEN, '--gateway', '127.0.0.1:1'], { env: {} })
  t.equal(r.code, 1)
  t.match(r.stderr, /keyway: ERR_CONFIG_IO: .*\*{8}/)
  t.notOk(r.stderr.includes(TOKEN), 'the token is not printed')
  t.notOk(r.stderr.includes('c2lnbmF0dXJlLWJ5dGVz'))
})

t.test('KEYWAY_TOKEN is masked wherever an error repeats it', async (t) => {
  const secret = 'not-a-jwt-but-a-secret-value'
  const r = await runKeyway(['gateway', '--listen', secret], { env: { KEYWAY_TOKEN: secret } })
  t.equal(r.code, 1)
  t.notOk(r.stderr.includes(secret))
  t.match(r.stderr, /\*{8}/)
})

t.test('usage errors exit 2; unknown commands exit 2; --version prints the version', async (t) => {
  t.equal((await runKeyway(['nope'])).code, 2)
  t.equal((await runKeyway(['status', '--bogus'])).code, 2)
  t.equal((await runKeyway([])).code, 2)
  const v = await runKeyway(['--version'])
  t.equal(v.code, 0)
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/)
  const help = await runKeyway(['gateway', '--config', 'x', '--help'])
  t.equal(help.code, 0, '--help anywhere prints the usage instead of running the command')
  t.match(help.stdout, /^Usage: keyway gateway/)
})
