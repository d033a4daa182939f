import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import { PgBoss, fromPglite, type Db, type SendOptions } from 'pg-boss'
import type { Queryable, Store } from './store/index.js'
import { inJobSpan, traceCarrier } from './tracing.js'

/** A job that takes longer than this is taken from its worker and handed to another (or failed). */
const DEFAULT_EXPIRE_S = 15 * 60
/** How often an idle worker looks for work (pg-boss's floor is 0.5 s). */
const POLLING_INTERVAL_S = 1
/** Jobs still running when the app closes get this long to finish; then they are failed back to their queue. */
export const DEFAULT_STOP_TIMEOUT_MS = 6_000
/** Finished jobs are kept this long for `jobs list` and the readiness figures. */
const KEEP_FINISHED_S = 7 * 86_400
const QUEUE_NAME = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/
/** Where a job's data keeps the trace context of its sender (W3C traceparent). */
const TRACE_KEY = '_trace'
export const JOB_STATES = ['created', 'retry', 'active', 'completed', 'cancelled', 'failed'] as const
export type JobState = typeof JOB_STATES[number]

/** What a handler gets: the job's data (ids, never content), its attempt, and a signal aborted when it must stop. */
export interface JobContext<T> {
  id: string
  queue: string
  data: T
  /** 0 on the first attempt. */
  retryCount: number
  /** Aborted when the job expires or the instance shuts down: stop, the job goes back to its queue. */
  signal: AbortSignal
  log: FastifyBaseLogger
}

/** One queue of the service: its handler and how its jobs are run. */
export interface QueueDefinition<T extends object = Record<string, unknown>> {
  /** Dotted lower-case name, e.g. `webhooks.deliver`. */
  name: string
  handler: (job: JobContext<T>) => Promise<unknown>
  /**
   * Attempts after the first. Default 0: a step that reached a provider may have been charged and is never
   * repeated blindly; queues whose steps are safe to repeat say so here.
   */
  retryLimit?: number
  /** Seconds before a retry; with `retryBackoff` the first of an exponential series (with jitter). */
  retryDelaySeconds?: number
  retryBackoff?: boolean
  retryDelayMaxSeconds?: number
  /** Seconds a job may run before it is handed to another worker. Default 15 minutes. */
  expireInSeconds?: number
  /** Jobs of this queue run at once on this instance. Default JOB_CONCURRENCY. */
  concurrency?: number
  /** A recurring job: a cron expression (UTC). */
  cron?: string
}

export interface SendJobOptions {
  /**
   * At most one job ever for this key in its queue (a client's Idempotency-Key, an event id): a second send with the
   * same key queues nothing and returns the first job's id.
   */
  idempotencyKey?: string
  /** Run no earlier than this. */
  startAfter?: Date
  /** Send inside the caller's transaction: the job exists only if the transaction commits. */
  tx?: Queryable
}

export interface QueueHealth { queued: number, active: number, failedLastHour: number, meanProcessingMs: number | null }

export interface JobSummary {
  id: string
  queue: string
  state: JobState
  retryCount: number
  retryLimit: number
  createdAt: string
  startedAt: string | null
  completedAt: string | null
  /** The error code of a failed attempt, when the handler gave one (never a message: it might quote content). */
  errorCode: string | null
}

interface JobRow {
  id: string
  name: string
  state: JobState
  retry_count: number
  retry_limit: number
  created_on: Date
  started_on: Date | null
  completed_on: Date | null
  error_code: string | null
}

