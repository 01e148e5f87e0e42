export { parseHostPort, formatHostPort, isLoopback, type HostPort } from './address.js'
