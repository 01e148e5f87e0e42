import { readFile } from 'node:fs/promises'
import type { ClientConfig, PoolConfig } from 'pg'
import { connectionProblem } from '../config/index.js'
import { KeywayError } from '../errors.js'

/** The `postgres:` settings a store connects with. */
export interface PostgresSettings {
  /** `postgresql://user@host:port/db?sslmode=…` without a password; '' for the PG* environment variables alone. */
  readonly connection: string
  /** File holding the password (a mounted Secret); '' for PGPASSFILE / ~/.pgpass (or PGPASSWORD). */
  readonly passwordFile: string
  readonly poolSize: number
  readonly connectTimeout: number
}

/**
 * The node-postgres client configuration of `settings`. The password is read
 * from `passwordFile` on every new connection (a rotated Secret is picked
 * up); without one, node-postgres takes PGPASSWORD or the PGPASSFILE
 * (`~/.pgpass`) entry.
 *
 * @throws KeywayError ERR_CONFIG_INVALID when the connection string holds a password or is not a URL
 */
export function clientConfig(settings: PostgresSettings): ClientConfig {
  const problem = connectionProblem(settings.connection)
  if (problem !== undefined) {
    throw new KeywayError('ERR_CONFIG_INVALID', `postgres.connection ${problem}`, { detail: { key: 'postgres.connection' } })
  }
  const out: ClientConfig = { connectionTimeoutMillis: settings.connectTimeout, application_name: 'keyway' }
  if (settings.connection !== '') out.connectionString = settings.connection
  if (settings.passwordFile !== '') {
    const file = settings.passwordFile
    out.password = async () => {
      try {
        return (await readFile(file, 'utf8')).replace(/\r?\n$/, '')
      } catch (err) {
        throw new KeywayError('ERR_CONFIG_IO', `cannot read postgres.passwordFile ${file}: ${(err as Error).message}`, { cause: err })
      }
    }
  }
  return out
}

/** The pool configuration of `settings`. */
export function poolConfig(settings: PostgresSettings): PoolConfig {
  return { ...clientConfig(settings), max: settings.poolSize }
}
