import { createHash, timingSafeEqual } from 'node:crypto'
import { chmod, chown, unlink } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { httpStatusOf, KeywayError, toKeywayError } from '../errors.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ObservabilityServer, readJson, sendJson, type Route } from '../observe/index.js'
import { assertLoopback, isLoopbackHostHeader } from './loopback.js'
import { CONTROL_SOCKET, CONTROL_TOKEN_FILE, ensureRuntimeDir, prepareSocketPath, writeSecretFile } from './runtime-dir.js'
import type { ConnectResult, ResourceReady, SidecarSnapshot } from './sidecar.js'

/** HTTP paths of the sidecar's control API (besides /healthz, /readyz, /metrics). */
export const CONTROL_PATHS = {
  status: '/v1/status',
  connect: '/v1/connect',
  disconnect: '/v1/disconnect',
} as const

/** Prefix of the per-resource readiness path: `GET /readyz/<resource>`. */
export const READYZ_RESOURCE_PREFIX = '/readyz/'

/** What the control API drives; a {@link Sidecar} in production. */
export interface ControlTarget {
  snapshot(): SidecarSnapshot
  connect(resource: string): Promise<ConnectResult>
  disconnect(resource: string): Promise<{ resource: string }>
  ready(): string | undefined
  /** Per-resource readiness through the gateway (`GET /readyz/<resource>`); absent: that path is not served. */
  resourceReady?(resource: string): Promise<ResourceReady>
}

function sendError(res: ServerResponse, err: unknown): void {
  const e = toKeywayError(err)
  sendJson(res, httpStatusOf(e.code), { code: e.code, message: e.message })
}

async function readResource(req: IncomingMessage): Promise<string> {
  // A JSON content type makes a browser preflight a cross-site POST, which
  // this server never answers: a web page cannot drive the sidecar.
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') throw new KeywayError('ERR_USAGE', 'send the request body as Content-Type: application/json')
  let body: unknown
  try {
    body = await readJson(req)
  } catch (err) {
    throw new KeywayError('ERR_USAGE', `the request body is not JSON: ${(err as Error).message}`, { cause: err })
  }
  const resource = (body as { resource?: unknown } | null)?.resource
  if (typeof resource !== 'string' || resource === '') throw new KeywayError('ERR_USAGE', 'the body must be {"resource": "NAME"}')
  return resource
}

/**
 * Who may use the control API on a listener: anyone who can connect (the
 * Unix socket, guarded by its directory's mode), a caller with the bearer
 * secret (TCP with `sidecar.controlTcp`), or nobody (TCP by default).
 */
export type ControlAccess = { kind: 'open' } | { kind: 'bearer'; secret: string } | { kind: 'closed'; socket: string }

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** Why `req` may not use the control API under `access`, or undefined when it may. */
function refusal(req: IncomingMessage, access: ControlAccess): string | undefined {
  if (access.kind === 'open') return undefined
  if (access.kind === 'closed') {
    return `the control API listens on the Unix socket ${access.socket}, not on TCP (sidecar.controlTcp enables it here, behind a bearer secret)`
  }
  const header = req.headers.authorization ?? ''
  const presented = /^Bearer +(\S+)\s*$/i.exec(header)?.[1]
  // Digests make the comparison constant-time whatever the length presented.
  if (presented !== undefined && timingSafeEqual(digest(presented), digest(access.secret))) return undefined
  return `the TCP control API needs "Authorization: Bearer <secret>" with the secret the sidecar wrote to ${CONTROL_TOKEN_FILE} in its runtime directory`
}

/**
 * The control API as routes for an {@link ObservabilityServer}:
 * `GET /readyz/<resource>` → 200 `{ready: true}`, else 503 (404 for a
 * resource the token is not granted) `{ready: false, code, reason}`;
 * `GET /v1/status`, `POST /v1/connect {resource}` → `{resource, localAddress}`,
 * `POST /v1/disconnect {resource}` → `{resource}`. Errors are
 * `{code, message}`. Requests whose Host header is not a loopback name are
 * refused (DNS rebinding); anything under `/v1/` that `access` does not allow
 * is 401 `ERR_CONTROL_UNAUTHORIZED`.
 */
