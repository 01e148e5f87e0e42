import type { AdminContext } from '../admin/index.js'
import type { KeywayError } from '../errors.js'
import type { CompiledPolicy, ReloadResult } from '../policy/index.js'
import type { AdminOperations } from './admin-operations.js'
import type { SessionFeed } from './pg-sessions.js'

/**
 * Where a gateway's policy comes from, and where `keyway admin` and the admin
 * API write it: the one seam the rest of Keyway depends on. Two
 * implementations: {@link FileStore} (the policy file, the embedded default)
 * and `PostgresStore` (several gateways sharing one database).
 *
 * The snapshot side (`current`, `onChange`, `reload`, `lastError`) is what a
 * gateway serves from: a new compiled policy is handed to `onChange`
 * observers, which close the live sessions that lost access, whatever store
 * it came from. A store that cannot reach its source keeps its last good
 * policy.
 */
export interface KeywayStore {
  /** `file` or `postgres`: for logs and `/readyz`. */
  readonly kind: 'file' | 'postgres'
  /** Loads the first policy; throws when there is none (a gateway never serves an empty policy). */
  start(): Promise<CompiledPolicy>
  /** The current compiled policy. Throws before {@link start} succeeded. */
  current(): CompiledPolicy
  /** The error of the last failed load, cleared by a good one. */
  readonly lastError: KeywayError | undefined
  /** Calls `fn` after every load that changed the policy. Returns an unsubscribe function. */
  onChange(fn: (policy: CompiledPolicy) => void): () => void
  /** Loads the policy again now (SIGHUP). */
  reload(): Promise<ReloadResult>
  /** Follows changes at the source (a file watcher, a change feed). */
  watch(): void
  /** What `/readyz` says about the store beyond the policy generation. */
  readyDetail(): Record<string, unknown>
  /** Fail closed: set when the store has been unreachable longer than its maximum staleness. */
  stale(): boolean
  /** The password hash of user `accountId`, as the store holds it now. */
  passwordHashOf(accountId: string): Promise<string | undefined>
  /**
   * Notes a use of service token `tokenId` (the gateway, on each verified
   * token). Only a store that keeps last-used times has it (PostgreSQL); the
   * file store keeps none.
   */
  recordTokenUse?(tokenId: string): void
  /**
   * Live sessions across the gateways sharing this store: an admin API's
   * requests to list them or end one reach the gateway holding it. Only a
   * store several gateways share has it (PostgreSQL); on the file store each
   * gateway lists and ends its own.
   */
  sessionFeed?(): SessionFeed
  /** The admin operations on this store. */
  readonly admin: AdminOperations
  /** The admin context `keyway admin` runs its operations with. */
  adminContext(): AdminContext
  /** Stops following changes and releases connections. Idempotent. */
  close(): Promise<void>
}
