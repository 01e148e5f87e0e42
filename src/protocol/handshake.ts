import { KeywayError, type ErrorCode } from '../errors.js'

/** ALPN protocol id of a Keyway tunnel (version 1). */
export const ALPN_TUNNEL = 'keyway/1'
/** ALPN protocol id of the gateway's HTTP API on the same port. */
export const ALPN_HTTP = 'http/1.1'

/** Wire version carried in every frame. */
export const PROTOCOL_VERSION = 1

const MAGIC0 = 0x4b // K
const MAGIC1 = 0x57 // W
const MAGIC2 = 0x59 // Y
const HELLO_HEADER = 8
const REPLY_HEADER = 7

/** Reply status byte. */
export const STATUS_OK = 0
export const STATUS_ERROR = 1

/** What a sidecar asks for when it opens a tunnel. */
export interface Hello {
  readonly token: string
  readonly resource: string
}

/** The gateway's answer to a {@link Hello}. */
export type Reply =
  | { readonly ok: true; readonly session: string }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string }

/**
 * Encodes a hello frame: `"KWY" ver:u8 flags:u8 resourceLen:u8 tokenLen:u16be resource token`.
 * See docs/protocol.md.
 */
export function encodeHello(hello: Hello): Buffer {
  const resource = Buffer.from(hello.resource, 'utf8')
  const tokenLen = Buffer.byteLength(hello.token, 'latin1')
  if (resource.length < 1 || resource.length > 255) throw new KeywayError('ERR_HANDSHAKE_MALFORMED', 'resource name must be 1-255 bytes')
  if (tokenLen < 1 || tokenLen > 0xffff) throw new KeywayError('ERR_HANDSHAKE_MALFORMED', 'token must be 1-65535 bytes')
  const frame = Buffer.allocUnsafe(HELLO_HEADER + resource.length + tokenLen)
  frame[0] = MAGIC0
  frame[1] = MAGIC1
  frame[2] = MAGIC2
  frame[3] = PROTOCOL_VERSION
  frame[4] = 0
  frame[5] = resource.length
  frame.writeUInt16BE(tokenLen, 6)
  resource.copy(frame, HELLO_HEADER)
  frame.write(hello.token, HELLO_HEADER + resource.length, 'latin1')
  return frame
}

/** Result of feeding bytes to a frame parser. */
export type ParseResult<T> =
  | { readonly state: 'need' }
  | { readonly state: 'done'; readonly value: T; readonly rest: Buffer }
  | { readonly state: 'error'; readonly error: KeywayError }

const NEED: ParseResult<never> = Object.freeze({ state: 'need' })

function fail(code: ErrorCode, message: string): ParseResult<never> {
  return { state: 'error', error: new KeywayError(code, message) }
}

function checkPrefix(buf: Buffer): ParseResult<never> | undefined {
  // Reject on the first wrong byte so garbage is refused without waiting.
  if (buf.length > 0 && buf[0] !== MAGIC0) return fail('ERR_HANDSHAKE_MALFORMED', 'not a Keyway handshake (bad magic)')
  if (buf.length > 1 && buf[1] !== MAGIC1) return fail('ERR_HANDSHAKE_MALFORMED', 'not a Keyway handshake (bad magic)')
  if (buf.length > 2 && buf[2] !== MAGIC2) return fail('ERR_HANDSHAKE_MALFORMED', 'not a Keyway handshake (bad magic)')
  if (buf.length > 3 && buf[3] !== PROTOCOL_VERSION) return fail('ERR_HANDSHAKE_VERSION', `unsupported protocol version ${buf[3]}; this gateway speaks ${PROTOCOL_VERSION}`)
  return undefined
}

/**
 * Incremental hello parser for the gateway. Feed it every chunk until it says
 * `done` (with any bytes after the frame in `rest`) or `error`. Never buffers
 * more than `maxBytes`.
 */
