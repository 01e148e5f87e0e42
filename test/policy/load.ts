import t from 'tap'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DocumentError, isKeywayError } from '../../src/errors.js'
import { loadPolicyFile } from '../../src/policy/load.js'
import { fixtureText } from '../fixtures/policy/docs.js'

t.test('loads, parses and compiles a policy file', async (t) => {
  const dir = t.testdir({ 'policy.yaml': fixtureText('valid.yaml') })
  const file = join(dir, 'policy.yaml')
  const p = await loadPolicyFile(file)
  t.equal(p.generation, 1)
  t.equal(p.accounts.size, 4)
  t.equal((await loadPolicyFile(file, { generation: 3 })).generation, 3)
})

t.test('a missing file is ERR_POLICY_IO', async (t) => {
  const dir = t.testdir({})
  const err = await loadPolicyFile(join(dir, 'missing.yaml')).catch((e: unknown) => e)
  t.ok(isKeywayError(err, 'ERR_POLICY_IO'))
  t.match((err as Error).message, /cannot read policy file .*missing\.yaml: ENOENT/)
  t.match((err as { detail: unknown }).detail, { errno: 'ENOENT' })
})

t.test('a folder is ERR_POLICY_IO', async (t) => {
  const dir = t.testdir({ sub: {} })
  const err = await loadPolicyFile(join(dir, 'sub')).catch((e: unknown) => e)
  t.ok(isKeywayError(err, 'ERR_POLICY_IO'))
})

t.test('an unreadable file is ERR_POLICY_IO', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, async (t) => {
  const dir = t.testdir({ 'policy.yaml': 'version: 1\n' })
  const file = join(dir, 'policy.yaml')
  await chmod(file, 0o000)
  const err = await loadPolicyFile(file).catch((e: unknown) => e)
  t.ok(isKeywayError(err, 'ERR_POLICY_IO'))
})

t.test('an invalid file is ERR_POLICY_INVALID, located in that file', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'policy.yaml')
  await writeFile(file, fixtureText('invalid.yaml'))
  const err = await loadPolicyFile(file).catch((e: unknown) => e)
  t.ok(err instanceof DocumentError)
  t.ok(isKeywayError(err, 'ERR_POLICY_INVALID'))
  const problems = (err as DocumentError).problems
  t.equal(problems.length, 13)
  t.ok(problems.every((p) => p.file === file))
  t.match(problems[0], { line: 3, col: 3, key: 'settings.autoConnect' })
})
