/**
 * The help lines of the options every command that drives a running sidecar
 * takes (`status`, `connect`, `disconnect`, `wait`): where its control API is.
 */
export const CONTROL_OPTIONS_HELP = `  --runtime-dir DIR   the sidecar's runtime directory, where its control socket is
                      (sidecar.runtimeDir, KEYWAY_SIDECAR_RUNTIME_DIR; default
                      \$XDG_RUNTIME_DIR/keyway, else /run/keyway, else \$TMPDIR/keyway-<uid>)
  --control HOST:PORT use this loopback TCP endpoint instead of the socket; the
                      control API there needs sidecar.controlTcp and the secret in
                      DIR/control.token, read automatically
  --config FILE       configuration file, for sidecar.runtimeDir and sidecar.control (default: KEYWAY_CONFIG, else the embedded default)`
