import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, openSync, readFileSync, readSync, closeSync, readdirSync, statSync, symlinkSync, writeFileSync, lstatSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isSeq, type Document } from 'yaml'
import { editPolicyFile, readPolicy } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { DocumentError, isKeywayError } from '../../src/errors.js'
import { FIXTURE_POLICY } from '../helpers/cli.js'

const addService = (doc: Document, name: string): void => {
  const accounts = doc.get('accounts', true)
  if (!isSeq(accounts)) throw new Error('no accounts list')
  accounts.add(doc.createNode({ id: `svc_${name}`, type: 'service', name }))
}

const setup = (t: Test, text = FIXTURE_POLICY) => {
  const dir = t.testdir({ 'policy.yaml': text })
  return { dir, file: join(dir, 'policy.yaml') }
}

/** A pid that is certainly not running: a child that has exited. */
const deadPid = (): number => {
  const child = spawnSync(process.execPath, ['-e', ''])
  return child.pid
}

t.test('an edit keeps comments and order, and returns what the edit returned', async (t) => {
  const { file } = setup(t)
  const clock = new ManualClock()
  const result = await editPolicyFile(file, (doc, current) => {
    t.equal(current.accounts.size, 2, 'the edit sees the compiled current policy')
    addService(doc, 'new-one')
    return 'done'
  }, { clock })
  t.equal(result, 'done')
  const after = readFileSync(file, 'utf8')
  t.ok(after.startsWith(FIXTURE_POLICY), 'everything before the new account, comments included, is byte-identical')
  t.match(after.slice(FIXTURE_POLICY.length), /- id: svc_new-one\n\s+type: service\n\s+name: new-one\n/)
  for (const line of FIXTURE_POLICY.split('\n').filter((l) => l.includes('#'))) t.ok(after.includes(line), `kept: ${line.trim()}`)
  t.equal((await readPolicy(file)).policy.accountByName('new-one')?.id, 'svc_new-one')
  t.notOk(existsSync(`${file}.lock`), 'the lock is released')
})

t.test('an edit that fails validation writes nothing', async (t) => {
  const { dir, file } = setup(t)
  const before = readFileSync(file)
  const inode = statSync(file).ino
  const err = await t.rejects(
    editPolicyFile(file, (doc) => {
      const roles = doc.get('roles', true)
      if (!isSeq(roles)) throw new Error('no roles')
      roles.add(doc.createNode({ name: 'broken', grants: ['no-such-resource'] }))
    }, { clock: new ManualClock() }),
  ) as unknown as DocumentError
  t.ok(err instanceof DocumentError && err.code === 'ERR_POLICY_INVALID')
  t.match(err.problems[0], { file: `${file} (edited, not written)`, message: /unknown resource "no-such-resource"/ })
  t.ok(err.problems[0]!.line > 0, 'the problem is located in the proposed text')
  t.same(readFileSync(file), before, 'byte-identical')
  t.equal(statSync(file).ino, inode, 'not even replaced')
  t.same(readdirSync(dir).sort(), ['policy.yaml'], 'no temporary or lock file left')
})

t.test('an edit that throws writes nothing and releases the lock', async (t) => {
  const { dir, file } = setup(t)
  const before = readFileSync(file)
  await t.rejects(editPolicyFile(file, (doc) => {
    addService(doc, 'half-done')
    throw new Error('changed my mind')
  }, { clock: new ManualClock() }), /changed my mind/)
  t.same(readFileSync(file), before)
  t.same(readdirSync(dir), ['policy.yaml'])
})

t.test('an edit that changes nothing does not rewrite the file', async (t) => {
  const { file } = setup(t)
  const inode = statSync(file).ino
  await editPolicyFile(file, () => undefined, { clock: new ManualClock() })
  t.equal(statSync(file).ino, inode)
})

t.test('an invalid file cannot be edited: its located problems are reported', async (t) => {
  const { dir, file } = setup(t, 'version: 1\nresources:\n  - name: x\n    kind: nope\n')
  const err = await t.rejects(editPolicyFile(file, () => t.fail('edit must not run'), { clock: new ManualClock() })) as unknown as DocumentError
  t.equal(err.code, 'ERR_POLICY_INVALID')
  t.equal(err.problems[0]!.file, file)
  t.same(readdirSync(dir), ['policy.yaml'])
  const missing = await t.rejects(editPolicyFile(join(dir, 'nope.yaml'), () => undefined, { clock: new ManualClock() }))
  t.ok(isKeywayError(missing, 'ERR_POLICY_IO'))
})

t.test('writes are atomic: rename over the file, mode kept, nothing left behind', async (t) => {
  const { dir, file } = setup(t)
  chmodSync(file, 0o640)
  const oldInode = statSync(file).ino
  // A reader that opened the file before the edit keeps reading the old content in full.
  const fd = openSync(file, 'r')
  t.teardown(() => closeSync(fd))
  await editPolicyFile(file, (doc) => addService(doc, 'atomic'), { clock: new ManualClock() })
  const st = statSync(file)
  t.not(st.ino, oldInode, 'a new file was renamed into place')
  t.equal(st.mode & 0o777, 0o640, 'mode kept')
  const buf = Buffer.alloc(FIXTURE_POLICY.length + 100)
  const n = readSync(fd, buf, 0, buf.length, 0)
  t.equal(buf.subarray(0, n).toString('utf8'), FIXTURE_POLICY, 'the old inode still holds the whole old text')
  t.match(readFileSync(file, 'utf8'), /name: atomic/)
  t.same(readdirSync(dir), ['policy.yaml'])
})

