import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../config/index.js'
import { ERROR_CODES, KeywayError, type ErrorCode } from '../errors.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { CONTROL_PATHS, READYZ_RESOURCE_PREFIX } from './control.js'
import { CONTROL_SOCKET, CONTROL_TOKEN_FILE, resolveRuntimeDir } from './runtime-dir.js'
import type { ConnectResult, SidecarSnapshot } from './sidecar.js'

// Not `import ... from 'node:http'`: on Node 26 the ESM namespace of node:http
// runs every lazy getter of the module (undici, http2, zlib, worker_threads:
// ~15 MB resident, issue 22); the CommonJS exports object does not.
const http = process.getBuiltinModule('node:http')

/**
 * Where a command finds the sidecar's control API: its Unix socket, or loopback
 * TCP with the bearer secret (when one could be read).
 */
export type ControlEndpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; address: HostPort; bearer?: string | undefined }

function describe(endpoint: ControlEndpoint): string {
  return endpoint.kind === 'unix' ? endpoint.path : formatHostPort(endpoint.address)
}

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
  /** The code of a resource that is not ready (`/readyz/<resource>`). */
  code?: string
}

/**
 * Talks to a running sidecar's control endpoint (`keyway status`, `connect`,
 * `disconnect`, `wait`). A sidecar that cannot be reached is
 * `ERR_SIDECAR_UNREACHABLE`; an error answer rejects with its code.
 */
export class ControlClient {
  readonly #endpoint: ControlEndpoint
  readonly #timeoutMs: number

  /** `endpoint` may be a bare `host:port` (TCP without a bearer). */
  constructor(endpoint: ControlEndpoint | HostPort, options: ControlClientOptions = {}) {
    this.#endpoint = 'kind' in endpoint ? endpoint : { kind: 'tcp', address: endpoint }
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

  /**
   * `GET /readyz`, or `GET /readyz/<resource>` for one resource through the
   * gateway: 200 is ready; 503 (and 404 for an ungranted resource) carries
   * the reason.
   */
  async readyz(resource?: string): Promise<Readiness> {
    const path = resource === undefined ? '/readyz' : `${READYZ_RESOURCE_PREFIX}${encodeURIComponent(resource)}`
    const { status, body } = await this.#call('GET', path, undefined, resource === undefined ? [503] : [503, 404])
    const b = body as { reason?: unknown; code?: unknown } | undefined
    if (status === 200) return { ready: true }
    return {
      ready: false,
      reason: typeof b?.reason === 'string' ? b.reason : `HTTP ${status}`,
      ...(typeof b?.code === 'string' ? { code: b.code } : {}),
    }
  }

  #call(method: string, path: string, body?: unknown, accept: number[] = []): Promise<{ status: number; body: unknown }> {
    const endpoint = this.#endpoint
    const where = describe(endpoint)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8')
    const headers: Record<string, string> = payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}
    if (endpoint.kind === 'tcp' && endpoint.bearer !== undefined) headers.authorization = `Bearer ${endpoint.bearer}`
    return new Promise((resolve, reject) => {
      const req = http.request({
        ...(endpoint.kind === 'unix' ? { socketPath: endpoint.path, host: 'localhost' } : { host: endpoint.address.host, port: endpoint.address.port }),
        method,
        path,
        // A fresh connection each time: a command must exit as soon as it is done.
        agent: false,
        headers,
      })
      req.setTimeout(this.#timeoutMs, () => req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)))
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(
          new KeywayError(
            'ERR_SIDECAR_UNREACHABLE',
            `cannot reach the sidecar control endpoint at ${where} (${err.code ?? err.message}): is "keyway listen" running with the same runtime directory? (--runtime-dir, KEYWAY_SIDECAR_RUNTIME_DIR, XDG_RUNTIME_DIR; or --control HOST:PORT for TCP)`,
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
 * The control endpoint a command talks to. The `--control HOST:PORT` flag
 * picks loopback TCP (KEYWAY_CONTROL alone does not: it may be set for the
 * sidecar's health port in the same container), with the bearer secret read from the
 * runtime directory when it is there (`/readyz` needs none). Otherwise the
 * Unix socket in the runtime directory, resolved as `keyway listen` resolves
 * it: `--runtime-dir`, `sidecar.runtimeDir`, `$XDG_RUNTIME_DIR/keyway`,
 * `/run/keyway`, `$TMPDIR/keyway-<uid>`.
 */
export function resolveControlEndpoint(options: {
  file?: string | undefined
  control?: string | undefined
  runtimeDir?: string | undefined
  env: Readonly<Record<string, string | undefined>>
}): ControlEndpoint {
  const config = loadConfig({
    file: options.file,
    env: options.env,
    overrides: { 'sidecar.control': options.control, 'sidecar.runtimeDir': options.runtimeDir },
  })
  const dir = resolveRuntimeDir(config.sidecar.runtimeDir, options.env)
  const tcp = options.control !== undefined
  if (!tcp) return { kind: 'unix', path: join(dir, CONTROL_SOCKET) }
  let bearer: string | undefined
  try {
    bearer = readFileSync(join(dir, CONTROL_TOKEN_FILE), 'utf8').trim() || undefined
  } catch {
    // No secret here: the TCP control API is off or belongs to another user; /readyz still answers.
  }
  return { kind: 'tcp', address: config.sidecar.control, bearer }
}
