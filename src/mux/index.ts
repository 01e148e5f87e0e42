export { MuxConnection, type MuxConnectionOptions } from './connection.js'
export { MuxStream, type StreamResetError } from './stream.js'
export { ALPN_MUX, FRAME_HEADER, FrameType, INITIAL_WINDOW, MAX_DATA_PAYLOAD, encodeFrame, type FrameTypeValue } from './frame.js'
