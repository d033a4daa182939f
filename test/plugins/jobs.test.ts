import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createJobs, type JobContext, type JobsOptions, type QueueDefinition } from '../../plugins/jobs.js'
import type { Store } from '../../plugins/store/index.js'
import { createTestStore, type Backend, JOBS_SCHEMA } from '../helper.js'

const log = pino({ level: 'silent' })

/** A job queue on `store`, stopped when the test ends. */
function jobsOn (t: Test, store: Store, queues: Array<QueueDefinition<any>>, opts: { stopTimeoutMs?: number, schema?: string, observe?: JobsOptions['observe'] } = {}) {
  const jobs = createJobs({ store, schema: opts.schema ?? JOBS_SCHEMA, concurrency: 2, superviseSeconds: 1, log, stopTimeoutMs: opts.stopTimeoutMs ?? 1000, ...(opts.observe === undefined ? {} : { observe: opts.observe }) })
  for (const q of queues) jobs.define(q)
  t.teardown(() => jobs.stop())
  return jobs
}

async function until<T> (what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = await fn()
    if (value !== undefined && value !== false) return value
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

const stateOf = async (jobs: ReturnType<typeof createJobs>, id: string) => (await jobs.list({ id, limit: 1 }))[0]?.state

for (const backend of ['embedded', 'postgres'] as Backend[]) {
  t.test(`${backend}: jobs run, fail with a code, are retried by hand, and show in readiness`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const seen: Array<JobContext<{ n: number }>> = []
    const attempts: string[] = []
    let fail = true
    const jobs = jobsOn(t, store, [
      { name: 'test.ok', handler: async (job: JobContext<{ n: number }>) => { seen.push(job); return { doubled: job.data.n * 2 } } },
      {
        name: 'test.flaky',
        retryLimit: 1,
        handler: async () => { if (fail) throw Object.assign(new Error('CANARY-job-secret text'), { code: 'PROVIDER_ERROR' }); return {} }
      },
      { name: 'test.plain-error', handler: async () => { throw new Error('no code') } }
    ], { observe: (queue, outcome, seconds) => { if (seconds >= 0) attempts.push(`${queue} ${outcome}`) } })
    await jobs.start()
    const ok = await jobs.send('test.ok', { n: 21 })
    await until('test.ok done', async () => (await stateOf(jobs, ok)) === 'completed')
    t.match(seen, [{ id: ok, queue: 'test.ok', data: { n: 21 }, retryCount: 0 }])
    t.ok(seen[0]?.signal instanceof AbortSignal)

    const flaky = await jobs.send('test.flaky', {})
    const failed = await until('test.flaky failed', async () => {
      const [job] = await jobs.list({ queue: 'test.flaky', state: 'failed', limit: 5 })
      return job
    })
    t.match(failed, { id: flaky, state: 'failed', retryCount: 1, retryLimit: 1, errorCode: 'PROVIDER_ERROR' }, 'retried once, then failed with the code only')
    const plain = await jobs.send('test.plain-error', {})
    t.match(await until('plain failed', async () => (await jobs.list({ id: plain, state: 'failed', limit: 1 }))[0]), { errorCode: 'JOB_FAILED' })
    const { rows } = await store.query<{ output: unknown }>(`SELECT output FROM ${JOBS_SCHEMA}.job WHERE id = $1`, [flaky])
    t.notMatch(JSON.stringify(rows), /CANARY/, 'the message of a failure is not stored')
    t.same(attempts.sort(), ['test.flaky failed', 'test.flaky failed', 'test.ok completed', 'test.plain-error failed'], 'each attempt is told to the observer')

    const health = await jobs.health()
    t.match(health['test.ok'], { queued: 0, active: 0, failedLastHour: 0 })
    t.type(health['test.ok']?.meanProcessingMs, 'number')
    t.match(health['test.flaky'], { failedLastHour: 1, meanProcessingMs: null })

    t.equal(await jobs.retry('00000000-0000-4000-8000-000000000000'), null, 'no such job')
    t.equal(await jobs.retry(ok), false, 'a completed job is not retried')
    fail = false
    t.match(await jobs.retry(flaky), { id: flaky, state: 'retry' })
    await until('retried job done', async () => (await stateOf(jobs, flaky)) === 'completed')
  })

  t.test(`${backend}: a job sent in a transaction exists only if it commits; a job survives a restart`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const ran: string[] = []
    const queue = { name: 'test.later', handler: async (job: JobContext<object>) => { ran.push(job.id) } }
    const first = jobsOn(t, store, [queue])
    await first.start()
    await t.rejects(store.transaction(async (tx) => {
      await first.send('test.later', {}, { tx })
      throw new Error('rolled back')
    }))
    t.same(await first.list({ queue: 'test.later', limit: 10 }), [], 'nothing from the rolled-back transaction')
    const id = await store.transaction(async (tx) => first.send('test.later', {}, { tx, startAfter: new Date(Date.now() + 1500), idempotencyKey: 'only-one' }))
    t.equal(await first.send('test.later', {}, { idempotencyKey: 'only-one' }), id, 'a second send with the same key gets the first job')
    t.equal((await first.list({ queue: 'test.later', limit: 10 })).length, 1, 'and queues nothing')
    await first.stop()
    t.same(ran, [], 'not run before the restart')

    const second = jobsOn(t, store, [queue])
    await second.start()
    await until('the job runs on the new instance', async () => ran.includes(id))
  })

  t.test(`${backend}: a job still running at shutdown is handed back and finished by the next instance`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    let started = false
    const finished: number[] = []
    const queue = {
      name: 'test.long',
      retryLimit: 1,
      handler: async (job: JobContext<object>) => {
        if (job.retryCount === 0) {
          started = true
          await new Promise((resolve) => job.signal.addEventListener('abort', resolve))
          throw new Error('stopped')
        }
        finished.push(job.retryCount)
      }
    }
    const first = jobsOn(t, store, [queue], { stopTimeoutMs: 300 })
    await first.start()
    const id = await first.send('test.long', {})
    await until('started', async () => started)
    await first.stop()
    t.equal(await stateOf(first, id), 'retry', 'handed back to its queue, not lost')
    const second = jobsOn(t, store, [queue])
    await second.start()
    await until('finished', async () => finished.length > 0)
    t.same(finished, [1])
  })
}

