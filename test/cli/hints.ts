import t from 'tap'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { isTerminal, keywayCommand, shellWord } from '../../src/cli/hints.js'
import { runKeyway, writeAdminSetup } from '../helpers/cli.js'

t.test('hints name keyway when it is on PATH, npx keyway from an installed package, else node and the script', async (t) => {
  const root = t.testdir()
  const bin = join(root, 'bin')
  mkdirSync(bin)
  const empty = join(root, 'empty')
  mkdirSync(empty)
  t.equal(keywayCommand({ env: { PATH: empty }, cwd: root, script: join(root, 'bin', 'keyway.js') }), 'node bin/keyway.js', 'a checkout after npm ci')
  t.equal(keywayCommand({ env: { PATH: empty }, cwd: '/elsewhere', script: '/opt/k w/bin/keyway.js' }), "node '/opt/k w/bin/keyway.js'", 'outside the folder: the absolute path, quoted')
  t.equal(keywayCommand({ env: { PATH: empty }, cwd: root, script: join(root, 'node_modules', '.bin', 'keyway') }), 'npx keyway')
  writeFileSync(join(bin, 'keyway'), '#!/bin/sh\n')
  chmodSync(join(bin, 'keyway'), 0o755)
  t.equal(keywayCommand({ env: { PATH: `${empty}:${bin}` }, cwd: root, script: join(root, 'bin', 'keyway.js') }), 'keyway')
  t.equal(keywayCommand({ env: { PATH: empty }, cwd: root }), 'keyway', 'run in-process: no script to name')
  t.equal(shellWord('a/b.yaml'), 'a/b.yaml')
  t.equal(shellWord("it's"), `'it'\\''s'`)
  t.equal(isTerminal(new PassThrough()), false)
  t.equal(isTerminal(Object.assign(new PassThrough(), { isTTY: true })), true)
})

t.test('services create --role suggests what works for an account with a role, and no "printed above" when stdout is not a terminal', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const withRole = await runKeyway(['admin', 'services', 'create', 'bot', '--role', 'analysts', ...c])
  t.equal(withRole.code, 0, withRole.stderr)
  t.notMatch(withRole.stderr, /admin grant bot RESOURCE\b(?! --for)/, 'no direct grant: it is refused for an account with a role')
  t.match(withRole.stderr, /admin roles grant analysts RESOURCE \(every holder inherits it\), or temporary access: \S.* admin grant bot RESOURCE --for 2h/)
  t.notMatch(withRole.stderr, /printed above/, 'stdout is not a terminal here')
  t.match(withRole.stderr, /went to stdout, not to this terminal/)
  const noRole = await runKeyway(['admin', 'services', 'create', 'bot2', ...c])
  t.match(noRole.stderr, /admin grant bot2 RESOURCE, or \S.* admin roles assign bot2 ROLE/)
  const rotated = await runKeyway(['admin', 'tokens', 'rotate', 'bot', ...c])
  t.notMatch(rotated.stderr, /printed above/)
})
