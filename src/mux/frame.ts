/**
 * Frames of the multiplexed tunnel protocol (ALPN `keyway/2`, docs/protocol.md).
 *
 * Every frame is an 8-byte header, `type:u8 length:u24be stream:u32be`, then
 * `length` bytes of payload.
 */

/** ALPN protocol id of a multiplexed tunnel connection. */
export const ALPN_MUX = 'keyway/2'

/** Frame header size in bytes. */
export const FRAME_HEADER = 8

/** Frame types. */
export const FrameType = {
  /** Client → gateway: open stream `stream`; payload: a version-1 hello (resource and token). */
  OPEN: 1,
  /** Gateway → client: the stream is open; payload: JSON `{"session":"…"}`. */
  ACCEPT: 2,
  /** Either way: stream bytes. */
  DATA: 3,
  /** Either way: the sender will send no more DATA on the stream (TCP half-close). */
  FIN: 4,
  /** Either way: the stream is gone in both directions; payload: JSON `{"code","message"}` or empty. */
  RESET: 5,
  /** Either way: payload `u32be`, more bytes the sender of this frame can take on the stream. */
  WINDOW: 6,
  /** Gateway → client, stream 0: open no new streams on this connection; payload: JSON `{"code","message"}`. */
  GOAWAY: 7,
} as const

/** One of {@link FrameType}. */
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType]

/** Highest valid frame type. */
export const MAX_FRAME_TYPE = 7

/** Largest DATA payload a sender puts in one frame (bigger writes are split). */
export const MAX_DATA_PAYLOAD = 256 * 1024

/** Largest payload the u24 length field can carry. */
export const MAX_FRAME_PAYLOAD = 0xffffff

/**
 * Bytes a sender may have in flight on one stream in one direction before the
 * receiver returns credit with WINDOW. Both sides start with it. Measured:
 * 256 and 512 KiB stall bulk transfers (the kernel's socket buffers hold
 * much of the window), 1 MiB does not (bench/README.md).
 */
export const INITIAL_WINDOW = 1024 * 1024

/**
 * Writes a frame header into `target` at `offset`.
 */
export function writeHeader(target: Buffer, offset: number, type: FrameTypeValue, length: number, stream: number): void {
  target[offset] = type
  target[offset + 1] = (length >>> 16) & 0xff
  target[offset + 2] = (length >>> 8) & 0xff
  target[offset + 3] = length & 0xff
  target.writeUInt32BE(stream, offset + 4)
}

/** Encodes a whole frame (header and payload) into one buffer. */
export function encodeFrame(type: FrameTypeValue, stream: number, payload?: Buffer): Buffer {
  const length = payload === undefined ? 0 : payload.length
  const frame = Buffer.allocUnsafe(FRAME_HEADER + length)
  writeHeader(frame, 0, type, length, stream)
  if (payload !== undefined) payload.copy(frame, FRAME_HEADER)
  return frame
}

/** JSON payload of RESET and GOAWAY. */
export function encodeProblem(code: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ code, message: message.slice(0, 1000) }), 'utf8')
}

/** Reads a RESET or GOAWAY payload; tolerant of an empty or malformed one. */
export function decodeProblem(payload: Buffer): { code: string; message: string } {
  if (payload.length === 0) return { code: 'ERR_INTERNAL', message: 'no reason given' }
  try {
    const body = JSON.parse(payload.toString('utf8')) as { code?: unknown; message?: unknown }
    return { code: typeof body.code === 'string' ? body.code : 'ERR_INTERNAL', message: typeof body.message === 'string' ? body.message : '' }
  } catch {
    return { code: 'ERR_INTERNAL', message: 'malformed reason' }
  }
}
