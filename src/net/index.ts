export { parseHostPort, formatHostPort, isLoopback, type HostPort } from './address.js'
export { ProxyHeaderParser, parseAddressList, AddressList, PROXY_HEADER_MAX_BYTES, type ProxyHeaderResult } from './proxy-protocol.js'
export { listenOn, formatListenAddress, type ListenErrors } from './listen.js'
export { startUpstreamTls, type UpstreamTlsOptions } from './upstream-tls.js'
