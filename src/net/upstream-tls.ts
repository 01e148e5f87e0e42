import { isIP, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { KeywayError } from '../errors.js'

/** How a gateway speaks TLS to a resource's server on a connection it already holds. */
export interface UpstreamTlsOptions {
  /** `verify-full` checks the chain and the name; `require` encrypts without checking who answers (libpq's sslmode=require). */
  mode: 'require' | 'verify-full'
  /** The server's host name or address, as in the resource's address (an IP gets no SNI). */
  host: string
  /** PEM of the CA that signs the server's certificate (verify-full); else Node's default CAs. */
  ca?: string | undefined
}

/**
 * Starts TLS on `socket` towards a resource's server (after the protocol's
 * own request for it, where it has one). Rejects with
 * `ERR_UPSTREAM_LOGIN_FAILED` when the handshake fails; the TLS socket is
 * destroyed then.
 */
export function startUpstreamTls(socket: Socket, options: UpstreamTlsOptions): Promise<TLSSocket> {
  const verify = options.mode === 'verify-full'
  return new Promise<TLSSocket>((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      rejectUnauthorized: verify,
      ...(verify && options.ca !== undefined ? { ca: options.ca } : {}),
      ...(isIP(options.host) === 0 ? { servername: options.host } : {}),
    })
    const onError = (err: Error): void => {
      tls.destroy()
      reject(new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `TLS to the upstream failed: ${err.message}`, { cause: err }))
    }
    tls.once('error', onError)
    tls.once('secureConnect', () => {
      tls.removeListener('error', onError)
      resolve(tls)
    })
  })
}
