export { forward, isConnectionReset } from './forward.js'
export type { ClosingWords, ForwardEndpoint, ForwardOptions, ForwardReason, ForwardResult, ForwardSession, ForwardTap } from './forward.js'
export { dialTcp } from './dial.js'
export type { DialFunc, DialOptions } from './dial.js'
