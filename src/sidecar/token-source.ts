import { watch, type FSWatcher } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { decodeTokenClaims, tokenFingerprint } from '../auth/index.js'
import { systemClock, type Clock, type TimerHandle } from '../clock.js'
import { readConfiguredFile } from '../config/index.js'
import { KeywayError, toKeywayError } from '../errors.js'

/**
 * Where the sidecar's token comes from, highest precedence first:
 * `--token-file`, `KEYWAY_TOKEN`, `KEYWAY_TOKEN_FILE` (or its long form
 * `KEYWAY_SIDECAR_TOKEN_FILE`), `sidecar.tokenFile` of the configuration file.
 */
export type TokenOrigin = '--token-file' | 'KEYWAY_TOKEN' | 'KEYWAY_TOKEN_FILE' | 'KEYWAY_SIDECAR_TOKEN_FILE' | 'sidecar.tokenFile'

/** The token source chosen by {@link resolveTokenSource}. */
export type TokenSpec = { readonly origin: 'KEYWAY_TOKEN'; readonly value: string } | { readonly origin: Exclude<TokenOrigin, 'KEYWAY_TOKEN'>; readonly file: string }

/** What {@link resolveTokenSource} looks at. */
export interface TokenSourceInputs {
  /** True when `--token-file` was given: then `tokenFile` is its (resolved) value. */
  readonly flagGiven: boolean
  readonly env: Readonly<Record<string, string | undefined>>
  /** `config.sidecar.tokenFile`: the flag's file, else the environment's, else the configuration file's (absolute or ''). */
  readonly tokenFile: string
}

/**
 * Picks the token source by the one precedence of docs/configuration.md:
 * `--token-file`, then `KEYWAY_TOKEN`, then `KEYWAY_TOKEN_FILE`, then
 * `sidecar.tokenFile`. `ERR_TOKEN_MISSING` when none is set.
 */
export function resolveTokenSource(inputs: TokenSourceInputs): TokenSpec {
  if (inputs.flagGiven && inputs.tokenFile) return { origin: '--token-file', file: inputs.tokenFile }
  const fromEnv = inputs.env.KEYWAY_TOKEN?.trim()
  if (fromEnv) return { origin: 'KEYWAY_TOKEN', value: fromEnv }
  if (inputs.tokenFile) {
    const origin = inputs.env.KEYWAY_TOKEN_FILE ? 'KEYWAY_TOKEN_FILE' : inputs.env.KEYWAY_SIDECAR_TOKEN_FILE ? 'KEYWAY_SIDECAR_TOKEN_FILE' : 'sidecar.tokenFile'
    return { origin, file: inputs.tokenFile }
  }
  throw new KeywayError('ERR_TOKEN_MISSING', 'no service token: give --token-file FILE, or set KEYWAY_TOKEN, KEYWAY_TOKEN_FILE or sidecar.tokenFile')
}

/** Options of {@link TokenSource}. */
export interface TokenSourceOptions {
  spec: TokenSpec
  logger: Logger
  /** Called with a new, parseable token that differs from the last one. */
  onChange: (token: string) => void
  /** Default {@link systemClock}. */
  clock?: Clock
  /** Quiet time after a change in the token's directory before it is read. Default 50 ms. */
  settleMs?: number
}

/**
 * The sidecar's service token and where it comes from. A token file is
 * watched through its DIRECTORY, not the file itself: a Kubernetes Secret
 * volume replaces the token by swapping a `..data` symlink, which a watch on
 * the file (its old inode) never sees. A change is read after a short quiet
 * time; a token that cannot be parsed is refused (`token_reload_failed`) and
 * the last good one stays. {@link TokenSource.reload} re-reads on demand
 * (SIGHUP, a refusal by the gateway).
 */
export class TokenSource {
  readonly #spec: TokenSpec
  readonly #logger: Logger
  readonly #onChange: (token: string) => void
  readonly #clock: Clock
  readonly #settleMs: number
  #token: string
  #watcher: FSWatcher | undefined
  #timer: TimerHandle | undefined
  /** The last failure reported, so a broken file is logged once, not on every event. */
  #lastFailure: string | undefined
  #closed = false

