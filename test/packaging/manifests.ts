/**
 * The Kubernetes manifests in deploy/kubernetes/ agree with the code: every
 * KEYWAY_* variable is a real setting, every path a Keyway container reads is
 * a mounted file, ports and probes match the configured addresses, the
 * sidecar is a native sidecar probed from inside (its control endpoint is
 * loopback only), grace periods exceed the drain grace, the example
 * policy compiles and grants the port the job dials, a NetworkPolicy keeps
 * the job pod off the database, and the exposed metrics port serves no detail.
 */
import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { COMMANDS } from '../../src/cli/commands.js'
import { ENV_ALIASES, envNameOf, loadConfig, settingPaths, type KeywayConfig } from '../../src/config/index.js'
import { compilePolicyText } from '../../src/policy/index.js'

/** A manifest object: untyped YAML. */
type Doc = Record<string, any>

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DIR = join(ROOT, 'deploy/kubernetes')
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
/** The image's own configuration (Dockerfile: COPY deploy/docker/keyway.yaml /etc/keyway/keyway.yaml). */
const IMAGE_CONFIG = join(ROOT, 'deploy/docker/keyway.yaml')
const IMAGE_CONFIG_PATH = '/etc/keyway/keyway.yaml'

/** Every KEYWAY_* variable Keyway reads. */
const KNOWN_ENV = new Set([...settingPaths().map(envNameOf), ...Object.keys(ENV_ALIASES), 'KEYWAY_TOKEN', 'KEYWAY_CONFIG'])

