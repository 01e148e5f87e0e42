import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { KeywayError } from '../errors.js'

const pbkdf2Async = promisify(pbkdf2)

/** The mechanism the gateway uses: plain SCRAM-SHA-256 (never -PLUS: no channel binding is claimed). */
export const SCRAM_SHA_256 = 'SCRAM-SHA-256'
/** GS2 header "n,,": the client does not support channel binding (RFC 5802 §7); base64 "biws". */
const GS2_HEADER = 'n,,'

/** One SCRAM-SHA-256 exchange as a client (RFC 5802, RFC 7677). */
export interface ScramClient {
  /** client-first-message, for SASLInitialResponse. */
  readonly clientFirst: string
  /**
   * client-final-message for the server-first-message; computes (or takes from
   * the cache) the salted password.
   */
  final(serverFirst: string): Promise<string>
  /** Checks the server-final-message (the server's proof that it knows the password). */
  verifyServerFinal(serverFinal: string): void
}

/**
 * Salted passwords by resource, salt and iteration count: PBKDF2 with 4096
 * iterations is the cost of a SCRAM login, and a server keeps one salt per
 * user, so a new connection reuses it. Keyed by the password's digest too,
 * so a rotated secret is salted afresh. Bounded.
 */
export class SaltedPasswordCache {
  readonly #max: number
  readonly #map = new Map<string, Buffer>()

  constructor(max = 256) {
    this.#max = max
  }

  get size(): number {
    return this.#map.size
  }

  /** The salted password, computed once per (scope, password, salt, iterations). */
  async get(scope: string, password: string, salt: Buffer, iterations: number): Promise<Buffer> {
    const key = `${scope}\0${createHash('sha256').update(password).digest('base64')}\0${salt.toString('base64')}\0${iterations}`
    const hit = this.#map.get(key)
    if (hit !== undefined) return hit
    const salted = await saltPassword(password, salt, iterations)
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!)
    this.#map.set(key, salted)
    return salted
  }
}

/** Hi() of RFC 5802: PBKDF2-HMAC-SHA-256 of the (SASLprep'd) password. */
export function saltPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Async(saslPrep(password), salt, iterations, 32, 'sha256')
}

// PostgreSQL SASLprep's a password when it can and uses it raw otherwise; ASCII passes unchanged,
// and NFKC is the normalization step of SASLprep for the rest.
function saslPrep(password: string): string {
  return /^[\x00-\x7f]*$/.test(password) ? password : password.normalize('NFKC')
}

/**
 * Starts a SCRAM-SHA-256 exchange. PostgreSQL takes the user from the
 * startup message, so `user` is empty there (RFC 7677's vector uses "user").
 * `salted` gives the salted password for (salt, iterations): the cache.
 */
export function scramClient(options: {
  password: string
  user?: string
  nonce?: string
  salted?: (salt: Buffer, iterations: number) => Promise<Buffer>
}): ScramClient {
  const nonce = options.nonce ?? randomBytes(18).toString('base64')
  const user = (options.user ?? '').replace(/=/g, '=3D').replace(/,/g, '=2C')
  const firstBare = `n=${user},r=${nonce}`
  let serverSignature: Buffer | undefined
  const fail = (why: string): never => {
    throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `SCRAM-SHA-256: ${why}`)
  }
  return {
    clientFirst: `${GS2_HEADER}${firstBare}`,
    async final(serverFirst) {
      const attrs = parseAttributes(serverFirst)
      const r = attrs.get('r')
      const s = attrs.get('s')
      const i = Number(attrs.get('i'))
      if (r === undefined || s === undefined || !Number.isInteger(i) || i < 1) return fail('the server-first-message is malformed')
      if (!r.startsWith(nonce) || r.length === nonce.length) return fail('the server nonce does not extend the client nonce')
      if (i > 1_000_000) return fail(`the server asks for ${i} iterations, more than the gateway allows (1000000)`)
      const salt = Buffer.from(s, 'base64')
      const salted = options.salted ? await options.salted(salt, i) : await saltPassword(options.password, salt, i)
      const clientKey = hmac(salted, 'Client Key')
      const storedKey = createHash('sha256').update(clientKey).digest()
      const withoutProof = `c=${Buffer.from(GS2_HEADER).toString('base64')},r=${r}`
      const authMessage = `${firstBare},${serverFirst},${withoutProof}`
      const signature = hmac(storedKey, authMessage)
      const proof = Buffer.alloc(clientKey.length)
      for (let k = 0; k < proof.length; k++) proof[k] = clientKey[k]! ^ signature[k]!
      serverSignature = hmac(hmac(salted, 'Server Key'), authMessage)
      return `${withoutProof},p=${proof.toString('base64')}`
    },
    verifyServerFinal(serverFinal) {
      const attrs = parseAttributes(serverFinal)
      const e = attrs.get('e')
      if (e !== undefined) fail(`the server reports ${e}`)
      const v = attrs.get('v')
      if (v === undefined || serverSignature === undefined) return fail('the server-final-message is malformed')
      const got = Buffer.from(v, 'base64')
      if (got.length !== serverSignature.length || !timingSafeEqual(got, serverSignature)) fail('the server signature does not verify: the server does not know the password')
    },
  }
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

function parseAttributes(message: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of message.split(',')) {
    const eq = part.indexOf('=')
    if (eq === 1) out.set(part[0]!, part.slice(2))
  }
  return out
}

/** The md5 password message of PostgreSQL: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex')
  return `md5${createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')}`
}
