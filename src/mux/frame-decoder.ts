import { FRAME_HEADER, FrameType, MAX_DATA_PAYLOAD, MAX_FRAME_PAYLOAD, MAX_FRAME_TYPE } from './frame.js'

/**
 * What a {@link FrameDecoder} hands its owner. Every method may stop the
 * decoder by returning false (the owner failed the connection): nothing more
 * of the current chunk is read.
 */
export interface FrameSink {
  /** A DATA frame of `size` payload bytes begins on `stream`. */
  dataStart(stream: number, size: number): boolean
  /**
   * A piece of the current DATA frame's payload. `lent`: the piece is a view
   * of a buffer the caller reuses, valid only during the call.
   */
  data(piece: Buffer, lent: boolean): boolean
  /**
   * A whole control frame (any type but DATA). `payload` is undefined when it
   * was an oversized OPEN the decoder skipped (`size` bytes).
   */
  control(type: number, stream: number, payload: Buffer | undefined, size: number): boolean
  /** A frame broke a rule of the framing; the decoder reads nothing more. */
  violation(message: string): void
}

/** Limits of {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest OPEN, ACCEPT, RESET, WINDOW or GOAWAY payload accepted. */
  maxControlPayload: number
  /**
   * OPEN frames up to this size over `maxControlPayload` are skipped and
   * reported with an undefined payload (the receiver refuses that stream
   * alone); 0 makes any oversized control frame a violation.
   */
  maxSkippedOpen: number
}

const EMPTY = Buffer.alloc(0)

/**
 * The framing of docs/protocol.md, "Multiplexed tunnels", read incrementally:
 * chunks of any size in, whole control frames and DATA payload pieces out.
 * Pure: no socket, no timer, no stream state (which stream ids exist and
 * what a frame means for them is {@link MuxConnection}'s protocol). DATA
 * payloads are never copied: each piece is a view of the chunk it came in.
 */
export class FrameDecoder {
  readonly #sink: FrameSink
  readonly #maxControl: number
  readonly #maxSkippedOpen: number
  readonly #header = Buffer.allocUnsafe(FRAME_HEADER)
  #headerFill = 0
  #type = 0
  #stream = 0
  #size = 0
  #remaining = 0
  #inPayload = false
  #control: Buffer | undefined
  #controlFill = 0
  #stopped = false

  constructor(sink: FrameSink, options: FrameDecoderOptions) {
    this.#sink = sink
    this.#maxControl = options.maxControlPayload
    this.#maxSkippedOpen = options.maxSkippedOpen
  }

  /** True once a violation or the sink stopped the decoder. */
  get stopped(): boolean {
    return this.#stopped
  }

  /** Stops the decoder: later chunks are ignored. */
  stop(): void {
    this.#stopped = true
  }

  /** Reads `chunk`. `lent`: it is a view of a reused buffer, valid only during the call. */
  push(chunk: Buffer, lent: boolean): void {
    let offset = 0
    const length = chunk.length
    while (offset < length && !this.#stopped) {
      if (!this.#inPayload) {
        let header: Buffer
        let at: number
        if (this.#headerFill === 0 && length - offset >= FRAME_HEADER) {
          header = chunk
          at = offset
          offset += FRAME_HEADER
        } else {
          const n = Math.min(FRAME_HEADER - this.#headerFill, length - offset)
          chunk.copy(this.#header, this.#headerFill, offset, offset + n)
          this.#headerFill += n
          offset += n
          if (this.#headerFill < FRAME_HEADER) return
          this.#headerFill = 0
          header = this.#header
          at = 0
        }
        const type = header[at]!
        const size = (header[at + 1]! << 16) | (header[at + 2]! << 8) | header[at + 3]!
        const id = header.readUInt32BE(at + 4)
        this.#startFrame(type, size, id)
        continue
      }
      const n = Math.min(this.#remaining, length - offset)
      if (this.#type === FrameType.DATA) {
        if (!this.#sink.data(chunk.subarray(offset, offset + n), lent)) return void (this.#stopped = true)
      } else if (this.#control !== undefined) {
        chunk.copy(this.#control, this.#controlFill, offset, offset + n)
        this.#controlFill += n
      }
      offset += n
      this.#remaining -= n
      if (this.#remaining === 0) {
        this.#inPayload = false
        if (this.#type !== FrameType.DATA) {
          const payload = this.#control
          this.#control = undefined
          if (!this.#sink.control(this.#type, this.#stream, payload, this.#size)) this.#stopped = true
        }
      }
    }
  }

  #startFrame(type: number, size: number, id: number): void {
    if (type < 1 || type > MAX_FRAME_TYPE) return this.#violation(`unknown frame type ${type}`)
    if (size > MAX_FRAME_PAYLOAD) return this.#violation('frame too large')
    if ((type === FrameType.GOAWAY) !== (id === 0)) return this.#violation(type === FrameType.GOAWAY ? 'GOAWAY on a stream' : 'stream id 0')
    this.#type = type
    this.#stream = id
    this.#size = size
    if (type === FrameType.DATA) {
      // Refused for its size before any credit is counted: a peer cannot make the receiver take it in first.
      if (size > MAX_DATA_PAYLOAD) return this.#violation(`DATA frame of ${size} bytes exceeds the maximum of ${MAX_DATA_PAYLOAD}`)
      if (!this.#sink.dataStart(id, size)) return void (this.#stopped = true)
      if (size === 0) return
      this.#remaining = size
      this.#inPayload = true
      return
    }
    if (size > this.#maxControl) {
      // An OPEN with a long token is a refusal for that stream alone, as a keyway/1 hello would be.
      if (type !== FrameType.OPEN || size > this.#maxSkippedOpen) return this.#violation(`control frame of ${size} bytes exceeds ${this.#maxControl}`)
      this.#control = undefined
      this.#remaining = size
      this.#inPayload = true
      return
    }
    if (size === 0) {
      if (!this.#sink.control(type, id, EMPTY, 0)) this.#stopped = true
      return
    }
    this.#control = Buffer.allocUnsafe(size)
    this.#controlFill = 0
    this.#remaining = size
    this.#inPayload = true
  }

  #violation(message: string): void {
    this.#stopped = true
    this.#sink.violation(message)
  }
}