  /** Reads the token now: throws `ERR_TOKEN_MISSING`, `ERR_CONFIG_IO` or `ERR_TOKEN_MALFORMED`, so a bad start fails at once. */
  constructor(options: TokenSourceOptions) {
    this.#spec = options.spec
    this.#logger = options.logger
    this.#onChange = options.onChange
    this.#clock = options.clock ?? systemClock
    this.#settleMs = options.settleMs ?? 50
    this.#token = this.#read()
  }

  /** Where the token comes from: the setting and, for a file, its path. */
  describe(): { origin: TokenOrigin; file?: string } {
    return 'file' in this.#spec ? { origin: this.#spec.origin, file: this.#spec.file } : { origin: this.#spec.origin }
  }

  /** The current token. Never log it. */
  get token(): string {
    return this.#token
  }

  /** Watches the token file's directory (nothing to watch for `KEYWAY_TOKEN`). A directory that cannot be watched is logged; reload() still works. */
  start(): void {
    if (this.#closed || this.#watcher || !('file' in this.#spec)) return
    const dir = dirname(this.#spec.file)
    try {
      this.#watcher = watch(dir, { persistent: false }, () => this.#changed())
      this.#watcher.on('error', (err) => {
        this.#logger.warn({ event: 'token_watch_error', file: dir, reason: err.message }, 'watching the token directory failed; SIGHUP still re-reads the token')
        this.#watcher?.close()
        this.#watcher = undefined
      })
    } catch (err) {
      this.#logger.warn(
        { event: 'token_watch_error', file: dir, reason: (err as Error).message },
        'cannot watch the token directory; SIGHUP still re-reads the token',
      )
    }
  }

  /**
   * Re-reads the source; a changed, parseable token goes to `onChange`.
   * Answers true when the token changed. Never throws: a failure is logged
   * (once per distinct failure) and the last good token stays.
   */
  reload(): boolean {
    if (this.#closed) return false
    let token: string
    try {
      token = this.#read()
    } catch (err) {
      const e = toKeywayError(err)
      if (this.#lastFailure !== e.message) {
        this.#lastFailure = e.message
        this.#logger.error(
          { event: 'token_reload_failed', code: e.code, reason: e.message, ...this.describe() },
          'cannot use the token source; the last good token stays',
        )
      }
      return false
    }
    this.#lastFailure = undefined
    if (token === this.#token) return false
    try {
      this.#onChange(token)
    } catch (err) {
      // Runs from a watcher's timer: a throw here would end the process.
      this.#logger.error({ event: 'token_reload_failed', code: toKeywayError(err).code, reason: (err as Error).message, ...this.describe() }, 'the new token was not taken')
      return false
    }
    this.#token = token
    return true
  }

  /** Stops watching. Idempotent. */
  close(): void {
    this.#closed = true
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#watcher?.close()
    this.#watcher = undefined
  }

  #changed(): void {
    if (this.#closed) return
    // An atomic swap is several events (new dir, new link, rename, old dir removed): read once they settle.
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      this.reload()
    }, this.#settleMs)
  }

  #read(): string {
    const spec = this.#spec
    const token = 'value' in spec ? spec.value : readConfiguredFile(spec.file, `token file (${spec.origin})`).trim()
    if (!token) throw new KeywayError('ERR_TOKEN_MISSING', `the token file ${'file' in spec ? spec.file : ''} is empty`)
    try {
      decodeTokenClaims(token)
    } catch (err) {
      const where = 'file' in spec ? `the token in ${spec.file} (${spec.origin})` : 'the token in KEYWAY_TOKEN'
      throw new KeywayError('ERR_TOKEN_MALFORMED', `${where} is not a Keyway token: ${(err as Error).message.replace(/^the token cannot be parsed: /, '')}; paste the whole token printed by "keyway admin services create" or "tokens rotate"`, {
        cause: err,
        detail: { origin: spec.origin, token_fp: tokenFingerprint(token) },
      })
    }
    return token
  }
}