// kubectl reads YAML 1.1: `defaultMode: 0440` is octal there.
const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f))
const docs: (Doc & { _file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8'), { version: '1.1' })
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`)
      return d.toJS() as Doc | null
    })
    .filter((d): d is Doc => d !== null)
    .map((d) => ({ ...d, _file: file })),
)

const byKind = (kind: string): (Doc & { _file: string })[] => docs.filter((d) => d.kind === kind)
// gateway.yaml and gateway-postgres.yaml are alternatives with the same names: a pod's ConfigMap is the one of its own file.
const configMaps = new Map(byKind('ConfigMap').map((c) => [`${c._file}|${c.metadata.namespace}/${c.metadata.name}`, c]))

interface Pod {
  owner: Doc & { _file: string }
  spec: Doc
  labels: Record<string, string>
  namespace: string
}

const pods: Pod[] = docs
  .filter((d) => d.kind === 'Deployment' || d.kind === 'Job')
  .map((d) => ({ owner: d, spec: d.spec.template.spec, labels: d.spec.template.metadata?.labels ?? {}, namespace: d.metadata.namespace }))

const containersOf = (pod: Pod): Doc[] => [...(pod.spec.initContainers ?? []), ...(pod.spec.containers ?? [])]
const isKeyway = (c: Doc): boolean => /(^|\/)keyway:/.test(String(c.image))
/** The keyway command a container runs: its first argument (the image's ENTRYPOINT is keyway), else the image's CMD. */
const keywayCommand = (c: Doc): string => (c.args?.[0] as string | undefined) ?? 'listen'
const envOf = (c: Doc): Record<string, string> =>
  Object.fromEntries((c.env ?? []).filter((e: Doc) => e.value !== undefined).map((e: Doc) => [e.name as string, String(e.value)]))

/** A file a container sees: which mount and volume provide it, and the file's text when the manifests hold it. */
function mountedFile(pod: Pod, c: Doc, path: string): { volume: Doc; text?: string } | string {
  const mount = (c.volumeMounts ?? []).find((m: Doc) => m.mountPath === dirname(path))
  if (!mount) return `no volume is mounted at ${dirname(path)} for ${path}`
  if (mount.subPath !== undefined) return `${mount.name} uses subPath: updates would never reach it`
  const volume = (pod.spec.volumes ?? []).find((v: Doc) => v.name === mount.name)
  if (!volume) return `mount ${mount.name} has no volume`
  const source = volume.configMap ?? volume.secret
  if (!source) return `volume ${volume.name} is neither a ConfigMap nor a Secret`
  const items: Doc[] | undefined = source.items
  const item = items?.find((i) => i.path === basename(path))
  if (items && !item) return `volume ${volume.name} does not project ${basename(path)}`
  const key = item?.key ?? basename(path)
  if (volume.configMap) {
    const cm = configMaps.get(`${pod.owner._file}|${pod.namespace}/${volume.configMap.name}`)
    if (cm) {
      if (cm.data?.[key] === undefined) return `ConfigMap ${cm.metadata.name} has no key ${key}`
      return { volume, text: cm.data[key] as string }
    }
  }
  return { volume }
}

const scratch = mkdtempSync(join(tmpdir(), 'keyway-manifests-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
let written = 0

/** Loads a Keyway container's configuration as the process would: its file, then its KEYWAY_* variables. */
function effectiveConfig(pod: Pod, c: Doc): KeywayConfig {
  const env = envOf(c)
  const file = env.KEYWAY_CONFIG ?? IMAGE_CONFIG_PATH
  let local = IMAGE_CONFIG
  if (file !== IMAGE_CONFIG_PATH) {
    const found = mountedFile(pod, c, file)
    if (typeof found === 'string' || found.text === undefined) throw new Error(`${c.name}: KEYWAY_CONFIG ${file}: ${typeof found === 'string' ? found : 'not in these manifests'}`)
    local = join(scratch, `${++written}-${basename(file)}`)
    writeFileSync(local, found.text)
  }
  return loadConfig({ file: local, env })
}

function probesOf(c: Doc): [string, Doc][] {
  return (['startupProbe', 'readinessProbe', 'livenessProbe'] as const).filter((p) => c[p]).map((p) => [p, c[p] as Doc])
}

function containerPort(c: Doc, port: number | string): number | undefined {
  if (typeof port === 'number') return port
  return (c.ports ?? []).find((p: Doc) => p.name === port)?.containerPort as number | undefined
}

t.test('every manifest parses and names its object', async (t) => {
  t.ok(files.includes('gateway.yaml') && files.includes('gateway-postgres.yaml') && files.includes('job-with-sidecar.yaml'), 'gateway.yaml, gateway-postgres.yaml and job-with-sidecar.yaml')
  for (const d of docs) {
    t.ok(d.apiVersion && d.kind && d.metadata?.name, `${d._file}: ${d.kind}/${d.metadata?.name}`)
    t.ok(d.metadata.namespace, `${d._file}: ${d.kind}/${d.metadata.name} names its namespace`)
  }
})

t.test('every KEYWAY_* variable is a real setting, and every value is valid', async (t) => {
  for (const pod of pods) {
    for (const c of containersOf(pod)) {
      for (const e of c.env ?? []) {
        if (String(e.name).startsWith('KEYWAY_')) t.ok(KNOWN_ENV.has(e.name), `${pod.owner._file} ${c.name}: ${e.name} is read by Keyway`)
      }
      if (isKeyway(c)) t.doesNotThrow(() => effectiveConfig(pod, c), `${pod.owner._file} ${c.name}: the configuration loads`)
    }
  }
})

t.test('volumes and mounts agree', async (t) => {
  for (const pod of pods) {
    const volumes = new Set((pod.spec.volumes ?? []).map((v: Doc) => v.name as string))
    const used = new Set<string>()
    for (const c of containersOf(pod)) {
      const paths = (c.volumeMounts ?? []).map((m: Doc) => m.mountPath as string)
      t.equal(new Set(paths).size, paths.length, `${pod.owner._file} ${c.name}: no mount path twice`)
      for (const m of c.volumeMounts ?? []) {
        t.ok(volumes.has(m.name), `${pod.owner._file} ${c.name}: mount ${m.name} has a volume`)
        used.add(m.name)
        // The one writable mount: an emptyDir for the runtime directory (the control socket).
        const emptyDir = (pod.spec.volumes ?? []).some((v: Doc) => v.name === m.name && v.emptyDir)
        if (isKeyway(c) && !emptyDir) t.equal(m.readOnly, true, `${c.name}: ${m.name} is read-only`)
      }
    }
    for (const v of volumes) t.ok(used.has(v as string), `${pod.owner._file}: volume ${v} is mounted`)
    for (const v of pod.spec.volumes ?? []) {
      if (v.secret) t.equal(v.secret.defaultMode, 0o440, `${pod.owner._file}: secret ${v.name} is 0440 (owner and fsGroup only)`)
    }
  }
})

t.test('every file a Keyway container reads is mounted', async (t) => {
  for (const pod of pods) {
    for (const c of containersOf(pod).filter(isKeyway)) {
      const config = effectiveConfig(pod, c)
      const command = keywayCommand(c)
      t.ok(COMMANDS.some((k) => k.name === command), `${c.name}: keyway ${command} is a command`)
      t.equal(c.command, undefined, `${c.name}: the image's entrypoint runs (no command override)`)
      const onPostgres = config.store === 'postgres'
      // On PostgreSQL the policy and the password hashes are in the database: no policy or credentials file.
      const store = onPostgres ? { 'postgres.passwordFile': config.postgres.passwordFile } : { policy: config.policy, credentials: config.credentials }
      const needed =
        command === 'gateway'
          ? { ...store, 'keys.jwks': config.keys.jwks, 'keys.signing': config.keys.signing, 'gateway.tls.cert': config.gateway.tls.cert, 'gateway.tls.key': config.gateway.tls.key }
          : command === 'store'
            ? { 'postgres.passwordFile': config.postgres.passwordFile }
            : { 'sidecar.ca': config.sidecar.ca, ...(envOf(c).KEYWAY_TOKEN === undefined ? { 'sidecar.tokenFile': config.sidecar.tokenFile } : {}) }
      for (const [setting, path] of Object.entries(needed)) {
        t.ok(posix.isAbsolute(path), `${c.name}: ${setting} is absolute (${path})`)
        const found = mountedFile(pod, c, path)
        t.ok(typeof found !== 'string', `${pod.owner._file} ${c.name}: ${setting} ${path}: ${typeof found === 'string' ? found : 'mounted'}`)
      }
      if (onPostgres) {
        const password = mountedFile(pod, c, config.postgres.passwordFile)
        t.ok(typeof password !== 'string' && password.volume.secret !== undefined, `${c.name}: the database password comes from a Secret, never a ConfigMap`)
      }
      if (command === 'gateway' && !onPostgres) {
        const policy = mountedFile(pod, c, config.policy)
        if (typeof policy !== 'string' && policy.text !== undefined) {
          t.doesNotThrow(() => compilePolicyText(policy.text!, config.policy), 'the policy ConfigMap compiles')
        }
        t.equal(config.gateway.watchPolicy, true, 'the gateway watches the policy folder for ConfigMap updates')
        const credentials = mountedFile(pod, c, config.credentials)
        t.ok(typeof credentials !== 'string' && credentials.volume.secret !== undefined, 'password hashes come from a Secret, never a ConfigMap')
      }
    }
  }
})

