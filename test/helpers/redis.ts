import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PortInUseError, withPort, type Comments } from './ports.js'

const BIN = process.env.KEYWAY_REDIS_BIN ?? '/usr/bin/redis-server'

/** A throwaway Redis server on 127.0.0.1 (Debian's redis-server: .ci/run installs it). */
export interface Redis {
  readonly host: '127.0.0.1'
  readonly port: number
  stop(): Promise<void>
}

/** Options of {@link startRedis}. */
export interface RedisOptions {
  /** The default user's password (`requirepass`); none: the default user needs none. */
  requirePass?: string
  /** ACL users (Redis 6 `user NAME on >PASSWORD ~* &* +@all`), each with every key and command. */
  users?: ReadonlyArray<{ name: string; password: string }>
  /** Serve TLS only (from the first byte, no plain port) with this certificate; clients are not asked for one. */
  tls?: { certPem: string; keyPem: string }
}

/**
 * Starts redis-server without persistence on a port of the test file's
 * block (Redis cannot report a port it chose): when the port is taken it says
 * so on `t` and starts again on the next one. Stopped (SIGKILL) and its
 * folder removed in `stop()`, and on the way out if a test dies first.
 */
export async function startRedis(t: Comments, options: RedisOptions = {}): Promise<Redis> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-redis-'))
  let child: ChildProcess | undefined
  if (options.tls !== undefined) {
    writeFileSync(join(dir, 'cert.pem'), options.tls.certPem)
    writeFileSync(join(dir, 'key.pem'), options.tls.keyPem, { mode: 0o600 })
  }
  const port = await withPort(t, 'Redis', async (port) => {
    const listenArgs = options.tls === undefined ? ['--port', String(port)] : ['--port', '0', '--tls-port', String(port), '--tls-cert-file', join(dir, 'cert.pem'), '--tls-key-file', join(dir, 'key.pem'), '--tls-auth-clients', 'no']
    const args = [...listenArgs, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', '--daemonize', 'no', '--protected-mode', 'no']
    if (options.requirePass !== undefined) args.push('--requirepass', options.requirePass)
    for (const u of options.users ?? []) args.push('--user', u.name, 'on', `>${u.password}`, '~*', '&*', '+@all')
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let log = ''
    proc.stdout!.on('data', (c: Buffer) => (log += c.toString()))
    proc.stderr!.on('data', (c: Buffer) => (log += c.toString()))
    const exited = once(proc, 'exit')
    const deadline = Date.now() + 30_000
    while (!/Ready to accept connections/.test(log)) {
      const r = await Promise.race([exited.then(() => 'exit' as const), new Promise<'poll'>((done) => setTimeout(() => done('poll'), 20))])
      if (r === 'exit') {
        if (/Address already in use/.test(log)) throw new PortInUseError(port, 'Redis')
        throw new Error(`redis-server exited: ${log.slice(-2000)}`)
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL')
        throw new Error(`redis-server not ready within 30 s: ${log.slice(-2000)}`)
      }
    }
    child = proc
    return port
  })
  let stopped = false
  const onExit = (): void => {
    child?.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', onExit)
  return {
    host: '127.0.0.1',
    port,
    async stop() {
      if (stopped) return
      stopped = true
      process.off('exit', onExit)
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const gone = once(child, 'exit')
        child.kill('SIGKILL')
        await gone
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
