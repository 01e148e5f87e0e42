import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTokenFile } from '../../src/cli/token-file.js'

function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-token-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('a new file, mode 0600, holding the token and a newline; relative paths from cwd', async (t) => {
  const dir = scratch(t)
  const file = await createTokenFile('job.token', dir)
  t.equal(file.path, join(dir, 'job.token'))
  t.equal(statSync(file.path).mode & 0o777, 0o600, 'created 0600 before anything is in it')
  await file.write('ey.a.b')
  t.equal(readFileSync(file.path, 'utf8'), 'ey.a.b\n')
  t.equal(statSync(file.path).mode & 0o777, 0o600)
})

t.test('an existing file is refused with ERR_FILE_EXISTS and left as it was', async (t) => {
  const dir = scratch(t)
  const path = join(dir, 'job.token')
  writeFileSync(path, 'the only copy of a token\n', { mode: 0o600 })
  await t.rejects(createTokenFile(path, '/'), { code: 'ERR_FILE_EXISTS', message: /refusing to overwrite/ })
  t.equal(readFileSync(path, 'utf8'), 'the only copy of a token\n', 'not emptied')
})

t.test('discard removes the still-empty file; a folder that does not exist is ERR_CONFIG_IO', async (t) => {
  const dir = scratch(t)
  const file = await createTokenFile(join(dir, 'x.token'), '/')
  await file.discard()
  t.notOk(existsSync(file.path))
  await t.rejects(createTokenFile(join(dir, 'missing', 'x.token'), '/'), { code: 'ERR_CONFIG_IO' })
})
