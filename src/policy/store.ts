import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { DocumentError, KeywayError, toKeywayError, type Problem } from '../errors.js'
import { assemblePolicy } from './assemble.js'
import { ReloadQueue } from './reload-queue.js'
import { DEFAULT_POLICY_LIMITS, type PolicyLimits } from './limits.js'
import type { PackedPolicy } from './pack.js'
import { packPolicyFile, type PackFileOptions } from './pack-file.js'
import type { CompiledPolicy } from './types.js'

/** What a reload did. */
export type ReloadResult =
  | { readonly ok: true; readonly changed: boolean; readonly policy: CompiledPolicy }
  | { readonly ok: false; readonly error: KeywayError; readonly problems: readonly Problem[] }

/** Options of {@link PolicyStore}. */
export interface PolicyStoreOptions {
  /** The policy file. */
  file: string
  /** Called after each reload attempt (log and count it). */
  onReload?: (result: ReloadResult) => void
  /** Debounce for file-change events, ms. */
  debounceMs?: number
  /** Errors of observers and of the file watcher (log them); reloading goes on. */
  onError?: (err: unknown) => void
  /** A policy over these is refused with `ERR_POLICY_TOO_LARGE`. Default {@link DEFAULT_POLICY_LIMITS}. */
  limits?: PolicyLimits
  /** Longest stretch, ms, that wrapping a new policy holds the event loop before letting it turn. Default 4. */
  sliceMs?: number
  /**
   * Reads and packs the file. Default `packPolicyFile` (on a worker thread);
   * tests of what the store does with the result may pass `packPolicyFileHere`
   * wrapped in a promise (same steps, this thread).
   */
  pack?: (file: string, options: PackFileOptions) => Promise<PackedPolicy>
}

/**
 * Holds the current compiled policy and reloads it from its file on demand
 * and on change. A broken file, or one over its limits, never replaces the
 * last good policy.
 *
 * Loading never holds the event loop for long: a worker thread reads,
 * parses, validates and packs the file (`packPolicyFile`), and the packed
 * policy is wrapped here in slices of a few milliseconds (`assemblePolicy`).
 * The first load takes the same path.
 */
export class PolicyStore {
  readonly #options: PolicyStoreOptions
  #current: CompiledPolicy | undefined
  #lastError: KeywayError | undefined
  #listeners = new Set<(policy: CompiledPolicy) => void>()
  #watcher: FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined
  readonly #reloads = new ReloadQueue<ReloadResult>(() => this.#reloadOnce())
  #generation = 0
  readonly #abort = new AbortController()

  constructor(options: PolicyStoreOptions) {
    this.#options = options
  }

  /** Loads the file; throws its DocumentError or ERR_POLICY_IO when the first load fails. */
  async start(): Promise<CompiledPolicy> {
    const result = await this.reload()
    if (!result.ok) throw result.error
    return result.policy
  }

  /** The current policy. Throws before {@link start} succeeded. */
  current(): CompiledPolicy {
    if (!this.#current) throw new KeywayError('ERR_POLICY_IO', 'the policy is not loaded')
    return this.#current
  }

  /** The error of the last failed reload, cleared by a good one. */
  get lastError(): KeywayError | undefined {
    return this.#lastError
  }

  /** Calls `fn` after every reload that changed the policy. Returns an unsubscribe function. */
  onChange(fn: (policy: CompiledPolicy) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /**
   * Reads and compiles the file again. A reload asked for while one runs is
   * queued to run once after it (it must see the file as it is now, not as
   * the running one read it); any further asks share that queued one.
   */
  reload(): Promise<ReloadResult> {
    return this.#reloads.reload()
  }

  async #reloadOnce(): Promise<ReloadResult> {
    let result: ReloadResult
    try {
      const packed = await (this.#options.pack ?? packPolicyFile)(this.#options.file, {
        limits: this.#options.limits ?? DEFAULT_POLICY_LIMITS,
        signal: this.#abort.signal,
      })
      const changed = packed.digest !== this.#current?.digest
      if (changed) {
        const compiled = await assemblePolicy(packed, this.#generation + 1, this.#options.sliceMs)
        this.#generation++
        this.#current = compiled
      }
      this.#lastError = undefined
      result = { ok: true, changed, policy: this.#current! }
    } catch (err) {
      const error = toKeywayError(err, 'ERR_POLICY_IO')
      this.#lastError = error
      result = { ok: false, error, problems: error instanceof DocumentError ? error.problems : [] }
    }
    // A throwing observer must not turn a reload into an unhandled rejection.
    try {
      this.#options.onReload?.(result)
    } catch (err) {
      this.#options.onError?.(err)
    }
    if (result.ok && result.changed) {
      for (const fn of this.#listeners) {
        try {
          fn(result.policy)
        } catch (err) {
          this.#options.onError?.(err)
        }
      }
    }
    return result
  }

  /**
   * Watches the file's folder (so editors' rename-over and Kubernetes
   * ConfigMap symlink swaps are seen) and reloads on change.
   */
  watch(): void {
    if (this.#watcher) return
    const name = basename(this.#options.file)
    try {
      this.#watcher = watch(dirname(this.#options.file), (_event, changed) => {
        if (changed !== null && changed !== name && !changed.startsWith('..')) return
        clearTimeout(this.#debounce)
        this.#debounce = setTimeout(() => void this.reload(), this.#options.debounceMs ?? 100)
        this.#debounce.unref()
      })
      this.#watcher.on('error', (err) => {
        this.#options.onError?.(err)
        this.#watcher?.close()
        this.#watcher = undefined
      })
      this.#watcher.unref()
    } catch (err) {
      // Watching is best effort (SIGHUP always reloads), but say why it is off (e.g. ENOSPC: the inotify limit).
      this.#options.onError?.(err)
    }
  }

  /** Stops watching and ends a reload under way (it fails; the current policy stays). Idempotent. */
  close(): void {
    this.#abort.abort()
    clearTimeout(this.#debounce)
    this.#watcher?.close()
    this.#watcher = undefined
    this.#listeners.clear()
  }
}
