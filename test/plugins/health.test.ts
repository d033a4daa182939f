import t from 'tap'
import { createReadiness } from '../../plugins/health.js'
import { build } from '../helper.js'

t.test('GET /health/live', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/health/live' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})

t.test('GET /health/ready is 200 when every check passes', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/health/ready' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ready', checks: { database: { status: 'ok', durationMs: Number } } })
})

t.test('a failing check makes readiness 503 and names only a reason code', async (t) => {
  const { app, logs } = await build(t, {
    register: (app) => {
      app.readiness.add('store', async () => { /* healthy */ })
      app.readiness.add('redis', async () => {
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })
      })
    }
  })
  const res = await app.inject({ url: '/health/ready' })
  t.equal(res.statusCode, 503)
  const body = res.json()
  t.equal(body.status, 'not_ready')
  t.match(body.checks.store, { status: 'ok' })
  t.match(body.checks.redis, { status: 'failing', reason: 'ECONNREFUSED' })
  t.notMatch(res.body, /6379/, 'addresses stay in the log, not in the public answer')
  t.match(logs.find('readiness check failing')[0], { check: 'redis', err: { code: 'ECONNREFUSED' } })
})

t.test('a check that hangs is cut at its timeout', async (t) => {
  const readiness = createReadiness(20)
  let aborted = false
  readiness.add('slow', (signal) => new Promise(() => { signal.addEventListener('abort', () => { aborted = true }) }))
  readiness.add('plain', async () => { throw new Error('no code') })
  const { body } = await readiness.run()
  t.match(body.checks.slow, { status: 'failing', reason: 'timeout' })
  t.match(body.checks.plain, { status: 'failing', reason: 'failed' })
  t.ok(aborted, 'the check was told to stop')
})

t.test('a check name is registered once', async (t) => {
  const readiness = createReadiness()
  readiness.add('store', async () => {})
  t.throws(() => readiness.add('store', async () => {}), /already registered/)
})

t.test('draining turns readiness to 503 while liveness stays 200', async (t) => {
  const { app } = await build(t)
  t.equal(app.readiness.draining, false)
  app.readiness.drain()
  t.equal(app.readiness.draining, true)
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().status, 'draining')
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200)
})
