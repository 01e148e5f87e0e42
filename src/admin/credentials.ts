import { realpath } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { formatCredentials, readCredentials, type Credentials, type UserCredentials } from '../credentials/index.js'
import { KeywayError } from '../errors.js'
import { parsePolicyText } from '../policy/index.js'
import type { AdminContext } from './context.js'
import { acquireLock, compileEdited, readPolicyText, writeFileAtomic } from './edit.js'

/** The credentials file of `ctx`: configured, else `credentials.yaml` beside the policy. */
export function credentialsFileOf(ctx: AdminContext): string {
  return ctx.credentialsFile ?? join(dirname(ctx.policyFile), 'credentials.yaml')
}

/** The credentials as they are now (mode-checked). */
export async function readCredentialsOf(ctx: AdminContext): Promise<Credentials> {
  if (ctx.storage !== undefined) return ctx.storage.readCredentials()
  return (await readCredentials(credentialsFileOf(ctx))).credentials
}

/**
 * Edits the credentials file: locked against concurrent edits (`<file>.lock`),
 * mode-checked, written atomically with mode 0600 when new (an existing file
 * keeps its mode, which the check allowed).
 *
 * @throws KeywayError ERR_CREDENTIALS_MODE, ERR_CREDENTIALS_INVALID, ERR_POLICY_LOCKED, ERR_POLICY_IO
 */
export async function editCredentials<T>(ctx: AdminContext, fn: (users: Map<string, UserCredentials>) => T): Promise<T> {
  if (ctx.storage !== undefined) return ctx.storage.editCredentials(fn)
  const file = await realpath(credentialsFileOf(ctx)).catch(() => credentialsFileOf(ctx))
  const release = await acquireLock(`${file}.lock`, ctx.clock, ctx.clock.now() + (ctx.lockTimeoutMs ?? 10_000))
  try {
    const users = new Map((await readCredentials(file)).credentials)
    const result = fn(users)
    await writeFileAtomic(file, formatCredentials(users), 0o600)
    return result
  } finally {
    await release()
  }
}

/**
 * Moves password hashes that an older Keyway kept in the policy into the
 * credentials file, and removes them from the policy (comments and order
 * kept). Both files are locked; the credentials are written first, so a
 * crash in between loses nothing (the next run finds the hashes again).
 *
 * @returns the ids of the users whose hash moved
 * @throws KeywayError ERR_POLICY_LOCKED, ERR_POLICY_IO, ERR_CREDENTIALS_*; DocumentError when the policy has other problems
 */
export async function migratePasswords(ctx: AdminContext): Promise<string[]> {
  // A database store never held hashes in the policy: there is nothing to move.
  if (ctx.storage !== undefined) return []
  const target = await realpath(ctx.policyFile).catch((err: Error) => {
    throw new KeywayError('ERR_POLICY_IO', `cannot read policy ${ctx.policyFile}: ${err.message}`, { cause: err })
  })
  const release = await acquireLock(`${target}.lock`, ctx.clock, ctx.clock.now() + (ctx.lockTimeoutMs ?? 10_000))
  try {
    const parsed = parsePolicyText(await readPolicyText(target), ctx.policyFile)
    const moved = new Map<string, string>()
    const accounts = parsed.document.get('accounts', true) as { items?: unknown[] } | undefined
    for (const item of accounts?.items ?? []) {
      const node = item as { get(key: string): unknown; delete(key: string): boolean }
      const id = node.get?.('id')
      const hash = node.get?.('passwordHash')
      if (typeof id === 'string' && typeof hash === 'string') {
        moved.set(id, hash)
        node.delete('passwordHash')
      }
    }
    if (moved.size === 0) return []
    // The policy as it will be must be valid before anything is written.
    const edited = compileEdited(parsed.document, ctx.policyFile)
    for (const id of moved.keys()) {
      if (edited.accounts.get(id)?.type !== 'user') throw new KeywayError('ERR_USAGE', `account ${id} holds a passwordHash but is not a user; remove the key by hand`)
    }
    await editCredentials(ctx, (users) => {
      for (const [id, passwordHash] of moved) users.set(id, { ...users.get(id), passwordHash })
    })
    await writeFileAtomic(target, parsed.document.toString({ flowCollectionPadding: false, lineWidth: 0 }))
    return [...moved.keys()]
  } finally {
    await release()
  }
}
