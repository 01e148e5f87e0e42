/**
 * A stand-in gateway for sidecar tests: a real TLS server on 127.0.0.1:0,
 * certificate from a throwaway dev CA, that speaks the real wire format.
 *
 * - ALPN `keyway/1`: parses the hello with HelloParser, checks the token and
 *   that the resource is in the current view (or answers the code set in
 *   `refuse`), replies, then forwards to an echo upstream. With `greeting`
 *   the upstream's first bytes go out in the same write as the reply, so the
 *   sidecar sees them as bytes after the reply.
 * - ALPN `http/1.1`: `/v1/resources` (with ETag / 304) and `/v1/whoami` from
 *   a view the test changes at will.
 *
 * `down()` closes the listener and every connection; `up()` listens again on
 * the same port.
 */
import { once } from 'node:events'
import * as http from 'node:http'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { forward } from '../../src/forward/index.js'
import { createDevPki, type DevPki } from '../../src/pki/index.js'
import { encodeReply, HelloParser, type ApiResource, type ResourcesResponse, type TokenDeadline, type WhoamiResponse } from '../../src/protocol/index.js'
import type { ErrorCode } from '../../src/errors.js'

export const LOOPBACK = '127.0.0.1'

/** Anything with tap's `teardown`. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/** A dev PKI valid for `localhost` and `127.0.0.1`. */
export function createTestPki(): Promise<DevPki> {
  return createDevPki({ hosts: ['localhost', LOOPBACK] })
}

/** What the fake's `/v1/resources` serves; mutate through {@link FakeGateway.setView}. */
export interface FakeView {
  settings: { portOverrides: boolean; autoConnect: boolean }
  resources: ApiResource[]
  /** The token's deadline, answered as `token` of /v1/resources when set. */
  token?: TokenDeadline
}

/** Options of {@link startFakeGateway}. */
export interface FakeGatewayOptions {
  pki: DevPki
  /** The one token the fake accepts. */
  token: string
  view: FakeView
  /** Bytes the upstream sends first, written together with the OK reply. */
  greeting?: Buffer
  /** Listen on this port (default 0). */
  port?: number
}

/** A running fake gateway. */
export interface FakeGateway {
  readonly port: number
  /** `127.0.0.1:PORT`. */
  readonly address: string
  /** Current view. */
  readonly view: FakeView
  /** Replaces the view (bumps the generation, so the ETag changes). */
  setView(view: FakeView): void
  /** Resource name → code the tunnel is refused with. */
  readonly refuse: Map<string, { code: ErrorCode; message: string }>
  /** Accepts `token` from now on; any other is refused with `code` (default ERR_TOKEN_SIGNATURE) by the API and tunnels. */
  acceptToken(token: string, code?: ErrorCode): void
  /** Counters: tunnels opened (OK reply sent), hellos received, resource polls, 304 answers. */
  readonly counts: { tunnels: number; hellos: number; resourcePolls: number; notModified: number; whoami: number }
  /** The resource of every hello received, in order. */
  readonly hellos: string[]
  /** Tunnels currently open. */
  readonly openTunnels: Set<tls.TLSSocket>
  /** Stops listening and destroys every connection. */
  down(): Promise<void>
  /** Listens again on the same port. */
  up(): Promise<void>
  close(): Promise<void>
}

