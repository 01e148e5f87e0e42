import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Teardown } from './net.js'

/**
 * `[file, args]` that run `node args...` with none of the runner's
 * environment: tap's process tracking adds its NODE_OPTIONS
 * (`--import=<checkout>/node_modules/...`, which another user may not read)
 * to every spawn, whatever env it is given, so `env -i` clears it.
 */
export function cleanNode(node: string, args: readonly string[]): [string, string[]] {
  return ['env', ['-i', 'PATH=/usr/local/bin:/usr/bin:/bin', node, ...args]]
}

/**
 * A node binary that `user` may run: the runner's own when it can, else a
 * copy in a fresh 0755 folder. A checkout under a parent only root may enter
 * (mode 0700, as root's home is) holds a node no other user can execute.
 */
export function nodeForUser(t: Teardown, user: { uid: number; gid: number }): string {
  try {
    execFileSync(...cleanNode(process.execPath, ['-e', '']), { uid: user.uid, gid: user.gid, cwd: '/', stdio: 'ignore' })
    return process.execPath
  } catch {
    const dir = mkdtempSync(join(tmpdir(), 'keyway-node-'))
    chmodSync(dir, 0o755)
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const copy = join(dir, 'node')
    copyFileSync(process.execPath, copy)
    chmodSync(copy, 0o755)
    return copy
  }
}
