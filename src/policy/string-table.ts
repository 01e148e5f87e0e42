/** Strings decoded at once: a few KB, so one decode never holds the event loop. */
const CHUNK = 256

/**
 * Reads the string table of a `PackedPolicy` (UTF-8 bytes and the byte end
 * of each string). Decodes it a chunk of {@link CHUNK} strings at a time, the
 * first time one of them is asked for, and slices each string out of its
 * chunk's text; a chunk holding non-ASCII text (whose byte and character
 * offsets differ) decodes each of its strings on its own.
 */
export class StringTable {
  readonly #bytes: Uint8Array
  readonly #ends: Int32Array
  readonly #decoder = new TextDecoder('utf-8', { fatal: true })
  /** Decoded text of each chunk; null for a chunk of non-ASCII text. */
  readonly #chunks: (string | null | undefined)[] = []

  constructor(bytes: Uint8Array, ends: Int32Array) {
    this.#bytes = bytes
    this.#ends = ends
  }

  /** String `i`. */
  get(i: number): string {
    const ends = this.#ends
    const c = Math.floor(i / CHUNK)
    const chunkStart = c === 0 ? 0 : ends[c * CHUNK - 1]!
    let text = this.#chunks[c]
    if (text === undefined) {
      const chunkEnd = ends[Math.min(ends.length, (c + 1) * CHUNK) - 1]!
      const decoded = this.#decoder.decode(this.#bytes.subarray(chunkStart, chunkEnd))
      text = decoded.length === chunkEnd - chunkStart ? decoded : null
      this.#chunks[c] = text
    }
    const start = i === 0 ? 0 : ends[i - 1]!
    if (text === null) return this.#decoder.decode(this.#bytes.subarray(start, ends[i]!))
    return text.slice(start - chunkStart, ends[i]! - chunkStart)
  }
}
