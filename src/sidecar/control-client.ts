import * as http from 'node:http'
import { loadConfig } from '../config/index.js'
import { ERROR_CODES, KeywayError, type ErrorCode } from '../errors.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { CONTROL_PATHS } from './control.js'
import type { ConnectResult, SidecarSnapshot } from './sidecar.js'

/** Options of {@link ControlClient}. */
export interface ControlClientOptions {
  /** Per-request limit. Default 5000. */
  timeoutMs?: number
}

/** Answer of {@link ControlClient.readyz}. */
export interface Readiness {
  ready: boolean
  /** Why not, when not ready. */
  reason?: string
}

/**
 * Talks to a running sidecar's control endpoint (`keyway status`, `connect`,
 * `disconnect`, `wait`). A sidecar that cannot be reached is
 * `ERR_SIDECAR_UNREACHABLE`; an error answer rejects with its code.
 */
export class ControlClient {
  readonly #address: HostPort
  readonly #timeoutMs: number

  constructor(address: HostPort, options: ControlClientOptions = {}) {
    this.#address = address
    this.#timeoutMs = options.timeoutMs ?? 5_000
  }

  /** `GET /v1/status`. */
  async status(): Promise<SidecarSnapshot> {
    return (await this.#call('GET', CONTROL_PATHS.status)).body as SidecarSnapshot
  }

  /** `POST /v1/connect`: binds the resource; resolves with its local address. */
  async connect(resource: string): Promise<ConnectResult> {
    return (await this.#call('POST', CONTROL_PATHS.connect, { resource })).body as ConnectResult
  }

  /** `POST /v1/disconnect`. */
  async disconnect(resource: string): Promise<{ resource: string }> {
    return (await this.#call('POST', CONTROL_PATHS.disconnect, { resource })).body as { resource: string }
  }

  /** `GET /readyz`: 200 is ready, 503 carries the reason. */
  async readyz(): Promise<Readiness> {
    const { status, body } = await this.#call('GET', '/readyz', undefined, [503])
    const reason = (body as { reason?: unknown } | undefined)?.reason
    return status === 200 ? { ready: true } : { ready: false, reason: typeof reason === 'string' ? reason : `HTTP ${status}` }
  }

  #call(method: string, path: string, body?: unknown, accept: number[] = []): Promise<{ status: number; body: unknown }> {
    const where = formatHostPort(this.#address)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8')
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: this.#address.host,
        port: this.#address.port,
        method,
        path,
        // A fresh connection each time: a command must exit as soon as it is done.
        agent: false,
        headers: payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {},
      })
      req.setTimeout(this.#timeoutMs, () => req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)))
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(
          new KeywayError(
            'ERR_SIDECAR_UNREACHABLE',
            `cannot reach the sidecar control endpoint at ${where} (${err.code ?? err.message}): is "keyway listen" running there? (--control or KEYWAY_CONTROL)`,
            { cause: err, detail: { address: where } },
          ),
        )
      })
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', (err) => reject(new KeywayError('ERR_SIDECAR_UNREACHABLE', `reading the answer from ${where}: ${err.message}`, { cause: err })))
        res.on('end', () => {
          const status = res.statusCode ?? 0
          let parsed: unknown
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          } catch {
            parsed = undefined
          }
          if ((status >= 200 && status < 300) || accept.includes(status)) {
            resolve({ status, body: parsed })
            return
          }
          const e = (parsed ?? {}) as { code?: unknown; message?: unknown }
          const code = typeof e.code === 'string' && Object.hasOwn(ERROR_CODES, e.code) ? (e.code as ErrorCode) : 'ERR_INTERNAL'
          reject(new KeywayError(code, typeof e.message === 'string' ? e.message : `the sidecar answered HTTP ${status}`, { detail: { status } }))
        })
      })
      req.end(payload)
    })
  }
}

/**
 * The control endpoint a command talks to: `--control`, else KEYWAY_CONTROL,
 * else `sidecar.control` of the configuration (default 127.0.0.1:7070).
 */
export function resolveControlAddress(options: { file?: string | undefined; control?: string | undefined; env: Readonly<Record<string, string | undefined>> }): HostPort {
  const config = loadConfig({ file: options.file, env: options.env, overrides: { 'sidecar.control': options.control } })
  return config.sidecar.control
}
