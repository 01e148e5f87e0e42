import t from 'tap'
import { join } from 'node:path'
import { FIXTURE_POLICY, runKeyway, writeAdminSetup } from '../helpers/cli.js'

t.test('a valid policy: "ok" on stdout, exit 0', async (t) => {
  const dir = t.testdir({ 'policy.yaml': FIXTURE_POLICY })
  const r = await runKeyway(['policy', 'check', 'policy.yaml'], { cwd: dir })
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'ok\n')
  t.match(r.stderr, /3 resources, 2 roles, 2 accounts/)
})

t.test('an invalid policy: one file:line:col line per problem on stderr, exit 1', async (t) => {
  const broken = [
    'version: 1', // 1
    'resources:', // 2
    '  - name: pg', // 3
    '    kind: database', // 4
    '    type: postgres', // 5
    '    address: 127.0.0.1:5432', // 6
    'roles:', // 7
    '  - name: r', // 8
    '    grants: [pgg]', // 9
    '',
  ].join('\n')
  const dir = t.testdir({ 'broken.yaml': broken })
  const r = await runKeyway(['policy', 'check', 'broken.yaml'], { cwd: dir })
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  const lines = r.stderr.trimEnd().split('\n')
  t.match(lines[0], /^broken\.yaml:4:5: .*kind.* \(resources\[0\]\.kind\)$/)
  t.match(lines[1], /^broken\.yaml:9:14: unknown resource "pgg".*\(roles\[0\]\.grants\[0\]\)$/)
  t.equal(lines[2], 'keyway: ERR_POLICY_INVALID: 2 problems')
  t.equal(lines.length, 3)
})

t.test('YAML syntax errors are located too', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'version: 1\nresources: [\n' })
  const r = await runKeyway(['policy', 'check', join(dir, 'bad.yaml')])
  t.equal(r.code, 1)
  t.match(r.stderr, new RegExp(`^${join(dir, 'bad.yaml')}:\\d+:\\d+: YAML syntax`))
})

t.test('without FILE the configured policy is checked; a missing file is ERR_POLICY_IO', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const r = await runKeyway(['policy', 'check', '--config', setup.configFile])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'ok\n')
  const missing = await runKeyway(['policy', 'check', 'nope.yaml'], { cwd: setup.dir })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^keyway: ERR_POLICY_IO: cannot read policy nope\.yaml: ENOENT/)
  t.equal((await runKeyway(['policy', 'lint', 'x'])).code, 2)
})
