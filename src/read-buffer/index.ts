export {
  adoptAccepted,
  forgetReadBuffers,
  hasReadBuffer,
  MAX_READ_BUFFER,
  readingSocket,
  readNumber,
  reclaimReadBuffers,
  releaseReadBuffer,
  setReadSink,
  trimReadBuffers,
  useReadBuffer,
} from './read-buffer.js'
export type { LendingSource, ReadSink } from './read-buffer.js'
export { canSetTlsSession, noDelayFlag, setTlsSession } from './node-internals.js'
export { checkFastPath, type FastPath } from './self-test.js'
