import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { type Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Redis } from 'ioredis'
import defaultPlans from '../defaults/plans.json' with { type: 'json' }
import { freePort } from '../test/free-port.js'

export { freePort }

/**
 * What the benchmark (`npm run bench`) and the soak (`npm run soak`) share: the built server with its whole
 * policy path, on PostgreSQL (a fresh schema) and Redis (a database of its own, flushed) when this machine runs
 * them, else embedded; the fake upstream of test/fake-upstream.ts in a process of its own; users with live keys
 * and AI tokens on a plan without practical limits. Logs go to a temporary folder, deleted at the end unless
 * BENCH_KEEP_LOGS is set.
 */
export const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/14'

export function rssMb (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024
}

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}
export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits

export interface Sent { status: number, headers: IncomingHttpHeaders, ms: number, firstMs: number, text: string }

/**
 * One POST over `agent`; `firstMarker` times the arrival of the first body bytes holding it. `timeoutMs` gives
 * up on an answer that takes longer (the promise rejects).
 */
export function post (agent: Agent, url: string, body: string | Buffer, headers: Record<string, string>, firstMarker?: (text: string) => boolean, timeoutMs?: number): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const req = httpRequest(url, { method: 'POST', agent, timeout: timeoutMs, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let text = ''
      let firstMs = -1
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
        if (firstMs < 0 && firstMarker?.(text) === true) firstMs = performance.now() - started
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, ms: performance.now() - started, firstMs, text }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${String(timeoutMs)} ms`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** Waits until `url` answers 2xx, failing when `child` exits first (its log is `<logs>/<name>.log`) or after `timeoutMs`. */
export async function waitFor (url: string, child: ChildProcess, name: string, logs: string, timeoutMs = 60_000) {
  for (let i = 0; i < timeoutMs / 100; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}); see ${join(logs, `${name}.log`)}`)
    try {
      if ((await fetch(url)).ok) return
    } catch {}
    await sleep(100)
  }
  throw new Error(`${name} did not become ready at ${url}`)
}

