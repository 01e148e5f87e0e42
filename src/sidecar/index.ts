/**
 * The sidecar (`keyway listen`): binds granted resources on 127.0.0.1 and
 * tunnels each local connection over TLS to a gateway; its control endpoint;
 * and the client the CLI uses to drive it.
 */
export {
  Sidecar,
  TOKEN_WARN_AHEAD_MS,
  type SidecarDeps,
  type SidecarConfig,
  type ResourceStatus,
  type SidecarSnapshot,
  type ConnectResult,
  type UnboundReason,
  type TokenStatus,
  type ResourceReady,
} from './sidecar.js'
export { TokenSource, resolveTokenSource, type TokenSourceOptions, type TokenSourceInputs, type TokenSpec, type TokenOrigin } from './token-source.js'
export {
  GatewayClient,
  type GatewayClientOptions,
  type GatewayState,
  type ConnectTls,
  type TlsDialOptions,
  type Tunnel,
  type ApiResult,
  type ApiCallOptions,
} from './gateway-client.js'
export { startControlServer, controlRoutes, ControlServer, CONTROL_PATHS, type ControlServerOptions, type ControlTarget, type ControlAccess } from './control.js'
export { ControlClient, resolveControlEndpoint, type ControlEndpoint, type ControlClientOptions, type Readiness } from './control-client.js'
export { createSidecarMetrics, type SidecarMetrics, type SessionResult, type SyncResult } from './metrics.js'
export { assertLoopback, LOOPBACK_HOST } from './loopback.js'
export { resolveRuntimeDir, resolveGroup, ensureRuntimeDir, CONTROL_SOCKET, CONTROL_TOKEN_FILE } from './runtime-dir.js'
