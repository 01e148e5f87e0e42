import type { TLSSocket } from 'node:tls'
import type { VerifiedToken } from '../auth/index.js'
import type { TimerHandle } from '../clock.js'
import { toKeywayError, type ErrorCode } from '../errors.js'
import { MuxConnection, type MuxStream } from '../mux/index.js'
import { HelloParser, type Hello } from '../protocol/index.js'
import { admit, answeredCode, reportRefusal, type Opening, type TunnelContext } from './tunnel.js'

/** TCP keepalive on multiplexed connections: a vanished sidecar frees its streams' slots. */
const KEEPALIVE_MS = 30_000

/**
 * Serves a multiplexed tunnel connection (ALPN keyway/2): every OPEN frame
 * carries a version-1 hello and is {@link admit}ted like a tunnel of its own;
 * the connection only saves the TLS handshake and the system calls.
 *
 * A connection without streams is closed after `handshakeTimeout` until one
 * of its streams was accepted (refused OPENs earn no time), then after
 * `idleTimeout`: it holds a descriptor, so only a proven client keeps one idle.
 */
export function handleMuxConnection(socket: TLSSocket, ctx: TunnelContext, muxes: Set<MuxConnection>): void {
  const client = ctx.clientOf(socket)
  ctx.sockets.add(socket)
  socket.setKeepAlive(true, KEEPALIVE_MS)
  const startedAt = process.hrtime.bigint()
  let accepted = false
  // Until a stream is accepted the connection lives on one deadline: refused OPENs earn no time.
  const deadline = ctx.clock.now() + ctx.settings.handshakeTimeout
  let idleTimer: TimerHandle | undefined
  const clearIdle = (): void => {
    if (idleTimer !== undefined) ctx.clock.clearTimeout(idleTimer)
    idleTimer = undefined
  }
  const armIdle = (): void => {
    clearIdle()
    if (conn.closed || conn.streams > 0) return
    if (accepted && ctx.settings.idleTimeout <= 0) return
    const ms = accepted ? ctx.settings.idleTimeout : Math.max(0, deadline - ctx.clock.now())
    idleTimer = ctx.clock.setTimeout(() => {
      idleTimer = undefined
      if (conn.streams > 0) return
      if (accepted) {
        ctx.logger.debug({ event: 'mux_idle', client, idle_ms: ms }, 'multiplexed connection idle: closed')
        conn.end('ERR_SHUTTING_DOWN', 'connection idle')
      } else {
        ctx.metrics.sessionsTotal.inc({ result: 'handshake_error' })
        ctx.logger.debug({ event: 'tunnel_abandoned', client }, 'multiplexed connection had no stream accepted in time')
        conn.end('ERR_HANDSHAKE_TIMEOUT', `no stream accepted within ${ctx.settings.handshakeTimeout} ms`)
      }
    }, ms)
  }

  const conn = new MuxConnection(socket, {
    role: 'server',
    maxControlPayload: ctx.settings.handshakeMaxBytes,
    clock: ctx.clock,
    reuseReadBuffers: ctx.nodeInternals,
    onOpen: (stream, payload, size) => {
      clearIdle()
      stream.once('close', armIdle)
      openStream(stream, payload, size)
    },
    onClose: (err) => {
      clearIdle()
      ctx.metrics.muxConnections.dec()
      ctx.sockets.delete(socket)
      muxes.delete(conn)
      if (err !== undefined) ctx.logger.warn({ event: 'mux_violation', code: err.code, client }, err.message)
    },
  })
  muxes.add(conn)
  ctx.metrics.muxConnections.inc()

  const openStream = (stream: MuxStream, payload: Buffer | undefined, size: number): void => {
    const startedAt = process.hrtime.bigint()
    let answered = false
    // Until forward() owns the stream, a RESET from the peer or a lost connection must not go unhandled.
    stream.on('error', ignoreError)
    const refuse = (code: ErrorCode, message: string, hello?: Hello, token?: VerifiedToken, logMessage = message, account?: string): void => {
      if (answered) return
      answered = true
      reportRefusal(ctx, opening, code, logMessage, hello, token, account)
      stream.refuse(answeredCode(code), message)
    }
    const opening: Opening = {
      client,
      startedAt,
      settled: () => answered || stream.destroyed,
      refuse,
      accept: (session) => {
        answered = true
        accepted = true
        conn.accept(stream, Buffer.from(JSON.stringify({ session }), 'utf8'))
        return stream
      },
      initial: undefined,
    }
    ctx.streams.count += 1
    stream.once('close', () => {
      ctx.streams.count -= 1
      if (!answered) {
        // The peer reset the stream, or the connection went, before we answered: as a keyway/1 peer leaving mid-handshake.
        answered = true
        ctx.metrics.sessionsTotal.inc({ result: 'handshake_error' })
        ctx.logger.debug({ event: 'tunnel_abandoned', client, stream: stream.id }, 'peer left before the stream was answered')
      }
    })
    if (ctx.closing()) return refuse('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
    if (ctx.sockets.size + ctx.streams.count > ctx.settings.maxConnections) {
      return refuse('ERR_CONN_LIMIT', `the gateway is at its limit of ${ctx.settings.maxConnections} connections`)
    }
    if (payload === undefined) {
      return refuse('ERR_HANDSHAKE_TOO_LARGE', `handshake of ${size} bytes exceeds the limit of ${ctx.settings.handshakeMaxBytes}`)
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

  if (ctx.closing()) {
    conn.end('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
    return
  }
  // The connection itself takes a slot: over the limit it is turned away before any OPEN costs a token check.
  if (ctx.sockets.size + ctx.streams.count > ctx.settings.maxConnections) {
    reportRefusal(ctx, { client, startedAt }, 'ERR_CONN_LIMIT', `the gateway is at its limit of ${ctx.settings.maxConnections} connections`)
    conn.end('ERR_CONN_LIMIT', `the gateway is at its limit of ${ctx.settings.maxConnections} connections`)
    return
  }
  armIdle()
}

function ignoreError(): void {}