/** PostgreSQL and Redis when this machine runs them (a fresh schema of its own), else the embedded store. */
async function backends (cleanups: Array<() => Promise<void>>): Promise<{ env: Record<string, string>, store: string, limits: string, databaseUrl: string | null }> {
  const env: Record<string, string> = {}
  let store = 'embedded PGlite'
  let limits = 'in-memory rate limits'
  let databaseUrl: string | null = null
  const admin = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 })
  try {
    await admin.connect()
    const schema = `bench_${randomBytes(4).toString('hex')}`
    await admin.query(`CREATE SCHEMA ${schema}`)
    const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? '?'
    const url = new URL(DATABASE_URL)
    url.searchParams.set('options', `-c search_path=${schema}`)
    databaseUrl = env.DATABASE_URL = url.toString()
    // The job queue in a schema of the run too, dropped with it.
    env.JOBS_SCHEMA = `${schema}_jobs`
    store = `PostgreSQL ${version.split(' ')[0] ?? version}`
    cleanups.push(async () => {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`)
      await admin.query(`DROP SCHEMA IF EXISTS ${schema}_jobs CASCADE`)
      await admin.end()
    })
  } catch {
    await admin.end().catch(() => {})
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    const info = await redis.info('server')
    await redis.flushdb()
    env.REDIS_URL = REDIS_URL
    cleanups.push(async () => {
      const again = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 })
      await again.flushdb()
      again.disconnect()
    })
    limits = `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`
  } catch {}
  redis.disconnect()
  return { env, store, limits, databaseUrl }
}

export interface StackOptions {
  /** Folder-name prefix of the logs. */
  name: string
  users: number
  /** More server environment (time limits, log level); the defaults are the benchmark's. */
  env?: Record<string, string>
  /** Node flags for the server (`--cpu-prof`…). */
  nodeFlags?: (logs: string) => string[]
}

export interface Upstream { held: number, lastChatBody: string, stats: { chat: number, streams: number, removebg: number, edits: number, faults: number } }

export interface Stack {
  service: string
  upstreamUrl: string
  /** The fake upstream's `POST /_control`: what it saw, and how it behaves next. */
  control: (change: Record<string, unknown>) => Promise<Upstream>
  /** The server's process id (RSS is read from /proc). */
  pid: number
  userIds: string[]
  keys: string[]
  tokens: string[]
  admin: Record<string, string>
  store: string
  limits: string
  /** Where the server's and the upstream's logs are written. */
  logs: string
  databaseUrl: string | null
  close: () => Promise<void>
}

export async function startStack (options: StackOptions): Promise<Stack> {
  const logs = mkdtempSync(join(tmpdir(), `portal-ai-api-${options.name}-`))
  const children: ChildProcess[] = []
  const cleanups: Array<() => Promise<void>> = []
  const start = (name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess => {
    const log = openSync(join(logs, `${name}.log`), 'a')
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', name === 'upstream' ? 'pipe' : log, log] })
    children.push(child)
    return child
  }
  const close = async () => {
    for (const child of children) child.kill('SIGTERM')
    await Promise.all(children.map(async (child) => { if (child.exitCode === null && child.signalCode === null) await once(child, 'exit') }))
    for (const cleanup of cleanups) await cleanup().catch(() => {})
    if (process.env.BENCH_KEEP_LOGS === undefined) rmSync(logs, { recursive: true, force: true })
    else process.stdout.write(`logs kept in ${logs}\n`)
  }
  try {
    const { env: backendEnv, store, limits, databaseUrl } = await backends(cleanups)

    const upstream = start('upstream', ['--import', 'tsx', 'bench/upstream-process.ts'], { PATH: process.env.PATH })
    const [line] = await once(upstream.stdout as NodeJS.ReadableStream, 'data') as [Buffer]
    const upstreamUrl = `http://127.0.0.1:${/listening (\d+)/.exec(line.toString())?.[1] ?? ''}`
    const control = async (change: Record<string, unknown>) => (await fetch(`${upstreamUrl}/_control`, { method: 'POST', body: JSON.stringify(change) })).json() as Promise<Upstream>

    // A plan without practical limits, so that the load measures the policy path rather than its refusals.
    const plansFile = join(logs, 'plans.json')
    const unlimited = { quota: { limit: 1e15, period: 'month' }, rateLimitPerMinute: 100_000 }
    // The plan's own rateLimitPerMinute covers the read routes (entitlements, usage), which the reference run calls.
    writeFileSync(plansFile, JSON.stringify({ plans: { bench: { name: 'Benchmark', rateLimitPerMinute: 100_000, features: { 'settings-assistant': unlimited, 'background-removal': unlimited, chat: unlimited, 'virtual-staging': unlimited } } }, prices: defaultPlans.prices }))

    const port = await freePort()
    const adminToken = randomBytes(24).toString('base64url')
    const service = `http://127.0.0.1:${port}`
    // BENCH_NODE_FLAGS adds Node flags to the server (`--heapsnapshot-signal=SIGUSR2`, `--max-old-space-size=…`).
    const extraFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '')
    const server = start('server', [...(options.nodeFlags?.(logs) ?? []), ...extraFlags, 'dist/server.js'], {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      // The bench may run two servers at once; neither needs the metrics listener's port.
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      DATA_DIR: join(logs, 'data'),
      AI_TOKEN_SECRET: randomBytes(24).toString('base64url'),
      USER_HASH_SECRET: randomBytes(24).toString('base64url'),
      ADMIN_TOKEN: adminToken,
      CONTENT_KEYS: `bench:${randomBytes(32).toString('base64')}`,
      AI_TOKEN_TTL_SECONDS: '3600',
      PLANS_FILE: plansFile,
      OPENAI_API_KEY: `${options.name}-openai-key`,
      OPENAI_BASE_URL: `${upstreamUrl}/v1`,
      REMOVEBG_API_KEY: `${options.name}-removebg-key`,
      REMOVEBG_BASE_URL: upstreamUrl,
      BG_REMOVAL_PROVIDERS: 'removebg',
      ...backendEnv,
      ...options.env,
      // Settings of the deployment a run may set: the allocator's, and how many background removals run at once.
      ...Object.fromEntries(['LD_PRELOAD', 'MALLOC_ARENA_MAX', 'BG_REMOVAL_MAX_IN_FLIGHT'].flatMap((name) => process.env[name] === undefined ? [] : [[name, process.env[name] as string]]))
    })
    await waitFor(`${service}/health/ready`, server, 'server', logs)

    // Users with live keys and AI tokens, taken in turn, as real traffic comes from many users.
    const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }
    const userIds: string[] = []
    const keys: string[] = []
    const tokens: string[] = []
    for (let i = 0; i < options.users; i++) {
      const userId = `${options.name}-${i}`
      await fetch(`${service}/v1/admin/licenses/${userId}`, { method: 'PUT', headers: admin, body: JSON.stringify({ plan: 'bench' }) })
      const key = (await (await fetch(`${service}/v1/admin/keys`, { method: 'POST', headers: admin, body: JSON.stringify({ userId, mode: 'live' }) })).json() as { key: string }).key
      const minted = await fetch(`${service}/v1/ai/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })
      if (minted.status !== 201) throw new Error(`minting a token: HTTP ${minted.status} ${await minted.text()}`)
      userIds.push(userId)
      keys.push(key)
      tokens.push((await minted.json() as { token: string }).token)
    }
    return { service, upstreamUrl, control, pid: server.pid as number, userIds, keys, tokens, admin, store, limits, logs, databaseUrl, close }
  } catch (error) {
    await close()
    throw error
  }
}
