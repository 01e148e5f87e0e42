import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, chmodSync, chownSync, constants, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureRuntimeDir, prepareSocketPath, resolveGroup, resolveRuntimeDir, writeSecretFile } from '../../src/sidecar/runtime-dir.js'

const isRoot = process.getuid?.() === 0

function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'kw-rt-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs `fn` under `mask`, then restores the process umask. */
async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const before = process.umask(mask)
  try {
    return await fn()
  } finally {
    process.umask(before)
  }
}

function modeOf(path: string): number {
  return lstatSync(path).mode & 0o777
}

t.test('resolution: the setting, else $XDG_RUNTIME_DIR/keyway, else /run/keyway when writable, else $TMPDIR/keyway-<uid>', async (t) => {
  t.equal(resolveRuntimeDir('/srv/keyway-rt', { XDG_RUNTIME_DIR: '/run/user/1000' }), '/srv/keyway-rt')
  t.equal(resolveRuntimeDir('', { XDG_RUNTIME_DIR: '/run/user/1000' }), '/run/user/1000/keyway')
  t.not(resolveRuntimeDir('', { XDG_RUNTIME_DIR: 'relative' }), 'relative/keyway', 'a relative XDG_RUNTIME_DIR is ignored')
  let runWritable = false
  try {
    accessSync('/run', constants.W_OK)
    runWritable = true
  } catch {
    // not for this user
  }
  const fallback = resolveRuntimeDir('', { TMPDIR: '/var/tmp' })
  t.equal(fallback, runWritable ? '/run/keyway' : `/var/tmp/keyway-${process.getuid?.()}`)
})

t.test('made with mode 0700 under umask 000, and 0750 with its group when shared', async (t) => {
  const dir = scratch(t)
  await withUmask(0, () => ensureRuntimeDir(join(dir, 'private')))
  t.equal(modeOf(join(dir, 'private')), 0o700)
  const gid = process.getgid?.() ?? 0
  await withUmask(0, () => ensureRuntimeDir(join(dir, 'shared'), gid))
  t.equal(modeOf(join(dir, 'shared')), 0o750)
  t.equal(statSync(join(dir, 'shared')).gid, gid)
  await ensureRuntimeDir(join(dir, 'private'))
  t.equal(modeOf(join(dir, 'private')), 0o700, 'an existing private directory of ours is used as it is')
})

t.test('an existing directory that is wider, a link, or not ours is refused', async (t) => {
  const dir = scratch(t)
  const wide = join(dir, 'wide')
  mkdirSync(wide)
  chmodSync(wide, 0o755)
  await t.rejects(ensureRuntimeDir(wide), { code: 'ERR_CONFIG_INVALID', message: /mode 0755, wider than 0700/ })
  t.equal(modeOf(wide), 0o755, 'left alone')
  const open = join(dir, 'open')
  mkdirSync(open)
  chmodSync(open, 0o777)
  await t.rejects(ensureRuntimeDir(open, process.getgid?.()), { code: 'ERR_CONFIG_INVALID', message: /wider than 0750/ })
  const target = join(dir, 'target')
  mkdirSync(target, { mode: 0o700 })
  symlinkSync(target, join(dir, 'link'))
  await t.rejects(ensureRuntimeDir(join(dir, 'link')), { code: 'ERR_CONFIG_INVALID', message: /not a directory/ })
  await t.rejects(ensureRuntimeDir(join(dir, 'missing', 'rt')), { code: 'ERR_CONFIG_INVALID', message: /cannot create/ })
  if (isRoot) {
    const theirs = join(dir, 'theirs')
    mkdirSync(theirs, { mode: 0o700 })
    chownSync(theirs, 65534, 65534)
    await t.rejects(ensureRuntimeDir(theirs), { code: 'ERR_CONFIG_INVALID', message: /belongs to uid 65534/ })
  }
})

t.test('groups: a gid, a name from the group file, or a clear error', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'group'), 'root:x:0:\nkeyway:x:4242:alice,bob\n')
  t.equal(resolveGroup(''), undefined)
  t.equal(resolveGroup('1234'), 1234)
  t.equal(resolveGroup('keyway', join(dir, 'group')), 4242)
  t.throws(() => resolveGroup('nosuch', join(dir, 'group')), { code: 'ERR_CONFIG_INVALID', message: /no group "nosuch"/ })
})

t.test('socket paths: a stale socket is removed, a live one or another file is in use, a long path is refused', async (t) => {
  const dir = scratch(t)
  const path = join(dir, 's')
  const live: Server = createServer()
  await new Promise<void>((resolve) => live.listen(path, resolve))
  await t.rejects(prepareSocketPath(path, 'test'), { code: 'ERR_PORT_IN_USE', message: /another process is listening/ })
  await new Promise<void>((resolve) => live.close(() => resolve()))
  // close() removes the file; a killed process leaves it behind, with nothing answering.
  const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`])
  await once(crashed, 'exit')
  t.ok(lstatSync(path).isSocket(), 'a stale socket is there')
  writeFileSync(join(dir, 'plain'), '')
  await t.rejects(prepareSocketPath(join(dir, 'plain'), 'test'), { code: 'ERR_PORT_IN_USE', message: /not a socket/ })
  await t.rejects(prepareSocketPath(join(dir, 'x'.repeat(120)), 'test'), { code: 'ERR_CONFIG_INVALID', message: /longer than 107 bytes/ })
  await prepareSocketPath(path, 'test')
  t.equal(lstatSync(path, { throwIfNoEntry: false }), undefined, 'nothing left in the way')
})

t.test('the bearer secret is written 0600 under umask 000, replacing an old file', async (t) => {
  const dir = scratch(t)
  const file = join(dir, 'control.token')
  writeFileSync(file, 'old', { mode: 0o644 })
  const secret = await withUmask(0, () => writeSecretFile(file))
  t.match(secret, /^[\w-]{43}$/)
  t.equal(modeOf(file), 0o600)
  t.not(await writeSecretFile(file), secret, 'a fresh secret each start')
})

t.test('a group this user may not give is refused with a clear error', { skip: isRoot ? 'root may give any group' : false }, async (t) => {
  const dir = scratch(t)
  await t.rejects(ensureRuntimeDir(join(dir, 'rt'), 0), { code: 'ERR_CONFIG_INVALID', message: /must belong to that group/ })
})
