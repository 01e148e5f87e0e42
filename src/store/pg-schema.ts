import type { PoolClient } from 'pg'
import { KeywayError } from '../errors.js'
import { storeError } from './pg-errors.js'

/** One versioned migration of the PostgreSQL store. */
export interface Migration {
  /** The SQL, run in one transaction with the version row it writes. */
  readonly sql: string
  /**
   * The oldest schema version whose binaries can still read and write a
   * database at this version. An additive migration (a new table, a nullable
   * or defaulted column, a constraint every older writer already keeps)
   * keeps the previous migration's; a destructive one (a column or table
   * older binaries use dropped or renamed, a rule older writers would break)
   * raises it, usually to the last version that stopped using what it
   * removes. Stored next to the version (`keyway_schema_version.readable_from`).
   */
  readonly readableFrom: number
}

/**
 * The versioned migrations of the PostgreSQL store, oldest first; migration
 * `i` brings the schema to version `i + 1`. Migrations are additive first:
 * a column or table a release stops using is dropped only a release later
 * (a destructive migration, raising `readableFrom`), so binaries of version
 * N and N+1 run against the same schema during a rolling upgrade: a binary
 * accepts a newer schema whose `readableFrom` is at most the version it
 * knows (see {@link checkSchema}). Never edit a released migration: add one.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    readableFrom: 1,
    sql: `
  CREATE TABLE keyway_settings (
    name text PRIMARY KEY CHECK (name IN ('version', 'portOverrides', 'autoConnect', 'portRange')),
    value jsonb NOT NULL
  );
  CREATE TABLE keyway_resources (
    name text PRIMARY KEY,
    kind text NOT NULL,
    type text NOT NULL,
    address text NOT NULL,
    port_override integer,
    username text,
    password_file text,
    password_env text,
    database text,
    upstream_tls text,
    upstream_ca text,
    CONSTRAINT keyway_resources_port_override_unique UNIQUE (port_override) DEFERRABLE INITIALLY DEFERRED
  );
  CREATE TABLE keyway_roles (
    name text PRIMARY KEY
  );
  CREATE TABLE keyway_role_grants (
    role text NOT NULL REFERENCES keyway_roles (name) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    resource text NOT NULL REFERENCES keyway_resources (name) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (role, resource)
  );
  CREATE TABLE keyway_accounts (
    id text PRIMARY KEY,
    type text NOT NULL CHECK (type IN ('service', 'user')),
    name text,
    email text,
    suspended boolean,
    -- Service names and user emails (any case) share one namespace, as the validator says.
    name_key text GENERATED ALWAYS AS (coalesce(name, lower(email))) STORED,
    CONSTRAINT keyway_accounts_name_unique UNIQUE (name_key) DEFERRABLE INITIALLY DEFERRED
  );
  CREATE TABLE keyway_account_roles (
    account text NOT NULL REFERENCES keyway_accounts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    role text NOT NULL REFERENCES keyway_roles (name) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (account, role)
  );
  -- Direct grants (expires NULL) and temporary grants (expires: the ISO-8601 instant as written).
  CREATE TABLE keyway_account_grants (
    account text NOT NULL REFERENCES keyway_accounts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    resource text NOT NULL REFERENCES keyway_resources (name) DEFERRABLE INITIALLY DEFERRED,
    expires text,
    PRIMARY KEY (account, resource)
  );
  -- A token's id and fingerprint only: never the token.
  CREATE TABLE keyway_tokens (
    account text NOT NULL REFERENCES keyway_accounts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    id text NOT NULL,
    fingerprint text NOT NULL CHECK (fingerprint ~ '^sha256:[0-9a-f]{16}$'),
    created text,
    expires text,
    PRIMARY KEY (account, id)
  );
  CREATE TABLE keyway_user_credentials (
    account text PRIMARY KEY,
    password_hash text,
    admin boolean
  );
  CREATE TABLE keyway_token_last_used (
    token_id text PRIMARY KEY,
    last_used timestamptz NOT NULL
  );
  CREATE TABLE keyway_changes (
    generation bigint PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    digest text NOT NULL,
    summary jsonb NOT NULL
  );
  -- A permanent direct grant only while the account has No Role: checked at commit.
  -- Keyway's writers also serialize on an advisory lock, since under READ COMMITTED
  -- two racing transactions would each pass this check against the other's old rows.
  CREATE FUNCTION keyway_check_no_role() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF EXISTS (SELECT 1 FROM keyway_account_grants g JOIN keyway_account_roles r ON r.account = g.account
               WHERE g.account = NEW.account AND g.expires IS NULL) THEN
      RAISE EXCEPTION 'account % holds a role and a permanent direct grant', NEW.account
        USING ERRCODE = '23514', CONSTRAINT = 'keyway_direct_grant_needs_no_role';
    END IF;
    RETURN NULL;
  END $$;
  CREATE CONSTRAINT TRIGGER keyway_direct_grant_needs_no_role AFTER INSERT OR UPDATE ON keyway_account_grants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keyway_check_no_role();
  CREATE CONSTRAINT TRIGGER keyway_role_needs_no_direct_grant AFTER INSERT OR UPDATE ON keyway_account_roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keyway_check_no_role();
  `,
  },
  // 2: live sessions across gateways (store/pg-sessions.ts). Gateways register themselves
  // (renewed every postgres.checkInterval, never per connection) and answer the admin
  // API's requests: ending one session, or listing theirs.
  {
    readableFrom: 1,
    sql: `
  CREATE TABLE keyway_gateways (
    instance text PRIMARY KEY,
    name text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE keyway_session_requests (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('list', 'end')),
    -- 'end': the session id, and the instance id it starts with (the gateway holding it).
    session text,
    instance text,
    requested_by text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- 'end': set once, by the holding gateway's answer or by the asker withdrawing it at its deadline.
    answered_at timestamptz,
    answered_by text,
    result jsonb,
    CHECK (kind = 'list' OR (session IS NOT NULL AND instance IS NOT NULL))
  );
  CREATE TABLE keyway_session_lists (
    request bigint NOT NULL REFERENCES keyway_session_requests (id) ON DELETE CASCADE,
    instance text NOT NULL,
    gateway text NOT NULL,
    sessions jsonb NOT NULL,
    PRIMARY KEY (request, instance)
  );
  `,
  },
  // 3: the readable-from marker of rolling upgrades, next to each version. Versions 1 and 2
  // were additive over 1. A row without one (written by hand) counts as readable from itself.
  {
    readableFrom: 1,
    sql: `
  ALTER TABLE keyway_schema_version ADD COLUMN readable_from integer CHECK (readable_from >= 1 AND readable_from <= version);
  UPDATE keyway_schema_version SET readable_from = 1;
  `,
  },
]

/** The first schema version whose row carries `readable_from`. */
const MARKER_SINCE = 3

