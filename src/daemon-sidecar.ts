/**
 * The sidecar's composition root (`keyway listen`). It imports only what a
 * sidecar runs: not `daemon.ts` and the gateway, admin API, store and policy
 * code behind it (issue 22: a sidecar runs next to every job).
 */
import { collectDefaultMetrics, Registry } from 'prom-client'
import { readConfiguredFile, type KeywayConfig } from './config/index.js'
import type { KeywayError } from './errors.js'
import { dataPath, releaseStartupMemory, type DaemonIo } from './daemon-shared.js'
import { createLogger, LineBatcher } from './observe/index.js'
import { type ControlServer, resolveGroup, resolveRuntimeDir, Sidecar, TokenSource, resolveTokenSource, startControlServer } from './sidecar/index.js'

/** How `keyway listen` was asked to run, beyond the configuration. */
export interface SidecarRunOptions {
  /** `--token-file` was given (it wins over KEYWAY_TOKEN; its value is `config.sidecar.tokenFile`). */
  tokenFileFlag?: boolean
}

/**
 * The composition root of the sidecar: token source, CA, logger, metrics
 * registry, the {@link Sidecar} and its control endpoint. Runs until
 * SIGTERM/SIGINT (then drains); a token file is re-read when its directory
 * changes and on SIGHUP. Rejects at once when the token cannot be parsed, and
 * with the gateway's code when every gateway refused the token for
 * `sidecar.tokenRefusalGrace`. Resolves to the exit code.
 */
export async function runSidecar(config: KeywayConfig, io: DaemonIo, options: SidecarRunOptions = {}): Promise<number> {
  // A turn's lines leave in one write after it, not one synchronous write each (issue 22); flushed at exit too.
  const lines = new LineBatcher(io.stderr)
  try {
    return await serve(config, io, options, lines)
  } finally {
    // Before the command's own last words (a fatal code) reach the same stream.
    lines.close()
  }
}

async function serve(config: KeywayConfig, io: DaemonIo, options: SidecarRunOptions, lines: LineBatcher): Promise<number> {
  let sidecar: Sidecar | undefined
  const spec = resolveTokenSource({ flagGiven: options.tokenFileFlag === true, env: io.env, tokenFile: config.sidecar.tokenFile })
  const logger = createLogger({ level: config.log.level, base: { component: 'sidecar' }, destination: lines })
  // Reads the token now: one that cannot be parsed ends the command before anything else is tried.
  const tokens = new TokenSource({ spec, logger, onChange: (token) => sidecar?.setToken(token) })
  const ca = readConfiguredFile(config.sidecar.ca, 'gateway CA certificate (sidecar.ca, --ca)')
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  let fatal: KeywayError | undefined
  let onFatal: () => void = () => {}
  const failed = new Promise<void>((resolve) => {
    onFatal = resolve
  })
  const runtimeDir = resolveRuntimeDir(config.sidecar.runtimeDir, io.env)
  const gid = resolveGroup(config.sidecar.runtimeGroup)
  const fastPath = await dataPath(config, logger, registry)
  sidecar = new Sidecar({
    config: config.sidecar,
    ca,
    token: tokens.token,
    logger,
    registry,
    runtimeDir,
    runtimeGid: gid,
    nodeInternals: fastPath,
    tokenOrigin: tokens.describe(),
    reloadToken: () => tokens.reload(),
    onFatal: (err) => {
      fatal = err
      onFatal()
    },
  })
  const running = sidecar
  let control: ControlServer | undefined
  let cancelRelease: (() => void) | undefined
  const stop = io.stopSignal
  try {
    // The control server makes the runtime directory private before the sidecar binds sockets in it.
    control = await startControlServer({ address: config.sidecar.control, runtimeDir, gid, controlTcp: config.sidecar.controlTcp, target: running, registry, logger })
    // A rotated token file (a Kubernetes Secret's ..data swap included) is picked up without a restart; SIGHUP re-reads it too.
    tokens.start()
    io.onReload?.(() => void tokens.reload())
    if (!stop?.aborted) await running.start()
    cancelRelease = releaseStartupMemory(config.forward.nodeInternals === 'on')
    // No stop signal (a test's direct call): run until the token is given up on.
    const stopped = !stop
      ? new Promise<never>(() => {})
      : stop.aborted
        ? Promise.resolve()
        : new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }))
    await Promise.race([stopped, failed])
    if (!fatal) logger.info({ event: 'sidecar_stopping', signal: String(stop?.reason ?? '') }, 'stopping')
  } finally {
    cancelRelease?.()
    tokens.close()
    await running.close()
    await control?.close()
  }
  if (fatal) throw fatal
  return 0
}
