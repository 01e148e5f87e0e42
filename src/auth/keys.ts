import { readFile } from 'node:fs/promises'
// jose loads on first use (`await import('jose')` below), not with this module: the sidecar never needs it (issue 22).
import type { CryptoKey, JWK } from 'jose'
import { KeywayError } from '../errors.js'

/** The one JWS algorithm Keyway signs and accepts: Ed25519 signatures. */
export const SIGNING_ALG = 'EdDSA'

/** A freshly generated signing key pair, as JWKs ready to be written to disk. */
export interface GeneratedSigningKey {
  /** Private JWK (`kty`, `crv`, `x`, `d`, `kid`, `alg`, `use`). Keep secret. */
  privateJwk: JWK
  /** Public JWK (no `d`), to publish in the verifiers' JWKS. */
  publicJwk: JWK
  /** RFC 7638 sha256 thumbprint of the public key. */
  kid: string
}

/** A private key ready to sign tokens with {@link issueToken}. */
export interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
}

/**
 * The verification keys, by `kid`. Purely local: looking up an unknown `kid`
 * returns undefined and never touches a file or the network.
 */
export interface KeySet {
  /** Every kid in the set, in file order. */
  readonly kids: readonly string[]
  /** The public key for `kid`, or undefined. */
  get(kid: string): CryptoKey | undefined
}

/** A JSON Web Key Set document: `{ "keys": [...] }`. */
export interface Jwks {
  keys: JWK[]
}

/**
 * Generates an Ed25519 (EdDSA) signing key whose kid is its RFC 7638 thumbprint.
 */
export async function generateSigningKey(): Promise<GeneratedSigningKey> {
  const { calculateJwkThumbprint, exportJWK, generateKeyPair } = await import('jose')
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { crv: 'Ed25519', extractable: true })
  const pub = await exportJWK(publicKey)
  const priv = await exportJWK(privateKey)
  const kid = await calculateJwkThumbprint(pub, 'sha256')
  const publicJwk: JWK = { kty: 'OKP', crv: 'Ed25519', x: pub.x!, kid, alg: SIGNING_ALG, use: 'sig' }
  const privateJwk: JWK = { ...publicJwk, d: priv.d! }
  return { privateJwk, publicJwk, kid }
}

/**
 * Reads a private JWK JSON file (Ed25519, with `kid` and `alg: "EdDSA"`).
 *
 * @throws KeywayError ERR_CONFIG_IO when the file cannot be read,
 *   ERR_CONFIG_INVALID when it is not such a key.
 */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  return importSigningKey(parseJson(await readText(path), path), path)
}

/**
 * Imports a private Ed25519 JWK (as produced by {@link generateSigningKey}),
 * checking by a sign/verify round trip that `d` matches `x`.
 *
 * @throws KeywayError ERR_CONFIG_INVALID
 */
export async function importSigningKey(jwk: unknown, source = 'signing key'): Promise<SigningKey> {
  const key = checkOkp(jwk, source, 'key')
  if (typeof key.d !== 'string' || key.d === '') throw invalid(source, 'key has no private part "d"')
  const { CompactSign, compactVerify, importJWK } = await import('jose')
  let privateKey: CryptoKey
  let publicKey: CryptoKey
  try {
    privateKey = (await importJWK({ kty: 'OKP', crv: 'Ed25519', x: key.x, d: key.d }, SIGNING_ALG)) as CryptoKey
    publicKey = (await importJWK({ kty: 'OKP', crv: 'Ed25519', x: key.x }, SIGNING_ALG)) as CryptoKey
  } catch (cause) {
    throw invalid(source, 'key material cannot be imported', cause)
  }
  // A private part that does not match the public part would sign tokens nobody can verify.
  try {
    const probe = await new CompactSign(new Uint8Array([1])).setProtectedHeader({ alg: SIGNING_ALG }).sign(privateKey)
    await compactVerify(probe, publicKey, { algorithms: [SIGNING_ALG] })
  } catch (cause) {
    throw invalid(source, 'private part "d" does not match public part "x"', cause)
  }
  return { kid: key.kid, privateKey }
}

/**
 * Reads a JWKS file `{ "keys": [...] }` of public Ed25519 keys. During key
 * rotation it holds several keys; each needs a distinct `kid`.
 *
 * @throws KeywayError ERR_CONFIG_IO when the file cannot be read,
 *   ERR_CONFIG_INVALID when it is not such a key set.
 */
export async function loadKeySet(path: string): Promise<KeySet> {
  return createKeySet(parseJson(await readText(path), path), path)
}

/**
 * Builds a {@link KeySet} from an in-memory JWKS document. Private keys (with
 * `d`) are refused: a verification key set is meant to be handed around.
 *
 * @throws KeywayError ERR_CONFIG_INVALID
 */
export async function createKeySet(jwks: unknown, source = 'key set'): Promise<KeySet> {
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray((jwks as { keys?: unknown }).keys)) {
    throw invalid(source, 'expected a JSON object with a "keys" array')
  }
  const list = (jwks as { keys: unknown[] }).keys
  if (list.length === 0) throw invalid(source, '"keys" is empty')
  const { importJWK } = await import('jose')
  const byKid = new Map<string, CryptoKey>()
  for (const [i, entry] of list.entries()) {
    const where = `keys[${i}]`
    const key = checkOkp(entry, source, where)
    if (key.d !== undefined) throw invalid(source, `${where} is a private key; publish only public keys`)
    if (byKid.has(key.kid)) throw invalid(source, `${where} repeats kid ${JSON.stringify(key.kid)}`)
    try {
      byKid.set(key.kid, (await importJWK({ kty: 'OKP', crv: 'Ed25519', x: key.x }, SIGNING_ALG)) as CryptoKey)
    } catch (cause) {
      throw invalid(source, `${where} cannot be imported`, cause)
    }
  }
  const kids = Object.freeze([...byKid.keys()])
  return Object.freeze({ kids, get: (kid: string) => byKid.get(kid) })
}

/** The public JWK of a private one (drops `d`), e.g. to build a JWKS. */
export function publicJwkOf(jwk: JWK): JWK {
  const { d: _d, ...rest } = jwk
  return rest
}

interface OkpFields {
  kid: string
  x: string
  d: unknown
}

function checkOkp(value: unknown, source: string, where: string): OkpFields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(source, `${where} is not a JSON object`)
  const k = value as Record<string, unknown>
  if (k.kty !== 'OKP' || k.crv !== 'Ed25519') throw invalid(source, `${where} must be an Ed25519 key (kty "OKP", crv "Ed25519")`)
  if (typeof k.x !== 'string' || k.x === '') throw invalid(source, `${where} has no public part "x"`)
  if (typeof k.kid !== 'string' || k.kid === '') throw invalid(source, `${where} has no "kid"`)
  if (k.alg !== SIGNING_ALG) throw invalid(source, `${where} must have "alg": "${SIGNING_ALG}"`)
  if (k.use !== undefined && k.use !== 'sig') throw invalid(source, `${where} has "use" other than "sig"`)
  return { kid: k.kid, x: k.x, d: k.d }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    throw new KeywayError('ERR_CONFIG_IO', `cannot read key file ${path}${code ? ` (${code})` : ''}`, { cause, detail: { path } })
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw invalid(path, 'not valid JSON', cause)
  }
}

function invalid(source: string, what: string, cause?: unknown): KeywayError {
  return new KeywayError('ERR_CONFIG_INVALID', `${source}: ${what}`, { cause, detail: { source } })
}
