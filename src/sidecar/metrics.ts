import { Counter, Gauge, type Registry } from 'prom-client'

/** `result` label of `keyway_sidecar_sessions_total`. */
export type SessionResult = 'ok' | 'refused' | 'gateway_unavailable' | 'error'

/** `result` label of `keyway_sidecar_sync_total`. */
export type SyncResult = 'ok' | 'not_modified' | 'error'

/** The sidecar's Prometheus metrics, registered on an injected registry. */
export interface SidecarMetrics {
  /** `keyway_sidecar_sessions_active`: forwarded sessions now open. */
  readonly sessionsActive: Gauge
  /** `keyway_sidecar_sessions_total{resource,result}`: local connections by outcome of their tunnel. */
  readonly sessionsTotal: Counter<'resource' | 'result'>
  /** `keyway_sidecar_bytes_total{resource,direction}`: bytes forwarded (live sessions are added at scrape time). */
  readonly bytesTotal: Counter<'resource' | 'direction'>
  /** `keyway_sidecar_sync_total{result}`: polls of the gateway's resource list. */
  readonly syncTotal: Counter<'result'>
}

/**
 * Registers the sidecar's metrics. `resourcesBound`, `gatewayUp` and `tokenExpiry` are read
 * at scrape time, so they never drift from the sidecar's own state;
 * `flushBytes` adds what live sessions moved since the last scrape, so a
 * long session shows up before it ends.
 */
export function createSidecarMetrics(
  registry: Registry,
  read: { resourcesBound: () => number; gatewayUp: () => boolean; flushBytes: () => void; tokenExpiry?: () => number },
): SidecarMetrics {
  const registers = [registry]
  const tokenExpiry = read.tokenExpiry
  if (tokenExpiry) {
    new Gauge({
      name: 'keyway_sidecar_token_expiry_seconds',
      help: 'Unix time (seconds) at which the service token stops working: its exp, or the end of its rotation grace; +Inf when it has no end.',
      registers,
      collect() {
        this.set(tokenExpiry())
      },
    })
  }
  new Gauge({
    name: 'keyway_sidecar_resources_bound',
    help: 'Resources with a local listener on 127.0.0.1.',
    registers,
    collect() {
      this.set(read.resourcesBound())
    },
  })
  new Gauge({
    name: 'keyway_sidecar_gateway_up',
    help: '1 when the last attempt to reach a gateway succeeded, else 0.',
    registers,
    collect() {
      this.set(read.gatewayUp() ? 1 : 0)
    },
  })
  return {
    sessionsActive: new Gauge({ name: 'keyway_sidecar_sessions_active', help: 'Local connections being forwarded through a tunnel.', registers }),
    sessionsTotal: new Counter({
      name: 'keyway_sidecar_sessions_total',
      help: 'Local connections accepted, by resource and tunnel outcome (ok, refused, gateway_unavailable, error).',
      labelNames: ['resource', 'result'] as const,
      registers,
    }),
    bytesTotal: new Counter({
      name: 'keyway_sidecar_bytes_total',
      help: 'Bytes forwarded, by resource and direction (client_to_gateway, gateway_to_client).',
      labelNames: ['resource', 'direction'] as const,
      registers,
      collect() {
        read.flushBytes()
      },
    }),
    syncTotal: new Counter({
      name: 'keyway_sidecar_sync_total',
      help: 'Polls of the gateway resource list, by result (ok: a new view, not_modified: 304, error).',
      labelNames: ['result'] as const,
      registers,
    }),
  }
}
