/** The PROXY protocol v2 signature. */
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

/** A PROXY v2 header: TCP over IPv4 unless `family` says otherwise. */
export function proxyV2(source: { host: string; port: number }, options: { command?: number; family?: number; tlv?: Buffer; length?: number } = {}): Buffer {
  const v6 = source.host.includes(':')
  let addrs: Buffer
  if (v6) {
    addrs = Buffer.alloc(36)
    const [head = '', tail] = source.host.split('::')
    const left = head === '' ? [] : head.split(':')
    const right = tail === undefined || tail === '' ? [] : tail.split(':')
    const full = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    full.forEach((g, i) => addrs.writeUInt16BE(parseInt(g, 16), i * 2))
    addrs.writeUInt16BE(source.port, 32)
    addrs.writeUInt16BE(7443, 34)
  } else {
    addrs = Buffer.alloc(12)
    Buffer.from(source.host.split('.').map(Number)).copy(addrs, 0)
    Buffer.from([127, 0, 0, 1]).copy(addrs, 4)
    addrs.writeUInt16BE(source.port, 8)
    addrs.writeUInt16BE(7443, 10)
  }
  const body = Buffer.concat([addrs, options.tlv ?? Buffer.alloc(0)])
  const head = Buffer.alloc(4)
  head[0] = 0x20 | (options.command ?? 1)
  head[1] = options.family ?? (v6 ? 0x21 : 0x11)
  head.writeUInt16BE(options.length ?? body.length, 2)
  return Buffer.concat([SIG, head, body])
}
