/** Certificates: a throwaway development PKI. */
export { createDevPki } from './dev-pki.js'
export type { DevPki, DevPkiOptions } from './dev-pki.js'
