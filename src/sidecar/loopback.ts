import { KeywayError } from '../errors.js'
import { isLoopback } from '../net/index.js'

/** The address every resource is bound on. */
export const LOOPBACK_HOST = '127.0.0.1'

/**
 * Throws `ERR_CONFIG_INVALID` unless `host` is on the loopback interface. The
 * sidecar's listeners hand out access that the gateway grants to the token,
 * so anything reachable from another machine would lend that token to it.
 *
 * @param what the setting, named in the message (e.g. `sidecar.control`)
 */
export function assertLoopback(host: string, what: string): void {
  if (!isLoopback(host)) {
    throw new KeywayError(
      'ERR_CONFIG_INVALID',
      `${what} must be a loopback address (127.0.0.1, ::1 or localhost), not "${host}": the sidecar never listens beyond this machine`,
      { detail: { host } },
    )
  }
}

/**
 * True when an HTTP `Host` header names a loopback host (or is absent). A
 * browser tricked by DNS rebinding sends the attacker's name here, so the
 * control API refuses anything else.
 */
export function isLoopbackHostHeader(header: string | undefined): boolean {
  if (header === undefined || header === '') return true
  let host = header
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    host = end < 0 ? host : host.slice(1, end)
  } else {
    const colon = host.lastIndexOf(':')
    if (colon >= 0) host = host.slice(0, colon)
  }
  return isLoopback(host.toLowerCase())
}
