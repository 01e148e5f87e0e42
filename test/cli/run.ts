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

t.test('a wrong flag is named, with the nearest right one; a missing value or a value for a switch is said plainly', async (t) => {
  const four = await runKeyway(['admin', 'grant', 'etl', 'pg', '--four', '2h'])
  t.equal(four.code, 2)
  t.match(four.stderr, /^keyway: ERR_USAGE: unknown option --four \(did you mean --for\?\)\nUsage: keyway admin grant /)
  t.notMatch(four.stderr, /To specify a positional argument/, 'not node:util\'s text')
  t.match((await runKeyway(['status', '--jsn'])).stderr, /unknown option --jsn \(did you mean --json\?\)/)
  t.match((await runKeyway(['status', '--xyzzy'])).stderr, /unknown option --xyzzy\n/, 'no suggestion when nothing is close')
  t.match((await runKeyway(['admin', 'grant', 'etl', 'pg', '--for'])).stderr, /ERR_USAGE: option --for needs a value/)
  t.match((await runKeyway(['status', '--json=yes'])).stderr, /ERR_USAGE: option --json takes no value/)
})

t.test('every command\'s and every admin sub-command\'s --help prints a description, its flags and an example', async (t) => {
  const main = (await runKeyway(['--help'])).stdout
  const commands = [...main.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]!)
  t.ok(commands.length >= 10, `commands: ${commands.join(' ')}`)
  const admin = (await runKeyway(['admin', '--help'])).stdout
  const verbs = [...admin.matchAll(/^ {2}([a-z-]+(?: [a-z-]+)?)(?= [A-Z[]|\n)/gm)].map((m) => m[1]!.split(' '))
  t.ok(verbs.length >= 20, `admin verbs: ${verbs.length}`)
  for (const words of [...commands.filter((c) => c !== 'admin').map((c) => [c]), ...verbs.map((v) => ['admin', ...v])]) {
    const r = await runKeyway([...words, '--help'])
    const what = `keyway ${words.join(' ')} --help`
    t.equal(r.code, 0, what)
    t.match(r.stdout, /^Usage: keyway /, `${what}: usage`)
    t.match(r.stdout, /\n\n\S.*\w/, `${what}: a description`)
    t.match(r.stdout, /Options:\n/, `${what}: flags`)
    t.match(r.stdout, /\nExample:\n {2}\S/, `${what}: an example`)
    // Every flag of the usage line is explained.
    const usageLine = r.stdout.split('\n')[0]!
    for (const flag of usageLine.match(/--[a-z-]+/g) ?? []) t.match(r.stdout.slice(usageLine.length), flag, `${what}: ${flag} explained`)
  }
})