t.test('every container is locked down', async (t) => {
  for (const pod of pods) {
    const podCtx = pod.spec.securityContext ?? {}
    t.equal(podCtx.seccompProfile?.type, 'RuntimeDefault', `${pod.owner._file}: seccomp RuntimeDefault`)
    t.equal(pod.spec.automountServiceAccountToken, false, `${pod.owner._file}: no Kubernetes API token`)
    // Service links inject <SERVICE>_PORT... variables: a Service named keyway-* would write KEYWAY_* ones.
    if (containersOf(pod).some(isKeyway)) t.equal(pod.spec.enableServiceLinks, false, `${pod.owner._file}: no service-link variables in the KEYWAY_ namespace`)
    for (const c of containersOf(pod)) {
      const ctx = c.securityContext ?? {}
      const where = `${pod.owner._file} ${c.name}`
      t.equal(ctx.runAsNonRoot ?? podCtx.runAsNonRoot, true, `${where}: runAsNonRoot`)
      t.equal(ctx.allowPrivilegeEscalation, false, `${where}: no privilege escalation`)
      t.equal(ctx.readOnlyRootFilesystem, true, `${where}: read-only root file system`)
      t.ok((ctx.capabilities?.drop ?? []).includes('ALL'), `${where}: drops ALL capabilities`)
      t.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, `${where}: memory request and limit`)
      if (isKeyway(c)) {
        t.equal(ctx.runAsUser ?? podCtx.runAsUser, 1000, `${where}: the image's user (uid 1000)`)
        t.match(c.image, new RegExp(`:${VERSION.replace(/\./g, '\\.')}$`), `${where}: the image of this version`)
      }
    }
  }
})