/** The schema version this binary writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS.length

/** Serializes `keyway store migrate` runs (any constant both sides agree on). */
const MIGRATE_LOCK = 0x6b657977_6d
/** Serializes every write of the policy. */
export const EDIT_LOCK = 0x6b657977_65

/** The schema of a database: its version (0: none) and the oldest version whose binaries can read it. */
export interface SchemaState {
  readonly version: number
  /** `readable_from` of the newest version row; the version itself when the row has none. */
  readonly readableFrom: number
}

/** The schema state of the database ({@link SchemaState}); version 0 when it has no schema. */
export async function schemaState(client: Pick<PoolClient, 'query'>): Promise<SchemaState> {
  try {
    const r = await client.query<{ present: boolean }>("SELECT to_regclass('keyway_schema_version') IS NOT NULL AS present")
    if (r.rows[0]?.present !== true) return { version: 0, readableFrom: 0 }
    // to_jsonb reads the marker whether or not the column exists yet (a database before
    // version 3), without an error that would abort the caller's transaction.
    const v = await client.query<{ version: number; readable_from: unknown }>(
      "SELECT version, to_jsonb(s) -> 'readable_from' AS readable_from FROM keyway_schema_version s ORDER BY version DESC LIMIT 1",
    )
    const row = v.rows[0]
    if (row === undefined) return { version: 0, readableFrom: 0 }
    const marker = row.readable_from
    return { version: row.version, readableFrom: typeof marker === 'number' && Number.isInteger(marker) ? marker : row.version }
  } catch (err) {
    throw storeError(err, 'reading the schema version')
  }
}

