import type { Command } from './command.js'

/**
 * Every `keyway` command, in the order `keyway --help` lists them. Each module
 * is loaded only when its command runs, so `keyway status` does not pay for
 * the gateway's dependencies.
 */
export const COMMANDS: readonly Command[] = [
  lazy('gateway', 'Run the gateway: verify tokens, check grants, forward to resources', () => import('./gateway.js')),
  lazy('listen', 'Run the sidecar: bind granted resources on 127.0.0.1 and tunnel to the gateway', () => import('./listen.js')),
  lazy('status', 'Show the running sidecar\'s resources and their state', () => import('./status.js')),
  lazy('connect', 'Bind a resource in the running sidecar', () => import('./connect.js')),
  lazy('disconnect', 'Unbind a resource in the running sidecar', () => import('./disconnect.js')),
  lazy('wait', 'Wait until the running sidecar is ready (for a job\'s entrypoint)', () => import('./wait.js')),
  lazy('login', 'Log in as a user with email and password; prints a short-lived token', () => import('./login.js')),
  lazy('init', 'Create a working setup (config, policy, keys, development CA) in a folder', () => import('./init.js')),
  lazy('admin', 'Manage service accounts, users, roles, grants, resources and settings', () => import('./admin.js')),
  lazy('explain', 'Explain whether an account may reach a resource, and why', () => import('./explain.js')),
  lazy('policy', 'Check a policy file', () => import('./policy.js')),
  lazy('store', 'Migrate, import into and export from the PostgreSQL policy store', () => import('./store.js')),
  lazy('config', 'Print the effective configuration', () => import('./config.js')),
]

function lazy(name: string, summary: string, load: () => Promise<{ command: Command }>): Command {
  return {
    name,
    summary,
    get usage(): string {
      return `keyway ${name}: run "keyway ${name} --help"`
    },
    async run(args, io) {
      const { command } = await load()
      // `--help` later on the line is the command's own business (admin has per-verb usage).
      if (args[0] === '--help' || args[0] === '-h') {
        io.stdout.write(command.usage + '\n')
        return 0
      }
      return command.run(args, io)
    },
  }
}
