import { randomBytes } from 'node:crypto'
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { chmod, chown, lstat, mkdir, open, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { KeywayError } from '../errors.js'

/** File name of the control API's Unix socket in the runtime directory. */
export const CONTROL_SOCKET = 'control.sock'
/** File name of the bearer secret of the TCP control API in the runtime directory. */
export const CONTROL_TOKEN_FILE = 'control.token'

/** The longest Unix socket path Linux accepts (`sun_path` is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107

/**
 * The sidecar's runtime directory, resolved the same way by `keyway listen`
 * and by the commands that talk to it: `sidecar.runtimeDir` when set, else
 * `$XDG_RUNTIME_DIR/keyway`, else `/run/keyway` when this user may write
 * there (systemd's `RuntimeDirectory=keyway`), else `$TMPDIR/keyway-<uid>`.
 *
 * @param setting `sidecar.runtimeDir` ('' when unset)
 * @param env the environment (XDG_RUNTIME_DIR, TMPDIR)
 */
export function resolveRuntimeDir(setting: string, env: Readonly<Record<string, string | undefined>>): string {
  if (setting !== '') return setting
  const xdg = env.XDG_RUNTIME_DIR
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'keyway')
  if (writable('/run/keyway') || (!existsSync('/run/keyway') && writable('/run'))) return '/run/keyway'
  const tmp = env.TMPDIR !== undefined && isAbsolute(env.TMPDIR) ? env.TMPDIR : tmpdir()
  return join(tmp, `keyway-${uid()}`)
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK | constants.X_OK)
    return true
  } catch {
    return false
  }
}

function uid(): number {
  return process.getuid?.() ?? 0
}

/**
 * Resolves `sidecar.runtimeGroup` to a gid: '' is none, digits are a gid, a
 * name is looked up in /etc/group. An unknown name is `ERR_CONFIG_INVALID`.
 */
export function resolveGroup(setting: string, groupFile = '/etc/group'): number | undefined {
  if (setting === '') return undefined
  if (/^\d+$/.test(setting)) return Number(setting)
  let text = ''
  try {
    text = readFileSync(groupFile, 'utf8')
  } catch {
    // No group database: the name cannot be resolved, said below.
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':')
    if (name === setting && gid !== undefined && /^\d+$/.test(gid)) return Number(gid)
  }
  throw new KeywayError('ERR_CONFIG_INVALID', `sidecar.runtimeGroup: no group "${setting}" in ${groupFile}; give a group name or a numeric gid`, {
    detail: { group: setting },
  })
}

/**
 * Makes the runtime directory private before anything listens in it:
 * created with mode 0700 (the umask can only narrow that), then given its
 * group and exact mode (0700, or 0750 with `gid`). An existing directory is
 * used only if it is a real directory of this user whose mode is no wider
 * than wanted; anything else is refused with `ERR_CONFIG_INVALID` (someone
 * else could have planted a socket or a file in it). The parent must exist.
 */
export async function ensureRuntimeDir(dir: string, gid?: number): Promise<void> {
  const mode = gid === undefined ? 0o700 : 0o750
  const fix = `remove it, or set sidecar.runtimeDir to a directory of your own (chmod ${mode.toString(8)})`
  try {
    await mkdir(dir, { mode: 0o700 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EEXIST') {
      throw new KeywayError('ERR_CONFIG_INVALID', `cannot create the sidecar runtime directory ${dir} (sidecar.runtimeDir): ${(err as Error).message}`, {
        cause: err,
        detail: { dir },
      })
    }
  }
  const st = await lstat(dir)
  if (!st.isDirectory()) throw new KeywayError('ERR_CONFIG_INVALID', `the sidecar runtime directory ${dir} is not a directory (a link?): ${fix}`, { detail: { dir } })
  if (st.uid !== uid()) {
    throw new KeywayError('ERR_CONFIG_INVALID', `the sidecar runtime directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid()}): ${fix}`, {
      detail: { dir, owner: st.uid },
    })
  }
  if ((st.mode & 0o777 & ~mode) !== 0) {
    throw new KeywayError(
      'ERR_CONFIG_INVALID',
      `the sidecar runtime directory ${dir} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, wider than ${mode.toString(8).padStart(4, '0')}: ${fix}`,
      { detail: { dir, mode: st.mode & 0o777 } },
    )
  }
  if (gid !== undefined && st.gid !== gid) {
    await chown(dir, -1, gid).catch((err: unknown) => {
      throw new KeywayError(
        'ERR_CONFIG_INVALID',
        `cannot give the sidecar runtime directory ${dir} the group ${gid} (sidecar.runtimeGroup): ${(err as Error).message}; the sidecar's user must belong to that group`,
        { cause: err, detail: { dir, gid } },
      )
    })
  }
  // The group gets its bits only once the directory has that group.
  if ((st.mode & 0o777) !== mode) await chmod(dir, mode)
}

/**
 * Readies `path` for a Unix socket listener: refuses a path too long for the
 * kernel, and removes a socket left by a process that is gone. A socket that
 * still answers is `ERR_PORT_IN_USE`; any other file there is left alone and
 * reported the same way.
 */
export async function prepareSocketPath(path: string, what: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new KeywayError(
      'ERR_CONFIG_INVALID',
      `the Unix socket path ${path} (${what}) is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter sidecar.runtimeDir`,
      { detail: { path } },
    )
  }
  const st = await lstat(path).catch(() => undefined)
  if (st === undefined) return
  const inUse = new KeywayError('ERR_PORT_IN_USE', `cannot listen on ${path} (${what}): another process is listening there`, { detail: { path } })
  if (!st.isSocket()) throw new KeywayError('ERR_PORT_IN_USE', `cannot listen on ${path} (${what}): a file that is not a socket is in the way`, { detail: { path } })
  const answered = await new Promise<boolean>((resolve) => {
    const probe = connect({ path })
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
  if (answered) throw inUse
  await unlink(path).catch(() => undefined)
}

/**
 * Writes a fresh random secret to `file` with mode 0600 whatever the umask
 * (an old file is replaced, never reopened), and returns it.
 */
export async function writeSecretFile(file: string): Promise<string> {
  const secret = randomBytes(32).toString('base64url')
  await unlink(file).catch(() => undefined)
  const fh = await open(file, 'wx', 0o600)
  try {
    await fh.chmod(0o600)
    await fh.writeFile(secret + '\n', 'utf8')
  } finally {
    await fh.close()
  }
  return secret
}