export function controlRoutes(target: ControlTarget, access: ControlAccess = { kind: 'open' }): Route[] {
  return [
    async (req, res, url) => {
      if (!isLoopbackHostHeader(req.headers.host)) {
        sendJson(res, 403, { code: 'ERR_USAGE', message: 'the sidecar control API answers only requests addressed to a loopback host' })
        return true
      }
      const path = url.pathname
      // Like /readyz it needs no secret (probes on the TCP endpoint use it); the gateway checks the grant.
      if (path.startsWith(READYZ_RESOURCE_PREFIX) && target.resourceReady !== undefined) {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          sendJson(res, 405, { code: 'ERR_USAGE', message: `${path} takes GET` }, { allow: 'GET' })
          return true
        }
        let resource: string
        try {
          resource = decodeURIComponent(path.slice(READYZ_RESOURCE_PREFIX.length))
        } catch {
          resource = ''
        }
        if (resource === '' || resource.includes('/')) {
          sendJson(res, 400, { code: 'ERR_USAGE', message: 'ask /readyz/NAME with one resource name' })
          return true
        }
        const r = await target.resourceReady(resource)
        if (r.ready) sendJson(res, 200, { ready: true, resource })
        // An ungranted (or unknown) resource is 404 with its code; anything else is not ready yet.
        else sendJson(res, r.code === 'ERR_GRANT_DENIED' ? 404 : 503, { ready: false, resource, code: r.code, reason: r.reason })
        return true
      }
      if (path.startsWith('/v1/')) {
        const refused = refusal(req, access)
        if (refused !== undefined) {
          sendJson(res, 401, { code: 'ERR_CONTROL_UNAUTHORIZED', message: refused }, { 'www-authenticate': 'Bearer' })
          return true
        }
      }
      if (path !== CONTROL_PATHS.status && path !== CONTROL_PATHS.connect && path !== CONTROL_PATHS.disconnect) return false
      const method = path === CONTROL_PATHS.status ? 'GET' : 'POST'
      if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
        sendJson(res, 405, { code: 'ERR_USAGE', message: `${path} takes ${method}` }, { allow: method })
        return true
      }
      try {
        if (path === CONTROL_PATHS.status) sendJson(res, 200, target.snapshot())
        else if (path === CONTROL_PATHS.connect) sendJson(res, 200, await target.connect(await readResource(req)))
        else sendJson(res, 200, await target.disconnect(await readResource(req)))
      } catch (err) {
        sendError(res, err)
      }
      return true
    },
  ]
}

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** `sidecar.control`: loopback TCP for /healthz, /readyz, /metrics. Port 0 picks a free port. */
  address: HostPort
  /** The runtime directory (resolved `sidecar.runtimeDir`): made private, holds `control.sock`. */
  runtimeDir: string
  /** `sidecar.runtimeGroup` as a gid: the directory is 0750 with this group and the socket 0660. */
  gid?: number | undefined
  /** `sidecar.controlTcp`: the control API on `address` too, behind a bearer secret in `control.token`. */
  controlTcp?: boolean
  target: ControlTarget
  registry: Registry
  logger: Logger
}

/**
 * The sidecar's control endpoints: the control API on a Unix socket in the
 * runtime directory, and /healthz, /readyz, /metrics on loopback TCP (with
 * the control API there only behind a bearer secret).
 */
export class ControlServer {
  /** Path of the control API's Unix socket. */
  readonly socketPath: string
  /** Path of the bearer secret, when the TCP control API is on. */
  readonly tokenFile: string | undefined
  readonly #unix: ObservabilityServer
  readonly #tcp: ObservabilityServer
  #closing: Promise<void> | undefined

  /** @internal built by {@link startControlServer} */
  constructor(socketPath: string, tokenFile: string | undefined, unix: ObservabilityServer, tcp: ObservabilityServer) {
    this.socketPath = socketPath
    this.tokenFile = tokenFile
    this.#unix = unix
    this.#tcp = tcp
  }

  /** The bound TCP address. */
  address(): AddressInfo | undefined {
    return this.#tcp.address()
  }

  /** Stops both listeners and removes the socket and the secret. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([this.#unix.close(), this.#tcp.close()])
      await unlink(this.socketPath).catch(() => undefined)
      if (this.tokenFile !== undefined) await unlink(this.tokenFile).catch(() => undefined)
    })()
    return this.#closing
  }
}

/**
 * Starts the control endpoints. The runtime directory is made private
 * before the socket listens in it (a mode set on a socket after listen()
 * would leave a window). Refuses a non-loopback TCP address and an unsafe
 * runtime directory (`ERR_CONFIG_INVALID`); a taken port or a live socket
 * is `ERR_PORT_IN_USE`.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  assertLoopback(options.address.host, 'sidecar.control')
  await ensureRuntimeDir(options.runtimeDir, options.gid)
  const socketPath = join(options.runtimeDir, CONTROL_SOCKET)
  await prepareSocketPath(socketPath, 'the sidecar control socket')
  const tokenFile = options.controlTcp === true ? join(options.runtimeDir, CONTROL_TOKEN_FILE) : undefined
  const common = { registry: options.registry, logger: options.logger, ready: () => options.target.ready() }
  const unix = new ObservabilityServer({
    ...common,
    host: '',
    port: 0,
    path: socketPath,
    routes: controlRoutes(options.target, { kind: 'open' }),
    setting: 'the sidecar control socket (sidecar.runtimeDir)',
  })
  let tcp: ObservabilityServer | undefined
  let listening = false
  try {
    await unix.start()
    listening = true
    // The directory already keeps others out; group and mode let the group in when it is shared.
    if (options.gid !== undefined) await chown(socketPath, -1, options.gid)
    await chmod(socketPath, options.gid === undefined ? 0o600 : 0o660)
    const access: ControlAccess = tokenFile === undefined ? { kind: 'closed', socket: socketPath } : { kind: 'bearer', secret: await writeSecretFile(tokenFile) }
    tcp = new ObservabilityServer({
      ...common,
      host: options.address.host,
      port: options.address.port,
      routes: controlRoutes(options.target, access),
      setting: 'sidecar.control (the sidecar control endpoint)',
    })
    const bound = await tcp.start()
    options.logger.info(
      { event: 'control_listening', address: formatHostPort({ host: bound.address, port: bound.port }), socket: socketPath, control_tcp: tokenFile !== undefined },
      `control API on ${socketPath}; health and metrics on ${formatHostPort({ host: bound.address, port: bound.port })}`,
    )
  } catch (err) {
    await Promise.all([unix.close(), tcp?.close()])
    if (listening) await unlink(socketPath).catch(() => undefined)
    if (tokenFile !== undefined) await unlink(tokenFile).catch(() => undefined)
    throw err
  }
  return new ControlServer(socketPath, tokenFile, unix, tcp)
}
