import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import tap, { type Test } from 'tap'
import { buildApp } from '../app.js'
import { loadConfig, type Config } from '../plugins/config.js'
import { loggerOptions } from '../plugins/privacy.js'
import { createEmbeddedStore, createPostgresStore, migrate, type Store } from '../plugins/store/index.js'
import { tcpProxy } from './network.js'

/** Secrets of the test configuration: long enough to pass validation, recognisable in a leak. */
export const TEST_SECRETS = {
  AI_TOKEN_SECRET: 'test-ai-token-secret-abcdefghijklmnopqrstuvwxyz',
  USER_HASH_SECRET: 'test-user-hash-secret-abcdefghijklmnopqrstuvwxyz',
  ADMIN_TOKEN: 'test-admin-token-abcdefghijklmnopqrstuvwxyz0123',
  CONTENT_KEYS: `test1:${Buffer.alloc(32, 7).toString('base64')}`
}

/**
 * The job queue's schema of this test file: test files run in parallel on one PostgreSQL, and a worker of one must
 * never take the jobs of another (on PGlite in memory every store is apart anyway).
 */
export const JOBS_SCHEMA = `jobs_${randomBytes(5).toString('hex')}`

export function testConfig (env: Record<string, string> = {}): Config {
  return loadConfig({ ...TEST_SECRETS, JOBS_SCHEMA, LOG_LEVEL: 'debug', ...env })
}

/** Every log line the app wrote, as parsed JSON, plus the raw text for leak checks. */
export class LogCapture {
  readonly lines: string[] = []
  write (line: string) { this.lines.push(line) }
  get text () { return this.lines.join('') }
  get entries (): Array<Record<string, unknown>> { return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
  find (msg: string) { return this.entries.filter((e) => e.msg === msg) }
}

/** PostgreSQL when TEST_DATABASE_URL is set (a schema of its own per test file), else embedded PGlite in memory. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL === '' ? undefined : process.env.TEST_DATABASE_URL

/** The PostgreSQL of tests that need one whatever the default backend (this machine kind runs it). */
export const POSTGRES_URL = TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export type Backend = 'embedded' | 'postgres'
export const DEFAULT_BACKEND: Backend = TEST_DATABASE_URL === undefined ? 'embedded' : 'postgres'

/** A new, migrated store: PostgreSQL in a fresh schema, or in-memory PGlite. Dropped and closed by the caller. */
export async function createTestStore (backend: Backend = DEFAULT_BACKEND): Promise<{ store: Store, url?: string, drop: () => Promise<void> }> {
  if (backend === 'embedded') {
    const store = await createEmbeddedStore('memory://')
    await migrate(store)
    return { store, drop: async () => store.close() }
  }
  const schema = `test_${randomBytes(6).toString('hex')}`
  const admin = createPostgresStore(POSTGRES_URL)
  await admin.exec(`CREATE SCHEMA ${schema}`)
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  const store = createPostgresStore(url.toString())
  await migrate(store)
  return {
    store,
    url: url.toString(),
    drop: async () => {
      await store.close()
      await admin.exec(`DROP SCHEMA ${schema} CASCADE`)
      await admin.exec(`DROP SCHEMA IF EXISTS ${JOBS_SCHEMA} CASCADE`)
      await admin.close()
    }
  }
}

/**
 * A fresh PostgreSQL store reached through a TCP proxy of the test's own: `proxy.stop()` cuts the database away
 * (connections reset, new ones refused) and `proxy.start()` brings it back, the shared server never touched.
 */
export async function proxiedPostgres (t: Test) {
  const { url, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const proxy = tcpProxy(5432)
  await proxy.start()
  t.teardown(() => proxy.stop())
  const viaProxy = new URL(url as string)
  viaProxy.port = String(proxy.port)
  const store = createPostgresStore(viaProxy.toString())
  t.teardown(() => store.close())
  return { store, proxy }
}

let shared: ReturnType<typeof createTestStore> | undefined
/** One store per test file (starting PGlite takes seconds); tests keep apart by using their own user ids. */
export async function sharedStore (): Promise<Store> {
  if (shared === undefined) {
    shared = createTestStore()
    const { drop } = await shared
    tap.teardown(drop)
  }
  return (await shared).store
}

export interface BuildOptions {
  env?: Record<string, string>
  /** Extra plugins registered after the app (test-only routes, for example). */
  register?: (app: FastifyInstance) => Promise<void> | void
  /** Another store than the file's shared one. */
  store?: Store
}

/** The whole app with the test configuration, its log lines captured, closed when the test ends. */
export async function build (t: Test, opts: BuildOptions = {}) {
  const config = testConfig(opts.env)
  const logs = new LogCapture()
  const store = opts.store ?? await sharedStore()
  const app = await buildApp(config, pino(loggerOptions(config), logs), {}, store)
  if (opts.register !== undefined) await opts.register(app)
  await app.ready()
  t.teardown(() => app.close())
  return { app, logs, config, store }
}

/** Every row of every table of the service and of its job queue, as one text: canary checks search it. */
export async function dumpAllTables (store: Store): Promise<string> {
  const { rows } = await store.query<{ schema: string, name: string }>(
    `SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
     WHERE table_type = 'BASE TABLE' AND table_schema IN (current_schema(), $1) ORDER BY 1, 2`, [JOBS_SCHEMA])
  const parts: string[] = []
  for (const { schema, name } of rows) {
    const { rows: data } = await store.query(`SELECT * FROM "${schema}"."${name}"`)
    parts.push(`${schema}.${name}: ${JSON.stringify(data, (_key, value: unknown) => value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : value)}`)
  }
  return parts.join('\n')
}

/** A user id no other test uses. */
export const newUserId = (label = 'user') => `${label}-${randomBytes(6).toString('hex')}`

/** Admin API call headers. */
export const adminHeaders = { authorization: `Bearer ${TEST_SECRETS.ADMIN_TOKEN}` }

/** A user with a license and an API key; returns the key. */
export async function userWithKey (app: FastifyInstance, opts: { plan?: string, mode?: 'live' | 'test', status?: string } = {}) {
  const userId = newUserId()
  const license = await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: opts.plan ?? 'pro', status: opts.status ?? 'active' } })
  if (license.statusCode !== 200) throw new Error(`license: ${license.body}`)
  const created = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: opts.mode ?? 'test' } })
  if (created.statusCode !== 201) throw new Error(`key: ${created.body}`)
  return { userId, key: (created.json() as { key: string, id: string }).key, keyId: (created.json() as { id: string }).id }
}

