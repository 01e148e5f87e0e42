import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import type { Logger } from 'pino'
import { httpStatusOf } from '../errors.js'
import { listenOn } from '../net/index.js'

// Not `import ... from 'node:http'`: on Node 26 the ESM namespace of node:http
// runs every lazy getter of the module (undici, http2, zlib, worker_threads:
// ~15 MB resident, issue 22); the CommonJS exports object does not.
const { createServer } = process.getBuiltinModule('node:http')

/** A route beyond the built-in /healthz, /readyz and /metrics. */
export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean

/** Options of {@link ObservabilityServer}. */
export interface ObservabilityServerOptions {
  host: string
  port: number
  /** Listen on this Unix socket instead of host:port. */
  path?: string
  registry: Registry
  logger: Logger
  /** Readiness: undefined when ready, else the reason it is not. */
  ready: () => string | undefined
  /**
   * Extra fields of the `/readyz` body, ready or not (e.g. the policy in
   * force); `detail` says whether error text may be included.
   */
  readyDetail?: (detail: boolean) => Record<string, unknown>
  /**
   * Whether `/readyz` may say why it is not ready and carry error text (file
   * paths, messages). Default true; false for an address reachable beyond
   * the host, where the status alone serves probes.
   */
  detail?: boolean
  /** Extra routes tried first (the sidecar's control API). */
  routes?: Route[]
  /** The setting that names the address, for errors (`gateway.metrics`, `sidecar.control`). */
  setting?: string
}

/** Writes a JSON answer. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

/** Reads a small JSON request body (at most 64 KiB). */
export async function readJson(req: IncomingMessage, limit = 65_536): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new Error('request body too large')
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  return text ? (JSON.parse(text) as unknown) : {}
}

/**
 * A plain HTTP server for `/healthz` (the process is alive), `/readyz` (it can
 * do its job) and `/metrics` (Prometheus text), plus optional routes.
 */
export class ObservabilityServer {
  readonly #options: ObservabilityServerOptions
  readonly #server: Server
  #closed = false

  constructor(options: ObservabilityServerOptions) {
    this.#options = options
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        options.logger.warn({ event: 'http_error', err }, 'observability request failed')
        if (!res.headersSent) sendJson(res, httpStatusOf('ERR_INTERNAL'), { code: 'ERR_INTERNAL', message: 'internal error' })
        else res.destroy()
      })
    })
    this.#server.on('clientError', (_err, socket) => socket.destroy())
    this.#server.keepAliveTimeout = 5_000
  }

  /** Listens; rejects with the listen error (EADDRINUSE…). On a Unix socket the address is `{address: path, port: 0}`. */
  async start(): Promise<AddressInfo> {
    const setting = this.#options.setting ?? 'metrics'
    const where = this.#options.path === undefined ? { host: this.#options.host, port: this.#options.port } : { path: this.#options.path }
    await listenOn(this.#server, where, {
      inUse: (at) => `cannot listen on ${at} (${setting}): the port is already in use`,
      failed: (at, err) => `cannot listen on ${at} (${setting}): ${err.message}`,
    })
    this.#server.on('error', (err) => this.#options.logger.error({ event: 'http_error', err }, 'observability server error'))
    const bound = this.#server.address()
    return typeof bound === 'string' ? { address: bound, family: 'unix', port: 0 } : (bound as AddressInfo)
  }

  /** The bound address. */
  address(): AddressInfo | undefined {
    return (this.#server.address() as AddressInfo | null) ?? undefined
  }

  /** Stops listening and closes idle keep-alive connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeIdleConnections()
      setTimeout(() => this.#server.closeAllConnections(), 1_000).unref()
    })
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    for (const route of this.#options.routes ?? []) {
      if (await route(req, res, url)) return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { code: 'ERR_USAGE', message: 'method not allowed' })
    switch (url.pathname) {
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' })
      case '/readyz': {
        const reason = this.#options.ready()
        const full = this.#options.detail ?? true
        const detail = this.#options.readyDetail?.(full) ?? {}
        if (reason === undefined) return sendJson(res, 200, { status: 'ready', ...detail })
        return sendJson(res, 503, { status: 'not ready', ...(full ? { reason } : {}), ...detail })
      }
      case '/metrics': {
        const text = await this.#options.registry.metrics()
        res.writeHead(200, { 'content-type': this.#options.registry.contentType })
        res.end(text)
        return
      }
      default:
        return sendJson(res, httpStatusOf('ERR_NOT_FOUND'), { code: 'ERR_NOT_FOUND', message: `no route ${url.pathname}` })
    }
  }
}