/** The schema version of the database, or 0 when it has none. */
export async function schemaVersion(client: Pick<PoolClient, 'query'>): Promise<number> {
  return (await schemaState(client)).version
}

/**
 * Checks that this binary can run against the database's schema: the
 * version it knows, or a newer one that is readable from it (a rolling
 * upgrade: the newer release ran `keyway store migrate` first, with
 * additive migrations).
 *
 * @throws KeywayError ERR_STORE_SCHEMA_MISSING (none, or older: run `keyway store migrate`), ERR_STORE_SCHEMA_NEWER (newer and not readable by this binary)
 */
export async function checkSchema(client: Pick<PoolClient, 'query'>): Promise<SchemaState> {
  const state = await schemaState(client)
  const { version } = state
  if (version === 0) {
    throw new KeywayError('ERR_STORE_SCHEMA_MISSING', 'the database has no Keyway schema: run `keyway store migrate` (with a role that may create tables) first', {
      detail: { version, known: SCHEMA_VERSION },
    })
  }
  if (version > SCHEMA_VERSION && state.readableFrom > SCHEMA_VERSION) throw newerSchema(state)
  if (version < SCHEMA_VERSION) {
    throw new KeywayError('ERR_STORE_SCHEMA_MISSING', `the database schema is version ${version}, this binary needs ${SCHEMA_VERSION}: run \`keyway store migrate\``, {
      detail: { version, known: SCHEMA_VERSION },
    })
  }
  return state
}

function newerSchema(state: SchemaState): KeywayError {
  return new KeywayError(
    'ERR_STORE_SCHEMA_NEWER',
    `the database schema is version ${state.version}, readable only by binaries that know version ${state.readableFrom} or later; this binary knows version ${SCHEMA_VERSION}: ` +
      `run a Keyway release that knows schema version ${state.readableFrom} or later (an older binary never runs against or undoes a schema it cannot read)`,
    { detail: { version: state.version, readableFrom: state.readableFrom, known: SCHEMA_VERSION } },
  )
}

/**
 * Brings the schema up to {@link SCHEMA_VERSION}, one migration per
 * transaction, serialized against other migrate runs. A newer schema that
 * this binary can read is left as it is (an older binary never downgrades);
 * one it cannot read is refused.
 *
 * @returns the versions before and after (equal when nothing ran)
 * @throws KeywayError ERR_STORE_SCHEMA_NEWER, ERR_STORE_PERMISSION, ERR_STORE_UNREACHABLE
 */
export async function migrate(client: PoolClient): Promise<{ from: number; to: number }> {
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATE_LOCK])
  } catch (err) {
    throw storeError(err, 'taking the migration lock')
  }
  try {
    try {
      await client.query('CREATE TABLE IF NOT EXISTS keyway_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())')
    } catch (err) {
      throw storeError(err, 'creating keyway_schema_version')
    }
    const state = await schemaState(client)
    const from = state.version
    if (from > SCHEMA_VERSION) {
      if (state.readableFrom > SCHEMA_VERSION) throw newerSchema(state)
      return { from, to: from }
    }
    for (let v = from; v < SCHEMA_VERSION; v++) {
      const m = MIGRATIONS[v]!
      try {
        await client.query('BEGIN')
        await client.query(m.sql)
        if (v + 1 >= MARKER_SINCE) await client.query('INSERT INTO keyway_schema_version (version, readable_from) VALUES ($1, $2)', [v + 1, m.readableFrom])
        else await client.query('INSERT INTO keyway_schema_version (version) VALUES ($1)', [v + 1])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw storeError(err, `migrating the schema to version ${v + 1}`)
      }
    }
    return { from, to: SCHEMA_VERSION }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK]).catch(() => undefined)
  }
}
