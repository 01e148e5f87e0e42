export {
  ALPN_TUNNEL,
  ALPN_HTTP,
  PROTOCOL_VERSION,
  encodeHello,
  encodeReply,
  HelloParser,
  ReplyParser,
  type Hello,
  type Reply,
  type ParseResult,
} from './handshake.js'
export { API_PATHS, type WhoamiResponse, type ApiResource, type ResourcesResponse, type TokenDeadline, type LoginRequest, type LoginResponse, type ApiError } from './api.js'
