import type { Logger } from 'pino'
import type { Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { formatHostPort, type HostPort } from '../net/index.js'

/**
 * A failure to reach one gateway: {@link Failover} tries the next one. Thrown
 * by the units that dial (TLS connect, the multiplexed pool, the keyway/1
 * handshake, the API client); never leaves the sidecar's gateway client.
 */
export class Unreachable extends Error {
  override readonly name = 'Unreachable'
}

/** Options of {@link Failover}. */
export interface FailoverOptions {
  /** Gateways to try in order; the last one that answered is tried first. */
  gateways: readonly HostPort[]
  clock: Clock
  logger?: Logger | undefined
  /** Jitter source in [0, 1). */
  random: () => number
  /** First backoff after a failed round. */
  backoffBaseMs: number
  /** Backoff cap. */
  backoffMaxMs: number
}

/** What {@link Failover} knows about its gateways, for status and readiness. */
export interface GatewayState {
  /** The last attempt reached a gateway. False until the first attempt succeeds. */
  readonly up: boolean
  /** The gateway tried first next time (the last one that answered), `host:port`. */
  readonly gateway: string
  /** Consecutive rounds in which no gateway could be reached. */
  readonly failures: number
  /** Why the last round failed, while {@link GatewayState.up} is false. */
  readonly lastError?: string
  /** Epoch ms until which attempts fail fast without dialling (backoff). */
  readonly retryAt?: number
}

/**
 * Failover and backoff among gateways. Gateways are tried in order, starting
 * with the last one that answered; an {@link Unreachable} moves on to the
 * next, any other error means the gateway answered (if only to refuse) and is
 * up. A refusal of the token itself (`ERR_TOKEN_*`, `ERR_ACCOUNT_UNKNOWN`)
 * also asks the other gateways, which may hold a newer key set or policy; the
 * first such refusal is the answer when none accepts. When a whole round fails, it backs off (exponential with "equal
 * jitter", capped) and until then every call fails fast with
 * `ERR_GATEWAY_UNAVAILABLE`, so a local client is told at once instead of
 * hanging while the gateway is down.
 */
export class Failover {
  readonly #gateways: readonly HostPort[]
  readonly #clock: Clock
  readonly #logger: Logger | undefined
  readonly #random: () => number
  readonly #backoffBase: number
  readonly #backoffMax: number
  #good = 0
  #up = false
  #failures = 0
  #lastError: string | undefined
  #retryAt: number | undefined

  constructor(options: FailoverOptions) {
    if (options.gateways.length === 0) throw new KeywayError('ERR_CONFIG_INVALID', 'sidecar.gateways must name at least one gateway')
    this.#gateways = [...options.gateways]
    this.#clock = options.clock
    this.#logger = options.logger
    this.#random = options.random
    this.#backoffBase = options.backoffBaseMs
    this.#backoffMax = options.backoffMaxMs
  }

  /** Current reachability, for status, readiness and the `gateway_up` gauge. */
  state(): GatewayState {
    const state: { -readonly [K in keyof GatewayState]: GatewayState[K] } = {
      up: this.#up,
      gateway: formatHostPort(this.#gateways[this.#good]!),
      failures: this.#failures,
    }
    if (!this.#up && this.#lastError !== undefined) state.lastError = this.#lastError
    if (this.#retryAt !== undefined && this.#retryAt > this.#clock.now()) state.retryAt = this.#retryAt
    return state
  }

  /** Milliseconds until the backoff ends (0 when calls may dial now). */
  retryInMs(): number {
    return this.#retryAt === undefined ? 0 : Math.max(0, this.#retryAt - this.#clock.now())
  }

  /**
   * Runs `attempt` against each gateway in turn until one does not throw
   * {@link Unreachable}; its result or error is the answer. Rejects with
   * `ERR_GATEWAY_UNAVAILABLE` during backoff and when every gateway is unreachable.
   */
  async run<T>(attempt: (gw: HostPort) => Promise<T>): Promise<T> {
    const wait = this.retryInMs()
    if (wait > 0) {
      throw new KeywayError('ERR_GATEWAY_UNAVAILABLE', `no gateway reachable (next try in ${wait} ms): ${this.#lastError ?? 'unknown error'}`, {
        detail: { retryInMs: wait },
      })
    }
    const count = this.#gateways.length
    const start = this.#good
    const failures: string[] = []
    // A gateway refusing the token itself may hold an older key set or policy than the others: ask them too.
    let tokenRefusal: { index: number; err: KeywayError } | undefined
    for (let i = 0; i < count; i++) {
      const index = (start + i) % count
      const gw = this.#gateways[index]!
      try {
        const result = await attempt(gw)
        this.#markUp(index)
        return result
      } catch (err) {
        if (err instanceof KeywayError && (err.code.startsWith('ERR_TOKEN_') || err.code === 'ERR_ACCOUNT_UNKNOWN')) {
          tokenRefusal ??= { index, err }
          continue
        }
        if (!(err instanceof Unreachable)) {
          // The gateway answered (even if to refuse): it is up.
          this.#markUp(index)
          throw err
        }
        failures.push(`${formatHostPort(gw)}: ${err.message}`)
        this.#logger?.debug({ event: 'gateway_attempt_failed', gateway: formatHostPort(gw), reason: err.message }, 'gateway attempt failed')
      }
    }
    if (tokenRefusal) {
      this.#markUp(tokenRefusal.index)
      throw tokenRefusal.err
    }
    const message = failures.join('; ')
    this.#markDown(message)
    throw new KeywayError('ERR_GATEWAY_UNAVAILABLE', `no gateway reachable: ${message}`, { detail: { failures: this.#failures } })
  }

  #markUp(index: number): void {
    if (!this.#up || this.#good !== index) {
      this.#logger?.info({ event: 'gateway_up', gateway: formatHostPort(this.#gateways[index]!) }, 'gateway reachable')
    }
    this.#good = index
    this.#up = true
    this.#failures = 0
    this.#lastError = undefined
    this.#retryAt = undefined
  }

  #markDown(message: string): void {
    const wasUp = this.#up
    this.#up = false
    this.#failures += 1
    this.#lastError = message
    // "Equal jitter": at least half the exponential delay, so retries spread
    // out without ever hammering a gateway that is coming back.
    const exp = Math.min(this.#backoffMax, this.#backoffBase * 2 ** Math.min(this.#failures - 1, 30))
    const delay = Math.round(exp / 2 + (this.#random() * exp) / 2)
    this.#retryAt = this.#clock.now() + delay
    const fields = { event: 'gateway_down', failures: this.#failures, retry_in_ms: delay, reason: message }
    if (wasUp || this.#failures === 1) this.#logger?.warn(fields, 'no gateway reachable')
    else this.#logger?.debug(fields, 'no gateway reachable')
  }
}
