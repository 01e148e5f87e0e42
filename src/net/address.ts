import { isIP } from 'node:net'

/** A parsed `host:port`. IPv6 hosts are kept without brackets. */
export interface HostPort {
  readonly host: string
  readonly port: number
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/

/**
 * Parses `host:port` (`[::1]:5432` for IPv6). Returns a reason string when the
 * text is not a valid address, so callers can name the fix.
 * `allowPortZero` accepts port 0 (listen on an ephemeral port).
 */
export function parseHostPort(text: string, allowPortZero = false): HostPort | string {
  if (typeof text !== 'string') return 'expected a string "host:port"'
  let host: string
  let portText: string
  if (text.startsWith('[')) {
    const end = text.indexOf(']')
    if (end < 0 || text[end + 1] !== ':') return `"${text}" is not host:port (IPv6 as [::1]:5432)`
    host = text.slice(1, end)
    portText = text.slice(end + 2)
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`
  } else {
    const colon = text.lastIndexOf(':')
    if (colon <= 0) return `"${text}" is not host:port, e.g. 127.0.0.1:5432`
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host.includes(':')) return `"${text}": write IPv6 addresses in brackets, e.g. [::1]:5432`
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return `"${host}" is not a valid host name or IP address`
  }
  if (!/^\d{1,5}$/.test(portText)) return `"${portText}" is not a port number`
  const port = Number(portText)
  if (port > 65535 || (port === 0 && !allowPortZero)) return `port ${port} is outside ${allowPortZero ? 0 : 1}-65535`
  return { host, port }
}

/** Formats a HostPort back to text, bracketing IPv6. */
export function formatHostPort(addr: HostPort): string {
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`
}

/** True for addresses on the loopback interface (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
