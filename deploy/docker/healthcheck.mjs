#!/usr/bin/env node
// The container image's HEALTHCHECK (the Dockerfile copies this file to
// /app/healthcheck.mjs): GET /healthz on the running Keyway daemon's loopback
// endpoint; exit 0 when it answers 200, else 1. Slim images have no curl, and
// node is always there.
//
//   node /app/healthcheck.mjs [listen|gateway]
//
// Which daemon: the argument, else the command the container runs (read from
// /proc/1/cmdline, which also holds the command under `docker run --init`),
// else both (either one answering is healthy).
//
// Where: the effective configuration, read as the daemon reads it
// (KEYWAY_CONFIG and the KEYWAY_* variables of the container):
// `sidecar.control` for listen, `gateway.metrics` for gateway. A wildcard
// address (0.0.0.0, ::) is probed on loopback. Addresses given as command-line
// flags are invisible here: set them with KEYWAY_* variables in a container.
import { readFileSync } from 'node:fs'
import http from 'node:http'

const TIMEOUT_MS = 3_000

function runningCommand() {
  try {
    const args = readFileSync('/proc/1/cmdline', 'utf8').split('\0')
    const at = args.findIndex((a) => /(^|\/)keyway(\.js)?$/.test(a))
    const command = at >= 0 ? args[at + 1] : undefined
    return command === 'listen' || command === 'gateway' ? command : undefined
  } catch {
    return undefined
  }
}

function loopbackFor(host) {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '::1'
  return host
}

function probe({ host, port }) {
  const target = { host: loopbackFor(host), port }
  const where = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${port}`
  return new Promise((resolve) => {
    const req = http.get({ ...target, path: '/healthz', agent: false, timeout: TIMEOUT_MS }, (res) => {
      res.resume()
      resolve({ ok: res.statusCode === 200, text: `${where}/healthz answered ${res.statusCode}` })
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)))
    req.on('error', (err) => resolve({ ok: false, text: `${where}/healthz: ${err.code ?? err.message}` }))
  })
}

async function main() {
  const asked = process.argv[2]
  if (asked !== undefined && asked !== 'listen' && asked !== 'gateway') {
    console.log('usage: healthcheck.mjs [listen|gateway]')
    return 1
  }
  const which = asked ?? runningCommand()
  let config
  try {
    const { loadConfig } = await import(new URL('./dist/src/config/index.js', import.meta.url).href)
    config = loadConfig({ env: process.env })
  } catch (err) {
    console.log(`unhealthy: cannot read the configuration: ${err.message}`)
    return 1
  }
  const targets = []
  if (which !== 'gateway') targets.push(config.sidecar.control)
  if (which !== 'listen' && config.gateway.metrics !== '') targets.push(config.gateway.metrics)
  if (targets.length === 0) {
    console.log('unhealthy: gateway.metrics is disabled, so there is no /healthz to ask')
    return 1
  }
  const results = await Promise.all(targets.map(probe))
  const good = results.find((r) => r.ok)
  console.log(good ? `healthy: ${good.text}` : `unhealthy: ${results.map((r) => r.text).join('; ')}`)
  return good ? 0 : 1
}

process.exitCode = await main()
