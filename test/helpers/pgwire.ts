/** A protocol 3 message: type byte, int32 length, body. */
export function message(type: string, body: Buffer | string = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body
  const out = Buffer.alloc(5 + b.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + b.length, 1)
  b.copy(out, 5)
  return out
}

/** A client's initial message: int32 length, int32 code, body. */
export function initial(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(8 + body.length)
  out.writeInt32BE(8 + body.length, 0)
  out.writeInt32BE(code, 4)
  body.copy(out, 8)
  return out
}

export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104
export const CANCEL_REQUEST = 80877102
export const PROTOCOL_3 = 196608

/** A StartupMessage for user postgres. */
export function startup(): Buffer {
  return initial(PROTOCOL_3, Buffer.from('user\0postgres\0\0'))
}

/** The fields of an ErrorResponse, by tag. */
export function parseErrorResponse(buf: Buffer): Record<string, string> {
  if (buf[0] !== 0x45) throw new Error(`not an ErrorResponse: ${buf[0]}`)
  const length = buf.readInt32BE(1)
  if (length !== buf.length - 1) throw new Error(`length ${length} for ${buf.length - 1} bytes`)
  const fields: Record<string, string> = {}
  let i = 5
  while (buf[i] !== 0) {
    const tag = String.fromCharCode(buf[i]!)
    const end = buf.indexOf(0, i + 1)
    fields[tag] = buf.subarray(i + 1, end).toString('utf8')
    i = end + 1
  }
  if (i !== buf.length - 1) throw new Error('trailing bytes')
  return fields
}
