import t from 'tap'
import { execFile } from 'node:child_process'
import { statSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startStack } from '../helpers/stack.js'

const run = promisify(execFile)

t.test('with sidecar.unixSockets the resource is a Unix socket named for PostgreSQL: psql -h <runtime dir> -p <port> works, no TCP port is bound', async (t) => {
  const stack = await startStack(t)
  const token = await stack.service('etl-nightly', 'etl')
  const sidecar = await stack.sidecar(token, { KEYWAY_SIDECAR_UNIX_SOCKETS: 'warehouse' })
  const socket = join(sidecar.runtimeDir, `.s.PGSQL.${stack.overridePort}`)
  const status = JSON.parse((await sidecar.run(['status', '--json'])).stdout) as { resources: { name: string; localAddress: string; state: string }[] }
  t.match(status.resources, [{ name: 'warehouse', localAddress: socket, state: 'bound' }])
  t.equal(statSync(sidecar.runtimeDir).mode & 0o777, 0o700, 'the runtime directory is private')
  t.ok(statSync(socket).isSocket())
  t.equal(statSync(socket).mode & 0o777, 0o600)

  const psql = await run('psql', ['-h', sidecar.runtimeDir, '-p', String(stack.overridePort), '-U', 'postgres', '-d', 'postgres', '-Atc', 'SELECT 6 * 7'], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  })
  t.equal(psql.stdout.trim(), '42', 'psql reached PostgreSQL through the socket')

  const tcp = await new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: stack.overridePort })
    s.once('connect', () => {
      s.destroy()
      resolve('connected')
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
  t.equal(tcp, 'ECONNREFUSED', 'the override port is not bound on 127.0.0.1')
})