/** A job id (a UUID, as pg-boss wants) that is the same for the same queue and key. */
function keyedId (queue: string, key: string): string {
  const hex = createHash('sha256').update(`${queue}\n${key}`).digest('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}

/** A statement of the caller's transaction, as pg-boss wants to run it. */
const asPgBossDb = (tx: Queryable): Db => ({ executeSql: async (text, values) => tx.query(text, values) })

export interface JobsOptions {
  store: Store
  schema: string
  concurrency: number
  /** How often expired jobs (a dead worker's) are looked for, in seconds. */
  superviseSeconds: number
  log: FastifyBaseLogger
  stopTimeoutMs?: number
  /** Told of each attempt that ended: its queue, completed or failed, and its seconds. */
  observe?: (queue: string, outcome: 'completed' | 'failed', seconds: number) => void
}

/**
 * The job queue: pg-boss in the service's own database (PGlite embedded, PostgreSQL with DATABASE_URL).
 * Queues are defined before `start`; every instance runs workers for every queue.
 */
export function createJobs (opts: JobsOptions) {
  const { store, schema, log } = opts
  const definitions = new Map<string, QueueDefinition<never>>()
  const timing = { superviseIntervalSeconds: opts.superviseSeconds, monitorIntervalSeconds: opts.superviseSeconds }
  const boss = store.kind === 'embedded'
    ? new PgBoss({ db: fromPglite(store.pglite as NonNullable<Store['pglite']>), backend: 'pglite', schema, ...timing })
    : new PgBoss({ connectionString: store.url as string, schema, max: 4, application_name: 'portal-ai-api-jobs', ...timing })
  // pg-boss reports database trouble as events; an unheard 'error' event would end the process.
  boss.on('error', (err: Error) => log.warn({ err }, 'job queue error'))
  let started = false

  const table = (name: string) => `${schema}.${name}`

  return {
    boss,
    define<T extends object> (definition: QueueDefinition<T>) {
      if (started) throw new Error(`queue ${definition.name} is defined after the job queue started`)
      if (!QUEUE_NAME.test(definition.name)) throw new Error(`queue name ${definition.name} must be dotted lower-case words`)
      if (definitions.has(definition.name)) throw new Error(`queue ${definition.name} is defined twice`)
      definitions.set(definition.name, definition as QueueDefinition<never>)
    },

    async start () {
      started = true
      await boss.start()
      for (const def of definitions.values()) {
        const options = {
          retryLimit: def.retryLimit ?? 0,
          retryDelay: def.retryDelaySeconds ?? 0,
          retryBackoff: def.retryBackoff ?? false,
          ...(def.retryDelayMaxSeconds === undefined ? {} : { retryDelayMax: def.retryDelayMaxSeconds }),
          expireInSeconds: def.expireInSeconds ?? DEFAULT_EXPIRE_S,
          deleteAfterSeconds: KEEP_FINISHED_S
        }
        if (await boss.getQueue(def.name) === null) await boss.createQueue(def.name, options)
        else await boss.updateQueue(def.name, options)
        await boss.work<Record<string, unknown>>(def.name, {
          localConcurrency: def.concurrency ?? opts.concurrency,
          pollingIntervalSeconds: POLLING_INTERVAL_S
        }, async ([job]) => {
          const j = job as NonNullable<typeof job>
          const jobLog = log.child({ job: j.id, queue: def.name, attempt: j.retryCount })
          const started = performance.now()
          const took = () => (performance.now() - started) / 1000
          // The trace of the request that queued the job (ids only) is not the handler's.
          const { [TRACE_KEY]: carrier, ...data } = j.data as Record<string, unknown> & { [TRACE_KEY]?: Record<string, string> }
          try {
            const output = await inJobSpan(def.name, { 'portal.job.attempt': j.retryCount }, carrier,
              async () => def.handler({ id: j.id, queue: def.name, data: data as never, retryCount: j.retryCount, signal: j.signal, log: jobLog }))
            opts.observe?.(def.name, 'completed', took())
            return output
          } catch (err) {
            opts.observe?.(def.name, 'failed', took())
            jobLog.warn({ err }, 'job attempt failed')
            // pg-boss stores what is thrown; only a code goes in, never a message that might quote content.
            const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'JOB_FAILED'
            throw Object.assign(new Error(code), { code, stack: undefined })
          }
        })
        if (def.cron !== undefined) await boss.schedule(def.name, def.cron, {}, { tz: 'UTC' })
      }
    },

    /** Hands running jobs back (failed to their queue's retry) if they do not finish within the timeout. */
    async stop () {
      if (!started) return
      await boss.stop({ graceful: true, timeout: opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS, close: true })
    },

    async send (queue: string, data: object, options: SendJobOptions = {}): Promise<string> {
      if (!definitions.has(queue)) throw new Error(`no queue ${queue}`)
      const send: SendOptions = {
        ...(options.idempotencyKey === undefined ? {} : { id: keyedId(queue, options.idempotencyKey) }),
        ...(options.startAfter === undefined ? {} : { startAfter: options.startAfter }),
        ...(options.tx === undefined ? {} : { db: asPgBossDb(options.tx) })
      }
      // With tracing on, the job continues the sender's trace.
      const carrier = traceCarrier()
      const sent = Object.keys(carrier).length === 0 ? data : { ...data, [TRACE_KEY]: carrier }
      // A job with this id exists already: pg-boss answers null, and the id is the one the caller gets.
      return await boss.send(queue, sent, send) ?? send.id as string
    },

    /** Per queue: waiting, running, failed in the last hour, and the mean run time of the last 100 completed. */
    async health (): Promise<Record<string, QueueHealth>> {
      const out: Record<string, QueueHealth> = {}
      const { rows } = await store.query<{ name: string, queued: string, active: string, failed: string, mean_ms: number | null }>(`
        SELECT q.name,
          (SELECT count(*) FROM ${table('job')} j WHERE j.name = q.name AND j.state IN ('created', 'retry')) AS queued,
          (SELECT count(*) FROM ${table('job')} j WHERE j.name = q.name AND j.state = 'active') AS active,
          (SELECT count(*) FROM ${table('job')} j WHERE j.name = q.name AND j.state = 'failed' AND j.completed_on > now() - interval '1 hour') AS failed,
          (SELECT avg(extract(epoch FROM l.completed_on - l.started_on) * 1000)::float8 FROM (
            SELECT completed_on, started_on FROM ${table('job')} j
            WHERE j.name = q.name AND j.state = 'completed' AND j.started_on IS NOT NULL
            ORDER BY j.completed_on DESC LIMIT 100) l) AS mean_ms
        FROM unnest($1::text[]) AS q(name)`, [[...definitions.keys()]])
      for (const row of rows) {
        out[row.name] = {
          queued: Number(row.queued),
          active: Number(row.active),
          failedLastHour: Number(row.failed),
          meanProcessingMs: row.mean_ms === null ? null : Math.round(row.mean_ms)
        }
      }
      return out
    },

    /** Newest first, for the operator (`jobs list`): states and error codes, never the job's data. */
    async list (filter: { queue?: string, state?: JobState, id?: string, limit: number }): Promise<JobSummary[]> {
      const { rows } = await store.query<JobRow>(`
        SELECT id, name, state, retry_count, retry_limit, created_on, started_on, completed_on, output->>'code' AS error_code
        FROM ${table('job')}
        WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR state::text = $2) AND ($4::text IS NULL OR id::text = $4)
        ORDER BY created_on DESC LIMIT $3`, [filter.queue ?? null, filter.state ?? null, filter.limit, filter.id ?? null])
      return rows.map((row) => ({
        id: row.id,
        queue: row.name,
        state: row.state,
        retryCount: row.retry_count,
        retryLimit: row.retry_limit,
        createdAt: row.created_on.toISOString(),
        startedAt: row.started_on?.toISOString() ?? null,
        completedAt: row.completed_on?.toISOString() ?? null,
        errorCode: row.state === 'failed' || row.state === 'retry' ? row.error_code : null
      }))
    },

    /** Puts a failed job back in its queue; null when there is no such job, false when it is not failed. */
    async retry (id: string): Promise<JobSummary | null | false> {
      const { rows } = await store.query<{ name: string, state: string }>(
        `SELECT name, state FROM ${table('job')} WHERE id::text = $1`, [id])
      const row = rows[0]
      if (row === undefined) return null
      if (row.state !== 'failed') return false
      await boss.retry(row.name, id)
      return (await this.list({ id, limit: 1 }))[0] as JobSummary
    }
  }
}

export type Jobs = ReturnType<typeof createJobs>

declare module 'fastify' {
  interface FastifyInstance {
    jobs: Jobs
  }
}

/**
 * Work that outlives a request (SPEC §11). Plugins define their queues while the app registers; workers start
 * when it is ready and stop in the graceful shutdown.
 */
export default fp(async function jobs (app) {
  const jobs = createJobs({
    store: app.store,
    schema: app.config.JOBS_SCHEMA,
    concurrency: app.config.JOB_CONCURRENCY,
    superviseSeconds: app.config.JOB_SUPERVISE_SECONDS,
    log: app.log,
    observe: (queue, outcome, seconds) => { app.metrics.job(queue, outcome, seconds) }
  })
  app.decorate('jobs', jobs)
  app.metrics.sources.queues = async () => jobs.health()
  app.addHook('onReady', async () => { await jobs.start() })
  // preClose: before the store closes, so running jobs can still settle.
  app.addHook('preClose', async () => { await jobs.stop() })
  app.readiness.add('jobs', async () => ({ queues: await jobs.health() }))
}, { name: 'jobs', fastify: '5.x', dependencies: ['config', 'store', 'health', 'metrics'] })