t.test('queues are declared before the start, once, with a dotted name; a recurring one is scheduled', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const jobs = jobsOn(t, store, [{ name: 'test.daily', cron: '17 3 * * *', handler: async () => {} }])
  t.throws(() => jobs.define({ name: 'Bad Name', handler: async () => {} }), /dotted lower-case/)
  t.throws(() => jobs.define({ name: 'test.daily', handler: async () => {} }), /defined twice/)
  await t.rejects(jobs.send('test.unknown', {}), /no queue test.unknown/)
  await jobs.start()
  t.throws(() => jobs.define({ name: 'test.late', handler: async () => {} }), /after the job queue started/)
  t.match(await jobs.boss.getSchedules('test.daily'), [{ name: 'test.daily', cron: '17 3 * * *', timezone: 'UTC' }])
  const again = jobsOn(t, store, [{ name: 'test.daily', retryLimit: 4, handler: async () => {} }])
  await again.start()
  t.match(await again.boss.getQueue('test.daily'), { retryLimit: 4 }, 'a restart with new options updates the queue')
  await createJobs({ store, schema: JOBS_SCHEMA, concurrency: 1, superviseSeconds: 1, log }).stop()
})

t.test('two instances on PostgreSQL never run one job twice, and never at the same time', async (t) => {
  const { store, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const runs: Array<{ id: string, start: number, end: number }> = []
  const queue = {
    name: 'test.shared',
    handler: async (job: JobContext<object>) => {
      const start = performance.now()
      await sleep(30)
      runs.push({ id: job.id, start, end: performance.now() })
    }
  }
  const a = jobsOn(t, store, [queue])
  const b = jobsOn(t, store, [queue])
  await a.start()
  await b.start()
  const ids = await Promise.all(Array.from({ length: 30 }, async (_, i) => (i % 2 === 0 ? a : b).send('test.shared', { i })))
  await until('all done', async () => runs.length >= 30 && (await a.list({ queue: 'test.shared', state: 'completed', limit: 100 })).length === 30)
  await sleep(300)
  t.equal(runs.length, 30, 'each job ran once')
  t.same(new Set(runs.map((r) => r.id)), new Set(ids))
})
