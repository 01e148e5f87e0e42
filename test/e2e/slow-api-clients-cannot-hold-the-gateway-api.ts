import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { startStack } from '../helpers/stack.js'
import { until } from '../helpers/until.js'

const HEADERS_TIMEOUT_MS = 3_000
const PER_ADDRESS = 16
const ADDRESSES = 10
const PER_ADDRESS_TRIED = 20

/**
 * The probe of issue 17 as a test: many sockets from 127.0.0.2 and up send a
 * request one header line every 500 ms and reconnect whenever they are cut,
 * while a real sidecar on 127.0.0.1 starts and a user logs in.
 */
t.test('trickling API clients are cut at the headers deadline and held to their per-address share while a sidecar starts and a login succeeds', async (t) => {
  const stack = await startStack(t, {
    gatewayEnv: {
      KEYWAY_GATEWAY_API_HEADERS_TIMEOUT: `${HEADERS_TIMEOUT_MS}ms`,
      KEYWAY_GATEWAY_API_REQUEST_TIMEOUT: '20s',
      KEYWAY_GATEWAY_API_MAX_CONNECTIONS_PER_ADDRESS: String(PER_ADDRESS),
    },
  })
  await stack.admin('users', 'create', 'ada@example.com')
  const set = await stack.run(['admin', 'users', 'set-password', 'ada@example.com', '--password-stdin'], {}, 'correct horse battery\n')
  t.equal(set.code, 0, set.stderr)
  const token = await stack.service('etl-job', 'etl')
  const port = stack.gatewayPort
  const ca = readFileSync(join(stack.dir, 'ca.pem'), 'utf8')

  let stopped = false
  const lifetimes: number[] = []
  let answered408 = 0
  let answered429 = 0
  const live = new Set<TLSSocket>()
  t.teardown(() => {
    stopped = true
    for (const s of live) s.destroy()
  })
  const trickle = (localAddress: string): void => {
    if (stopped) return
    const opened = Date.now()
    const socket = tlsConnect({ host: '127.0.0.1', port, localAddress, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] } as ConnectionOptions)
    live.add(socket)
    let text = ''
    let line = 0
    let timer: NodeJS.Timeout | undefined
    socket.on('secureConnect', () => {
      socket.write('GET /v1/resources HTTP/1.1\r\nhost: keyway\r\n')
      timer = setInterval(() => socket.write(`x-trickle-${line++}: ${'a'.repeat(20)}\r\n`), 500)
    })
    socket.on('data', (c: Buffer) => (text += c.toString()))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      live.delete(socket)
      if (text.startsWith('HTTP/1.1 408')) {
        answered408++
        lifetimes.push(Date.now() - opened)
      }
      if (text.startsWith('HTTP/1.1 429')) answered429++
      // The attacker keeps the pressure on: a cut socket is replaced at once.
      else setImmediate(() => trickle(localAddress))
    })
  }
  for (let a = 0; a < ADDRESSES; a++) for (let i = 0; i < PER_ADDRESS_TRIED; i++) trickle(`127.0.0.${a + 2}`)
  await until(() => answered429 >= ADDRESSES * (PER_ADDRESS_TRIED - PER_ADDRESS), 30_000, 'the sockets over each address\'s share to be refused')

  // Under that pressure the real clients on 127.0.0.1 are served.
  const sidecar = await stack.sidecar(token)
  const status = await sidecar.run(['status', '--json'])
  t.equal(status.code, 0, status.stderr)
  const login = await stack.run(['login', '--email', 'ada@example.com', '--password-stdin'], {}, 'correct horse battery\n')
  t.equal(login.code, 0, login.stderr)
  t.match(login.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/)

  await until(() => answered408 >= ADDRESSES * PER_ADDRESS, 60_000, 'every held socket to be cut at least once')
  stopped = true
  // Deadlines run from the TLS handshake's end; generous bounds for a loaded machine.
  t.ok(Math.min(...lifetimes) >= HEADERS_TIMEOUT_MS - 500, `none cut early (shortest ${Math.min(...lifetimes)} ms)`)
  const sorted = [...lifetimes].sort((x, y) => x - y)
  const median = sorted[Math.floor(sorted.length / 2)]!
  t.ok(median < HEADERS_TIMEOUT_MS + 10_000, `cut at the deadline, not held (median ${median} ms)`)
  const rejected = stack.gateway.lines.filter((l) => l.event === 'api_rejected' || l.event === 'audit_suppressed')
  t.ok(rejected.some((l) => l.code === 'ERR_API_HEADERS_TIMEOUT' && /^127\.0\.0\.(\d+):/.test(String(l.client)) && !String(l.client).startsWith('127.0.0.1:')), 'audited with the trickler\'s address')
  t.ok(rejected.some((l) => l.code === 'ERR_API_ADDRESS_LIMIT'))
})