const gatewayDeployments = byKind('Deployment').filter((d) => d.spec.template.spec.containers.some((c: Doc) => isKeyway(c) && keywayCommand(c) === 'gateway'))
/** The gateway of gateway.yaml (the policy file): the one whose policy the job's checks read. */
const fileGatewayPod = (): Pod => pods.find((p) => p.owner.kind === 'Deployment' && p.owner._file === 'gateway.yaml')!

t.test('one gateway Deployment per example: the policy file, and PostgreSQL', async (t) => {
  t.same(gatewayDeployments.map((d) => d._file).sort(), ['gateway-postgres.yaml', 'gateway.yaml'])
  for (const d of gatewayDeployments) {
    const pod = pods.find((p) => p.owner === d)!
    t.equal(effectiveConfig(pod, pod.spec.containers.find(isKeyway)).store, d._file === 'gateway.yaml' ? 'file' : 'postgres', `${d._file}: its store`)
  }
})

for (const deployment of gatewayDeployments) t.test(`the gateway (${deployment._file}): ports, probes, Service, disruption budget, grace`, async (t) => {
  const pod = pods.find((p) => p.owner === deployment)!
  const c = deployment.spec.template.spec.containers.find(isKeyway)
  const config = effectiveConfig(pod, c)
  t.ok(deployment.spec.replicas >= 2, 'at least two replicas')
  t.equal(config.gateway.listen.host, '0.0.0.0', 'the tunnel listener is reachable from the Service')
  t.not(config.gateway.metrics, '', 'the metrics listener is on')
  if (config.gateway.metrics === '') return
  t.equal(config.gateway.metrics.host, '0.0.0.0', 'the probes come from the node: metrics listens beyond loopback')
  t.equal(envOf(c).KEYWAY_GATEWAY_METRICS, `0.0.0.0:${config.gateway.metrics.port}`, 'set by KEYWAY_GATEWAY_METRICS')
  t.equal(containerPort(c, 'tunnel'), config.gateway.listen.port, 'containerPort tunnel = gateway.listen')
  t.equal(containerPort(c, 'metrics'), config.gateway.metrics.port, 'containerPort metrics = gateway.metrics')
  t.same(c.readinessProbe?.httpGet && [c.readinessProbe.httpGet.path, containerPort(c, c.readinessProbe.httpGet.port)], ['/readyz', config.gateway.metrics.port], 'readiness: /readyz on the metrics port')
  t.same(c.livenessProbe?.httpGet && [c.livenessProbe.httpGet.path, containerPort(c, c.livenessProbe.httpGet.port)], ['/healthz', config.gateway.metrics.port], 'liveness: /healthz on the metrics port')

  const preStop = c.lifecycle?.preStop?.exec?.command as string[] | undefined
  const pause = preStop?.[0] === 'sleep' ? Number(preStop[1]) : 0
  const grace = deployment.spec.template.spec.terminationGracePeriodSeconds as number
  t.ok(grace > pause + config.gateway.drainGrace / 1000, `terminationGracePeriodSeconds ${grace} > preStop ${pause} s + drainGrace ${config.gateway.drainGrace / 1000} s`)

  const labels = deployment.spec.template.metadata.labels as Record<string, string>
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
  t.ok(matches(deployment.spec.selector.matchLabels), 'the Deployment selects its pods')
  const services = byKind('Service').filter((s) => s._file === deployment._file && s.metadata.namespace === deployment.metadata.namespace && matches(s.spec.selector))
  t.equal(services.length, 1, 'one Service selects the gateway pods')
  const tunnel = services[0]!.spec.ports.find((p: Doc) => containerPort(c, p.targetPort) === config.gateway.listen.port)
  t.ok(tunnel, 'the Service forwards to the tunnel port')
  t.equal(tunnel?.protocol ?? 'TCP', 'TCP', 'plain TCP: TLS ends at the gateway')
  const pdbs = byKind('PodDisruptionBudget').filter((p) => p._file === deployment._file && p.metadata.namespace === deployment.metadata.namespace && matches(p.spec.selector.matchLabels))
  t.equal(pdbs.length, 1, 'a PodDisruptionBudget covers the gateway')
  t.ok(pdbs[0] && (pdbs[0].spec.minAvailable >= 1 || pdbs[0].spec.maxUnavailable !== undefined), 'it keeps a replica up')
})

