import type { ListenOptions, Server } from 'node:net'
import { KeywayError, type ErrorCode } from '../errors.js'
import { formatHostPort } from './address.js'

/** How {@link listenOn} words its errors; `where` is `host:port` (IPv6 in brackets) or the socket path. */
export interface ListenErrors {
  /** The message when the address is taken (`EADDRINUSE`): the error is `ERR_PORT_IN_USE`. */
  inUse: (where: string) => string
  /** The message for any other listen error (`EACCES`, `EADDRNOTAVAIL`, a missing folder...). */
  failed: (where: string, err: NodeJS.ErrnoException) => string
  /** The code of any other listen error; `ERR_CONFIG_INVALID` unless said (the address comes from a setting). */
  failedCode?: ErrorCode
  /** Detail of both errors; the other error adds the system's `code`. */
  detail?: Record<string, unknown>
}

/** Formats where a listener binds: `host:port`, or the Unix socket path. */
export function formatListenAddress(options: ListenOptions): string {
  if (options.path !== undefined) return options.path
  return formatHostPort({ host: options.host ?? '::', port: options.port ?? 0 })
}

/**
 * Listens, or rejects with `ERR_PORT_IN_USE` when the address is taken and
 * with {@link ListenErrors.failedCode} for any other listen error. Serves TCP
 * (`host`, `port`) and Unix-socket (`path`) listeners alike. The server's
 * error listener is removed once listening: a later error is the caller's.
 */
export async function listenOn(server: Server, options: ListenOptions, errors: ListenErrors): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const where = formatListenAddress(options)
      reject(
        err.code === 'EADDRINUSE'
          ? new KeywayError('ERR_PORT_IN_USE', errors.inUse(where), { cause: err, ...(errors.detail ? { detail: errors.detail } : {}) })
          : new KeywayError(errors.failedCode ?? 'ERR_CONFIG_INVALID', errors.failed(where, err), {
              cause: err,
              ...(errors.detail ? { detail: { ...errors.detail, code: err.code } } : {}),
            }),
      )
    }
    server.once('error', onError)
    server.listen(options, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