/** Mints an AI token with a credential; returns the token response body. */
export async function mint (app: FastifyInstance, credential: string, features?: string[]) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/ai/tokens',
    headers: { authorization: `Bearer ${credential}` },
    ...(features === undefined ? {} : { payload: { features } })
  })
  if (res.statusCode !== 201) throw new Error(`mint: ${res.statusCode} ${res.body}`)
  return res.json() as { token: string, plan: string, features: string[], mode: string, expiresIn: number, expiresAt: string }
}

/** A multipart body by hand, as a client sends it. */
export function multipart (parts: Array<{ name: string, value: Buffer | string, filename?: string, type?: string }>) {
  const boundary = '----portal-ai-api-test-boundary'
  const chunks: Buffer[] = []
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename === undefined ? '' : `; filename="${part.filename}"`}`
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${part.type === undefined ? '' : `Content-Type: ${part.type}\r\n`}\r\n`))
    chunks.push(typeof part.value === 'string' ? Buffer.from(part.value) : part.value)
    chunks.push(Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { payload: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` }
}

/** A PNG whose header claims width × height; no pixel data worth the name (a decompression bomb). */
export function pngHeader (width: number, height: number) {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data])
    const out = Buffer.alloc(body.length + 8)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(crc32(body) >>> 0, body.length + 4)
    return out
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 6, 0, 0, 0], 8)
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk('IEND', Buffer.alloc(0))])
}
