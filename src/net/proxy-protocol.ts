import { BlockList, isIPv4, isIPv6 } from 'node:net'
import type { HostPort } from './address.js'

/** The 12 bytes every PROXY protocol v2 header starts with. */
const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const FIXED = 16

/** Largest PROXY v2 header accepted (addresses plus TLVs); a longer one is a handshake error. */
export const PROXY_HEADER_MAX_BYTES = 1_024

/** What {@link ProxyHeaderParser.push} found so far. */
export type ProxyHeaderResult =
  | { readonly state: 'need' }
  | { readonly state: 'error'; readonly message: string }
  /** `source` is the real client; undefined for a LOCAL header (the balancer's own health check). */
  | { readonly state: 'done'; readonly source: HostPort | undefined; readonly rest: Buffer }

/**
 * A strict parser of the binary PROXY protocol v2 header (haproxy.org
 * proxy-protocol.txt, section 2.2) that a TCP load balancer sends before
 * anything else: signature, version 2, command LOCAL or PROXY, TCP over IPv4
 * or IPv6, a length within {@link PROXY_HEADER_MAX_BYTES}, well-formed TLVs.
 * The text form (v1), UDP and Unix sockets are refused. Bytes after the
 * header are returned in `rest`, for the TLS handshake.
 */
export class ProxyHeaderParser {
  #buffered: Buffer = Buffer.alloc(0)
  readonly #max: number

  constructor(maxBytes = PROXY_HEADER_MAX_BYTES) {
    this.#max = maxBytes
  }

  /** Bytes held so far. */
  get buffered(): number {
    return this.#buffered.length
  }

  push(chunk: Buffer): ProxyHeaderResult {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk])
    const b = this.#buffered
    const sig = Math.min(b.length, SIGNATURE.length)
    if (!b.subarray(0, sig).equals(SIGNATURE.subarray(0, sig))) {
      return { state: 'error', message: 'the connection does not start with a PROXY protocol v2 header' }
    }
    if (b.length < FIXED) return { state: 'need' }
    const verCmd = b[12]!
    if (verCmd >> 4 !== 2) return { state: 'error', message: `PROXY header version ${verCmd >> 4}; only version 2 is accepted` }
    const command = verCmd & 0x0f
    if (command > 1) return { state: 'error', message: `PROXY header command ${command} is not LOCAL (0) or PROXY (1)` }
    const famProto = b[13]!
    const length = b.readUInt16BE(14)
    if (FIXED + length > this.#max) return { state: 'error', message: `PROXY header of ${FIXED + length} bytes exceeds the limit of ${this.#max}` }
    if (b.length < FIXED + length) return { state: 'need' }
    const body = b.subarray(FIXED, FIXED + length)
    const rest = b.subarray(FIXED + length)
    if (command === 0) return { state: 'done', source: undefined, rest }
    let source: HostPort
    let addrLen: number
    if (famProto === 0x11) {
      addrLen = 12
      if (length < addrLen) return { state: 'error', message: 'PROXY header too short for TCP over IPv4 addresses' }
      source = { host: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) }
    } else if (famProto === 0x21) {
      addrLen = 36
      if (length < addrLen) return { state: 'error', message: 'PROXY header too short for TCP over IPv6 addresses' }
      const groups: string[] = []
      for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16))
      source = { host: normalizeIPv6(groups.join(':')), port: body.readUInt16BE(32) }
    } else {
      return { state: 'error', message: `PROXY header family/transport 0x${famProto.toString(16).padStart(2, '0')} is not TCP over IPv4 or IPv6` }
    }
    // TLVs (type, 2-byte length, value) must fill the rest exactly.
    let at = addrLen
    while (at < length) {
      if (length - at < 3) return { state: 'error', message: 'PROXY header ends inside a TLV' }
      const tlvLen = body.readUInt16BE(at + 1)
      at += 3 + tlvLen
      if (at > length) return { state: 'error', message: 'PROXY header TLV runs past the header' }
    }
    return { state: 'done', source, rest }
  }
}

/** The canonical text of an IPv6 address; IPv4-mapped ones as plain IPv4. */
function normalizeIPv6(text: string): string {
  const url = new URL(`http://[${text}]/`)
  const host = url.hostname.slice(1, -1)
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host)
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16)
    const lo = parseInt(mapped[2]!, 16)
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return host
}

/**
 * A list of addresses and CIDR blocks (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`).
 * Returns a sentence naming the fix for the first entry that is neither.
 */
export function parseAddressList(entries: readonly string[]): AddressList | string {
  const list = new BlockList()
  for (const entry of entries) {
    const [addr, bits, extra] = entry.trim().split('/')
    const type = isIPv4(addr ?? '') ? 'ipv4' : isIPv6(addr ?? '') ? 'ipv6' : undefined
    if (type === undefined || extra !== undefined) return `"${entry}" is not an IP address or CIDR block; write e.g. 10.0.0.7 or 10.0.0.0/8`
    if (bits === undefined) {
      list.addAddress(addr!, type)
      continue
    }
    const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
    if (!(prefix >= 0 && prefix <= (type === 'ipv4' ? 32 : 128))) return `"${entry}" has a prefix length outside 0-${type === 'ipv4' ? 32 : 128}`
    list.addSubnet(addr!, prefix, type)
  }
  return new AddressList(list, entries.length)
}

/** Addresses and CIDR blocks: who may send a PROXY header. */
export class AddressList {
  readonly #list: BlockList
  /** Number of entries; 0 matches nothing. */
  readonly size: number

  constructor(list: BlockList, size: number) {
    this.#list = list
    this.size = size
  }

  /** True when `host` (IPv4, IPv6 or IPv4-mapped IPv6) is in the list. */
  has(host: string): boolean {
    if (this.size === 0) return false
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host)
    if (mapped) return this.#list.check(mapped[1]!, 'ipv4')
    if (isIPv4(host)) return this.#list.check(host, 'ipv4')
    if (isIPv6(host)) return this.#list.check(host, 'ipv6')
    return false
  }
}
