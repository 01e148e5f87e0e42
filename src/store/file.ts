import { adminContextFromConfig, type AdminContext } from '../admin/index.js'
import type { Clock } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import { CredentialStore } from '../credentials/index.js'
import type { KeywayError } from '../errors.js'
import type { Logger } from '../observe/index.js'
import { PolicyStore, type CompiledPolicy, type PolicyStoreOptions, type ReloadResult } from '../policy/index.js'
import { ContextAdminOperations, type AdminOperations } from './admin-operations.js'
import type { KeywayStore } from './store.js'

/** Options of {@link FileStore}. */
export interface FileStoreOptions {
  readonly config: KeywayConfig
  readonly clock: Clock
  readonly logger: Logger
  /** Observes every reload (metrics, log lines). */
  readonly onReload?: PolicyStoreOptions['onReload']
  readonly onError?: PolicyStoreOptions['onError']
  /** How the policy file is read and packed (see `PolicyStoreOptions.pack`). */
  readonly pack?: PolicyStoreOptions['pack']
}

/**
 * The {@link KeywayStore} of the policy file (`store: file`, the default):
 * today's {@link PolicyStore} (reload, watch, last good policy), the
 * credentials file, and the `keyway admin` operations on the file (locked,
 * validated, atomic, comments and order kept).
 */
export class FileStore implements KeywayStore {
  readonly kind = 'file' as const
  readonly #options: FileStoreOptions
  readonly #policy: PolicyStore
  readonly #credentials: CredentialStore
  #ctx: AdminContext | undefined
  #admin: AdminOperations | undefined
  #closed = false

  constructor(options: FileStoreOptions) {
    this.#options = options
    const c = options.config
    this.#policy = new PolicyStore({
      file: c.policy,
      limits: c.policyLimits,
      ...(options.pack ? { pack: options.pack } : {}),
      ...(options.onReload ? { onReload: options.onReload } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    })
    this.#credentials = new CredentialStore({ file: c.credentials, logger: options.logger })
  }

  /** The file's store underneath (tests). */
  get policyStore(): PolicyStore {
    return this.#policy
  }

  async start(): Promise<CompiledPolicy> {
    const policy = await this.#policy.start()
    // A credentials file others may read stops the start here, before anything listens.
    try {
      await this.#credentials.start()
    } catch (err) {
      this.#policy.close()
      throw err
    }
    return policy
  }

  current(): CompiledPolicy {
    return this.#policy.current()
  }

  get lastError(): KeywayError | undefined {
    return this.#policy.lastError
  }

  onChange(fn: (policy: CompiledPolicy) => void): () => void {
    return this.#policy.onChange(fn)
  }

  reload(): Promise<ReloadResult> {
    return this.#policy.reload()
  }

  watch(): void {
    this.#policy.watch()
  }

  readyDetail(): Record<string, unknown> {
    return {}
  }

  stale(): boolean {
    return false
  }

  passwordHashOf(accountId: string): Promise<string | undefined> {
    return this.#credentials.passwordHashOf(accountId)
  }

  adminContext(): AdminContext {
    return (this.#ctx ??= adminContextFromConfig(this.#options.config, this.#options.clock))
  }

  get admin(): AdminOperations {
    return (this.#admin ??= new ContextAdminOperations(this.adminContext()))
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#policy.close()
  }
}
