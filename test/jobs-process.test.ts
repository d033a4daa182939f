import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import t from 'tap'
import { createJobs } from '../plugins/jobs.js'
import { createMetering } from '../plugins/metering.js'
import { build, createTestStore, JOBS_SCHEMA, newUserId, proxiedPostgres, TEST_SECRETS } from './helper.js'
import { meteredQueue } from './fixtures/metered-queue.js'
import { start } from './server-process.js'

const WORKER = [...process.execArgv, 'test/fixtures/job-worker.ts']

t.test('a worker killed with SIGKILL mid-job: the job completes on another instance after its expiry, settled exactly once', async (t) => {
  const { store, url, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const userId = newUserId('killed')
  const env = { ...TEST_SECRETS, JOBS_SCHEMA, JOB_SUPERVISE_SECONDS: '1', DATABASE_URL: url as string, LOG_LEVEL: 'info' }
  const a = await start(t, { ...env, HANG: '1', SEND_FOR_USER: userId }, WORKER)
  for (let i = 0; i < 200 && !a.lines.some((l) => l.msg === 'metered job settled'); i++) await sleep(50)
  t.match(a.lines.find((l) => l.msg === 'metered job settled'), { attempt: 0, settled: true }, 'the first attempt charged the user')
  a.child.kill('SIGKILL')
  await new Promise((resolve) => a.child.once('exit', resolve))

  // Another instance (this process), started after the death.
  const { app } = await build(t, { store, env: { JOB_SUPERVISE_SECONDS: '1' }, register: (app) => { app.jobs.define(meteredQueue(app, { hang: false })) } })
  const done = async () => (await app.jobs.list({ queue: 'test.metered', state: 'completed', limit: 5 }))[0]
  let job
  for (let i = 0; i < 300 && (job = await done()) === undefined; i++) await sleep(100)
  t.match(job, { state: 'completed', retryCount: 1 }, 'handed over after its expiry and finished by the second instance')
  const ledger = await store.query<{ units: string, reservation_id: string }>('SELECT units, reservation_id FROM usage_ledger WHERE user_id = $1', [userId])
  t.equal(ledger.rows.length, 1, 'one ledger row, though two attempts settled')
  const usage = await createMetering(store).usage({ userId, mode: 'test', feature: 'background-removal' }, { limit: 10, period: 'month' })
  t.match(usage, { used: 1, reserved: 0 }, 'used once, nothing left reserved')
})

t.test('PostgreSQL gone while a job runs: the job is not lost, it runs again once the database is back', async (t) => {
  const { store, proxy } = await proxiedPostgres(t)
  let cut: () => void = () => {}
  const dbGone = new Promise<void>((resolve) => { cut = resolve })
  const attempts: number[] = []
  const jobs = createJobs({ store, schema: JOBS_SCHEMA, concurrency: 1, superviseSeconds: 1, log: pino({ level: 'silent' }), stopTimeoutMs: 500 })
  jobs.define({
    name: 'test.cut',
    retryLimit: 3,
    retryDelaySeconds: 1,
    expireInSeconds: 3,
    handler: async (job) => {
      attempts.push(job.retryCount)
      if (job.retryCount === 0) {
        await dbGone
      }
      await store.query('INSERT INTO licenses (user_id, plan, status) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING', ['cut-job', 'pro', 'active'])
    }
  })
  t.teardown(() => jobs.stop())
  await jobs.start()
  const id = await jobs.send('test.cut', {})
  for (let i = 0; i < 200 && attempts.length === 0; i++) await sleep(50)
  await proxy.stop()
  cut()
  await sleep(1500)
  await proxy.start()
  let state: string | undefined
  for (let i = 0; i < 400 && state !== 'completed'; i++) {
    await sleep(100)
    state = (await jobs.list({ id, limit: 1 }).catch(() => []))[0]?.state
  }
  t.equal(state, 'completed', 'the job finished once the database was back')
  t.ok(attempts.length >= 2 && attempts[0] === 0, `attempts ${attempts.join(', ')}: the cut one, then a retry`)
  t.same((await store.query('SELECT count(*)::int AS n FROM licenses WHERE user_id = $1', ['cut-job'])).rows, [{ n: 1 }], 'its work done once')
})
