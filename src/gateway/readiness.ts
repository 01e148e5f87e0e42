import type { Socket } from 'node:net'
import type { Clock } from '../clock.js'
import { KeywayError, toKeywayError, type ErrorCode } from '../errors.js'
import type { DialFunc } from '../forward/index.js'
import type { Logger } from '../observe/index.js'
import type { Resource } from '../policy/index.js'
import type { GatewayMetrics } from './metrics.js'
import { PROTOCOL_LOGINS, type ProtocolLoginContext } from './protocol-logins.js'

/** How long a successful probe's answer is reused. */
export const READY_TTL_MS = 3_000
/** How long a failed probe's answer is reused: shorter, so a fix shows soon. */
export const NOT_READY_TTL_MS = 1_000

/** The answer of a readiness probe of one resource. */
export interface ResourceReadiness {
  readonly ready: boolean
  /** Why not: the code and a message for the token holder (never the upstream's address nor the secret's location). */
  readonly code?: ErrorCode
  readonly message?: string
  /** When the probe that gave this answer finished (the cache may hand it out for a few seconds). */
  readonly checkedAt: number
}

/** Options of {@link UpstreamReadiness}. */
export interface UpstreamReadinessOptions extends ProtocolLoginContext {
  readonly clock: Clock
  readonly dial: DialFunc
  readonly logger: Logger
  readonly metrics: GatewayMetrics
  /** A probe's dial, and again its login, must finish within these (the tunnels' `connectTimeout` and `handshakeTimeout`). */
  readonly settings: { readonly connectTimeout: number; readonly handshakeTimeout: number }
  readonly readyTtlMs?: number
  readonly notReadyTtlMs?: number
}

interface Entry {
  readonly key: string
  /** Set once the probe finished. */
  done: ResourceReadiness | undefined
  readonly value: Promise<ResourceReadiness>
}

/**
 * Per-resource readiness through the gateway: a real connection to the
 * upstream as a session would make it. A resource with credentials gets a
 * real login with its protocol's {@link ProtocolLogin.probe} (PostgreSQL up
 * to ReadyForQuery, then Terminate; Redis AUTH and PING); any other a TCP
 * connect. Answers are cached per resource on the injected clock
 * ({@link READY_TTL_MS} ready, {@link NOT_READY_TTL_MS} not), and concurrent
 * asks share one probe, so probes cannot load the upstream. Who may ask is
 * the caller's business (the API checks the grant first).
 */
export class UpstreamReadiness {
  readonly #o: UpstreamReadinessOptions
  readonly #cache = new Map<string, Entry>()

  constructor(options: UpstreamReadinessOptions) {
    this.#o = options
  }

  /** The readiness of `resource`: cached, or probed now. Never rejects. */
  check(resource: Resource): Promise<ResourceReadiness> {
    // A changed address or credential is a different upstream: probed afresh.
    const key = JSON.stringify([resource.type, resource.host, resource.port, resource.credential ?? null])
    const now = this.#o.clock.now()
    const hit = this.#cache.get(resource.name)
    if (hit !== undefined && hit.key === key) {
      if (hit.done === undefined) return hit.value
      const ttl = hit.done.ready ? (this.#o.readyTtlMs ?? READY_TTL_MS) : (this.#o.notReadyTtlMs ?? NOT_READY_TTL_MS)
      if (now - hit.done.checkedAt < ttl) return hit.value
    }
    const value = this.#probe(resource).then((r) => {
      entry.done = r
      return r
    })
    const entry: Entry = { key, done: undefined, value }
    this.#cache.set(resource.name, entry)
    return entry.value
  }

  /** Forgets every answer (after a policy reload). Probes running go on; their answers are not kept. */
  clear(): void {
    this.#cache.clear()
  }

  async #probe(resource: Resource): Promise<ResourceReadiness> {
    const { clock, dial, settings, logger, metrics } = this.#o
    const started = clock.now()
    let socket: Socket | undefined
    let timer: ReturnType<Clock['setTimeout']> | undefined
    let timedOut = false
    try {
      socket = await dial(resource.host, resource.port, { timeoutMs: settings.connectTimeout })
      socket.on('error', () => {})
      const protocol = resource.credential === undefined ? undefined : PROTOCOL_LOGINS.get(resource.type)
      if (resource.credential !== undefined) {
        if (protocol === undefined) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the gateway cannot log in to resources of type "${resource.type}"`)
        const s = socket
        timer = clock.setTimeout(() => {
          timedOut = true
          s.destroy()
        }, settings.handshakeTimeout)
        await protocol.probe(socket, { ...resource, credential: resource.credential }, this.#o)
      }
      metrics.readinessProbes.inc({ resource: resource.name, result: 'ready' })
      logger.debug({ event: 'readiness_probe', resource: resource.name, ready: true, ms: clock.now() - started }, 'upstream ready')
      return { ready: true, checkedAt: clock.now() }
    } catch (err) {
      const e = timedOut
        ? new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream did not complete the login within ${settings.handshakeTimeout} ms`)
        : toKeywayError(err, 'ERR_UPSTREAM_UNREACHABLE')
      metrics.readinessProbes.inc({ resource: resource.name, result: e.code })
      // The secret may be the stale part: the next probe reads it again, so a fixed file shows within the not-ready TTL.
      if (e.code === 'ERR_UPSTREAM_LOGIN_FAILED') this.#o.credentials.forget(resource.name)
      logger.info(
        { event: 'readiness_probe', resource: resource.name, ready: false, code: e.code, ...(e.detail?.sqlstate !== undefined ? { sqlstate: e.detail.sqlstate } : {}) },
        e.message,
      )
      return { ready: false, code: e.code, message: toldMessage(resource.name, e), checkedAt: clock.now() }
    } finally {
      if (timer !== undefined) clock.clearTimeout(timer)
      socket?.destroy()
    }
  }
}

/** What the token holder is told: as a refused tunnel is told (docs/errors.md), the address and the secret's location stay in the log. */
function toldMessage(resource: string, e: KeywayError): string {
  switch (e.code) {
    case 'ERR_UPSTREAM_UNREACHABLE':
      return `resource "${resource}" is unreachable`
    case 'ERR_UPSTREAM_TIMEOUT':
      return `resource "${resource}" did not accept the connection in time`
    case 'ERR_CREDENTIAL_UNAVAILABLE':
      return `the gateway has no usable credential for resource "${resource}"`
    default:
      return e.message
  }
}
