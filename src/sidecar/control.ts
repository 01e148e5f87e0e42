import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { httpStatusOf, KeywayError, toKeywayError } from '../errors.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ObservabilityServer, readJson, sendJson, type Route } from '../observe/index.js'
import { assertLoopback, isLoopbackHostHeader } from './loopback.js'
import type { ConnectResult, SidecarSnapshot } from './sidecar.js'

/** HTTP paths of the sidecar's control API (besides /healthz, /readyz, /metrics). */
export const CONTROL_PATHS = {
  status: '/v1/status',
  connect: '/v1/connect',
  disconnect: '/v1/disconnect',
} as const

/** What the control API drives; a {@link Sidecar} in production. */
export interface ControlTarget {
  snapshot(): SidecarSnapshot
  connect(resource: string): Promise<ConnectResult>
  disconnect(resource: string): Promise<{ resource: string }>
  ready(): string | undefined
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
 * The control API as routes for an {@link ObservabilityServer}:
 * `GET /v1/status`, `POST /v1/connect {resource}` → `{resource, localAddress}`,
 * `POST /v1/disconnect {resource}` → `{resource}`. Errors are
 * `{code, message}`. Requests whose Host header is not a loopback name are
 * refused (DNS rebinding).
 */
export function controlRoutes(target: ControlTarget): Route[] {
  return [
    async (req, res, url) => {
      if (!isLoopbackHostHeader(req.headers.host)) {
        sendJson(res, 403, { code: 'ERR_USAGE', message: 'the sidecar control API answers only requests addressed to a loopback host' })
        return true
      }
      const path = url.pathname
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
  /** `sidecar.control`; must be loopback. Port 0 picks a free port. */
  address: HostPort
  target: ControlTarget
  registry: Registry
  logger: Logger
}

/**
 * Starts the control endpoint: the control API plus /healthz, /readyz
 * (503 with the reason until {@link ControlTarget.ready}) and /metrics.
 * Refuses a non-loopback address (`ERR_CONFIG_INVALID`); a taken port is
 * `ERR_PORT_IN_USE`.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ObservabilityServer> {
  assertLoopback(options.address.host, 'sidecar.control')
  const server = new ObservabilityServer({
    host: options.address.host,
    port: options.address.port,
    registry: options.registry,
    logger: options.logger,
    ready: () => options.target.ready(),
    routes: controlRoutes(options.target),
    setting: 'sidecar.control (the sidecar control endpoint)',
  })
  try {
    const bound = await server.start()
    options.logger.info(
      { event: 'control_listening', address: formatHostPort({ host: bound.address, port: bound.port }) },
      `control endpoint on ${formatHostPort({ host: bound.address, port: bound.port })}`,
    )
  } catch (err) {
    await server.close()
    throw err
  }
  return server
}
