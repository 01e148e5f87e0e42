import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Clock, TimerHandle } from '../clock.js'
import { ERROR_CODES, httpStatusOf, type ErrorCode } from '../errors.js'
import type { RefusalAudit } from '../observe/index.js'
import type { GatewayMetrics } from './metrics.js'

// Not `import ... from 'node:http'`: on Node 26 the ESM namespace of node:http
// runs every lazy getter of the module (undici, http2, zlib, worker_threads:
// ~15 MB resident, issue 22); the CommonJS exports object does not.
const { STATUS_CODES } = process.getBuiltinModule('node:http')

/** The API's own limits (from the `gateway` configuration). */
export interface ApiGuardSettings {
  /** A request's headers must be complete within this, counted from the connection or the previous response. */
  readonly apiHeadersTimeout: number
  /** A whole request (headers, body and answer) must be done within this, counted from the same point. */
  readonly apiRequestTimeout: number
  /** API connections open at once from one client address. */
  readonly apiMaxConnectionsPerAddress: number
}

/** Who is on the other end of a socket: the real client, behind a PROXY-protocol load balancer too. */
export interface Peer {
  /** The client's address without port: the key of the per-address limit. */
  readonly host: string
  /** `host:port`, for logs. */
  readonly text: string
}

interface Guarded {
  readonly peer: Peer
  headers: TimerHandle | undefined
  request: TimerHandle | undefined
  inFlight: number
  /** The response being written, if any: once its headers went out, a deadline can only cut the connection. */
  response: ServerResponse | undefined
}

/**
 * Deadlines and a per-address limit for API connections, enforced by the
 * gateway itself on its injected clock: the API's http.Server is handed
 * sockets with `emit('connection')`, and Node checks `headersTimeout` and
 * `requestTimeout` only on a server that listens itself.
 *
 * Each request gets `apiHeadersTimeout` for its headers and
 * `apiRequestTimeout` for everything, counted from when the connection was
 * handed over or the previous response ended, so a client trickling one
 * header line at a time, or an idle kept-alive connection, holds its slot for
 * at most `apiHeadersTimeout`. A client address holds at most
 * `apiMaxConnectionsPerAddress` API connections; the next is answered 429.
 */
export class ApiGuard {
  readonly #settings: ApiGuardSettings
  readonly #clock: Clock
  readonly #audit: RefusalAudit
  readonly #metrics: GatewayMetrics
  readonly #sockets = new Map<Socket, Guarded>()
  readonly #perAddress = new Map<string, number>()

  constructor(options: { settings: ApiGuardSettings; clock: Clock; audit: RefusalAudit; metrics: GatewayMetrics }) {
    this.#settings = options.settings
    this.#clock = options.clock
    this.#audit = options.audit
    this.#metrics = options.metrics
  }

  /** API connections open now from `host`. */
  connectionsFrom(host: string): number {
    return this.#perAddress.get(host) ?? 0
  }

  /**
   * Takes a connection for the API: arms its deadlines and counts it for its
   * address. False when its address is at its limit: the socket was answered
   * 429 and is closing.
   */
  admit(socket: Socket, peer: Peer): boolean {
    const held = this.#perAddress.get(peer.host) ?? 0
    if (held >= this.#settings.apiMaxConnectionsPerAddress) {
      this.#refuse(socket, peer, 'ERR_API_ADDRESS_LIMIT', `${peer.host} holds ${held} API connections, the limit (gateway.apiMaxConnectionsPerAddress)`)
      return false
    }
    this.#perAddress.set(peer.host, held + 1)
    const g: Guarded = { peer, headers: undefined, request: undefined, inFlight: 0, response: undefined }
    this.#sockets.set(socket, g)
    socket.once('close', () => {
      this.#clear(g)
      this.#sockets.delete(socket)
      const n = (this.#perAddress.get(peer.host) ?? 1) - 1
      if (n > 0) this.#perAddress.set(peer.host, n)
      else this.#perAddress.delete(peer.host)
    })
    this.#arm(socket, g)
    return true
  }

  /** Call for every request before its handler: its headers arrived; the request deadline runs on until the response ends. */
  request(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket
    const g = this.#sockets.get(socket)
    if (g === undefined) return
    g.inFlight += 1
    g.response = res
    if (g.headers !== undefined) this.#clock.clearTimeout(g.headers)
    g.headers = undefined
    res.once('close', () => {
      g.inFlight -= 1
      if (g.response === res) g.response = undefined
      if (g.inFlight > 0 || socket.destroyed) return
      this.#clear(g)
      this.#arm(socket, g)
    })
  }

  #arm(socket: Socket, g: Guarded): void {
    const { apiHeadersTimeout, apiRequestTimeout } = this.#settings
    g.headers = this.#clock.setTimeout(() => {
      g.headers = undefined
      if (g.inFlight === 0) this.#refuse(socket, g.peer, 'ERR_API_HEADERS_TIMEOUT', `request headers not complete within ${apiHeadersTimeout} ms`)
    }, apiHeadersTimeout)
    g.request = this.#clock.setTimeout(() => {
      g.request = undefined
      this.#refuse(socket, g.peer, 'ERR_API_REQUEST_TIMEOUT', `request not complete within ${apiRequestTimeout} ms`)
    }, apiRequestTimeout)
  }

  #clear(g: Guarded): void {
    if (g.headers !== undefined) this.#clock.clearTimeout(g.headers)
    if (g.request !== undefined) this.#clock.clearTimeout(g.request)
    g.headers = undefined
    g.request = undefined
  }

  #refuse(socket: Socket, peer: Peer, code: ErrorCode, message: string): void {
    this.#metrics.apiRejected.inc({ code })
    this.#audit.refused({ event: 'api_rejected', code, client: peer.text }, message)
    if (socket.destroyed) return
    const g = this.#sockets.get(socket)
    if (g !== undefined) this.#clear(g)
    if (g?.response?.headersSent === true) {
      socket.destroy()
      return
    }
    // The peer hears why, then the connection closes: the http.Server's parser is bypassed on purpose.
    const body = JSON.stringify({ code, message: ERROR_CODES[code].meaning })
    const status = httpStatusOf(code)
    const reason = STATUS_CODES[status] ?? 'Error'
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      () => socket.destroy(),
    )
    // A peer that does not read must not hold the socket open through the write.
    this.#clock.setTimeout(() => socket.destroy(), 1_000)
  }
}
