/**
 * The few PostgreSQL protocol messages a gateway login needs
 * (https://www.postgresql.org/docs/current/protocol-message-formats.html).
 */

/** Protocol 3.0, the version every supported server and client speaks. */
export const PROTOCOL_3_0 = 196608
/** Request codes sent in place of a protocol version. */
export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104
export const CANCEL_REQUEST = 80877102
/** The largest startup packet a server accepts (PostgreSQL's MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_LENGTH = 10_000
/** Login messages from a server are small; a bigger one is a broken or hostile server. */
export const MAX_LOGIN_MESSAGE_LENGTH = 1 << 20

/** Authentication request codes (the int32 after an 'R'). */
export const AUTH = { ok: 0, cleartext: 3, md5: 5, sasl: 10, saslContinue: 11, saslFinal: 12 } as const

/** A frontend startup: its protocol version and parameters in order. */
export interface StartupMessage {
  readonly version: number
  readonly params: ReadonlyArray<readonly [string, string]>
}

/** Parses the body of a StartupMessage (after its length), or returns why it is not one. */
export function parseStartup(body: Buffer): StartupMessage | string {
  const version = body.readInt32BE(0)
  const params: [string, string][] = []
  let at = 4
  for (;;) {
    const k = body.indexOf(0, at)
    if (k < 0) return 'the startup message is not NUL-terminated'
    if (k === at) break
    const v = body.indexOf(0, k + 1)
    if (v < 0) return 'a startup parameter has no value'
    params.push([body.toString('utf8', at, k), body.toString('utf8', k + 1, v)])
    at = v + 1
  }
  return { version, params }
}

/** Encodes a StartupMessage. */
export function encodeStartup(msg: StartupMessage): Buffer {
  const parts: Buffer[] = []
  for (const [k, v] of msg.params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'))
  parts.push(Buffer.from([0]))
  const body = Buffer.concat(parts)
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(msg.version, 4)
  return Buffer.concat([head, body])
}

/** An 8-byte request with a code in place of a version (SSLRequest). */
export function encodeRequest(code: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(code, 4)
  return b
}

/** A typed message: type byte, int32 length, body. */
export function encodeMessage(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length)
  b.write(type, 0, 'latin1')
  b.writeInt32BE(4 + body.length, 1)
  body.copy(b, 5)
  return b
}

/** PasswordMessage ('p') carrying a NUL-terminated password (cleartext or md5). */
export function encodePassword(password: string): Buffer {
  return encodeMessage('p', Buffer.from(`${password}\0`, 'utf8'))
}

/** SASLInitialResponse ('p'): the mechanism and the client-first-message. */
export function encodeSaslInitial(mechanism: string, data: string): Buffer {
  const mech = Buffer.from(`${mechanism}\0`, 'utf8')
  const d = Buffer.from(data, 'utf8')
  const len = Buffer.alloc(4)
  len.writeInt32BE(d.length, 0)
  return encodeMessage('p', Buffer.concat([mech, len, d]))
}

/** SASLResponse ('p'). */
export function encodeSaslResponse(data: string): Buffer {
  return encodeMessage('p', Buffer.from(data, 'utf8'))
}

/** The fields of an ErrorResponse or NoticeResponse body, by field type ('S', 'C', 'M', ...). */
export function parseFields(body: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let at = 0
  while (at < body.length && body[at] !== 0) {
    const type = String.fromCharCode(body[at]!)
    const end = body.indexOf(0, at + 1)
    if (end < 0) break
    out.set(type, body.toString('utf8', at + 1, end))
    at = end + 1
  }
  return out
}

/** The NUL-separated mechanism names of an AuthenticationSASL body (after the int32 code). */
export function parseMechanisms(body: Buffer): string[] {
  return body
    .toString('utf8', 4)
    .split('\0')
    .filter((m) => m.length > 0)
}
