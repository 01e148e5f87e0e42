import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto'

const N = 16384
const R = 8
const P = 1
const SALT_BYTES = 16
const KEY_BYTES = 32
/** Largest scrypt working memory a stored hash may ask for. */
const MAX_MEMORY = 256 * 1024 * 1024

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

/**
 * Hashes a password with scrypt (N=16384, r=8, p=1, 16-byte random salt,
 * 32-byte key) into `scrypt$N$r$p$saltB64$hashB64`.
 */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await scrypt(password, salt, KEY_BYTES, { N, r: R, p: P, maxmem: memoryFor(N, R, P) })
  return ['scrypt', N, R, P, salt.toString('base64'), hash.toString('base64')].join('$')
}

/**
 * Checks `password` against a hash from {@link hashPassword}, comparing in
 * constant time. A malformed stored hash (or parameters outside sane bounds,
 * which would let a policy file make logins arbitrarily expensive) gives false.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseStored(stored)
  if (parsed === undefined) return false
  const { n, r, p, salt, hash } = parsed
  let derived: Buffer
  try {
    derived = await scrypt(password, salt, hash.length, { N: n, r, p, maxmem: memoryFor(n, r, p) })
  } catch {
    return false
  }
  return timingSafeEqual(derived, hash)
}

interface Stored {
  n: number
  r: number
  p: number
  salt: Buffer
  hash: Buffer
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/

function parseStored(stored: unknown): Stored | undefined {
  if (typeof stored !== 'string') return undefined
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined
  const [, nText, rText, pText, saltText, hashText] = parts as [string, string, string, string, string, string]
  const n = int(nText)
  const r = int(rText)
  const p = int(pText)
  if (n === undefined || r === undefined || p === undefined) return undefined
  // Powers of two from 2^10 to 2^20, r up to 32, p up to 16: beyond is a typo or an attack.
  if (n < 1024 || n > 2 ** 20 || (n & (n - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) return undefined
  if (128 * n * r * p > MAX_MEMORY) return undefined
  if (!B64.test(saltText) || !B64.test(hashText)) return undefined
  const salt = Buffer.from(saltText, 'base64')
  const hash = Buffer.from(hashText, 'base64')
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined
  return { n, r, p, salt, hash }
}

function int(text: string): number | undefined {
  return /^[1-9][0-9]{0,8}$/.test(text) ? Number(text) : undefined
}

function memoryFor(n: number, r: number, p: number): number {
  // Node refuses when 128*N*r*p exceeds maxmem; leave headroom.
  return 128 * n * r * p + 2 * 1024 * 1024
}
