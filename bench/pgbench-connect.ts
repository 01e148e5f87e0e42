/**
 * The connection rate with credential injection: `pgbench -C` (a new
 * connection per transaction, select-only) through sidecar and gateway, the
 * gateway logging in with the resource's credentials (SCRAM-SHA-256 with its
 * cached salted password), against PostgreSQL direct with password
 * authentication (the client does the SCRAM), in the same run, alternating.
 * Never part of `npm test`. See bench/README.md, "Connection rate with
 * credential injection".
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/pgbench-connect.js [--seconds 10] [--clients 4] [--rounds 2]
 *
 * Needs initdb and pg_ctl (KEYWAY_PG_BIN, default /usr/local/bin), psql and pgbench on PATH.
 */
import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KEYWAY_BIN } from './peers.js'
import { freePort, run, startDaemon, waitPort, type Daemon } from './tools.js'

const PG_BIN = process.env.KEYWAY_PG_BIN ?? '/usr/local/bin'
const PASSWORD = 'bench-password-6f1e'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN
  return Number.isFinite(v) && v > 0 ? v : fallback
}

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYWAY_') && !k.startsWith('PG')) env[k] = v
  return { ...env, ...extra }
}

interface Figure {
  tps: number
  connectMs: number
  failed: number
}

async function pgbench(port: number, seconds: number, clients: number, env: NodeJS.ProcessEnv): Promise<Figure> {
  const r = await run('pgbench', ['-C', '-S', '-n', '-T', String(seconds), '-c', String(clients), '-h', '127.0.0.1', '-p', String(port), '-U', 'app', 'bench'], { timeoutMs: (seconds + 60) * 1000, env })
  if (r.code !== 0) throw new Error(`pgbench exited ${r.code}: ${r.stderr}`)
  const num = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? NaN)
  return { tps: num(/tps = ([\d.]+)/), connectMs: num(/average connection time = ([\d.]+) ms/), failed: num(/number of failed transactions: (\d+)/) }
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 10)
  const clients = arg('clients', 4)
  const rounds = arg('rounds', 2)
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-pgc-'))
  const daemons: Daemon[] = []
  let pgData: string | undefined
  try {
    // PostgreSQL with scram-sha-256 required of app over TCP.
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
      chownSync(dir, uid, gid)
    }
    pgData = join(dir, 'data')
    execFileSync(...asPostgres(join(PG_BIN, 'initdb'), ['-D', pgData, '-A', 'trust', '-U', 'postgres', '--no-sync']), { stdio: 'ignore' })
    writeFileSync(join(pgData, 'pg_hba.conf'), 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n')
    const pgPort = await freePort()
    execFileSync(
      ...asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', pgData, '-o', `-p ${pgPort} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`, '-l', join(dir, 'pg.log'), '-w', 'start']),
      { stdio: 'ignore' },
    )
    const psql = (sql: string): void => void execFileSync('psql', ['-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-d', 'postgres', '-qc', sql], { env: cleanEnv({}) })
    psql(`CREATE ROLE app LOGIN PASSWORD '${PASSWORD}'`)
    psql('CREATE DATABASE bench OWNER app')
    const direct = cleanEnv({ PGPASSWORD: PASSWORD })
    const init = await run('pgbench', ['-i', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'app', 'bench'], { timeoutMs: 120_000, env: direct })
    if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`)

    // Keyway: the resource with the credential, a role and a token; gateway and sidecar.
    const secret = join(dir, 'warehouse-password')
    writeFileSync(secret, PASSWORD, { mode: 0o600 })
    const config = join(dir, 'keyway', 'keyway.yaml')
    const [gatewayPort, localPort] = [await freePort(), await freePort()]
    const control = `127.0.0.1:${await freePort()}`
    const env = cleanEnv({
      KEYWAY_CONFIG: config,
      KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
      KEYWAY_GATEWAY_METRICS: '',
      KEYWAY_ADMIN_LISTEN: '',
      KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}`,
      KEYWAY_CONTROL: control,
      KEYWAY_LOG_LEVEL: 'warn',
    })
    const keyway = async (...args: string[]): Promise<string> => {
      const r = await run(process.execPath, [KEYWAY_BIN, ...args], { timeoutMs: 60_000, env })
      if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      return r.stdout
    }
    await keyway('init', '--dir', join(dir, 'keyway'))
    await keyway('admin', 'resources', 'remove', 'example-postgres', '--force')
    await keyway('admin', 'roles', 'delete', 'example', '--force')
    await keyway('admin', 'resources', 'add', 'warehouse', '--kind', 'datasource', '--type', 'postgres', '--address', `127.0.0.1:${pgPort}`, '--port-override', String(localPort), '--username', 'app', '--password-file', secret)
    await keyway('admin', 'roles', 'create', 'bench')
    await keyway('admin', 'roles', 'grant', 'bench', 'warehouse')
    const token = (await keyway('admin', 'services', 'create', 'bench-job', '--role', 'bench')).trim()
    daemons.push(startDaemon('keyway-gateway', process.execPath, [KEYWAY_BIN, 'gateway'], { env, log: join(dir, 'gateway.log') }))
    await waitPort(gatewayPort)
    daemons.push(startDaemon('keyway-listen', process.execPath, [KEYWAY_BIN, 'listen'], { env: { ...env, KEYWAY_TOKEN: token }, log: join(dir, 'listen.log') }))
    await keyway('wait', '--resource', 'warehouse', '--timeout', '30', '--control', control)
    // The chain's client holds no password at all.
    const chain = cleanEnv({ PGPASSFILE: join(dir, 'no-pgpass') })

    const figures: Record<'direct' | 'chain', Figure[]> = { direct: [], chain: [] }
    for (let round = 1; round <= rounds; round++) {
      for (const name of round % 2 === 1 ? (['direct', 'chain'] as const) : (['chain', 'direct'] as const)) {
        const f = await pgbench(name === 'direct' ? pgPort : localPort, seconds, clients, name === 'direct' ? direct : chain)
        figures[name].push(f)
        process.stderr.write(`round ${round} ${name}: ${f.tps.toFixed(1)} tps, connection ${f.connectMs.toFixed(2)} ms, failed ${f.failed}\n`)
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const row = (name: 'direct' | 'chain', label: string): string => {
      const fs = figures[name]
      return `| ${label} | ${median(fs.map((f) => f.tps)).toFixed(1)} | ${median(fs.map((f) => f.connectMs)).toFixed(2)} | ${fs.reduce((n, f) => n + f.failed, 0)} |`
    }
    console.log(`pgbench -C -S, ${clients} clients, ${seconds} s x ${rounds} rounds (medians)\n`)
    console.log('| path | tps (a new connection each) | average connection time, ms | failed transactions |')
    console.log('|---|---|---|---|')
    console.log(row('direct', 'PostgreSQL direct, the client does SCRAM-SHA-256'))
    console.log(row('chain', 'sidecar + gateway, the gateway injects the login'))
  } finally {
    for (const d of daemons.reverse()) await d.stop()
    if (pgData !== undefined) {
      try {
        execFileSync(...asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', pgData, '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' })
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
