import { readFile, stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { stringify } from 'yaml'
import { formatProblem, KeywayError, type Problem } from '../errors.js'
import { formatPath, parseLocated } from '../yaml/index.js'

/** What the credentials file holds for one user account, by account id. */
export interface UserCredentials {
  /** `scrypt$…` hash of the password. */
  readonly passwordHash?: string | undefined
  /** May use the Admin UI and the admin HTTP API (`keyway admin users create --admin`). */
  readonly admin?: boolean | undefined
}

/** The credentials file's content: user account id → credentials. */
export type Credentials = ReadonlyMap<string, UserCredentials>

const PASSWORD_HASH = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=_-]+\$[A-Za-z0-9+/=_-]+$/
const ACCOUNT_ID = /^usr_[A-Za-z0-9_-]+$/

/** Who the process is, for the mode check: its group ids. Injected by tests. */
export interface ProcessGroups {
  readonly gids: readonly number[]
}

/** The real process's primary and supplementary groups (a Kubernetes `fsGroup` is a supplementary one). */
export function processGroups(): ProcessGroups {
  const gids = new Set<number>()
  if (typeof process.getgid === 'function') gids.add(process.getgid())
  if (typeof process.getgroups === 'function') for (const g of process.getgroups()) gids.add(g)
  return { gids: [...gids] }
}

/**
 * Refuses a credentials file that others may read or write, as ssh refuses a
 * key: allowed are owner-only modes (0600, 0400) and group-readable ones
 * (0640, 0440) when the file's group is one of the process's own (a
 * Kubernetes Secret mounted with `fsGroup`). Never group-writable, never
 * anything for others.
 *
 * @throws KeywayError ERR_CREDENTIALS_MODE
 */
export function checkCredentialsMode(file: string, st: Pick<Stats, 'mode' | 'gid'>, groups: ProcessGroups = processGroups()): void {
  const mode = st.mode & 0o777
  const others = mode & 0o007
  const groupBits = mode & 0o070
  const groupOk = groupBits === 0 || (groupBits === 0o040 && groups.gids.includes(st.gid))
  if (others === 0 && groupOk) return
  const octal = mode.toString(8).padStart(4, '0')
  const why = others !== 0 ? 'other users can access it' : groupBits !== 0o040 ? 'its group can write it' : `its group ${st.gid} is not one of this process's groups`
  throw new KeywayError(
    'ERR_CREDENTIALS_MODE',
    `the credentials file ${file} has mode ${octal} (${why}); it holds password hashes: chmod 600 ${file} (or 0640 with the gateway's own group)`,
    { detail: { file, mode: octal } },
  )
}

/**
 * Parses the credentials file's text (`version: 1`, `users:` by account id).
 *
 * @throws KeywayError ERR_CREDENTIALS_INVALID, with every problem located
 */
export function parseCredentials(text: string, file: string): Credentials {
  const located = parseLocated(text, file)
  const problems: Problem[] = [...located.problems]
  const report = (path: (string | number)[], message: string): void => {
    const at = located.locate(path)
    problems.push({ file, line: at.line, col: at.col, key: formatPath(path), message })
  }
  const out = new Map<string, UserCredentials>()
  const value = located.value ?? {}
  if (problems.length === 0) {
    if (typeof value !== 'object' || Array.isArray(value)) report([], 'the credentials file must be a mapping with `version: 1` and `users:`')
    else {
      const doc = value as Record<string, unknown>
      for (const key of Object.keys(doc)) if (key !== 'version' && key !== 'users') report([key], `unknown key "${key}"; expected version and users`)
      if (doc.version !== undefined && doc.version !== 1) report(['version'], 'version must be 1')
      const users = doc.users ?? {}
      if (typeof users !== 'object' || users === null || Array.isArray(users)) report(['users'], '`users` must be a mapping of account id to credentials')
      else {
        for (const [id, entry] of Object.entries(users as Record<string, unknown>)) {
          if (!ACCOUNT_ID.test(id)) report(['users', id], `"${id}" is not a user account id (usr_…)`)
          if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
            report(['users', id], 'expected a mapping with passwordHash')
            continue
          }
          const e = entry as Record<string, unknown>
          for (const key of Object.keys(e)) if (key !== 'passwordHash' && key !== 'admin') report(['users', id, key], `unknown key "${key}"; expected passwordHash or admin`)
          if (e.passwordHash !== undefined && (typeof e.passwordHash !== 'string' || !PASSWORD_HASH.test(e.passwordHash))) {
            report(['users', id, 'passwordHash'], 'passwordHash must be an `scrypt$…` hash; set it with `keyway admin users set-password`, never a plain password')
          }
          if (e.admin !== undefined && typeof e.admin !== 'boolean') report(['users', id, 'admin'], 'admin must be true or false')
          out.set(id, Object.freeze({ passwordHash: e.passwordHash as string | undefined, admin: e.admin as boolean | undefined }))
        }
      }
    }
  }
  if (problems.length > 0) {
    throw new KeywayError('ERR_CREDENTIALS_INVALID', problems.map(formatProblem).join('\n'), { detail: { file } })
  }
  return out
}

/** The text of a credentials file holding `credentials`, sorted by account id. */
export function formatCredentials(credentials: Credentials): string {
  const users: Record<string, Record<string, unknown>> = {}
  for (const id of [...credentials.keys()].sort()) {
    const c = credentials.get(id)!
    const entry: Record<string, unknown> = {}
    if (c.passwordHash !== undefined) entry.passwordHash = c.passwordHash
    if (c.admin !== undefined) entry.admin = c.admin
    users[id] = entry
  }
  const header = '# Keyway credentials: user password hashes, by account id. Mode 0600 (or 0640 with the gateway\'s group).\n# Written by `keyway admin users create/set-password`; never put it in a ConfigMap or a repository.\n'
  return header + stringify({ version: 1, users }, { lineWidth: 0 })
}

/**
 * Reads the credentials file, checking its mode first. A missing file is
 * empty (no user can log in).
 *
 * @throws KeywayError ERR_CREDENTIALS_MODE, ERR_CREDENTIALS_INVALID, ERR_CONFIG_IO
 */
export async function readCredentials(file: string, groups?: ProcessGroups): Promise<{ credentials: Credentials; stats: Stats | undefined }> {
  let st: Stats
  try {
    st = await stat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { credentials: new Map(), stats: undefined }
    throw new KeywayError('ERR_CONFIG_IO', `cannot read the credentials file ${file}: ${(err as Error).message}`, { cause: err })
  }
  checkCredentialsMode(file, st, groups)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot read the credentials file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return { credentials: parseCredentials(text, file), stats: st }
}
