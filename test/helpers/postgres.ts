import { execFile, execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { PortInUseError, withPort, type Comments } from './ports.js'

const run = promisify(execFile)
const BIN = process.env.KEYWAY_PG_BIN ?? '/usr/local/bin'

/** A throwaway PostgreSQL cluster on 127.0.0.1. */
export interface Postgres {
  readonly host: '127.0.0.1'
  readonly port: number
  readonly user: 'postgres'
  /** Connections the server has received so far (from its log: log_connections is on). */
  connectionsReceived(): number
  /** Stops the server but keeps its files (an outage); {@link resume} starts it again on the same port. */
  pause(): Promise<void>
  /** Starts a paused server again, same data, same port. */
  resume(): Promise<void>
  stop(): Promise<void>
}


// PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

/** Gives `paths` to the postgres user, which must write or read them (a no-op unless root). */
async function giveToPostgres(...paths: string[]): Promise<void> {
  if (process.getuid?.() !== 0) return
  const { stdout } = await run('id', ['-u', 'postgres'])
  const { stdout: gid } = await run('id', ['-g', 'postgres'])
  for (const path of paths) chownSync(path, Number(stdout.trim()), Number(gid.trim()))
}

/**
 * A fresh cluster's data directory (trust auth, UTF8), made by initdb once per
 * user and PostgreSQL version and copied for each cluster: initdb is most of a
 * cluster's start, a copy of its files a fraction of it, and the suite starts
 * dozens. It lives in the temporary directory, as the clusters do, where the
 * postgres user can read it (a checkout under a 0700 home cannot be); it is a
 * cache, kept between runs (docs/dev/testing.md). Test processes that race to
 * make it each make their own and the first rename wins.
 */
async function template(): Promise<string> {
  const version = (await run(join(BIN, 'postgres'), ['--version'])).stdout.trim().replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-|-$/g, '')
  const path = join(tmpdir(), `keyway-pg-template-${process.getuid?.() ?? 'user'}-${version}`)
  const data = join(path, 'data')
  if (existsSync(join(data, 'PG_VERSION'))) return data
  const making = mkdtempSync(`${path}.making-`)
  try {
    await giveToPostgres(making)
    const [initCmd, initArgs] = asPostgres(join(BIN, 'initdb'), ['-D', join(making, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
    await run(initCmd, initArgs)
    try {
      renameSync(making, path)
    } catch (err) {
      // Another test process made it first: use theirs.
      if (!existsSync(join(data, 'PG_VERSION'))) throw err
    }
  } finally {
    rmSync(making, { recursive: true, force: true })
  }
  return data
}

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /**
   * `trust` (default): every user logs in without a password.
   * `scram`: only `postgres` is trusted (for the test's own setup); every
   * other user must pass SCRAM-SHA-256 over TCP.
   */
  auth?: 'trust' | 'scram' | 'md5'
  /**
   * Serve TLS with this certificate; every user but `postgres` must then use
   * it (`hostssl` lines only).
   */
  tls?: { certPem: string; keyPem: string }
}

/**
 * Starts a fresh cluster (trust auth, no fsync) on a port of the test file's
 * block (PostgreSQL cannot listen on port 0): when the port is taken, it
 * says so on `t` and starts again on the next one.
 * Call `stop()` in teardown: it stops the server and removes its files.
 */
export async function startPostgres(t: Comments, options: PostgresOptions = {}): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-pg-'))
  const data = join(dir, 'data')
  await giveToPostgres(dir)
  await run('cp', ['-a', await template(), data])
  let tlsOpts = ''
  if (options.tls !== undefined) {
    writeFileSync(join(data, 'server.crt'), options.tls.certPem, { mode: 0o644 })
    writeFileSync(join(data, 'server.key'), options.tls.keyPem, { mode: 0o600 })
    await giveToPostgres(join(data, 'server.key'), join(data, 'server.crt'))
    tlsOpts = ' -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key'
  }
  if (options.auth === 'scram' || options.auth === 'md5') {
    const method = options.auth === 'scram' ? 'scram-sha-256' : 'md5'
    writeFileSync(
      join(data, 'pg_hba.conf'),
      ['local all all trust', 'host all postgres 127.0.0.1/32 trust', `${options.tls ? 'hostssl' : 'host'} all all 127.0.0.1/32 ${method}`, ''].join('\n'),
      { mode: 0o644 },
    )
  }
  let startOpts = ''
  const port = await withPort(t, 'PostgreSQL', async (port) => {
    const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c log_connections=on -c password_encryption=${options.auth === 'md5' ? 'md5' : 'scram-sha-256'}${tlsOpts}`
    startOpts = opts
    const [startCmd, startArgs] = asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
    const logText = (): string => {
      try {
        return readFileSync(join(dir, 'log'), 'utf8')
      } catch {
        return ''
      }
    }
    // pg_ctl appends to the log: look only at this attempt's part.
    const before = logText().length
    try {
      await run(startCmd, startArgs)
    } catch (err) {
      const log = logText().slice(before)
      if (/could not bind .*Address already in use|could not create any TCP\/IP sockets/.test(log)) throw new PortInUseError(port, 'PostgreSQL')
      throw err
    }
    return port
  })
  let stopped = false
  // A test killed at its timeout skips its teardown: stop the cluster on the way out anyway.
  const onExit = () => {
    if (stopped) return
    const [cmd, args] = asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop'])
    try {
      execFileSync(cmd, args, { stdio: 'ignore' })
    } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', onExit)
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    connectionsReceived() {
      return (readFileSync(join(dir, 'log'), 'utf8').match(/connection received:/g) ?? []).length
    },
    async pause() {
      const [cmd, args] = asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'])
      await run(cmd, args)
    },
    async resume() {
      const [cmd, args] = asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-o', startOpts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
      await run(cmd, args)
    },
    async stop() {
      if (stopped) return
      stopped = true
      process.off('exit', onExit)
      const [stopCmd, stopArgs] = asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'])
      await run(stopCmd, stopArgs).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
