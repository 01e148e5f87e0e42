import { randomBytes } from 'node:crypto'
import { open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { Document } from 'yaml'
import type { Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { compilePolicy, compilePolicyText, parsePolicyText, type CompiledPolicy } from '../policy/index.js'

/** Options of {@link editPolicyFile}. */
export interface EditPolicyOptions {
  /** Decides when waiting for the lock has lasted too long, and stamps the lock file. */
  clock: Clock
  /** How long to wait for another edit's lock before ERR_POLICY_LOCKED. Default 10000. */
  lockTimeoutMs?: number
}

/**
 * How the policy text is written back. `flowCollectionPadding: false` keeps
 * `[a, b]` as people write it; `lineWidth: 0` never folds a long value.
 */
const TO_STRING = { flowCollectionPadding: false, lineWidth: 0 } as const

/**
 * Edits the policy file in place, safely against concurrent edits and crashes:
 *
 * 1. takes `<file>.lock` (created exclusively, holding pid, host and time),
 *    waiting with a small backoff for another edit to finish, breaking a lock
 *    left by a dead process on this host, and giving up after `lockTimeoutMs`
 *    with ERR_POLICY_LOCKED;
 * 2. reads and compiles the current file (it must be valid to be edited);
 * 3. calls `edit` with the yaml Document (comments and order survive the edit)
 *    and the compiled current policy;
 * 4. compiles the edited document: a document that fails validation is never
 *    written, and its DocumentError is thrown;
 * 5. writes atomically: a temporary file in the same folder with the original
 *    mode, fsync, rename over the file, fsync of the folder;
 * 6. releases the lock, whatever happened.
 *
 * An edit that changes nothing writes nothing.
 *
 * @returns what `edit` returned.
 * @throws KeywayError ERR_POLICY_LOCKED, ERR_POLICY_IO; DocumentError
 *   ERR_POLICY_INVALID; or whatever `edit` throws (nothing is written then).
 */
export async function editPolicyFile<T>(
  file: string,
  edit: (doc: Document, current: CompiledPolicy) => T | Promise<T>,
  options: EditPolicyOptions,
): Promise<T> {
  const deadline = options.clock.now() + (options.lockTimeoutMs ?? 10_000)
  const target = await resolveTarget(file)
  const release = await acquireLock(`${target}.lock`, options.clock, deadline)
  try {
    const text = await readPolicyText(target)
    const parsed = parsePolicyText(text, file)
    const current = compilePolicy(parsed.value, { file, locate: parsed.locate })
    const before = parsed.document.toString(TO_STRING)
    const result = await edit(parsed.document, current)
    const after = parsed.document.toString(TO_STRING)
    if (after !== before) {
      compileEdited(after, file)
      await writeFileAtomic(target, after)
    }
    return result
  } finally {
    await release()
  }
}

/**
 * Compiles an edited document (or its text) as it would be written. Problems
 * are located in that text and labelled `FILE (edited, not written)`, since
 * they point into the proposed text, not the file on disk.
 *
 * @throws DocumentError ERR_POLICY_INVALID
 */
export function compileEdited(doc: Document | string, file: string): CompiledPolicy {
  return compilePolicyText(typeof doc === 'string' ? doc : doc.toString(TO_STRING), `${file} (edited, not written)`)
}

/**
 * Writes `text` to `file` atomically: readers see the old content or the new,
 * never a mix, and a crash leaves one of the two. Keeps the file's mode; a
 * new file gets `newMode`.
 *
 * @throws KeywayError ERR_POLICY_IO
 */
export async function writeFileAtomic(file: string, text: string, newMode = 0o644): Promise<void> {
  const dir = dirname(file)
  const mode = await stat(file).then(
    (s) => s.mode & 0o7777,
    () => newMode,
  )
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', mode)
    try {
      await fh.writeFile(text, 'utf8')
      // open() applies the umask; the copy must keep the original's mode exactly.
      await fh.chmod(mode)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw new KeywayError('ERR_POLICY_IO', `cannot write ${file}: ${(err as Error).message}`, { cause: err })
  }
  // Without this the rename itself may not survive a power loss. Some file systems refuse it; best effort.
  try {
    const d = await open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch {
    // ignored: the data is already safely renamed in place
  }
}

/** The real file behind a symlink, so that the link (a ConfigMap-style swap) stays and its target is edited. */
async function resolveTarget(file: string): Promise<string> {
  try {
    return await realpath(file)
  } catch (err) {
    throw new KeywayError('ERR_POLICY_IO', `cannot read policy ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * The text of a policy file.
 *
 * @throws KeywayError ERR_POLICY_IO
 */
export async function readPolicyText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_POLICY_IO', `cannot read policy ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** What a lock file holds. */
interface LockHolder {
  pid: number
  host: string
  time: string
}

/**
 * Takes the lock at `lockPath`, or throws ERR_POLICY_LOCKED once `clock`
 * passes `deadline`. Returns the release function.
 */
export async function acquireLock(lockPath: string, clock: Clock, deadline: number): Promise<() => Promise<void>> {
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), time: new Date(clock.now()).toISOString() }) + '\n'
  let backoff = 2
  for (;;) {
    if (await tryCreate(lockPath, mine)) {
      return async () => {
        await unlink(lockPath).catch(() => undefined)
      }
    }
    const seen = await readLockText(lockPath)
    if (seen === undefined) continue // released between our attempt and the read: try again at once
    const holder = parseHolder(seen)
    if (holder !== undefined && holder.host === hostname() && !isAlive(holder.pid)) {
      await breakStaleLock(lockPath, seen, mine)
      continue
    }
    if (clock.now() >= deadline) {
      const who = holder ? `process ${holder.pid} on ${holder.host} since ${holder.time}` : 'an unknown process'
      throw new KeywayError(
        'ERR_POLICY_LOCKED',
        `the policy is locked by ${who} (${lockPath}); wait for that edit to finish, or remove the lock file if no edit is running`,
        { detail: { lock: lockPath, holder } },
      )
    }
    // Pacing is real time even with a manual clock: it only paces polling, and a
    // timer from an injected clock may be unref'd and let the process exit mid-wait.
    await delay(backoff)
    backoff = Math.min(backoff * 2, 50)
  }
}

/** Creates `path` exclusively with `content`; false when it already exists. */
async function tryCreate(path: string, content: string): Promise<boolean> {
  let fh
  try {
    fh = await open(path, 'wx', 0o644)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new KeywayError('ERR_POLICY_IO', `cannot create lock ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await fh.writeFile(content, 'utf8')
  } finally {
    await fh.close()
  }
  return true
}

/**
 * Removes a lock whose holder is dead. Breakers serialize on `<lock>.break` and
 * remove the lock only if it still holds what was judged stale, so two
 * breakers never remove a lock that a third process has just taken.
 */
async function breakStaleLock(lockPath: string, staleText: string, mine: string): Promise<void> {
  const breakPath = `${lockPath}.break`
  if (!(await tryCreate(breakPath, mine))) {
    const other = parseHolder((await readLockText(breakPath)) ?? '')
    if (other !== undefined && other.host === hostname() && !isAlive(other.pid)) await unlink(breakPath).catch(() => undefined)
    else await delay(1)
    return
  }
  try {
    const now = await readFile(lockPath, 'utf8').catch(() => undefined)
    if (now === staleText) {
      try {
        await unlink(lockPath)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new KeywayError('ERR_POLICY_IO', `cannot remove stale lock ${lockPath}: ${(err as Error).message}`, { cause: err })
        }
      }
    }
  } finally {
    await unlink(breakPath).catch(() => undefined)
  }
}

/** The lock's text; undefined when it does not exist (any other failure reads as an unknown holder). */
async function readLockText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : ''
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>
    if (typeof v.pid === 'number' && Number.isInteger(v.pid) && v.pid > 0 && typeof v.host === 'string' && typeof v.time === 'string') {
      return { pid: v.pid, host: v.host, time: v.time }
    }
  } catch {
    // a lock being written right now reads empty: treat its holder as alive
  }
  return undefined
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
