import type { AdminContext } from '../admin/index.js'
import { ContextAdminOperations, type AdminOperations } from '../store/index.js'

/**
 * What the admin API needs from wherever the policy lives: the store's
 * {@link AdminOperations} (the policy file, or PostgreSQL). Every edit
 * validates the whole policy exactly as the CLI does.
 */
export type AdminBackend = AdminOperations

/** The {@link AdminBackend} of the policy file: the operations of `keyway admin` on `ctx`. */
export class FileAdminBackend extends ContextAdminOperations {
  constructor(ctx: AdminContext) {
    super(ctx)
  }
}
