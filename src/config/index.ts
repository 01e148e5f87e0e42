export { loadConfig, envNameOf, settingPaths, DEFAULT_CONFIG_FILE, ENV_ALIASES, type KeywayConfig, type LoadConfigOptions } from './load.js'
export { configSchema, type ConfigShape } from './schema.js'
export { readConfiguredFile } from './read-file.js'
export { connectionProblem } from './connection.js'