t.test('a symlinked policy is edited at its target; the link stays', async (t) => {
  const { dir, file } = setup(t)
  const link = join(dir, 'current.yaml')
  symlinkSync(file, link)
  await editPolicyFile(link, (doc) => addService(doc, 'via-link'), { clock: new ManualClock() })
  t.ok(lstatSync(link).isSymbolicLink())
  t.match(readFileSync(file, 'utf8'), /name: via-link/)
})

t.test('concurrent in-process edits all land', async (t) => {
  const { file } = setup(t)
  const clock = new ManualClock()
  const names = Array.from({ length: 8 }, (_, i) => `parallel-${i}`)
  await Promise.all(
    names.map((name) =>
      editPolicyFile(file, async (doc) => {
        // Yield between read and write: without the lock, later writers would drop earlier accounts.
        await new Promise((resolve) => setImmediate(resolve))
        addService(doc, name)
      }, { clock }),
    ),
  )
  const { policy } = await readPolicy(file)
  for (const name of names) t.ok(policy.accountByName(name), `${name} present`)
})

t.test('two processes editing at once both land', async (t) => {
  const { file } = setup(t)
  const worker = fileURLToPath(new URL('../fixtures/admin/edit-worker.ts', import.meta.url))
  // The TypeScript loader this process runs with (.taprc: test/helpers/typescript-hooks.ts; tap's ts-node otherwise).
  const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a.includes('typescript-hooks'))
  const run = (name: string): Promise<number | null> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...execArgv, worker, file, name, '5'], { stdio: ['ignore', 'inherit', 'inherit'] })
      child.on('error', reject)
      child.on('exit', resolve)
    })
  const codes = await Promise.all([run('left'), run('right')])
  t.same(codes, [0, 0])
  const { policy } = await readPolicy(file)
  for (const side of ['left', 'right']) for (let i = 0; i < 5; i++) t.ok(policy.accountByName(`${side}-${i}`), `${side}-${i} present`)
  t.notOk(existsSync(`${file}.lock`))
})

t.test('a lock left by a dead process is broken', async (t) => {
  const { file } = setup(t)
  writeFileSync(`${file}.lock`, JSON.stringify({ pid: deadPid(), host: hostname(), time: '2025-01-01T00:00:00Z' }))
  await editPolicyFile(file, (doc) => addService(doc, 'after-crash'), { clock: new ManualClock(), lockTimeoutMs: 0 })
  t.match(readFileSync(file, 'utf8'), /name: after-crash/)
  t.notOk(existsSync(`${file}.lock`))
  t.notOk(existsSync(`${file}.lock.break`))
})

t.test('a live lock times out with ERR_POLICY_LOCKED and is left alone', async (t) => {
  const { file } = setup(t)
  const lock = JSON.stringify({ pid: process.pid, host: hostname(), time: '2026-01-01T00:00:00Z' })
  writeFileSync(`${file}.lock`, lock)
  const clock = new ManualClock()
  const editing = editPolicyFile(file, () => t.fail('must not run'), { clock, lockTimeoutMs: 10_000 })
  clock.advance(9_999)
  // Still waiting just before the deadline: release no lock, advance past it.
  clock.advance(1)
  const err = await t.rejects(editing)
  t.ok(isKeywayError(err, 'ERR_POLICY_LOCKED'))
  t.match((err as Error).message, new RegExp(`process ${process.pid} on `))
  t.equal(readFileSync(`${file}.lock`, 'utf8'), lock, 'the holder keeps its lock')
  t.equal(readFileSync(file, 'utf8'), FIXTURE_POLICY)
})

t.test('an edit waits for a live lock and proceeds once it is released', async (t) => {
  const { file } = setup(t)
  writeFileSync(`${file}.lock`, JSON.stringify({ pid: process.pid, host: hostname(), time: '2026-01-01T00:00:00Z' }))
  let ran = false
  const editing = editPolicyFile(file, (doc) => {
    ran = true
    addService(doc, 'patient')
  }, { clock: new ManualClock() })
  // Let the edit try (and fail) to take the lock a few times.
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
  t.notOk(ran, 'waits while the lock is held')
  const { unlinkSync } = await import('node:fs')
  unlinkSync(`${file}.lock`)
  await editing
  t.ok(ran)
  t.match(readFileSync(file, 'utf8'), /name: patient/)
})

t.test('a lock from another host is never broken, even with a pid that is not running here', async (t) => {
  const { file } = setup(t)
  writeFileSync(`${file}.lock`, JSON.stringify({ pid: deadPid(), host: `not-${hostname()}`, time: '2026-01-01T00:00:00Z' }))
  const err = await t.rejects(editPolicyFile(file, () => undefined, { clock: new ManualClock(), lockTimeoutMs: 0 }))
  t.ok(isKeywayError(err, 'ERR_POLICY_LOCKED'))
  t.ok(existsSync(`${file}.lock`))
})
