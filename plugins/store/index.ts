import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { PGlite, type Transaction } from '@electric-sql/pglite'
import fp from 'fastify-plugin'
import pg from 'pg'
import type { Config } from '../config.js'
import { MIGRATIONS, type Migration } from './migrations.js'
import { activeTracer, tracedStore } from '../tracing.js'

/** What the rest of the app needs from a database: parameterised queries and transactions. */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: Row[], rowCount: number }>
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>
}

export interface Store extends Queryable {
  readonly kind: 'embedded' | 'postgres'
  /** The embedded database itself, for a library that speaks to PGlite (the job queue). */
  readonly pglite?: PGlite
  /** The PostgreSQL URL, for a library that opens its own pool (the job queue). */
  readonly url?: string
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>
  close(): Promise<void>
}

/** Pool size per instance: a feature call holds a connection only for its short reservation statements. */
const POOL_SIZE = 10
const CONNECT_TIMEOUT_MS = 5_000
/** A statement that takes longer than this is cancelled by PostgreSQL (quota statements take milliseconds). */
const STATEMENT_TIMEOUT_MS = 10_000
/** Any key of our own for pg_advisory_xact_lock: only one instance migrates at a time. */
const MIGRATION_LOCK = 7_316_001

function pgliteQueryable (db: PGlite | Transaction): Queryable {
  return {
    async query<Row>(sql: string, params?: unknown[]) {
      const result = await db.query<Row>(sql, params)
      // PGlite sets affectedRows on every result, 0 for a SELECT: count returned rows, else written rows (as pg does).
      return { rows: result.rows, rowCount: result.rows.length > 0 ? result.rows.length : result.affectedRows as number }
    },
    async exec (sql: string) { await db.exec(sql) }
  }
}

/** The embedded store: PGlite in DATA_DIR (or in memory with `memory://`), one process owns it. */
export async function createEmbeddedStore (dataDir: string): Promise<Store> {
  let location = dataDir
  if (!dataDir.startsWith('memory://')) {
    location = join(resolve(dataDir), 'pglite')
    mkdirSync(location, { recursive: true })
  }
  const db = await PGlite.create(location)
  return {
    kind: 'embedded',
    pglite: db,
    ...pgliteQueryable(db),
    transaction: async (fn) => db.transaction(async (tx) => fn(pgliteQueryable(tx))),
    close: async () => { await db.close() }
  }
}

/** PostgreSQL through a pg pool: instances are stateless and share it. */
export function createPostgresStore (url: string): Store {
  const pool = new pg.Pool({
    connectionString: url,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    application_name: 'portal-ai-api'
  })
  // An idle client losing its connection (a database restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {})
  // Parameterised statements are prepared once per connection under a name of their own, then only bound and
  // run: PostgreSQL parses and plans the hot metering statements once instead of on every call.
  const names = new Map<string, string>()
  const named = (sql: string) => {
    let name = names.get(sql)
    if (name === undefined) {
      name = `portal_ai_${names.size}`
      names.set(sql, name)
    }
    return name
  }
  const queryable = (client: pg.Pool | pg.PoolClient): Queryable => ({
    async query<Row>(sql: string, params?: unknown[]) {
      const result = params === undefined ? await client.query(sql) : await client.query({ name: named(sql), text: sql, values: params })
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 }
    },
    async exec (sql: string) { await client.query(sql) }
  })
  return {
    kind: 'postgres',
    url,
    ...queryable(pool),
    async transaction (fn) {
      const client = await pool.connect()
      // A checked-out client whose connection drops emits 'error' (maybe after we are done with it): without a
      // listener that would crash the process. The failing query rejects anyway, which the caller handles.
      if (client.listenerCount('error') === 0) client.on('error', () => {})
      let result
      try {
        await client.query('BEGIN')
        result = await fn(queryable(client))
        await client.query('COMMIT')
      } catch (err) {
        // A connection that cannot even roll back (it died) is discarded, not returned to the pool.
        const broken = await client.query('ROLLBACK').then(() => undefined, (rollbackError: unknown) => rollbackError as Error)
        client.release(broken)
        throw err
      }
      client.release()
      return result
    },
    close: async () => { await pool.end() }
  }
}

export async function createStore (config: Pick<Config, 'DATABASE_URL' | 'DATA_DIR'>): Promise<Store> {
  return config.DATABASE_URL === undefined ? createEmbeddedStore(config.DATA_DIR) : createPostgresStore(config.DATABASE_URL)
}

/** Applies the migrations not yet applied, in order, each in one transaction; safe with several instances starting. */
export async function migrate (store: Store, migrations: Migration[] = MIGRATIONS): Promise<number[]> {
  await store.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
  const applied: number[] = []
  for (const migration of migrations) {
    const done = await store.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
      const { rowCount } = await tx.query('SELECT 1 FROM schema_migrations WHERE id = $1', [migration.id])
      if (rowCount > 0) return false
      await tx.exec(migration.sql)
      await tx.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name])
      return true
    })
    if (done) applied.push(migration.id)
  }
  return applied
}

declare module 'fastify' {
  interface FastifyInstance {
    store: Store
  }
}

export interface StorePluginOptions {
  /** A store made by the caller (tests share one); it is then the caller's to close. */
  store?: Store
}

/** The database: opened and migrated at startup, checked by readiness, closed with the app. */
export default fp<StorePluginOptions>(async function store (app, opts) {
  const owned = opts.store === undefined
  const store = opts.store ?? await createStore(app.config)
  if (owned) app.addHook('onClose', async () => store.close())
  const applied = await migrate(store)
  if (applied.length > 0) app.log.info({ migrations: applied, store: store.kind }, 'database migrated')
  // With tracing on, every query is a span of the request (or job) it serves.
  const active = activeTracer()
  app.decorate('store', active === null ? store : tracedStore(store, active))
  app.readiness.add('database', async () => { await store.query('SELECT 1') })
}, { name: 'store', fastify: '5.x', dependencies: ['config', 'health'] })