t.test('the job: a native sidecar, probed from inside, dialled on its override port', async (t) => {
  const jobs = pods.filter((p) => p.owner.kind === 'Job' && (p.spec.initContainers ?? []).some(isKeyway))
  t.equal(jobs.length, 1, 'one Job with a sidecar')
  const pod = jobs[0]!
  const sidecars = (pod.spec.initContainers ?? []).filter((c: Doc) => isKeyway(c) && keywayCommand(c) === 'listen')
  t.equal(sidecars.length, 1, 'keyway listen is an init container')
  const sidecar = sidecars[0]!
  t.equal(sidecar.restartPolicy, 'Always', 'restartPolicy: Always makes it a native sidecar')
  t.ok(['Never', 'OnFailure'].includes(pod.spec.restartPolicy), 'the pod runs to completion')
  t.notOk(pod.spec.containers.some(isKeyway), 'the sidecar is not a regular container (it would keep the Job from completing)')
  const config = effectiveConfig(pod, sidecar)

  t.ok(sidecar.startupProbe, 'a startupProbe gates the job containers')
  for (const [name, probe] of probesOf(sidecar)) {
    t.ok(probe.exec, `${name} runs inside the container: the control endpoint ${config.sidecar.control.host}:${config.sidecar.control.port} is loopback only`)
    t.notOk(probe.httpGet || probe.tcpSocket || probe.grpc, `${name} does not dial the pod IP`)
    t.ok(probe.timeoutSeconds >= 2, `${name} leaves node time to start`)
  }
  const startup = sidecar.startupProbe.exec.command as string[]
  t.same(startup.slice(0, 3), ['node', '/app/bin/keyway.js', 'wait'], 'the startup probe is `keyway wait` (ready: gateway answered, resources bound)')
  const timeout = Number(startup[startup.indexOf('--timeout') + 1])
  t.ok(timeout < sidecar.startupProbe.timeoutSeconds, 'keyway wait gives up before the probe times out')
  t.notOk(startup.includes('--control'), 'the probe asks the configured control endpoint')
  // The control socket's directory is on a writable volume of its own: the root filesystem is read-only.
  t.equal(sidecar.securityContext?.readOnlyRootFilesystem, true)
  const runtimeDir = config.sidecar.runtimeDir
  t.ok(runtimeDir.startsWith('/'), `sidecar.runtimeDir is set (${runtimeDir})`)
  const runMount = (sidecar.volumeMounts ?? []).find((m: Doc) => runtimeDir.startsWith(`${m.mountPath}/`))
  t.ok(runMount, `a volume is mounted above ${runtimeDir} (not at it: the sidecar makes that folder 0700 itself)`)
  t.notOk(runMount?.readOnly, 'writable')
  t.ok((pod.spec.volumes ?? []).find((v: Doc) => v.name === runMount?.name)?.emptyDir, 'an emptyDir')
  t.same([config.sidecar.control.host, config.sidecar.control.port], ['127.0.0.1', 7070], 'the control endpoint is the default 127.0.0.1:7070')

  const grace = pod.spec.terminationGracePeriodSeconds ?? 30
  t.ok(grace > config.sidecar.drainGrace / 1000, `terminationGracePeriodSeconds ${grace} > sidecar.drainGrace ${config.sidecar.drainGrace / 1000} s`)

  // KEYWAY_GATEWAY names the gateway Service on its port.
  const services = byKind('Service')
  t.ok(config.sidecar.gateways.length >= 1)
  for (const g of config.sidecar.gateways) {
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(g.host)
    t.ok(m, `${g.host} is a Service DNS name`)
    const svc = services.find((s) => s.metadata.name === m?.[1] && s.metadata.namespace === m?.[2])
    t.ok(svc, `Service ${m?.[2]}/${m?.[1]} is in deploy/kubernetes`)
    t.ok(svc?.spec.ports.some((p: Doc) => p.port === g.port), `it serves port ${g.port}`)
  }

  // The job dials 127.0.0.1 on a port the policy assigns to a resource its role grants.
  const gatewayPod = fileGatewayPod()
  const gw = gatewayPod.spec.containers.find(isKeyway)
  const gwConfig = effectiveConfig(gatewayPod, gw)
  const policyFile = mountedFile(gatewayPod, gw, gwConfig.policy)
  t.ok(typeof policyFile !== 'string' && policyFile.text, 'the policy is in deploy/kubernetes')
  if (typeof policyFile === 'string' || policyFile.text === undefined) return
  const policy = compilePolicyText(policyFile.text, gwConfig.policy)
  t.ok(policy.settings.portOverrides && policy.settings.autoConnect, 'port overrides and auto-connect: the sidecar binds at start, so readiness means bound')
  const app = pod.spec.containers[0]!
  const argv = [...(app.command ?? []), ...(app.args ?? [])] as string[]
  t.equal(argv[argv.indexOf('-h') + 1], '127.0.0.1', 'the job dials loopback')
  const port = Number(argv[argv.indexOf('-p') + 1])
  const resource = [...policy.resources.values()].find((r) => r.portOverride === port)
  t.ok(resource, `port ${port} is a resource's override port`)
  t.ok([...policy.roles.values()].some((grants) => grants.includes(resource?.name ?? '')), `a role grants ${resource?.name}`)
})

