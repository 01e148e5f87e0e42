import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { KeyObject, randomBytes, webcrypto } from 'node:crypto'
import { isIP } from 'node:net'
import { KeywayError } from '../errors.js'

/** Options of {@link createDevPki}. */
export interface DevPkiOptions {
  /** Names the server certificate is valid for; IP literals become IP SANs, the rest DNS SANs. The first is the CN. */
  hosts: string[]
  /** Validity in days from `now`. Default 365. */
  days?: number
  /** Epoch ms the validity starts from. Default the current time. */
  now?: number
}

/** A development CA and a server certificate it signed, all PEM. */
export interface DevPki {
  caCertPem: string
  /** PKCS#8. */
  caKeyPem: string
  certPem: string
  /** PKCS#8. */
  keyPem: string
}

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const
const DAY = 86_400_000
/** Tolerates a peer whose clock is a little behind. */
const BACKDATE = 3_600_000
const DNS_NAME = /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * Creates a throwaway PKI for development and tests: an ECDSA P-256 CA
 * (basicConstraints CA, keyCertSign) and a P-256 server certificate it signed,
 * with the hosts as SANs and the serverAuth extended key usage. Give clients
 * `caCertPem` as their trust anchor.
 *
 * @throws KeywayError ERR_CONFIG_INVALID when a host is neither an IP nor a DNS name, or days is not a positive integer.
 */
export async function createDevPki(options: DevPkiOptions): Promise<DevPki> {
  const { hosts } = options
  const days = options.days ?? 365
  const now = options.now ?? Date.now()
  if (!Array.isArray(hosts) || hosts.length === 0) throw new KeywayError('ERR_CONFIG_INVALID', 'dev PKI needs at least one host')
  for (const host of hosts) {
    if (typeof host !== 'string' || (isIP(host) === 0 && !(host.length <= 253 && DNS_NAME.test(host)))) {
      throw new KeywayError('ERR_CONFIG_INVALID', `dev PKI host ${JSON.stringify(host)} is neither an IP address nor a DNS name`)
    }
  }
  if (!Number.isInteger(days) || days <= 0) throw new KeywayError('ERR_CONFIG_INVALID', 'dev PKI days must be a positive integer')
  if (!Number.isFinite(now)) throw new KeywayError('ERR_CONFIG_INVALID', 'dev PKI now must be epoch ms')

  const crypto = webcrypto
  x509.cryptoProvider.set(crypto)
  const notBefore = new Date(now - BACKDATE)
  const notAfter = new Date(now + days * DAY)

  const caKeys = (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const caCert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: [{ CN: ['Keyway Dev CA'] }, { O: ['Keyway development'] }],
      notBefore,
      notAfter,
      signingAlgorithm: SIGNING,
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  )

  const serverKeys = (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: [{ CN: [hosts[0]!] }],
      issuer: caCert.subject,
      notBefore,
      notAfter,
      signingAlgorithm: SIGNING,
      publicKey: serverKeys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((host): x509.JsonGeneralName => ({ type: isIP(host) === 0 ? 'dns' : 'ip', value: host })),
          false,
        ),
        await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  )

  return {
    caCertPem: caCert.toString('pem'),
    caKeyPem: pkcs8(caKeys.privateKey),
    certPem: cert.toString('pem'),
    keyPem: pkcs8(serverKeys.privateKey),
  }
}

/** A positive 128-bit serial (top bit clear so DER keeps it positive). */
function serial(): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) | 0x01
  return bytes.toString('hex')
}

function pkcs8(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string
}
