import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** The gateway's metrics; names are a stable interface (docs/metrics.md). */
export interface GatewayMetrics {
  readonly sessionsActive: Gauge
  readonly muxConnections: Gauge
  readonly sessionsTotal: Counter<'result'>
  readonly sessionsClosed: Counter<'reason'>
  readonly bytes: Counter<'direction' | 'resource'>
  readonly authFailures: Counter<'code'>
  readonly loginFailures: Counter<'code'>
  readonly apiRejected: Counter<'code'>
  readonly proxyHeaderErrors: Counter
  readonly upstreamLoginFailures: Counter<'resource' | 'code'>
  readonly readinessProbes: Counter<'resource' | 'result'>
  readonly handshakeSeconds: Histogram
  readonly sessionSeconds: Histogram<'resource'>
  readonly upstreamConnectSeconds: Histogram<'resource'>
  readonly upstreamConnectErrors: Counter<'resource' | 'code'>
  readonly policyGeneration: Gauge
  readonly policyReloads: Counter<'result'>
  readonly policyLastReloadOk: Gauge
}

/** What the gateway's gauges read when scraped. */
export interface GatewayMetricsSources {
  /** Per account name: milliseconds until the soonest `exp` of a token carrying one of its live sessions (accounts whose tokens do not expire are left out). */
  tokenExpiryMs(): Map<string, number>
}

/** Registers the gateway's metrics on `registry` (injected: no global registry). */
export function createGatewayMetrics(registry: Registry, sources?: GatewayMetricsSources): GatewayMetrics {
  const registers = [registry]
  if (sources !== undefined) {
    new Gauge({
      name: 'keyway_gateway_session_token_expiry_seconds',
      help: 'Per account with live sessions: seconds until the soonest exp of a token carrying one of them (negative within the clock tolerance); absent for accounts whose tokens do not expire.',
      labelNames: ['account'],
      registers,
      collect() {
        this.reset()
        for (const [account, ms] of sources.tokenExpiryMs()) this.set({ account }, ms / 1000)
      },
    })
  }
  return {
    sessionsActive: new Gauge({ name: 'keyway_gateway_sessions_active', help: 'Tunnels currently forwarding bytes.', registers }),
    muxConnections: new Gauge({
      name: 'keyway_gateway_mux_connections',
      help: 'Multiplexed tunnel connections (ALPN keyway/2) open now; each carries many tunnels.',
      registers,
    }),
    sessionsTotal: new Counter({
      name: 'keyway_gateway_sessions_total',
      help: 'Tunnel attempts by result: ok, denied, handshake_error, upstream_error, limited, shutting_down.',
      labelNames: ['result'],
      registers,
    }),
    sessionsClosed: new Counter({
      name: 'keyway_gateway_sessions_closed_total',
      help: 'Forwarding sessions ended, by close reason (done, idle_timeout, lifetime, reset, revoked, shutdown, ...).',
      labelNames: ['reason'],
      registers,
    }),
    bytes: new Counter({
      name: 'keyway_gateway_bytes_total',
      help: 'Bytes forwarded, by direction (client_to_upstream, upstream_to_client) and resource, counted when a session ends.',
      labelNames: ['direction', 'resource'],
      registers,
    }),
    authFailures: new Counter({
      name: 'keyway_gateway_auth_failures_total',
      help: 'Refused tunnels and API calls, by error code.',
      labelNames: ['code'],
      registers,
    }),
    loginFailures: new Counter({
      name: 'keyway_gateway_login_failures_total',
      help: 'Failed logins by code: ERR_LOGIN_FAILED (wrong email or password), ERR_LOGIN_THROTTLED (refused by the failed-login limiter).',
      labelNames: ['code'],
      registers,
    }),
    apiRejected: new Counter({
      name: 'keyway_gateway_api_rejected_total',
      help: 'API connections the gateway closed itself, by code: headers or request deadline, per-address limit.',
      labelNames: ['code'],
      registers,
    }),
    proxyHeaderErrors: new Counter({
      name: 'keyway_gateway_proxy_header_errors_total',
      help: 'Connections from a configured load balancer closed for a missing, late or malformed PROXY v2 header.',
      registers,
    }),
    upstreamLoginFailures: new Counter({
      name: 'keyway_gateway_upstream_login_failures_total',
      help: 'Logins the gateway made upstream with a resource credential that failed, by resource and code (ERR_UPSTREAM_LOGIN_FAILED, ERR_CREDENTIAL_UNAVAILABLE).',
      labelNames: ['resource', 'code'],
      registers,
    }),
    readinessProbes: new Counter({
      name: 'keyway_gateway_readiness_probes_total',
      help: 'Per-resource readiness probes the gateway ran upstream (cached answers are not counted), by resource and result (ready, or the error code).',
      labelNames: ['resource', 'result'],
      registers,
    }),
    handshakeSeconds: new Histogram({
      name: 'keyway_gateway_handshake_duration_seconds',
      help: 'From TLS established to the tunnel reply (token check, decision and upstream dial).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    sessionSeconds: new Histogram({
      name: 'keyway_gateway_session_duration_seconds',
      help: 'How long forwarding sessions lasted, by resource, observed when they end.',
      labelNames: ['resource'],
      buckets: [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 14_400, 86_400],
      registers,
    }),
    upstreamConnectSeconds: new Histogram({
      name: 'keyway_gateway_upstream_connect_duration_seconds',
      help: 'Time to establish the TCP connection to the resource, by resource (successful dials only).',
      labelNames: ['resource'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    upstreamConnectErrors: new Counter({
      name: 'keyway_gateway_upstream_connect_errors_total',
      help: 'Failed dials to a resource, by resource and code (ERR_UPSTREAM_UNREACHABLE, ERR_UPSTREAM_TIMEOUT).',
      labelNames: ['resource', 'code'],
      registers,
    }),
    policyGeneration: new Gauge({ name: 'keyway_policy_generation', help: 'Generation of the policy in force; increases on every change.', registers }),
    policyReloads: new Counter({
      name: 'keyway_policy_reloads_total',
      help: 'Policy reload attempts by result (ok, unchanged, failed). A failed reload keeps the last good policy.',
      labelNames: ['result'],
      registers,
    }),
    policyLastReloadOk: new Gauge({ name: 'keyway_policy_last_reload_ok', help: '1 when the last policy reload succeeded, 0 when the file in place is broken.', registers }),
  }
}
