/** Certificates: a throwaway development PKI. */
import type { DevPki, DevPkiOptions } from './dev-pki.js'

export type { DevPki, DevPkiOptions } from './dev-pki.js'

/**
 * Creates a development CA and a gateway certificate signed by it (see
 * `dev-pki.ts`). @peculiar/x509 (~8 MB resident) loads on the first call
 * only: a gateway whose certificates exist never pays for it (issue 22).
 */
export async function createDevPki(options: DevPkiOptions): Promise<DevPki> {
  const { createDevPki: create } = await import('./dev-pki.js')
  return create(options)
}
