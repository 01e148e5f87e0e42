import { isIPv4, isIPv6 } from 'node:net'

/** A parsed `host:port`. IPv6 hosts are kept without brackets. */
export interface HostPort {
  readonly host: string
  readonly port: number
}

const HOSTNAME_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/
const DIGITS = /^\d{1,5}$/

function isHostname(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false
  if (/^[\d.]+$/.test(host)) return isIPv4(host)
  const labels = host.endsWith('.') ? host.slice(0, -1).split('.') : host.split('.')
  return labels.every((l) => HOSTNAME_LABEL.test(l))
}

/**
 * Parses `host:port` (`[::1]:5432` for IPv6): the one address parser of
 * Keyway, for resources, gateways and listeners. Returns a sentence that names
 * the fix when the text is not a valid address. `allowPortZero` accepts port 0
 * (listen on an ephemeral port).
 */
export function parseHostPort(text: string, allowPortZero = false): HostPort | string {
  const example = 'write it as host:port, e.g. db.internal:5432 or [::1]:5432'
  if (typeof text !== 'string') return `expected a string; ${example}`
  let host: string
  let portText: string
  if (text.startsWith('[')) {
    const end = text.indexOf(']')
    if (end < 0) return `address "${text}" has an unclosed "["; ${example}`
    host = text.slice(1, end)
    if (!isIPv6(host)) return `"${host}" in address "${text}" is not an IPv6 address; ${example}`
    if (text[end + 1] !== ':') return `address "${text}" has no port; ${example}`
    portText = text.slice(end + 2)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon < 0) return `address "${text}" has no port; ${example}`
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host.includes(':')) return `address "${text}" looks like an IPv6 address without brackets; put it in brackets: [${host}]:${portText}`
    if (!isHostname(host)) return `"${host}" in address "${text}" is not a valid host name or IPv4 address; ${example}`
  }
  const low = allowPortZero ? 0 : 1
  const port = DIGITS.test(portText) ? +portText : NaN
  if (!(port >= low && port <= 65535)) return `port "${portText}" in address "${text}" must be a number from ${low} to 65535`
  return { host, port }
}

/** Formats a HostPort back to text, bracketing IPv6. */
export function formatHostPort(addr: HostPort): string {
  return isIPv6(addr.host) ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`
}

/** True for addresses on the loopback interface (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
