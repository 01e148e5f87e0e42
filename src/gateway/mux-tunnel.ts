import type { TLSSocket } from 'node:tls'
import type { VerifiedToken } from '../auth/index.js'
import { toKeywayError, type ErrorCode } from '../errors.js'
import { MuxConnection, type MuxStream } from '../mux/index.js'
import { HelloParser, type Hello } from '../protocol/index.js'
import { admit, clientOf, reportRefusal, type Opening, type TunnelContext } from './tunnel.js'

/** TCP keepalive on multiplexed connections: a vanished sidecar frees its streams' slots. */
const KEEPALIVE_MS = 30_000

/**
 * Serves a multiplexed tunnel connection (ALPN keyway/2): every OPEN frame
 * carries a version-1 hello and is {@link admit}ted like a tunnel of its own;
 * the connection only saves the TLS handshake and the system calls.
 * The first OPEN must arrive within `handshakeTimeout`.
 */
export function handleMuxConnection(socket: TLSSocket, ctx: TunnelContext, muxes: Set<MuxConnection>): void {
  const client = clientOf(socket)
  ctx.sockets.add(socket)
  socket.setKeepAlive(true, KEEPALIVE_MS)
  let opened = false
  const timer = ctx.clock.setTimeout(() => {
    if (opened) return
    ctx.metrics.sessionsTotal.inc({ result: 'handshake_error' })
    ctx.logger.debug({ event: 'tunnel_abandoned', client }, 'multiplexed connection opened no stream in time')
    conn.destroy()
  }, ctx.settings.handshakeTimeout)

  const conn = new MuxConnection(socket, {
    role: 'server',
    maxControlPayload: ctx.settings.handshakeMaxBytes,
    onOpen: (stream, payload) => {
      if (!opened) {
        opened = true
        ctx.clock.clearTimeout(timer)
      }
      openStream(stream, payload)
    },
    onClose: (err) => {
      ctx.clock.clearTimeout(timer)
      ctx.sockets.delete(socket)
      muxes.delete(conn)
      if (err !== undefined) ctx.logger.warn({ event: 'mux_violation', code: err.code, client }, err.message)
    },
  })
  muxes.add(conn)

  const openStream = (stream: MuxStream, payload: Buffer): void => {
    const startedAt = process.hrtime.bigint()
    let answered = false
    const refuse = (code: ErrorCode, message: string, hello?: Hello, token?: VerifiedToken, logMessage = message): void => {
      if (answered) return
      answered = true
      reportRefusal(ctx, opening, code, logMessage, hello, token)
      stream.refuse(code, message)
    }
    const opening: Opening = {
      client,
      startedAt,
      settled: () => answered || stream.destroyed,
      refuse,
      accept: (session) => {
        answered = true
        conn.accept(stream, Buffer.from(JSON.stringify({ session }), 'utf8'))
        return stream
      },
      initial: undefined,
      revoked: (code, message) => stream.setResetReason(code, message),
    }
    ctx.streams.count += 1
    stream.once('close', () => {
      ctx.streams.count -= 1
    })
    if (ctx.closing()) return refuse('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
    if (ctx.sockets.size + ctx.streams.count > ctx.settings.maxConnections) {
      return refuse('ERR_CONN_LIMIT', `the gateway is at its limit of ${ctx.settings.maxConnections} connections`)
    }
    const parsed = new HelloParser(ctx.settings.handshakeMaxBytes).push(payload)
    if (parsed.state === 'need') return refuse('ERR_HANDSHAKE_MALFORMED', 'OPEN carries a truncated hello')
    if (parsed.state === 'error') return refuse(parsed.error.code, parsed.error.message)
    if (parsed.rest.length > 0) return refuse('ERR_HANDSHAKE_MALFORMED', 'OPEN carries bytes after the hello')
    admit(ctx, parsed.value, opening).catch((err: unknown) => {
      const e = toKeywayError(err)
      refuse(e.code, 'internal error', parsed.value, undefined, e.message)
    })
  }

  if (ctx.closing()) conn.goaway('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
}