t.test('a NetworkPolicy lets the job pod reach only the gateway (and DNS), never the database', async (t) => {
  const job = pods.find((p) => p.owner.kind === 'Job' && (p.spec.initContainers ?? []).some(isKeyway))!
  const matches = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
    Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v)
  const policies = byKind('NetworkPolicy').filter((n) => n.metadata.namespace === job.namespace && matches(n.spec.podSelector?.matchLabels, job.labels))
  t.equal(policies.length, 1, 'one NetworkPolicy selects the job pod')
  const np = policies[0]
  if (np === undefined) return
  t.ok(np.spec.policyTypes.includes('Egress'), 'it restricts egress')
  t.ok(np.spec.policyTypes.includes('Ingress') && (np.spec.ingress ?? []).length === 0, 'and admits no ingress')

  const gatewayPod = fileGatewayPod()
  const gw = gatewayPod.spec.containers.find(isKeyway)
  const tunnelPort = effectiveConfig(gatewayPod, gw).gateway.listen.port
  // The database, as the gateway reaches it.
  const policyFile = mountedFile(gatewayPod, gw, effectiveConfig(gatewayPod, gw).policy)
  const databasePorts = typeof policyFile !== 'string' && policyFile.text ? [...compilePolicyText(policyFile.text, 'policy.yaml').resources.values()].map((r) => r.port) : []
  t.ok(databasePorts.length > 0, 'the resources are known')
  let toGateway = false
  for (const rule of np.spec.egress as Doc[]) {
    const peers = (rule.to ?? []) as Doc[]
    t.ok(peers.length > 0, 'every egress rule names its peers (none would allow everything)')
    t.notOk(peers.some((p) => p.ipBlock), 'no ipBlock: no address range is open')
    const ports = ((rule.ports ?? []) as Doc[]).map((p) => Number(p.port))
    t.ok(ports.length > 0, 'every egress rule names its ports')
    for (const port of databasePorts) t.notOk(ports.includes(port), `port ${port} of a resource is not open`)
    for (const peer of peers) {
      t.ok(peer.namespaceSelector && peer.podSelector, 'peers are pods of a named namespace')
      const gatewayPeer =
        peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === gatewayPod.namespace && matches(peer.podSelector?.matchLabels, gatewayPod.labels)
      if (gatewayPeer) {
        t.same(ports, [tunnelPort], 'to the gateway pods: the tunnel port only')
        toGateway = true
      } else {
        t.same([...new Set(ports)], [53], 'anything else is DNS')
      }
    }
  }
  t.ok(toGateway, 'the gateway is reachable')
})

t.test('the metrics port reachable beyond the pod serves probes without detail', async (t) => {
  const gatewayPod = fileGatewayPod()
  const gw = gatewayPod.spec.containers.find(isKeyway)
  const config = effectiveConfig(gatewayPod, gw)
  t.ok(config.gateway.metrics !== '' && config.gateway.metrics.host === '0.0.0.0')
  t.equal(config.gateway.metricsDetail, false, 'reasons and error text (file paths) are not served on it')
})

