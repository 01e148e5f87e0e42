import { stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import type { Logger } from '../observe/index.js'
import { readCredentials, type Credentials, type ProcessGroups } from './file.js'

/** Options of {@link CredentialStore}. */
export interface CredentialStoreOptions {
  readonly file: string
  readonly logger: Logger
  /** For tests: the process's groups as the mode check sees them. */
  readonly groups?: ProcessGroups
}

/**
 * The gateway's view of the credentials file: read and mode-checked at
 * `start()` (a file others may read stops the gateway, as ssh refuses a
 * key), then re-read when it changes, so a password set with `keyway admin`
 * works without a restart. A change that breaks the file (bad content, a
 * widened mode) keeps the last good credentials and is logged.
 */
export class CredentialStore {
  readonly #file: string
  readonly #logger: Logger
  readonly #groups: ProcessGroups | undefined
  #credentials: Credentials = new Map()
  #seen = ''

  constructor(options: CredentialStoreOptions) {
    this.#file = options.file
    this.#logger = options.logger
    this.#groups = options.groups
  }

  /**
   * Reads the file.
   *
   * @throws KeywayError ERR_CREDENTIALS_MODE, ERR_CREDENTIALS_INVALID, ERR_CONFIG_IO
   */
  async start(): Promise<void> {
    const r = await readCredentials(this.#file, this.#groups)
    this.#credentials = r.credentials
    this.#seen = signature(r.stats)
    if (r.stats === undefined) this.#logger.warn({ event: 'credentials_missing', file: this.#file }, 'no credentials file: no user can log in until a password is set')
  }

  /** The password hash of user `accountId`, from the file as it is now. */
  async passwordHashOf(accountId: string): Promise<string | undefined> {
    await this.#refresh()
    return this.#credentials.get(accountId)?.passwordHash
  }

  async #refresh(): Promise<void> {
    const now = await stat(this.#file).then(signature, () => signature(undefined))
    if (now === this.#seen) return
    try {
      const r = await readCredentials(this.#file, this.#groups)
      this.#credentials = r.credentials
      this.#seen = signature(r.stats)
    } catch (err) {
      // Remember the broken state so that every login does not re-read and re-log it.
      this.#seen = now
      const e = err as { code?: string; message: string }
      this.#logger.error({ event: 'credentials_reload_failed', code: e.code, file: this.#file }, `${e.message}; keeping the last good credentials`)
    }
  }
}

function signature(st: Stats | undefined): string {
  return st === undefined ? 'missing' : `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}:${st.gid}`
}
