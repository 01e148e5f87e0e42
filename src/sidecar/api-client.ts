import * as https from 'node:https'
import type { IncomingMessage } from 'node:http'
import type * as tls from 'node:tls'
import type { Clock } from '../clock.js'
import { isErrorCode, KeywayError } from '../errors.js'
import type { HostPort } from '../net/index.js'
import { ALPN_HTTP } from '../protocol/index.js'
import { Unreachable } from './failover.js'
import type { GatewayDialer } from './gateway-dial.js'
import type { ConnectTls, TlsDialOptions } from './session-cache.js'

/** Answer of {@link ApiClient.request}. */
export type ApiResult<T> = { readonly status: number; readonly body: T; readonly etag?: string } | { readonly status: 304; readonly etag?: string }

/** Options of one API call. */
export interface ApiCallOptions {
  token: string
  /** JSON request body. */
  body?: unknown
  /** Sent as `If-None-Match`; an unchanged view answers `{ status: 304 }`. */
  etag?: string
  timeoutMs?: number
}

/** Options of {@link ApiClient}. */
export interface ApiClientOptions {
  /** PEM text of the CA that signs the gateways' certificates. */
  ca: string | Buffer
  /** Verifies and names each gateway (its TLS options). */
  dialer: GatewayDialer
  connectTls: ConnectTls
  clock: Clock
  /** Limit for an answer when the call names none. */
  timeoutMs: number
}

const MAX_API_BODY = 4 * 1024 * 1024

/** An https.Agent that dials through the injected {@link ConnectTls}. */
class DialAgent extends https.Agent {
  readonly #connectTls: ConnectTls

  constructor(options: https.AgentOptions, connectTls: ConnectTls) {
    super(options)
    this.#connectTls = connectTls
  }

  override createConnection(options: TlsDialOptions): tls.TLSSocket {
    return this.#connectTls(options)
  }
}

/**
 * The HTTPS client of the gateway API (ALPN `http/1.1`, keep-alive, at most
 * four connections) for one gateway at a time; {@link GatewayClient.api}
 * runs it under failover. A transport failure is {@link Unreachable}; an
 * answered error is a KeywayError with the gateway's code.
 */
export class ApiClient {
  readonly #dialer: GatewayDialer
  readonly #clock: Clock
  readonly #timeoutMs: number
  readonly #agent: DialAgent

  constructor(options: ApiClientOptions) {
    this.#dialer = options.dialer
    this.#clock = options.clock
    this.#timeoutMs = options.timeoutMs
    this.#agent = new DialAgent({ keepAlive: true, maxSockets: 4, ca: options.ca, ALPNProtocols: [ALPN_HTTP] }, options.connectTls)
  }

  /**
   * Calls `method path` on `gw` with the bearer token. 2xx: `{ status, body,
   * etag }`; 304: `{ status: 304 }`; an error answer rejects with its
   * `{code, message}` as a KeywayError. A kept-alive connection that fails on
   * first use is retried once on a new one.
   */
  async request<T>(gw: HostPort, method: string, path: string, options: ApiCallOptions, retried = false): Promise<ApiResult<T>> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body), 'utf8')
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${options.token}` }
    if (payload) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(payload.length)
    }
    if (options.etag !== undefined) headers['if-none-match'] = options.etag
    const requestOptions: https.RequestOptions = {
      ...this.#dialer.tlsOptions(gw),
      method,
      path,
      headers,
      // The agent adds ALPN http/1.1 to every connection it makes.
      agent: this.#agent,
    }
    let reused = false
    try {
      return await new Promise<ApiResult<T>>((resolve, reject) => {
        const req = https.request(requestOptions)
        const timer =
          timeoutMs > 0 ? this.#clock.setTimeout(() => req.destroy(new Unreachable(`no API answer within ${timeoutMs} ms`)), timeoutMs) : undefined
        const done = (): void => {
          if (timer !== undefined) this.#clock.clearTimeout(timer)
        }
        req.on('socket', () => {
          reused = req.reusedSocket
        })
        req.on('error', (err: NodeJS.ErrnoException) => {
          done()
          reject(err instanceof Unreachable || err instanceof KeywayError ? err : new Unreachable(err.code ? `${err.code}: ${err.message}` : err.message))
        })
        req.on('response', (res) => {
          readBody(res).then(
            (text) => {
              done()
              try {
                resolve(toApiResult<T>(res, text, `${method} ${path}`))
              } catch (err) {
                reject(err)
              }
            },
            (err: Error) => {
              done()
              reject(new Unreachable(`reading the API answer: ${err.message}`))
            },
          )
        })
        req.end(payload)
      })
    } catch (err) {
      // A kept-alive connection the gateway closed meanwhile (a restart, its
      // idle timeout) fails on first use: that says nothing about the gateway.
      if (err instanceof Unreachable && reused && !retried) return this.request<T>(gw, method, path, options, true)
      throw err
    }
  }

  /** Closes the kept-alive connections. The client stays usable. */
  close(): void {
    this.#agent.destroy()
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    res.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_API_BODY) {
        res.destroy(new Error(`API answer larger than ${MAX_API_BODY} bytes`))
        return
      }
      chunks.push(chunk)
    })
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    res.on('error', reject)
    res.on('aborted', () => reject(new Error('API answer aborted')))
  })
}

function toApiResult<T>(res: IncomingMessage, text: string, what: string): ApiResult<T> {
  const status = res.statusCode ?? 0
  const etagHeader = res.headers.etag
  const etag = typeof etagHeader === 'string' ? etagHeader : undefined
  if (status === 304) return etag === undefined ? { status: 304 } : { status: 304, etag }
  let body: unknown
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    body = undefined
  }
  if (status >= 200 && status < 300) {
    if (body === undefined) throw new KeywayError('ERR_INTERNAL', `${what}: the gateway answered ${status} without a JSON body`)
    return etag === undefined ? { status, body: body as T } : { status, body: body as T, etag }
  }
  const e = (body ?? {}) as { code?: unknown; message?: unknown }
  const code = isErrorCode(e.code) ? e.code : undefined
  const message = typeof e.message === 'string' ? e.message : `the gateway answered HTTP ${status}`
  throw new KeywayError(code ?? 'ERR_INTERNAL', code ? message : `${what}: ${typeof e.code === 'string' ? `${e.code}: ` : ''}${message}`, {
    detail: { status },
  })
}
