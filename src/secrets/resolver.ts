import { readFile } from 'node:fs/promises'
import type { Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import type { ResourceCredential } from '../policy/index.js'

/** A resource's secret as read on this gateway: never logged, never sent to a sidecar. */
export interface UpstreamSecret {
  /** Undefined for a redis resource whose default user logs in with the password alone. */
  readonly username: string | undefined
  readonly password: string
  /** PEM of `upstreamCa`, when the resource names one. */
  readonly ca: string | undefined
}

/** Options of {@link SecretResolver}. */
export interface SecretResolverOptions {
  readonly clock: Clock
  /** The gateway's environment (for `passwordEnv`). Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv
  /** How long a secret read stays good before it is read again. Default 2000 ms. */
  readonly ttlMs?: number
}

interface Entry {
  readonly key: string
  readonly at: number
  readonly value: Promise<UpstreamSecret>
}

/**
 * Reads the secrets that resources' credentials point to (a file, such as a
 * mounted Kubernetes Secret, or an environment variable of the gateway).
 * A read stays good for a couple of seconds, so a burst of connections costs
 * one read while a rotated Secret or a fixed file is seen at once; a failed
 * read is never kept. A secret that cannot be read fails only its resource,
 * with ERR_CREDENTIAL_UNAVAILABLE naming the file or variable (never the secret).
 */
export class SecretResolver {
  readonly #clock: Clock
  readonly #env: NodeJS.ProcessEnv
  readonly #ttlMs: number
  readonly #cache = new Map<string, Entry>()

  constructor(options: SecretResolverOptions) {
    this.#clock = options.clock
    this.#env = options.env ?? process.env
    this.#ttlMs = options.ttlMs ?? 2_000
  }

  /**
   * The credential of `resource` as it reads now.
   *
   * @throws KeywayError ERR_CREDENTIAL_UNAVAILABLE
   */
  resolve(resource: string, credential: ResourceCredential): Promise<UpstreamSecret> {
    // The reference is part of the key: a reload that points elsewhere is read afresh.
    const key = JSON.stringify([credential.username, credential.secret, credential.upstreamCa ?? null])
    const now = this.#clock.now()
    const hit = this.#cache.get(resource)
    if (hit !== undefined && hit.key === key && now - hit.at < this.#ttlMs) return hit.value
    const value = this.#read(resource, credential)
    this.#cache.set(resource, { key, at: now, value })
    value.catch(() => {
      if (this.#cache.get(resource)?.value === value) this.#cache.delete(resource)
    })
    return value
  }

  /**
   * Forgets the secret read for `resource`: after the upstream refused a
   * login with it, the next login reads it again (a fixed file is seen at
   * once rather than after the reuse period).
   */
  forget(resource: string): void {
    this.#cache.delete(resource)
  }

  /** Forgets every secret read (after a policy reload: secrets are re-read). */
  clear(): void {
    this.#cache.clear()
  }

  async #read(resource: string, credential: ResourceCredential): Promise<UpstreamSecret> {
    let password: string
    if ('file' in credential.secret) {
      const file = credential.secret.file
      password = await readSecretFile(file, `resource "${resource}": password file ${file}`)
    } else {
      const name = credential.secret.env
      const v = this.#env[name]
      if (v === undefined || v === '') {
        throw new KeywayError('ERR_CREDENTIAL_UNAVAILABLE', `resource "${resource}": environment variable ${name} is not set on this gateway`, { detail: { resource, env: name } })
      }
      password = v
    }
    const ca = credential.upstreamCa === undefined ? undefined : await readSecretFile(credential.upstreamCa, `resource "${resource}": upstream CA ${credential.upstreamCa}`, false)
    return Object.freeze({ username: credential.username, password, ca })
  }
}

async function readSecretFile(file: string, what: string, trim = true): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO'
    throw new KeywayError('ERR_CREDENTIAL_UNAVAILABLE', `${what} cannot be read on this gateway (${code})`, { detail: { file, errno: code } })
  }
  // A Secret written with `echo` ends in a newline that is not part of the password.
  const value = trim ? text.replace(/\r?\n$/, '') : text
  if (value.length === 0) throw new KeywayError('ERR_CREDENTIAL_UNAVAILABLE', `${what} is empty`, { detail: { file } })
  return value
}