export class HelloParser {
  readonly #maxBytes: number
  // Chunks are kept apart and joined once: a peer sending one byte per TLS
  // record must not cost a copy of everything so far per byte.
  #chunks: Buffer[] = []
  #length = 0
  #header: Buffer | undefined

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes
  }

  /** Bytes buffered so far. */
  get buffered(): number {
    return this.#length
  }

  push(chunk: Buffer): ParseResult<Hello> {
    this.#chunks.push(chunk)
    this.#length += chunk.length
    if (this.#header === undefined) {
      const head = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.#length)
      if (this.#chunks.length > 1) this.#chunks = [head]
      const bad = checkPrefix(head)
      if (bad) return bad
      if (head.length < HELLO_HEADER) return this.#length > this.#maxBytes ? tooLarge(this.#maxBytes) : NEED
      if (head[4] !== 0) return fail('ERR_HANDSHAKE_MALFORMED', 'reserved flags must be 0')
      const resourceLen = head[5]!
      const tokenLen = head.readUInt16BE(6)
      const total = HELLO_HEADER + resourceLen + tokenLen
      if (total > this.#maxBytes) return fail('ERR_HANDSHAKE_TOO_LARGE', `handshake of ${total} bytes exceeds the limit of ${this.#maxBytes}`)
      if (resourceLen === 0 || tokenLen === 0) return fail('ERR_HANDSHAKE_MALFORMED', 'empty resource or token')
      this.#header = head.subarray(0, HELLO_HEADER)
    }
    const header = this.#header
    const resourceLen = header[5]!
    const total = HELLO_HEADER + resourceLen + header.readUInt16BE(6)
    if (this.#length < total) return NEED
    const buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length)
    this.#chunks = []
    this.#length = 0
    this.#header = undefined
    const resource = buf.toString('utf8', HELLO_HEADER, HELLO_HEADER + resourceLen)
    const token = buf.toString('latin1', HELLO_HEADER + resourceLen, total)
    return { state: 'done', value: { resource, token }, rest: buf.subarray(total) }
  }
}

function tooLarge(maxBytes: number): ParseResult<never> {
  return fail('ERR_HANDSHAKE_TOO_LARGE', `handshake exceeds the limit of ${maxBytes} bytes`)
}

/** Encodes a reply frame: `"KWY" ver:u8 status:u8 len:u16be body(JSON)`. */
export function encodeReply(reply: Reply): Buffer {
  const body = Buffer.from(JSON.stringify(reply.ok ? { session: reply.session } : { code: reply.code, message: reply.message.slice(0, 1000) }), 'utf8')
  const frame = Buffer.allocUnsafe(REPLY_HEADER + body.length)
  frame[0] = MAGIC0
  frame[1] = MAGIC1
  frame[2] = MAGIC2
  frame[3] = PROTOCOL_VERSION
  frame[4] = reply.ok ? STATUS_OK : STATUS_ERROR
  frame.writeUInt16BE(body.length, 5)
  body.copy(frame, REPLY_HEADER)
  return frame
}

/** Incremental reply parser for the sidecar. */
export class ReplyParser {
  #buf: Buffer = Buffer.alloc(0)

  push(chunk: Buffer): ParseResult<Reply> {
    const buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    const bad = checkPrefix(buf)
    if (bad) return bad
    if (buf.length >= REPLY_HEADER) {
      const total = REPLY_HEADER + buf.readUInt16BE(5)
      if (buf.length >= total) {
        let body: { session?: unknown; code?: unknown; message?: unknown }
        try {
          body = JSON.parse(buf.toString('utf8', REPLY_HEADER, total)) as typeof body
        } catch {
          return fail('ERR_HANDSHAKE_MALFORMED', 'reply body is not JSON')
        }
        const rest = buf.subarray(total)
        this.#buf = Buffer.alloc(0)
        if (buf[4] === STATUS_OK) return { state: 'done', value: { ok: true, session: String(body.session ?? '') }, rest }
        return {
          state: 'done',
          value: { ok: false, code: String(body.code ?? 'ERR_INTERNAL') as ErrorCode, message: String(body.message ?? '') },
          rest,
        }
      }
    }
    this.#buf = buf === chunk ? Buffer.from(chunk) : buf
    return NEED
  }
}