t.test('PostgreSQL: the gateway and the migration Job share one configuration, a password file from a Secret, and different roles', async (t) => {
  const gatewayPod = pods.find((p) => p.owner.kind === 'Deployment' && p.owner._file === 'gateway-postgres.yaml')!
  const gw = gatewayPod.spec.containers.find(isKeyway)
  const gwConfig = effectiveConfig(gatewayPod, gw)
  t.equal(gwConfig.store, 'postgres')
  t.ok(gwConfig.postgres.connection !== '' && gwConfig.postgres.passwordFile !== '', 'a connection string and a password file')
  t.notMatch(gwConfig.postgres.connection, /\/\/[^@/]*:[^@/]*@/, 'no password in the connection string')
  t.match(gwConfig.postgres.connection, /sslmode=verify-full/, 'the database is verified')

  const migrations = pods.filter((p) => p.owner.kind === 'Job' && p.spec.containers.some((c: Doc) => isKeyway(c) && keywayCommand(c) === 'store'))
  t.equal(migrations.length, 1, 'one migration Job')
  const job = migrations[0]
  if (job === undefined) return
  t.equal(job.owner._file, 'gateway-postgres.yaml', 'next to the gateway it prepares')
  const c = job.spec.containers.find(isKeyway)
  t.same(c.args, ['store', 'migrate'], 'keyway store migrate')
  t.ok(['Never', 'OnFailure'].includes(job.spec.restartPolicy), 'runs to completion')
  t.ok(job.owner.spec.backoffLimit >= 1, 'retries while the database starts')
  t.notOk((job.spec.initContainers ?? []).some(isKeyway), 'no sidecar')
  const config = effectiveConfig(job, c)
  t.equal(config.store, 'postgres')
  const gwVolume = (gatewayPod.spec.volumes as Doc[]).find((v) => v.configMap && gw.volumeMounts.some((m: Doc) => m.name === v.name && m.mountPath === dirname(envOf(gw).KEYWAY_CONFIG!)))
  const jobVolume = (job.spec.volumes as Doc[]).find((v) => v.configMap && c.volumeMounts.some((m: Doc) => m.name === v.name && m.mountPath === dirname(envOf(c).KEYWAY_CONFIG!)))
  t.equal(jobVolume?.configMap.name, gwVolume?.configMap.name, 'the same configuration ConfigMap')
  const user = (connection: string) => /^postgres(?:ql)?:\/\/([^@:/]+)@/.exec(connection)?.[1]
  t.not(user(config.postgres.connection), user(gwConfig.postgres.connection), 'the migration connects as the owner, not as the gateway role')
  t.notMatch(config.postgres.connection, /\/\/[^@/]*:[^@/]*@/, 'no password in its connection string either')
  const secretOf = (pod: Pod, cont: Doc, path: string) => {
    const found = mountedFile(pod, cont, path)
    return typeof found === 'string' ? undefined : (found.volume.secret?.secretName as string | undefined)
  }
  t.ok(secretOf(job, c, config.postgres.passwordFile), 'the owner password is a Secret')
  t.not(secretOf(job, c, config.postgres.passwordFile), secretOf(gatewayPod, gw, gwConfig.postgres.passwordFile), 'each role its own Secret')
})

t.test('probe commands exist in the image', async (t) => {
  // Runtime stage COPY lines map image paths to repository files.
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
  const map = new Map<string, string>()
  for (const m of runtime.matchAll(/^COPY (?!--from)(\S+) (\S+)$/gm)) {
    const dest = m[2]!.startsWith('/') ? m[2]! : posix.join('/app', m[2]!)
    map.set(dest.replace(/\/$/, ''), m[1]!)
  }
  const inRepo = (path: string): string | undefined => {
    for (const [dest, src] of map) {
      if (path === dest) return src
      if (path.startsWith(dest + '/')) return posix.join(src, path.slice(dest.length + 1))
    }
    return undefined
  }
  for (const pod of pods) {
    for (const c of containersOf(pod).filter(isKeyway)) {
      for (const [name, probe] of probesOf(c)) {
        const command = probe.exec?.command as string[] | undefined
        if (!command) continue
        t.equal(command[0], 'node', `${c.name} ${name}: runs node`)
        const file = inRepo(command[1]!)
        t.ok(file && readdirSync(join(ROOT, dirname(file))).includes(basename(file)), `${c.name} ${name}: ${command[1]} is in the image (${file})`)
      }
    }
  }
})
