export { forward, isConnectionReset } from './forward.js'
export type { ForwardEndpoint, ForwardOptions, ForwardReason, ForwardResult, ForwardSession } from './forward.js'
export { dialTcp } from './dial.js'
export type { DialFunc, DialOptions } from './dial.js'