/** Starts a fake gateway; stopped on teardown. */
export async function startFakeGateway(t: Teardown, options: FakeGatewayOptions): Promise<FakeGateway> {
  let view = options.view
  let generation = 1
  let accepted = options.token
  let tokenRefusal: ErrorCode = 'ERR_TOKEN_SIGNATURE'
  const refuse = new Map<string, { code: ErrorCode; message: string }>()
  const counts = { tunnels: 0, hellos: 0, resourcePolls: 0, notModified: 0, whoami: 0 }
  const hellos: string[] = []
  const openTunnels = new Set<tls.TLSSocket>()
  const sockets = new Set<net.Socket>()

  const echo = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  echo.listen({ host: LOOPBACK, port: 0 })
  await once(echo, 'listening')
  const echoPort = (echo.address() as net.AddressInfo).port

  const etag = (): string => `"g${generation}"`
  const api = http.createServer((req, res) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = JSON.stringify(body)
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
      res.end(text)
    }
    if (req.headers.authorization !== `Bearer ${accepted}`) {
      send(401, { code: tokenRefusal, message: `the fake refuses this token (${tokenRefusal})` })
      return
    }
    if (req.method === 'GET' && req.url === '/v1/resources') {
      counts.resourcePolls++
      if (req.headers['if-none-match'] === etag()) {
        counts.notModified++
        res.writeHead(304, { etag: etag() })
        res.end()
        return
      }
      const body: ResourcesResponse = {
        settings: { ...view.settings },
        resources: view.resources.map((r) => ({ ...r })),
        generation,
        ...(view.token ? { token: { ...view.token } } : {}),
      }
      send(200, body, { etag: etag() })
      return
    }
    if (req.method === 'GET' && req.url === '/v1/whoami') {
      counts.whoami++
      const body: WhoamiResponse = {
        account: { id: 'svc_test', name: 'ci-runner', type: 'service', roles: ['ci'] },
        token: { id: 'tok_test', fingerprint: 'sha256:0123456789abcdef', kind: 'service', expiresAt: null },
      }
      send(200, body)
      return
    }
    send(404, { code: 'ERR_NOT_FOUND', message: `no route ${req.url}` })
  })

  const onTunnel = (socket: tls.TLSSocket): void => {
    const parser = new HelloParser(8192)
    const onData = (chunk: Buffer): void => {
      const r = parser.push(chunk)
      if (r.state === 'need') return
      socket.removeListener('data', onData)
      socket.pause()
      if (r.state === 'error') {
        socket.end(encodeReply({ ok: false, code: r.error.code, message: r.error.message }))
        return
      }
      counts.hellos++
      hellos.push(r.value.resource)
      const refusal = refuse.get(r.value.resource)
      if (r.value.token !== accepted) {
        socket.end(encodeReply({ ok: false, code: tokenRefusal, message: `the fake refuses this token (${tokenRefusal})` }))
        return
      }
      if (refusal) {
        socket.end(encodeReply({ ok: false, ...refusal }))
        return
      }
      if (!view.resources.some((res) => res.name === r.value.resource)) {
        socket.end(encodeReply({ ok: false, code: 'ERR_GRANT_DENIED', message: `no grant for ${r.value.resource}` }))
        return
      }
      const upstream = net.connect({ host: LOOPBACK, port: echoPort, allowHalfOpen: true })
      upstream.on('error', () => {})
      upstream.once('connect', () => {
        counts.tunnels++
        openTunnels.add(socket)
        socket.once('close', () => openTunnels.delete(socket))
        const reply = encodeReply({ ok: true, session: `ses_${counts.tunnels}` })
        socket.write(options.greeting ? Buffer.concat([reply, options.greeting]) : reply)
        forward(socket, upstream, { initialAToB: r.rest, halfCloseTimeoutMs: 0 })
      })
    }
    socket.on('data', onData)
  }

  const server = tls.createServer(
    { key: options.pki.keyPem, cert: options.pki.certPem, ALPNProtocols: ['keyway/1', 'http/1.1'], allowHalfOpen: true },
    (socket) => {
      if (socket.alpnProtocol === 'keyway/1') onTunnel(socket)
      else if (socket.alpnProtocol === 'http/1.1') api.emit('connection', socket)
      else socket.destroy()
    },
  )
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('tlsClientError', () => {})

  let port = options.port ?? 0
  const up = async (): Promise<void> => {
    server.listen({ host: LOOPBACK, port })
    await once(server, 'listening')
    port = (server.address() as net.AddressInfo).port
  }
  const down = async (): Promise<void> => {
    if (!server.listening) return
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const s of sockets) if (s.localPort === port) s.destroy()
    for (const s of openTunnels) s.destroy()
    await closed
  }
  await up()

  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await down()
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => echo.close(() => resolve()))
  }
  t.teardown(close)

  return {
    get port() {
      return port
    },
    get address() {
      return `${LOOPBACK}:${port}`
    },
    get view() {
      return view
    },
    setView(next: FakeView) {
      view = next
      generation++
    },
    refuse,
    acceptToken(token: string, code: ErrorCode = 'ERR_TOKEN_SIGNATURE') {
      accepted = token
      tokenRefusal = code
    },
    counts,
    hellos,
    openTunnels,
    down,
    up,
    close,
  }
}
